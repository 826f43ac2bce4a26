package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/tmwarden/tmwarden/agent"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// simulatedCluster is the demo's stand-in for machines it does not have: a Flink cluster from
// sim/flink (TaskManagers serving real PrometheusReporter endpoints, a JobManager serving the
// REST API) on loopback, and per node a real agent whose Flink collectors scrape those
// endpoints over HTTP while a synthetic host collector plays the machine.
type simulatedCluster struct {
	flink *flinksim.Cluster
	mu    sync.Mutex
	steal map[string]float64
}

func startSimulatedCluster(ctx context.Context, nodes int) (*simulatedCluster, error) {
	if nodes == 0 {
		return &simulatedCluster{steal: map[string]float64{}}, nil
	}
	fc, err := flinksim.Start(ctx, flinksim.DemoConfig(nodes, 2))
	if err != nil {
		return nil, fmt.Errorf("starting the simulated Flink cluster: %w", err)
	}
	return &simulatedCluster{flink: fc, steal: map[string]float64{}}, nil
}

// Nodes returns the simulated node names.
func (c *simulatedCluster) Nodes() []string {
	if c.flink == nil {
		return nil
	}
	return c.flink.Nodes()
}

// RESTURL is the simulated JobManager's REST address ("" without Flink).
func (c *simulatedCluster) RESTURL() string {
	if c.flink == nil {
		return ""
	}
	return c.flink.RESTURL()
}

// Close stops the simulated Flink servers.
func (c *simulatedCluster) Close() {
	if c.flink != nil {
		_ = c.flink.Close()
	}
}

// LastNode is the node whose agent the demo takes away.
func (c *simulatedCluster) LastNode() string {
	n := c.Nodes()
	if len(n) < 3 {
		return ""
	}
	return n[len(n)-1]
}

// InjectNoisyNeighbour makes the second node slow: CPU steal on the machine and its
// TaskManager processing at 30% speed, so its subtasks fall behind their peers.
func (c *simulatedCluster) InjectNoisyNeighbour() (string, error) {
	n := c.Nodes()
	if len(n) < 2 {
		return "", fmt.Errorf("need at least 2 simulated nodes")
	}
	victim := n[1]
	c.mu.Lock()
	c.steal[victim] = 0.35
	c.mu.Unlock()
	return victim, c.flink.SetNodeSlowness(victim, 0.3)
}

// Collectors returns the collectors of one simulated node: the synthetic host, then the real
// TaskManager discovery (static targets) and the real Flink scrape.
func (c *simulatedCluster) Collectors(node string, log func(string) collector.Options) ([]agent.NamedCollector, error) {
	seed := uint64(0)
	for _, b := range []byte(node) {
		seed = seed*31 + uint64(b)
	}
	out := []agent.NamedCollector{{Name: "host", Collector: &syntheticHost{cluster: c, node: node, rng: rand.New(rand.NewPCG(seed, 7))}}}
	cfg := collector.DefaultConfig()
	off := false
	cfg.TaskManagers.ScanProc = &off
	for _, tm := range c.flink.TaskManagersOn(node) {
		cfg.TaskManagers.Static = append(cfg.TaskManagers.Static, collector.StaticTaskManager{Endpoint: tm.MetricsAddr, ResourceID: tm.ID})
	}
	for _, name := range []string{"taskmanagers", "flink"} {
		o := log(name)
		o.Config = cfg
		col, err := collector.New(name, o)
		if err != nil {
			return nil, fmt.Errorf("simulated node %s: collector %s: %w", node, name, err)
		}
		out = append(out, agent.NamedCollector{Name: name, Collector: col})
	}
	return out, nil
}

type syntheticHost struct {
	cluster *simulatedCluster
	node    string
	rng     *rand.Rand
}

func (h *syntheticHost) Collect(_ context.Context, r *tmwardenv1.Report) error {
	h.cluster.mu.Lock()
	steal := h.cluster.steal[h.node]
	h.cluster.mu.Unlock()
	jitter := func(base, spread float64) float64 { return max(base+(h.rng.Float64()-0.5)*spread, 0) }
	user, sys := jitter(0.45, 0.08), jitter(0.08, 0.02)
	idle := max(1-user-sys-steal-0.01, 0)
	r.Host = &tmwardenv1.HostSignals{
		NumCpus: 16,
		Cpu:     &tmwardenv1.CpuShares{User: user, System: sys, Steal: steal, Iowait: 0.01, Idle: idle},
		Load1:   jitter(7, 1.5) + steal*30,
		Memory:  &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: uint64(jitter(24, 4) * (1 << 30))},
		Tcp:     &tmwardenv1.TcpStats{RetransmitsPerSecond: jitter(0.5, 0.5), OutSegmentsPerSecond: jitter(20000, 2000)},
	}
	return nil
}
