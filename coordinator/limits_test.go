package coordinator_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/telemetry"
)

// TestReportRateLimitThrottlesWithoutLoss floods one stream past its rate: every report is
// still stored, in order, and the limit counter on /metrics says the limit was hit.
func TestReportRateLimitThrottlesWithoutLoss(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New("tmwarden-coordinator", "test")
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.MaxReportsPerSecond, cfg.ReportBurst = 50, 5
	c, err := coordinator.New(cfg, coordinator.WithLogger(quiet), coordinator.WithTelemetry(tel), coordinator.WithReportObserver(rec.observe))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	s := rawStream(t, c.GRPCAddr())
	if err := s.Send(hello("flood-node", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	const n = 40
	for seq := uint64(1); seq <= n; seq++ {
		if err := s.Send(report(seq)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		if _, err := s.Recv(); err != nil {
			t.Fatalf("ack %d: %v", i+1, err)
		}
	}
	if seqs := rec.sequences("flood-node"); len(seqs) != n || checkOrdered(t, "flood-node", seqs) != 0 {
		t.Fatalf("stored %v, want 1..%d", seqs, n)
	}
	resp, err := http.Get("http://" + c.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`tmwarden_coordinator_limits_hit(?:_[a-z]+)?_total\{[^}]*limit="agent_report_rate"[^}]*\} (\d+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no limit counter in /metrics:\n%s", body)
	}
	if hits, _ := strconv.Atoi(string(m[1])); hits == 0 {
		t.Errorf("limit counter is 0 after a flood of %d reports with burst 5", n)
	}
}
