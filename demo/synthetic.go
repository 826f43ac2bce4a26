package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/tmwarden/tmwarden/agent"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// syntheticCluster is the demo's stand-in for machines it does not have: each simulated node
// reports plausible host signals through a real agent, and faults change what it reports.
// The cluster simulator (sim/) replaces it with full Flink workloads.
type syntheticCluster struct {
	interval time.Duration
	names    []string
	mu       sync.Mutex
	steal    map[string]float64
}

func newSyntheticCluster(n int, interval time.Duration) *syntheticCluster {
	c := &syntheticCluster{interval: interval, steal: map[string]float64{}}
	for i := 1; i <= n; i++ {
		c.names = append(c.names, fmt.Sprintf("sim-node-%02d", i))
	}
	return c
}

// Nodes returns the simulated node names.
func (c *syntheticCluster) Nodes() []string { return c.names }

// LastNode is the node whose agent the demo takes away.
func (c *syntheticCluster) LastNode() string {
	if len(c.names) < 3 {
		return ""
	}
	return c.names[len(c.names)-1]
}

// InjectCPUSteal gives the second node a noisy neighbour.
func (c *syntheticCluster) InjectCPUSteal() (string, bool) {
	if len(c.names) < 2 {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steal[c.names[1]] = 0.35
	return c.names[1], true
}

// Collectors returns the collectors of one simulated node.
func (c *syntheticCluster) Collectors(node string) []agent.NamedCollector {
	seed := uint64(len(node))
	for _, b := range []byte(node) {
		seed = seed*31 + uint64(b)
	}
	return []agent.NamedCollector{{Name: "host", Collector: &syntheticHost{cluster: c, node: node, rng: rand.New(rand.NewPCG(seed, 7))}}}
}

type syntheticHost struct {
	cluster *syntheticCluster
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
