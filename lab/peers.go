package lab

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tmwarden/tmwarden/agent"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
	"github.com/tmwarden/tmwarden/telemetry"
)

// baseline is the real node's quiet reports, recorded before any fault: the simulated peers
// replay its machine-level parts, so the fleet the real node is compared with is this machine
// on a quiet day (its noise included), not a model's idea of one.
type baseline struct {
	reports []*tmwardenv1.Report
}

// replayHost is a simulated peer's machine: each round it replays a randomly drawn quiet
// report of the real node (host signals, eBPF histograms, retransmits, cgroups).
type replayHost struct {
	base *baseline
	mu   sync.Mutex
	rng  *rand.Rand
}

func (h *replayHost) Collect(_ context.Context, r *tmwardenv1.Report) error {
	h.mu.Lock()
	src := h.base.reports[h.rng.IntN(len(h.base.reports))]
	h.mu.Unlock()
	r.Host = proto.Clone(src.GetHost()).(*tmwardenv1.HostSignals)
	for _, hg := range src.GetHistograms() {
		r.Histograms = append(r.Histograms, proto.Clone(hg).(*tmwardenv1.LatencyHistogram))
	}
	for _, rt := range src.GetRetransmits() {
		r.Retransmits = append(r.Retransmits, proto.Clone(rt).(*tmwardenv1.TcpRetransmits))
	}
	for _, cg := range src.GetCgroups() {
		r.Cgroups = append(r.Cgroups, proto.Clone(cg).(*tmwardenv1.CgroupStats))
	}
	return nil
}

// tmCgroupCollector runs after the TaskManager discovery and gives the peer's (static)
// TaskManagers the real TaskManager's cgroup, so that their CPU is told apart from a
// neighbour's in the replayed cgroup figures as on the real node.
type tmCgroupCollector struct{ cgroup string }

func (c tmCgroupCollector) Collect(_ context.Context, r *tmwardenv1.Report) error {
	for _, tm := range r.TaskManagers {
		tm.Cgroup = c.cgroup
	}
	return nil
}

// startPeers runs one in-process agent per simulated node, reporting to the coordinator over
// gRPC like any agent: the replayed machine, the real TaskManager discovery (static targets on
// the flinksim endpoints) and the real Flink scrape.
func startPeers(ctx context.Context, wg *sync.WaitGroup, fc *flinksim.Cluster, nodes []string, base *baseline, tmCgroup string, acfg agent.Config, log *slog.Logger) error {
	for i, node := range nodes {
		cols := []agent.NamedCollector{{Name: "host", Collector: &replayHost{base: base, rng: rand.New(rand.NewPCG(uint64(i)+1, 16))}}}
		cfg := collector.DefaultConfig()
		off := false
		cfg.TaskManagers.ScanProc = &off
		for _, tm := range fc.TaskManagersOn(node) {
			cfg.TaskManagers.Static = append(cfg.TaskManagers.Static, collector.StaticTaskManager{Endpoint: tm.MetricsAddr, ResourceID: tm.ID})
		}
		for _, name := range []string{"taskmanagers", "flink"} {
			col, err := collector.New(name, collector.Options{Config: cfg, Logger: log.With("node", node, "collector", name)})
			if err != nil {
				return fmt.Errorf("peer %s: collector %s: %w", node, name, err)
			}
			cols = append(cols, agent.NamedCollector{Name: name, Collector: col})
		}
		cols = append(cols, agent.NamedCollector{Name: "tm-cgroup", Collector: tmCgroupCollector{tmCgroup}})
		scfg := acfg
		scfg.NodeName, scfg.HTTPAddr = node, ""
		a, err := agent.New(scfg, agent.WithCollectors(cols...), agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(log.With("node", node)))
		if err != nil {
			return fmt.Errorf("peer %s: %w", node, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(ctx) }()
	}
	return nil
}
