package coordinator_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/mtls"
	"github.com/tmwarden/tmwarden/mtls/mtlstest"
	"github.com/tmwarden/tmwarden/telemetry"
)

func serverSerial(t *testing.T, addr, caFile string) int64 {
	t.Helper()
	tc, err := mtls.ClientConfig(mtls.Config{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	// The server asks for a client certificate; the handshake still shows its own first.
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil && conn == nil {
		return -1
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestMutualTLSWithCertificateRotation runs a coordinator that requires client certificates:
// an agent with one reports, a client without one is refused, and a rotated server
// certificate is served to the next connection without a restart.
func TestMutualTLSWithCertificateRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := mtlstest.NewCA(t, "tmwarden test CA")
	caFile := ca.File
	srvCert, srvKey := ca.Issue(t, dir, "coordinator", 100)
	// The agent's certificate names its node (agent_identity: node-name, the default).
	agCert, agKey := ca.Issue(t, dir, "mtls-node", 200)

	rec := newRecorder()
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", func(cfg *coordinator.Config) {
		cfg.TLS = mtls.Config{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile}
	}, rec.observe)
	defer c.stop(t)

	startTLSAgent := func(name string, tlsCfg mtls.Config) {
		cfg := agent.DefaultConfig()
		cfg.NodeName, cfg.Coordinator, cfg.Interval, cfg.HTTPAddr, cfg.TLS = name, c.GRPCAddr(), 50*time.Millisecond, "", tlsCfg
		cfg.BackoffInitial, cfg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
		a, err := agent.New(cfg, agent.WithCollectors(agent.NamedCollector{Name: "host", Collector: hostStub{}}),
			agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	startTLSAgent("mtls-node", mtls.Config{CertFile: agCert, KeyFile: agKey, CAFile: caFile})
	startTLSAgent("no-cert-node", mtls.Config{CAFile: caFile})
	waitFor(t, 10*time.Second, "the agent with a certificate to report", func() bool { return len(rec.sequences("mtls-node")) >= 5 })
	time.Sleep(300 * time.Millisecond)
	if n := len(rec.sequences("no-cert-node")); n != 0 {
		t.Fatalf("an agent without a client certificate got %d reports in", n)
	}

	// A valid certificate for one node cannot speak for another.
	tc, err := mtls.ClientConfig(mtls.Config{CertFile: agCert, KeyFile: agKey, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	impostor := streamWith(t, c.GRPCAddr(), credentials.NewTLS(tc))
	expectStatus(t, impostor, codes.PermissionDenied, `names ["localhost" "mtls-node"], not node "other-node"`, hello("other-node", 1))

	if got := serverSerial(t, c.GRPCAddr(), caFile); got != 100 {
		t.Fatalf("server certificate serial %d, want 100", got)
	}
	time.Sleep(1100 * time.Millisecond) // the reloader looks at the files at most once a second
	ca.Issue(t, dir, "coordinator", 101)
	waitFor(t, 5*time.Second, "the rotated server certificate", func() bool { return serverSerial(t, c.GRPCAddr(), caFile) == 101 })
	n := len(rec.sequences("mtls-node"))
	waitFor(t, 10*time.Second, "reports to keep flowing after rotation", func() bool { return len(rec.sequences("mtls-node")) > n+5 })
}

func TestAPITokenGuardsMutatingRequests(t *testing.T) {
	t.Parallel()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", func(cfg *coordinator.Config) { cfg.APITokenFile = tokenFile })
	defer c.stop(t)
	base := "http://" + c.HTTPAddr()
	do := func(method, auth string) int {
		req, _ := http.NewRequest(method, base+"/api/v1/decisions/x/approve", strings.NewReader("{}"))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do(http.MethodPost, ""); code != http.StatusUnauthorized {
		t.Errorf("POST without token: %d, want 401", code)
	}
	if code := do(http.MethodPost, "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("POST with a wrong token: %d, want 401", code)
	}
	if code := do(http.MethodPost, "Bearer s3cret"); code == http.StatusUnauthorized {
		t.Errorf("POST with the token refused")
	}
	resp, err := http.Get(base + "/api/v1/nodes")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET without token: %v %v; reads stay open", resp, err)
	}
	resp.Body.Close()
}
