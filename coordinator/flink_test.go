package coordinator_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/coordinator"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
	"github.com/tmwarden/tmwarden/telemetry"
)

// TestSubtasksLandOnTheirNodes runs the Flink stand-in (real PrometheusReporter and REST
// endpoints on loopback; no Flink cluster can run here), one real agent per node scraping its
// TaskManager over HTTP, and a coordinator polling the JobManager. Every subtask must show up
// on the node the simulator placed it on, in the node detail and in the topology.
func TestSubtasksLandOnTheirNodes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fc, err := flinksim.Start(ctx, flinksim.DemoConfig(3, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", func(cfg *coordinator.Config) {
		cfg.Flink.JobManagers = []coordinator.JobManagerConfig{{URL: fc.RESTURL()}}
		cfg.Flink.PollInterval = 200 * time.Millisecond
	})
	defer c.stop(t)

	for _, node := range fc.Nodes() {
		startFlinkAgent(t, ctx, fc, node, c.GRPCAddr(), nil)
	}

	want := map[string]string{} // "job/vertex/index" -> node
	for _, p := range fc.Placements() {
		want[fmt.Sprintf("%s/%s/%d", p.JobID, p.VertexID, p.SubtaskIndex)] = p.Node
	}
	got := func() map[string]string {
		out := map[string]string{}
		for _, node := range fc.Nodes() {
			d, ok := c.NodeDetail(node)
			if !ok {
				continue
			}
			for _, tm := range d.TaskManagerList {
				for _, s := range tm.Subtasks {
					out[fmt.Sprintf("%s/%s/%d", s.JobID, s.VertexID, s.Index)] = node
				}
			}
		}
		return out
	}
	waitFor(t, 20*time.Second, "every subtask in some node's report", func() bool { return len(got()) == len(want) })
	for k, node := range got() {
		if want[k] != node {
			t.Errorf("subtask %s reported on %s, simulator placed it on %s", k, node, want[k])
		}
	}
	waitFor(t, 20*time.Second, "the topology to place every subtask from REST and agents", func() bool {
		snap := c.Topology().Snapshot()
		n := 0
		for _, j := range snap.Jobs {
			for _, v := range j.Vertices {
				for _, s := range v.Subtasks {
					if s.Source == "rest+agent" && s.Node == want[fmt.Sprintf("%s/%s/%d", s.JobID, s.VertexID, s.Index)] {
						n++
					}
				}
			}
		}
		return n == len(want) && snap.Unplaced == 0
	})
}

// startFlinkAgent runs a real agent for one node of the Flink stand-in: TaskManager discovery
// with the node's TaskManagers as static targets and the real scrape, over loopback HTTP.
// edit may change the agent's configuration and options before it starts.
func startFlinkAgent(t *testing.T, ctx context.Context, fc *flinksim.Cluster, node, coordAddr string,
	edit func(*agent.Config, *[]agent.Option)) {
	t.Helper()
	cfg := collector.DefaultConfig()
	off := false
	cfg.TaskManagers.ScanProc = &off
	for _, tm := range fc.TaskManagersOn(node) {
		cfg.TaskManagers.Static = append(cfg.TaskManagers.Static, collector.StaticTaskManager{Endpoint: tm.MetricsAddr})
	}
	var cols []agent.NamedCollector
	for _, name := range []string{"taskmanagers", "flink"} {
		col, err := collector.New(name, collector.Options{Config: cfg, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, agent.NamedCollector{Name: name, Collector: col})
	}
	acfg := agent.DefaultConfig()
	acfg.NodeName, acfg.Coordinator, acfg.Interval, acfg.HTTPAddr = node, coordAddr, 100*time.Millisecond, ""
	opts := []agent.Option{agent.WithCollectors(cols...), agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(quiet)}
	if edit != nil {
		edit(&acfg, &opts)
	}
	a, err := agent.New(acfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-done })
}
