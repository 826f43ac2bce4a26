package demo

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tmwarden/tmwarden/agent"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/sim"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

// scenarioCluster plays a scenario file of the cluster simulator in real time: the simulator
// steps on a ticker, and each of its nodes gets a real agent whose one collector hands over what
// the simulator emitted for that node (host signals, eBPF histograms, TaskManagers and their
// subtask metrics). Faults and controls follow the scenario's schedule.
type scenarioCluster struct {
	sc    *scenario.Scenario
	sim   *sim.Sim
	mu    sync.Mutex
	last  map[string]*tmwardenv1.Report
	speed int
}

// startScenarioCluster loads the scenario and steps it every interval, speed simulated ticks at
// a time, until ctx ends or the scenario is over.
func startScenarioCluster(ctx context.Context, path string, interval time.Duration, speed int) (*scenarioCluster, error) {
	sc, err := scenario.LoadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := sim.New(sc)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	c := &scenarioCluster{sc: sc, sim: s, last: map[string]*tmwardenv1.Report{}, speed: max(speed, 1)}
	c.step() // every node has a report before its agent first collects
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !c.step() {
					return
				}
			}
		}
	}()
	return c, nil
}

// step advances the simulator speed ticks and keeps each node's newest report. Reports of nodes
// the scenario partitions away are buffered by the simulator, as an agent would.
func (c *scenarioCluster) step() bool {
	for range c.speed {
		more := c.sim.Step(func(node string, _ time.Time, r *tmwardenv1.Report) {
			c.mu.Lock()
			c.last[node] = proto.Clone(r).(*tmwardenv1.Report)
			c.mu.Unlock()
		})
		if !more {
			return false
		}
	}
	return true
}

// Nodes returns the scenario's node names.
func (c *scenarioCluster) Nodes() []string { return c.sim.Nodes() }

// Faults describes the scenario's fault schedule in real time at this speed.
func (c *scenarioCluster) Faults(interval time.Duration) []string {
	var out []string
	scale := float64(interval) / float64(c.speed) / float64(c.sc.Interval.D())
	for _, f := range c.sc.Faults {
		at := time.Duration(float64(f.Start.D()) * scale).Round(time.Second)
		out = append(out, fmt.Sprintf("%s on %v at +%s (scenario time %s)", f.Kind, f.Nodes, at, f.Start.D()))
	}
	return out
}

// Collectors returns the one collector of a scenario node.
func (c *scenarioCluster) Collectors(node string) []agent.NamedCollector {
	return []agent.NamedCollector{{Name: "scenario", Collector: scenarioNode{c: c, node: node}}}
}

type scenarioNode struct {
	c    *scenarioCluster
	node string
}

// Collect hands over the simulator's signals; the agent keeps its own sequence and timestamps.
func (n scenarioNode) Collect(_ context.Context, r *tmwardenv1.Report) error {
	n.c.mu.Lock()
	src := n.c.last[n.node]
	n.c.mu.Unlock()
	if src == nil {
		return fmt.Errorf("the simulator has not emitted a report for %s yet", n.node)
	}
	src = proto.Clone(src).(*tmwardenv1.Report)
	r.Host, r.Histograms, r.Retransmits, r.Cgroups, r.TaskManagers = src.Host, src.Histograms, src.Retransmits, src.Cgroups, src.TaskManagers
	return nil
}
