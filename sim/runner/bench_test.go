package runner

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/topology"
	"github.com/tmwarden/tmwarden/sim"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

// BenchmarkReplay500Nodes2h replays the 2-hour, 500-node public scenario and reports simulated
// seconds per wall second (goal: at least 120, i.e. under a minute of wall time), side by side:
// "model" feeds the model and all three detectors directly; "coordinator" replays through a
// whole coordinator (ingest, store, model, topology, tmwarden detection, dry-run decisions and
// executor), as `tmwardenctl sim run` does.
func BenchmarkReplay500Nodes2h(b *testing.B) {
	sc, err := scenario.LoadFile(filepath.Join("..", "scenarios", "mixed-faults-500.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	if sc.Cluster.Nodes != 500 || sc.Duration.D() != 2*time.Hour {
		b.Fatalf("benchmark scenario changed shape: %d nodes, %s", sc.Cluster.Nodes, sc.Duration.D())
	}
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"model", Options{}},
		{"coordinator", Options{Detectors: []string{"tmwarden"}, ThroughCoordinator: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			start := time.Now()
			for range b.N {
				if _, err := Run(context.Background(), sc, bc.opts); err != nil {
					b.Fatal(err)
				}
			}
			wall := time.Since(start).Seconds() / float64(b.N)
			b.ReportMetric(sc.Duration.D().Seconds()/wall, "sim-s/wall-s")
			b.ReportMetric(wall, "wall-s/replay")
		})
	}
}

// BenchmarkEvaluate10kNodes measures one evaluation round of each detector over a model fed by
// 10,000 simulated nodes with 20 subtasks each (issue 6's coordinator scale).
func BenchmarkEvaluate10kNodes(b *testing.B) {
	sc, err := scenario.Load(strings.NewReader(`
name: scale-10k
seed: 10000
duration: 10m
cluster: {nodes: 10000, task_managers_per_node: 2, slots_per_task_manager: 2}
jobs:
  - name: etl
    count: 1250
    parallelism: 32
    input: {rate: 150000}
    operators:
      - {name: src, cost_us: 15}
      - {name: parse, edge: rebalance, cost_us: 40}
      - {name: enrich, edge: hash, cost_us: 60, state: true}
      - {name: agg, edge: hash, cost_us: 50, state: true}
      - {name: sink, edge: rebalance, cost_us: 30}
faults:
  - {kind: cpu_contention, count: 5, start: 1m, duration: 5m, severity: 0.6}
`), "scale-10k")
	if err != nil {
		b.Fatal(err)
	}
	s, err := sim.New(sc)
	if err != nil {
		b.Fatal(err)
	}
	cfg := model.DefaultConfig()
	m := model.New(cfg, topology.New(topology.Options{}))
	reports := 0
	observe := func(node string, at time.Time, r *tmwardenv1.Report) {
		m.Observe(node, at, r)
		reports++
	}
	for range 14 {
		s.Step(observe)
	}
	b.ReportMetric(float64(reports)/14, "reports/round")
	for _, reg := range detect.Registry {
		b.Run(reg.Name, func(b *testing.B) {
			d := reg.New(detect.DefaultPeerConfig())
			now := s.Now()
			cpu := processCPU()
			for range b.N {
				v := m.View()
				d.Evaluate(v, now)
				v.Release()
			}
			// Wall time on a shared machine includes the wait for a core; the process's CPU
			// (the garbage collector's included) is what a round costs.
			b.ReportMetric(float64(processCPU()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
