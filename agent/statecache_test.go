package agent

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/localstate"
	"github.com/tmwarden/tmwarden/telemetry"
)

type nopCollector struct{}

func (nopCollector) Collect(context.Context, *tmwardenv1.Report) error { return nil }

// TestStateCacheIsWiredIn enables the state cache (its upstream need not answer for this): the
// gateway serves, each report carries the cache inventory, the admin API is on the agent's HTTP
// port, and prefetch commands reach the cache while drains reach the drain handler. The gateway
// itself is tested against a real S3 upstream in localstate.
func TestStateCacheIsWiredIn(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Coordinator, cfg.Interval, cfg.HTTPAddr = "cache-node", "127.0.0.1:1", 50*time.Millisecond, "127.0.0.1:0"
	sc := &cfg.StateCache // the agent's defaults, as a configuration file would start from
	sc.Enabled, sc.Listen, sc.AccessKey, sc.SecretKey, sc.Dir = true, "127.0.0.1:0", "flink", "flink-secret-key", t.TempDir()
	sc.Upstream.Endpoint, sc.Upstream.AccessKey, sc.Upstream.SecretKey = "http://127.0.0.1:1", "up", "up-secret"
	a, err := New(cfg, WithCollectors(NamedCollector{Name: "nop", Collector: nopCollector{}}), WithTelemetry(telemetry.Noop()))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := a.listenHTTP(cfg.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = serveUntil(ctx, srv) }()
	defer func() { cancel(); <-done }()

	// The stream waits for the cache to listen before its hello names the cache's address.
	early, cancelEarly := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelEarly()
	if a.waitForGateway(early) {
		t.Fatal("waitForGateway returned before the state cache was started")
	}
	go func() { _ = a.gateway.Run(ctx) }()
	waitCtx, cancelWait := context.WithTimeout(ctx, 10*time.Second)
	defer cancelWait()
	if !a.waitForGateway(waitCtx) {
		t.Fatal("the state cache did not listen within 10 s")
	}
	if a.hello().GatewayEndpoint == "" || a.hello().GatewayEndpoint == "127.0.0.1:0" {
		t.Errorf("Hello's gateway endpoint is %q, want the bound address", a.hello().GatewayEndpoint)
	}
	a.collectOnce(ctx)
	if r := a.Status().LastReport; r.Cache == nil || r.Cache.CapacityBytes == 0 {
		t.Errorf("report cache inventory: %v", r.Cache)
	}
	resp, err := http.Get("http://" + srv.ln.Addr().String() + localstate.AdminPrefix + "stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin stats on the agent's HTTP port: %d", resp.StatusCode)
	}
	// A prefetch of nothing finishes at once; a drain without a configured command is refused
	// by the drain handler, not by the router.
	err = a.commands.Handle(ctx, &tmwardenv1.Command{Id: "p1", Action: &tmwardenv1.Command_Prefetch{Prefetch: &tmwardenv1.PrefetchCommand{Bucket: "b"}}}, func(*tmwardenv1.CommandProgress) {})
	if errors.Is(err, ErrUnsupportedCommand) {
		t.Errorf("prefetch was not routed to the cache: %v", err)
	}
	err = a.commands.Handle(ctx, &tmwardenv1.Command{Id: "d1", Action: &tmwardenv1.Command_Drain{Drain: &tmwardenv1.DrainCommand{}}}, func(*tmwardenv1.CommandProgress) {})
	if err == nil || errors.Is(err, ErrUnsupportedCommand) {
		t.Errorf("drain without a command: %v, want the drain handler's refusal", err)
	}
}

func TestPrefetchWithoutCacheIsRefusedClearly(t *testing.T) {
	r := commandRouter{drain: NewDrainHandler(DefaultDrainConfig(), nil)}
	err := r.Handle(context.Background(), &tmwardenv1.Command{Id: "p", Action: &tmwardenv1.Command_Prefetch{Prefetch: &tmwardenv1.PrefetchCommand{}}}, nil)
	if !errors.Is(err, ErrUnsupportedCommand) {
		t.Fatalf("got %v", err)
	}
}
