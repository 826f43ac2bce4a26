package agent

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/telemetry"
)

// flipCollector is degraded while degraded is set, else fine.
type flipCollector struct{ degraded atomic.Bool }

func (f *flipCollector) Collect(context.Context, *tmwardenv1.Report) error {
	if f.degraded.Load() {
		return collector.Degradedf("taskmanagers: pid 42: cannot read /proc/42/environ: permission denied")
	}
	return nil
}

// collectorStateSeries scrapes the agent's Prometheus handler and returns
// tmwarden_collector_state as collector -> state -> value.
func collectorStateSeries(t *testing.T, p *telemetry.Provider) map[string]map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]map[string]float64{}
	for _, m := range fams["tmwarden_collector_state"].GetMetric() {
		var c, s string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "collector":
				c = l.GetValue()
			case "state":
				s = l.GetValue()
			}
		}
		if out[c] == nil {
			out[c] = map[string]float64{}
		}
		out[c][s] = m.GetGauge().GetValue()
	}
	return out
}

// TestCollectorStateMetric: tmwarden.collector.state has, for each collector, one series per
// state, 1 for the state it is in; the series stay when the state changes, and the state
// follows each round.
func TestCollectorStateMetric(t *testing.T) {
	p, err := telemetry.New("tmwarden-agent", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Coordinator, cfg.Interval = "state-node", "127.0.0.1:1", time.Second
	flip := &flipCollector{}
	flip.degraded.Store(true)
	a, err := New(cfg, WithCollectors(NamedCollector{Name: "taskmanagers", Collector: flip},
		NamedCollector{Name: "host", Collector: nopCollector{}}), WithTelemetry(p))
	if err != nil {
		t.Fatal(err)
	}
	want := func(collector, state string) {
		t.Helper()
		got := collectorStateSeries(t, p)[collector]
		for _, s := range []string{"ok", "degraded", "disabled", "failed"} {
			v, ok := got[s]
			if !ok {
				t.Errorf("no tmwarden_collector_state{collector=%q,state=%q} series: %v", collector, s, got)
				continue
			}
			if w := map[bool]float64{true: 1, false: 0}[s == state]; v != w {
				t.Errorf("tmwarden_collector_state{collector=%q,state=%q} = %v, want %v", collector, s, v, w)
			}
		}
		if len(got) != 4 {
			t.Errorf("collector %s has states %v, want exactly ok, degraded, disabled, failed", collector, got)
		}
	}
	a.collectOnce(context.Background())
	want("taskmanagers", "degraded")
	want("host", "ok")
	if st := a.Status().Collectors[0]; st.State != tmwardenv1.CollectorStatus_STATE_DEGRADED || st.Reason == "" {
		t.Errorf("status of taskmanagers: %v", st)
	}
	flip.degraded.Store(false)
	a.collectOnce(context.Background())
	want("taskmanagers", "ok")
}

// TestCollectorStateCoversCollectorsThatNeverRun: a collector disabled by configuration never
// runs, so it never records tmwarden.collector.success; its state is exported all the same.
func TestCollectorStateCoversCollectorsThatNeverRun(t *testing.T) {
	p, err := telemetry.New("tmwarden-agent", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Coordinator, cfg.Interval = "state-node", "127.0.0.1:1", time.Second
	// All off: no collector is built (the eBPF ones would load programs), each is disabled.
	cfg.Collectors.Enabled = map[string]bool{}
	for _, reg := range collector.Registrations() {
		cfg.Collectors.Enabled[reg.Name] = false
	}
	a, err := New(cfg, WithTelemetry(p))
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeCollectors()
	series := collectorStateSeries(t, p)
	for _, reg := range collector.Registrations() {
		if got := series[reg.Name]; got["disabled"] != 1 || got["ok"] != 0 {
			t.Errorf("collector %s disabled by configuration: tmwarden_collector_state %v, want disabled=1 and ok=0", reg.Name, got)
		}
	}
}

// TestStartupGCTargetIsRestored: New collects garbage often while it builds the collectors
// (the probes' BTF decode), then hands the process its own GC target back, also when several
// agents are built at once.
func TestStartupGCTargetIsRestored(t *testing.T) {
	const own = 137
	old := debug.SetGCPercent(own)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := DefaultConfig()
			cfg.NodeName, cfg.Coordinator, cfg.Interval = fmt.Sprintf("gc-node-%d", i), "127.0.0.1:1", time.Second
			// The /proc collectors only: the eBPF ones would load programs.
			cfg.Collectors.Enabled = map[string]bool{}
			for _, reg := range collector.Registrations() {
				cfg.Collectors.Enabled[reg.Name] = !strings.HasPrefix(reg.Name, "ebpf")
			}
			a, err := New(cfg, WithTelemetry(telemetry.Noop()))
			if err != nil {
				t.Error(err)
				return
			}
			a.closeCollectors()
		}()
	}
	wg.Wait()
	if got := debug.SetGCPercent(own); got != own {
		t.Errorf("GC target after New: %d, want the process's own %d", got, own)
	}
	restore := tightGC()
	if got := debug.SetGCPercent(startupGCPercent); got != startupGCPercent {
		t.Errorf("GC target while building: %d, want %d", got, startupGCPercent)
	}
	restore()
	if got := debug.SetGCPercent(own); got != own {
		t.Errorf("GC target after restore: %d, want %d", got, own)
	}
}
