package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/telemetry"
)

// fakeClock is a settable clock for the coordinator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func getBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	return body
}

// TestOneCircuitBreaker drives the decision layer's breaker through a trip, its hold, its close,
// a one-round hold for late agents and a second trip, and checks after each round that the API
// (what the CLI prints), the gauge on /metrics and the event log all say the same thing.
func TestOneCircuitBreaker(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New("tmwarden-coordinator", "test")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	// The test runs every round itself, in its own time.
	cfg.Detection.Interval = time.Hour
	cfg.Decisions.Policy.Mode = decide.Auto
	cfg.Decisions.Policy.ConfirmRounds = 1
	cfg.Decisions.Policy.MaxQuarantinedShare = 0.5
	cfg.Decisions.Policy.BreakerHold = 5 * time.Minute
	c, err := coordinator.New(cfg, coordinator.WithLogger(quiet), coordinator.WithTelemetry(tel), coordinator.WithClock(clk.now))
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
	base := "http://" + c.HTTPAddr()

	known := map[string]bool{}
	for i := range 10 {
		known[fmt.Sprintf("n%d", i)] = true
	}
	slowOn := func(nodes ...string) []detect.Verdict {
		var vs []detect.Verdict
		for _, n := range nodes {
			vs = append(vs, detect.Verdict{Node: n, Status: detect.StatusSlow, Score: 3, Cause: detect.CauseCPU, Since: t0})
		}
		return vs
	}
	calm := detect.Fleet{Reporting: 10}
	gauge := regexp.MustCompile(`(?m)^tmwarden_circuit_breaker_open(?:\{[^}]*\})? (\d+)`)

	steps := []struct {
		name     string
		at       time.Duration
		verdicts []detect.Verdict
		fleet    detect.Fleet
		open     bool
		held     string // substring of the API's held field; "" for none
		opened   int    // breaker_open events so far
		closed   int    // breaker_closed events so far
		migrate  bool   // a migration is decided this round
	}{
		{name: "calm", at: 0, fleet: calm},
		{name: "trip: 3 of 10 slow at once", at: time.Minute, verdicts: slowOn("n1", "n2", "n3"), fleet: calm, open: true, opened: 1},
		{name: "hold: one slow node, still within the hold", at: 3 * time.Minute, verdicts: slowOn("n1"), fleet: calm, open: true, opened: 1},
		{name: "close after 5m calm", at: 6*time.Minute + time.Second, fleet: calm, opened: 1, closed: 1},
		{name: "late agents hold one round", at: 7 * time.Minute, verdicts: slowOn("n1"), fleet: detect.Fleet{Reporting: 10, Late: 4}, held: "4 of 10 agents are late", opened: 1, closed: 1},
		{name: "allowed again: the slow node migrates", at: 7*time.Minute + 30*time.Second, verdicts: slowOn("n1"), fleet: calm, opened: 1, closed: 1, migrate: true},
		{name: "reopen: a fleet-wide regression", at: 8 * time.Minute, verdicts: slowOn("n1"), fleet: detect.Fleet{Reporting: 10, Regressed: 4}, open: true, opened: 2, closed: 1},
	}
	for _, s := range steps {
		clk.set(t0.Add(s.at))
		ds, err := c.Decisions().RoundFromDetect(clk.now(), detect.Round{At: clk.now(), Verdicts: s.verdicts, Fleet: s.fleet}, known, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		migrated := false
		for _, d := range ds {
			migrated = migrated || d.Action.Kind == decide.KindMigrate
		}
		if migrated != s.migrate {
			t.Errorf("%s: migration decided %v, want %v (%+v)", s.name, migrated, s.migrate, ds)
		}

		var l httpv1.DecisionList
		if err := json.Unmarshal(getBody(t, base+"/api/v1/decisions"), &l); err != nil {
			t.Fatal(err)
		}
		if l.Breaker.Open != s.open || (s.held == "") != (l.Breaker.Held == "") || !strings.Contains(l.Breaker.Held, s.held) {
			t.Errorf("%s: API breaker %+v, want open %v held %q", s.name, l.Breaker, s.open, s.held)
		}
		m := gauge.FindSubmatch(getBody(t, base+"/metrics"))
		if m == nil {
			t.Fatalf("%s: no tmwarden_circuit_breaker_open on /metrics", s.name)
		}
		if want := map[bool]string{true: "1", false: "0"}[s.open]; string(m[1]) != want {
			t.Errorf("%s: gauge %s, want %s (API says open=%v)", s.name, m[1], want, l.Breaker.Open)
		}
		var evs httpv1.EventList
		if err := json.Unmarshal(getBody(t, base+"/api/v1/events?limit=1000"), &evs); err != nil {
			t.Fatal(err)
		}
		opened, closed := 0, 0
		for _, e := range evs.Events {
			switch e.Type {
			case "breaker_open":
				opened++
				if !strings.Contains(e.Message, "migrations held") {
					t.Errorf("%s: breaker_open event says %q", s.name, e.Message)
				}
			case "breaker_closed":
				closed++
				if !strings.Contains(e.Message, "migrations allowed again") {
					t.Errorf("%s: breaker_closed event says %q", s.name, e.Message)
				}
			}
		}
		if opened != s.opened || closed != s.closed {
			t.Errorf("%s: %d breaker_open and %d breaker_closed events, want %d and %d", s.name, opened, closed, s.opened, s.closed)
		}
	}
}
