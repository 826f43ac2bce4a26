package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time this process has used, user and system: on a machine shared with
// other work it says what an operation cost where wall time says how long it waited too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPolish10kNodes measures the node-speed fit alone at the coordinator's scale (issue 6:
// 10,000 nodes, 20 subtasks each, 6,250 vertices of parallelism 32), a sixth of the nodes a
// slower class (0.7x): "cold" starts every node at speed 1 (the first window after the
// coordinator starts), "warm" from the speeds the window before settled on (every other round).
// It reports the polish rounds each fit took and the process CPU time per fit (wall time on a
// loaded machine includes the wait for a core); compare with BenchmarkEvaluate10kNodes in
// sim/runner for polish's share of a round.
func BenchmarkPolish10kNodes(b *testing.B) {
	const nodes, perNode, parallelism = 10000, 20, 32
	r := rand.New(rand.NewPCG(1, 2))
	evals := make([]*nodeEval, nodes)
	for i := range evals {
		evals[i] = &nodeEval{name: fmt.Sprintf("node-%d", i), expect: 1}
	}
	p := NewPeer(DefaultPeerConfig())
	slots := make([]int, 0, nodes*perNode)
	for i := range nodes {
		for range perNode {
			slots = append(slots, i)
		}
	}
	r.Shuffle(len(slots), func(i, j int) { slots[i], slots[j] = slots[j], slots[i] })
	for v := 0; v+parallelism <= len(slots); v += parallelism {
		cost := math.Log(1000 + 9000*r.Float64())
		for _, n := range slots[v : v+parallelism] {
			speed := 0.0
			if n%6 == 0 {
				speed = math.Log(0.7)
			}
			p.rates = append(p.rates, rateObs{e: evals[n], logTPR: cost + speed + 0.03*r.NormFloat64()})
		}
		p.groups = append(p.groups, len(p.rates))
	}
	p.linkNodes(evals)
	for _, start := range []string{"cold", "warm"} {
		b.Run(start, func(b *testing.B) {
			rounds := 0
			cpu := processCPU()
			for range b.N {
				if start == "cold" {
					clear(p.speed)
				}
				n := p.polish(evals)
				rounds += n
				for _, e := range evals {
					if sp := p.speed[e.name]; sp != nil {
						sp.est = e.est
					} else {
						p.speed[e.name] = &nodeSpeed{est: e.est}
					}
				}
			}
			b.ReportMetric(float64(rounds)/float64(b.N), "polish-rounds/op")
			b.ReportMetric(float64(processCPU()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}
