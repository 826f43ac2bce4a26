package collector

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"gopkg.in/yaml.v3"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

func startFlinkSim(t *testing.T) *flinksim.Cluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := flinksim.Start(ctx, flinksim.Config{
		TaskManagers: []flinksim.TaskManagerSpec{{Node: "node-a", Slots: 2}, {Node: "node-b", Slots: 2}, {Node: "node-c", Slots: 2}},
		Jobs: []flinksim.JobSpec{{Name: "orders", Rate: 30000, Vertices: []flinksim.VertexSpec{
			{Name: "Source: orders-kafka", Parallelism: 6, Capacity: 20000},
			{Name: "Enrich", Parallelism: 6, Capacity: 8000},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// The stand-in runs real HTTP servers on loopback; the collector scrapes them as it would a
// TaskManager.
func TestFlinkCollectorScrapesSimulatedTaskManagers(t *testing.T) {
	cl := startFlinkSim(t)
	if err := cl.SetNodeSlowness("node-b", 0.3); err != nil {
		t.Fatal(err)
	}
	tms := cl.TaskManagers()
	r := &tmwardenv1.Report{}
	for i, tm := range tms {
		ep := tm.MetricsAddr
		if i == 1 {
			ep = "http://" + ep + "/metrics" // static targets may give a full URL
		}
		r.TaskManagers = append(r.TaskManagers, &tmwardenv1.TaskManager{MetricsEndpoint: ep, Pid: int32(100 + i)})
	}
	c := newFlinkCollectorWith(FlinkConfig{}, nil)
	defer c.Close()
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	want := map[string]map[string]bool{} // sanitised tm id → "vertex#idx"
	for _, p := range cl.Placements() {
		id := promscrape.SanitizeLabelValue(p.TaskManagerID)
		if want[id] == nil {
			want[id] = map[string]bool{}
		}
		want[id][fmt.Sprintf("%s#%d", p.VertexID, p.SubtaskIndex)] = true
	}
	for i, tm := range r.TaskManagers {
		if tm.ScrapeError != "" {
			t.Fatalf("TaskManager %d scrape error: %s", i, tm.ScrapeError)
		}
		if tm.ResourceId != promscrape.SanitizeLabelValue(tms[i].ID) || tm.Host != promscrape.SanitizeLabelValue(tms[i].Host) {
			t.Errorf("TaskManager %d: id %q host %q, want the sanitised %q / %q", i, tm.ResourceId, tm.Host, tms[i].ID, tms[i].Host)
		}
		got := map[string]bool{}
		for _, st := range tm.Subtasks {
			got[fmt.Sprintf("%s#%d", st.VertexId, st.SubtaskIndex)] = true
		}
		if fmt.Sprint(got) != fmt.Sprint(want[tm.ResourceId]) {
			t.Errorf("TaskManager %s subtasks = %v, want %v", tm.ResourceId, got, want[tm.ResourceId])
		}
		if tm.Jvm == nil || !(tm.Jvm.CpuLoad > 0) || tm.Jvm.HeapMaxBytes == 0 {
			t.Errorf("TaskManager %d JVM = %+v", i, tm.Jvm)
		}
	}
	// The slow node's Enrich subtasks are saturated; the others are not.
	for i, tm := range r.TaskManagers {
		for _, st := range tm.Subtasks {
			if st.VertexName != "Enrich" {
				continue
			}
			slow := tms[i].Node == "node-b"
			if slow != (st.BusyMsPerSecond > 990) {
				t.Errorf("%s Enrich#%d busy %v on %s", tm.ResourceId, st.SubtaskIndex, st.BusyMsPerSecond, tms[i].Node)
			}
		}
	}
	// A second round gives GC rates from the counter deltas.
	first := r.TaskManagers[0].Subtasks
	time.Sleep(20 * time.Millisecond)
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatalf("second Collect: %v", err)
	}
	if g := r.TaskManagers[0].Jvm.GcCountPerSecond; math.IsNaN(g) || g < 0 {
		t.Errorf("GC count rate after two scrapes = %v", g)
	}
	// The second round's subtasks are new messages whose identity strings are the first
	// round's (buffered reports share them instead of holding copies).
	second := r.TaskManagers[0].Subtasks
	if len(second) == 0 || len(second) != len(first) || second[0] == first[0] {
		t.Fatalf("second round: %d subtasks (first %d), same message %v", len(second), len(first), len(second) > 0 && second[0] == first[0])
	}
	for i := range second {
		a, b := first[i], second[i]
		if a.JobId != b.JobId || unsafe.StringData(a.JobId) != unsafe.StringData(b.JobId) ||
			unsafe.StringData(a.VertexId) != unsafe.StringData(b.VertexId) || unsafe.StringData(a.VertexName) != unsafe.StringData(b.VertexName) ||
			unsafe.StringData(a.AttemptId) != unsafe.StringData(b.AttemptId) || unsafe.StringData(a.JobName) != unsafe.StringData(b.JobName) {
			t.Fatalf("subtask %s#%d: identity strings not shared between rounds", b.VertexId, b.SubtaskIndex)
		}
	}
}

func TestFlinkCollectorIsolatesFailures(t *testing.T) {
	cl := startFlinkSim(t)
	tms := cl.TaskManagers()
	if err := cl.SetTaskManagerGone(tms[1].ID, true); err != nil {
		t.Fatal(err)
	}
	garbled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "flink_taskmanager_job_task_busyTimeMsPerSecond{job_id=\"a\",task_id=b} 1\n")
	}))
	defer garbled.Close()
	errorSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "reporter exploded", http.StatusInternalServerError)
	}))
	defer errorSrv.Close()
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
	}))
	defer slow.Close()
	defer close(hang)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{
		{MetricsEndpoint: tms[0].MetricsAddr},
		{MetricsEndpoint: tms[1].MetricsAddr},
		{MetricsEndpoint: strings.TrimPrefix(garbled.URL, "http://")},
		{MetricsEndpoint: errorSrv.URL},
		{MetricsEndpoint: slow.URL},
		{MetricsEndpoint: refused},
		{MetricsEndpoint: "http://%zz"},
		{ResourceId: "no-endpoint"},
		{MetricsEndpoint: tms[2].MetricsAddr},
	}}
	// Long enough for the healthy targets to answer on a loaded machine; the hanging one still times out.
	c := newFlinkCollectorWith(FlinkConfig{ScrapeTimeout: 3 * time.Second}, nil)
	defer c.Close()
	err = c.Collect(context.Background(), r)
	if !IsDegraded(err) {
		t.Fatalf("Collect error = %v, want a DegradedError", err)
	}
	if !strings.Contains(err.Error(), "6 of 8") {
		t.Errorf("degraded reason %q does not count the failures", err)
	}
	if !strings.Contains(err.Error(), "1 TaskManager(s) not scraped for want of a metrics endpoint (no-endpoint)") {
		t.Errorf("degraded reason %q does not name the TaskManager without an endpoint", err)
	}
	t.Logf("degraded reason: %v", err)
	// The reason says what to change, each fix once: the refused port needs the reporter, the
	// hanging one a longer timeout (or a path), the garbled and failing ones are not the
	// reporter. The TaskManager cut off mid-answer has nothing to configure.
	for _, fix := range []string{"fix: nothing listens there: enable Flink's PrometheusReporter", "fix: raise collectors.flink.scrape_timeout (3s)",
		"fix: the port answers, but not as Flink's PrometheusReporter"} {
		if n := strings.Count(err.Error(), fix); n != 1 {
			t.Errorf("degraded reason names %q %d times, want once: %q", fix, n, err)
		}
	}
	if !strings.Contains(r.TaskManagers[5].ScrapeError, "(fix: nothing listens there") {
		t.Errorf("refused TaskManager's scrape_error %q does not name the fix", r.TaskManagers[5].ScrapeError)
	}
	if strings.Contains(r.TaskManagers[1].ScrapeError, "fix:") {
		t.Errorf("a TaskManager cut off mid-answer got a fix: %q", r.TaskManagers[1].ScrapeError)
	}
	wantErr := map[int]string{
		1: "unexpected EOF",
		2: "parse prometheus text",
		3: "500",
		4: "deadline exceeded",
		5: "connection refused",
		6: "bad metrics endpoint",
	}
	for i, tm := range r.TaskManagers {
		switch want, bad := wantErr[i]; {
		case bad:
			if !strings.Contains(tm.ScrapeError, want) {
				t.Errorf("target %d scrape error %q, want it to mention %q", i, tm.ScrapeError, want)
			}
			if len(tm.Subtasks) != 0 {
				t.Errorf("target %d failed but kept %d subtasks", i, len(tm.Subtasks))
			}
		case i == 7:
			if tm.ScrapeError != "" || tm.Jvm != nil {
				t.Errorf("a TaskManager without endpoint must be left alone: %+v", tm)
			}
		default:
			if tm.ScrapeError != "" || len(tm.Subtasks) == 0 {
				t.Errorf("healthy target %d: error %q, %d subtasks", i, tm.ScrapeError, len(tm.Subtasks))
			}
		}
	}
	// The TaskManager comes back: its next scrape clears the error.
	if err := cl.SetTaskManagerGone(tms[1].ID, false); err != nil {
		t.Fatal(err)
	}
	r2 := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{MetricsEndpoint: tms[1].MetricsAddr}}}
	if err := c.Collect(context.Background(), r2); err != nil || len(r2.TaskManagers[0].Subtasks) == 0 {
		t.Errorf("recovered TaskManager: err %v, %d subtasks", err, len(r2.TaskManagers[0].Subtasks))
	}
}

// TestFlinkCollectorDegradedForUnresolvedTaskManagers: a TaskManager discovery saw but could
// not resolve has no endpoint; with nothing else to scrape the collector is still degraded,
// naming it, and leaves its scrape_error (discovery's reason) alone.
func TestFlinkCollectorDegradedForUnresolvedTaskManagers(t *testing.T) {
	const why = "metrics endpoint unknown: cannot read /proc/4242/environ: permission denied"
	r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{Pid: 4242, ScrapeError: why}}}
	c := newFlinkCollectorWith(FlinkConfig{}, nil)
	defer c.Close()
	err := c.Collect(context.Background(), r)
	if !IsDegraded(err) || !strings.Contains(err.Error(), "(pid 4242)") {
		t.Fatalf("Collect error = %v, want degraded naming pid 4242", err)
	}
	if r.TaskManagers[0].ScrapeError != why {
		t.Errorf("scrape_error changed to %q", r.TaskManagers[0].ScrapeError)
	}
	if err := c.Collect(context.Background(), &tmwardenv1.Report{}); err != nil {
		t.Errorf("no TaskManagers at all: %v, want OK (nothing is missing)", err)
	}
}

func TestFlinkCollectorCancelled(t *testing.T) {
	cl := startFlinkSim(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{MetricsEndpoint: cl.TaskManagers()[0].MetricsAddr}}}
	c := newFlinkCollectorWith(FlinkConfig{}, nil)
	defer c.Close()
	if err := c.Collect(ctx, r); !IsDegraded(err) || !strings.Contains(r.TaskManagers[0].ScrapeError, "canceled") {
		t.Errorf("cancelled Collect: err %v, scrape error %q", err, r.TaskManagers[0].ScrapeError)
	}
}

func TestFlinkConfigYAML(t *testing.T) {
	var cfg Config
	if err := yaml.Unmarshal([]byte("flink:\n  scrape_timeout: 1500ms\n  max_concurrent: 2\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Flink.ScrapeTimeout != 1500*time.Millisecond || cfg.Flink.MaxConcurrent != 2 {
		t.Errorf("flink config = %+v", cfg.Flink)
	}
	if d := (FlinkConfig{}).withDefaults(); d.ScrapeTimeout != 3*time.Second || d.MaxConcurrent != 8 || d.MaxBodyBytes != 64<<20 {
		t.Errorf("defaults = %+v", d)
	}
}

// With FilterFamilies the reporter sends only what the extractor reads; the figures must match
// an unfiltered scrape of the same model instant.
func TestFlinkCollectorFilterFamilies(t *testing.T) {
	clkMu := sync.Mutex{}
	now := time.Unix(1_700_000_000, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := flinksim.Start(ctx, flinksim.Config{
		Version:      flinksim.Version120,
		Now:          func() time.Time { clkMu.Lock(); defer clkMu.Unlock(); return now },
		TaskManagers: []flinksim.TaskManagerSpec{{Node: "n1", Slots: 2}},
		Jobs: []flinksim.JobSpec{{Name: "j", Rate: 3000, Vertices: []flinksim.VertexSpec{
			{Name: "Source: s", Parallelism: 2, Capacity: 5000}, {Name: "Map", Parallelism: 2, Capacity: 2000},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ep := cl.TaskManagers()[0].MetricsAddr
	run := func(filter bool) *tmwardenv1.TaskManager {
		r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{MetricsEndpoint: ep}}}
		c := newFlinkCollectorWith(FlinkConfig{FilterFamilies: filter}, nil)
		defer c.Close()
		if err := c.Collect(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		return r.TaskManagers[0]
	}
	all, filtered := run(false), run(true)
	if len(all.Subtasks) != 4 || len(filtered.Subtasks) != 4 {
		t.Fatalf("subtasks: %d unfiltered, %d filtered", len(all.Subtasks), len(filtered.Subtasks))
	}
	for i := range all.Subtasks {
		a, f := all.Subtasks[i], filtered.Subtasks[i]
		if fmt.Sprint(a) != fmt.Sprint(f) {
			t.Errorf("subtask %d differs:\n all      %v\n filtered %v", i, a, f)
		}
	}
	if all.Jvm.CpuLoad != filtered.Jvm.CpuLoad || all.Jvm.HeapUsedBytes != filtered.Jvm.HeapUsedBytes || all.Jvm.GcTimeMsPerSecond != filtered.Jvm.GcTimeMsPerSecond {
		t.Errorf("JVM differs: %v vs %v", all.Jvm, filtered.Jvm)
	}
}
