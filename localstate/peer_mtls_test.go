package localstate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/tmwarden/tmwarden/mtls/mtlstest"
)

const peerAccess, peerSecret = "peer-key", "peer-secret-0123456789"

// startMTLSNode starts an upstream and gateway node-a with peer mTLS on under a fresh agents'
// CA, and a TaskManager client of it (its own credential, no client certificate).
func startMTLSNode(t *testing.T) (*upstream, *mtlstest.CA, *Gateway, *s3.Client) {
	t.Helper()
	up := startUpstream(t, 0)
	ca := mtlstest.NewCA(t, "agents")
	a, _ := startGateway(t, mtlsConfig(t, up, ca, "node-a"))
	tm, _ := httpsClient(t, a.Addr(), gwAccess, gwSecret, ca.Pool(), "", "")
	return up, ca, a, tm
}

// mtlsConfig is a gateway serving TLS with an agent certificate of ca and peer mTLS on.
func mtlsConfig(t *testing.T, up *upstream, ca *mtlstest.CA, name string) Config {
	cfg := testConfig(t, up)
	cfg.TLSCertFile, cfg.TLSKeyFile = ca.Leaf(t, name)
	cfg.Peer = PeerConfig{AccessKey: peerAccess, SecretKey: peerSecret, TLS: true, CAFile: ca.File,
		CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile}
	return cfg
}

// httpsClient talks to a gateway over TLS, trusting roots and presenting certFile if given.
func httpsClient(t *testing.T, addr, access, secret string, roots *x509.CertPool, certFile, keyFile string) (*s3.Client, *http.Client) {
	t.Helper()
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("https://" + addr), UsePathStyle: true,
		Credentials: staticCreds(access, secret), RetryMaxAttempts: 1, HTTPClient: hc}), hc
}

// assertAccessDenied checks that err is the front's refusal of a peer request without a certificate.
func assertAccessDenied(t *testing.T, err error) {
	t.Helper()
	var ae smithy.APIError
	var re *awshttp.ResponseError
	if !errors.As(err, &ae) || !errors.As(err, &re) {
		t.Fatalf("want an S3 error response, got %v", err)
	}
	if ae.ErrorCode() != "AccessDenied" || re.HTTPStatusCode() != http.StatusForbidden || !strings.Contains(ae.ErrorMessage(), "peer.ca_file") {
		t.Fatalf("want 403 AccessDenied naming peer.ca_file, got %d %s: %s", re.HTTPStatusCode(), ae.ErrorCode(), ae.ErrorMessage())
	}
}

// TestPeerMTLSPrefetch: two gateways with peer mTLS; B prefetches from A, presenting its agent
// certificate and verifying A's with the agents' CA.
func TestPeerMTLSPrefetch(t *testing.T) {
	up := startUpstream(t, 0)
	ca := mtlstest.NewCA(t, "agents")
	a, _ := startGateway(t, mtlsConfig(t, up, ca, "node-a"))
	tmA, _ := httpsClient(t, a.Addr(), gwAccess, gwSecret, ca.Pool(), "", "")
	objs := map[string][]byte{}
	keys := []string{}
	for i := 0; i < 3; i++ {
		k := ckptKey(fmt.Sprintf("mtls/sst-%d", i))
		objs[k] = randomBytes(t, 1<<20+i)
		keys = append(keys, k)
		putObject(t, tmA, k, objs[k])
	}
	b, _ := startGateway(t, mtlsConfig(t, up, ca, "node-b"))
	hitsBefore := a.store.stats().Hits
	st, err := b.Prefetch(context.Background(), PrefetchRequest{Bucket: testBucket, Keys: keys, SourcePeer: a.Addr()}, nil)
	if err != nil || st.State != "succeeded" || st.Objects != len(objs) {
		t.Fatalf("peer prefetch over mTLS: %v %+v", err, st)
	}
	for k, v := range objs {
		if e, ok := b.store.peek(testBucket, k); !ok || e.Size != int64(len(v)) {
			t.Fatalf("%s not prefetched on B: %+v", k, e)
		}
	}
	if hits := a.store.stats().Hits - hitsBefore; hits < uint64(len(objs)) {
		t.Fatalf("A served %d cache hits for %d objects: the bytes did not come from the peer", hits, len(objs))
	}
	tmB, _ := httpsClient(t, b.Addr(), gwAccess, gwSecret, ca.Pool(), "", "")
	for k, v := range objs {
		if got := getObject(t, tmB, k, ""); string(got) != string(v) {
			t.Fatalf("%s differs on B", k)
		}
	}
}

// TestPeerMTLSRefusesPeerKeyWithoutCert: the peer credential without a client certificate is
// refused with 403 AccessDenied, whether signed in the header or presigned in the query; the
// same credential with an agent certificate is served.
func TestPeerMTLSRefusesPeerKeyWithoutCert(t *testing.T) {
	_, ca, a, tm := startMTLSNode(t)
	key := ckptKey("chk-1/_metadata")
	putObject(t, tm, key, []byte("metadata"))

	noCert, hc := httpsClient(t, a.Addr(), peerAccess, peerSecret, ca.Pool(), "", "")
	_, err := tryGet(noCert, key, "")
	assertAccessDenied(t, err)
	_, err = noCert.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Fatalf("HEAD with the peer key and no certificate: want 403, got %v", err)
	}

	// A presigned URL carries the peer key in X-Amz-Credential.
	ps, err := s3.NewPresignClient(noCert).PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ps.URL, "X-Amz-Credential="+peerAccess) {
		t.Fatalf("presigned URL does not carry the peer key: %s", ps.URL)
	}
	resp, err := hc.Get(ps.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Code>AccessDenied</Code>") {
		t.Fatalf("presigned GET with the peer key and no certificate: %d %s", resp.StatusCode, body)
	}

	// With an agent certificate, the same credential and the same presigned URL are served.
	cf, kf := ca.Leaf(t, "node-b")
	withCert, hc2 := httpsClient(t, a.Addr(), peerAccess, peerSecret, ca.Pool(), cf, kf)
	if got := getObject(t, withCert, key, ""); string(got) != "metadata" {
		t.Fatalf("peer GET with a certificate: %q", got)
	}
	resp, err = hc2.Get(ps.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "metadata" {
		t.Fatalf("presigned GET with a certificate: %d %s", resp.StatusCode, body)
	}
}

// TestPeerMTLSRefusesOtherCA: a certificate another CA signed does not open the peer
// credential, neither to a hand-made client nor to a gateway configured with it.
func TestPeerMTLSRefusesOtherCA(t *testing.T) {
	up, ca, a, tm := startMTLSNode(t)
	other := mtlstest.NewCA(t, "someone-else")
	key := ckptKey("chk-2/_metadata")
	putObject(t, tm, key, []byte("secret state"))

	cf, kf := other.Leaf(t, "intruder")
	c, _ := httpsClient(t, a.Addr(), peerAccess, peerSecret, ca.Pool(), cf, kf)
	if got, err := tryGet(c, key, ""); err == nil {
		t.Fatalf("peer GET with a certificate of another CA was served: %q", got)
	}

	// A gateway whose agent certificate another CA signed cannot prefetch from A.
	cfg := mtlsConfig(t, up, ca, "node-x")
	cfg.Peer.CertFile, cfg.Peer.KeyFile = cf, kf
	x, _ := startGateway(t, cfg)
	if _, err := x.Prefetch(context.Background(), PrefetchRequest{Bucket: testBucket, Keys: []string{key}, SourcePeer: a.Addr()}, nil); err == nil {
		t.Fatal("peer prefetch with a certificate of another CA succeeded")
	}
	if _, ok := x.store.peek(testBucket, key); ok {
		t.Fatal("the refused prefetch cached the object")
	}
}

// TestPeerMTLSTaskManagerWithoutCert: TaskManagers cannot present client certificates; with
// peer mTLS on they keep reading and writing on the same port with their own credential.
func TestPeerMTLSTaskManagerWithoutCert(t *testing.T) {
	up, ca, a, tm := startMTLSNode(t)
	data := randomBytes(t, 3<<20+5)
	key := ckptKey("chk-3/shared/sst-1")
	putObject(t, tm, key, data)
	upstreamHas(t, up, key, data)
	if got := getObject(t, tm, key, "bytes=10-99"); string(got) != string(data[10:100]) {
		t.Fatal("TaskManager ranged read without a certificate differs")
	}
	out, err := tm.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(ckptKey("chk-3/"))})
	if err != nil || len(out.Contents) != 1 {
		t.Fatalf("TaskManager list without a certificate: %v %+v", err, out)
	}
	// A wrong TaskManager secret is still refused by versitygw's signature check.
	bad, _ := httpsClient(t, a.Addr(), gwAccess, "wrong-secret", ca.Pool(), "", "")
	if _, err := tryGet(bad, key, ""); err == nil {
		t.Fatal("a bad TaskManager signature was accepted")
	}
}

// TestPeerMTLSReloadsCA: the agents' CA file is re-read when it changes, without a restart.
func TestPeerMTLSReloadsCA(t *testing.T) {
	_, ca, a, tm := startMTLSNode(t)
	next := mtlstest.NewCA(t, "agents-next")
	key := ckptKey("chk-4/_metadata")
	putObject(t, tm, key, []byte("rotated"))

	cf, kf := next.Leaf(t, "node-b")
	if _, err := tryGet(newPeerClient(t, a.Addr(), ca, cf, kf), key, ""); err == nil {
		t.Fatal("a certificate of a CA not (yet) trusted was accepted")
	}
	// Rotation: the bundle now holds both CAs, written aside and renamed in as cert-manager does.
	mtlstest.WriteFile(t, ca.File, append(append([]byte{}, ca.PEM...), next.PEM...))
	deadline := time.Now().Add(20 * time.Second)
	for {
		// A fresh client each time: a new handshake is what picks up the new CA.
		got, err := tryGet(newPeerClient(t, a.Addr(), ca, cf, kf), key, "")
		if err == nil {
			if string(got) != "rotated" {
				t.Fatalf("after CA rotation: %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotated CA file was not picked up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newPeerClient(t *testing.T, addr string, roots *mtlstest.CA, certFile, keyFile string) *s3.Client {
	c, _ := httpsClient(t, addr, peerAccess, peerSecret, roots.Pool(), certFile, keyFile)
	return c
}

func TestPeerMTLSConfigValidation(t *testing.T) {
	base := func() Config {
		c := Config{AccessKey: gwAccess, SecretKey: gwSecret, TLSCertFile: "c.pem", TLSKeyFile: "k.pem",
			Upstream: UpstreamConfig{Endpoint: "http://upstream"},
			Peer:     PeerConfig{AccessKey: peerAccess, SecretKey: peerSecret, TLS: true, CAFile: "ca.PEM", CertFile: "p.pem", KeyFile: "pk.pem"}}
		c.applyDefaults()
		return c
	}
	if err := func() *Config { c := base(); return &c }().Validate(); err != nil {
		t.Fatalf("valid peer mTLS configuration refused: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no gateway TLS", func(c *Config) { c.TLSCertFile, c.TLSKeyFile = "", "" }, "state_cache.peer.ca_file requires tls_cert_file"},
		{"peer.tls off", func(c *Config) { c.Peer.TLS = false }, "state_cache.peer.ca_file requires state_cache.peer.tls"},
		{"shared key", func(c *Config) { c.Peer.AccessKey, c.Peer.SecretKey = gwAccess, gwSecret }, "state_cache.peer.access_key different from state_cache.access_key"},
		{"defaulted key", func(c *Config) { c.Peer.AccessKey, c.Peer.SecretKey = "", ""; c.applyDefaults() }, "state_cache.peer.access_key different"},
		{"cert without key", func(c *Config) { c.Peer.KeyFile = "" }, "state_cache.peer: cert_file and key_file go together"},
		{"key without cert", func(c *Config) { c.Peer.CAFile, c.Peer.CertFile = "", "" }, "state_cache.peer: cert_file and key_file go together"},
	} {
		c := base()
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error containing %q, got %v", tc.name, tc.want, err)
		}
	}
	// Unreadable certificate files fail New, not the first peer request.
	c := base()
	c.Dir = t.TempDir()
	c.Peer.CertFile, c.Peer.KeyFile = "", ""
	c.Peer.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("New with a missing peer CA file: %v", err)
	}
}
