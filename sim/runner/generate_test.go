//go:build !race

package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tmwarden/tmwarden/sim"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

// genShape overrides what generateScenario draws, to check shapes its draws seldom or never
// give (TestGeneratedSet reads it from the environment). The zero shape changes nothing: a seed
// gives the scenario it always gave.
type genShape struct {
	// Nodes fixes the fleet size (TMWARDEN_GEN_NODES).
	Nodes int
	// MaxParallelism caps every job's parallelism, so the same slots hold more, smaller jobs
	// (TMWARDEN_GEN_MAX_PARALLELISM).
	MaxParallelism int
	// Classes makes that many hardware classes besides the cluster's own (TMWARDEN_GEN_CLASSES).
	Classes int
	// Faults restricts the fault kinds to these (TMWARDEN_GEN_FAULTS, comma-separated), and
	// MinFaults draws at least that many (TMWARDEN_GEN_MIN_FAULTS).
	Faults    []string
	MinFaults int
	// Controls restricts the negative controls to these kinds (TMWARDEN_GEN_CONTROLS,
	// comma-separated): partitions alone, say, to check faults that begin and end inside one.
	Controls []string
}

func shapeFromEnv() (genShape, error) {
	var g genShape
	for _, f := range []struct {
		env string
		to  *int
	}{{"TMWARDEN_GEN_NODES", &g.Nodes}, {"TMWARDEN_GEN_MAX_PARALLELISM", &g.MaxParallelism}, {"TMWARDEN_GEN_CLASSES", &g.Classes},
		{"TMWARDEN_GEN_MIN_FAULTS", &g.MinFaults}} {
		if v := os.Getenv(f.env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return g, fmt.Errorf("%s=%q: want a count", f.env, v)
			}
			*f.to = n
		}
	}
	if v := os.Getenv("TMWARDEN_GEN_FAULTS"); v != "" {
		for _, k := range strings.Split(v, ",") {
			if slicesIndex(scenario.FaultKinds, k) < 0 {
				return g, fmt.Errorf("TMWARDEN_GEN_FAULTS: unknown fault kind %q (have %v)", k, scenario.FaultKinds)
			}
			g.Faults = append(g.Faults, k)
		}
	}
	if v := os.Getenv("TMWARDEN_GEN_CONTROLS"); v != "" {
		for _, k := range strings.Split(v, ",") {
			if slicesIndex(scenario.ControlKinds, k) < 0 {
				return g, fmt.Errorf("TMWARDEN_GEN_CONTROLS: unknown control kind %q (have %v)", k, scenario.ControlKinds)
			}
			g.Controls = append(g.Controls, k)
		}
	}
	return g, nil
}

// generateScenario writes a scenario from a seed with everything the format can say: mixed
// hardware classes, zones, intermittent, partial and doubled faults at severities 0.2–0.8,
// named neighbours, receiver-side loss, and every negative control. It is the generator
// behind TestGeneratedSet; no generated set is committed, so nobody tunes to one.
func generateScenario(seed uint64, shape genShape) string {
	r := rand.New(rand.NewPCG(seed, 0x9e4e))
	pick := func(xs ...int) int { return xs[r.IntN(len(xs))] }
	unif := func(a, b float64) float64 { return a + (b-a)*r.Float64() }
	nodes := pick(12, 20, 30, 40, 60, 100)
	if shape.Nodes > 0 {
		nodes = shape.Nodes
	}
	tms, slots := pick(1, 2, 2, 3), pick(3, 4, 6)
	dur := pick(25, 30, 40)
	var b strings.Builder
	fmt.Fprintf(&b, "name: gen-%d\nseed: %d\nduration: %dm\nnoise: %.3f\n", seed, seed, dur, unif(0.02, 0.08))
	fmt.Fprintf(&b, "cluster:\n  nodes: %d\n  cpus: %d\n  task_managers_per_node: %d\n  slots_per_task_manager: %d\n  speed_jitter: %.3f\n  neighbours: %d\n",
		nodes, pick(8, 16, 32), tms, slots, unif(0, 0.08), r.IntN(5))
	zones := 0
	if r.IntN(2) == 0 {
		zones = pick(3, 4, 6)
		b.WriteString("  zones: [")
		for z := range zones {
			if z > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "z%d", z)
		}
		b.WriteString("]\n")
	}
	if withClasses := r.IntN(3) > 0; withClasses || shape.Classes > 0 {
		b.WriteString("  classes:\n")
		left := nodes
		classes := 1 + r.IntN(2)
		if shape.Classes > 0 {
			classes = shape.Classes
		}
		for c := range classes {
			n := max(1, int(float64(nodes)*unif(0.1, 0.35)))
			if n > left {
				break
			}
			left -= n
			// Older generations 1.2–1.6x slower, or newer ones up to 1.3x faster.
			speed := 1 / unif(1.2, 1.6)
			if r.IntN(3) == 0 {
				speed = unif(1.05, 1.3)
			}
			fmt.Fprintf(&b, "    - {name: gen%d-class%d, count: %d, speed: %.3f, cpus: %d}\n", seed, c, n, speed, pick(8, 16, 32))
		}
	}
	b.WriteString("jobs:\n")
	budget := int(float64(nodes*tms*slots) * unif(0.5, 0.85))
	type job struct {
		name       string
		keyed, ops []string
	}
	var jobs []job
	for used := 0; used+2 <= budget; {
		p := min(pick(2, 4, 6, 8, 12, 16), budget-used)
		if shape.MaxParallelism > 0 {
			p = min(p, max(2, shape.MaxParallelism))
		}
		j := job{name: fmt.Sprintf("job%d", len(jobs))}
		ops := pick(2, 3, 4, 5)
		costs := make([]int, ops)
		maxCost := 0
		for i := range costs {
			costs[i] = pick(10, 20, 30, 50, 80, 120, 200)
			maxCost = max(maxCost, costs[i])
		}
		rate := int(float64(p) * unif(0.15, 0.6) * 1e6 / float64(maxCost))
		fmt.Fprintf(&b, "  - name: %s\n    parallelism: %d\n    input: {rate: %d", j.name, p, rate)
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, ", diurnal: {amplitude: %.2f, period: 1h, phase: %dm}", unif(0.1, 0.4), r.IntN(60))
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, ", bursts: {per_hour: %d, magnitude: %.1f, duration: 1m}", 1+r.IntN(6), unif(1.2, 2.5))
		}
		b.WriteString("}\n    operators:\n")
		for i, c := range costs {
			name := fmt.Sprintf("op%d", i)
			j.ops = append(j.ops, name)
			fmt.Fprintf(&b, "      - {name: %s, cost_us: %d", name, c)
			if i > 0 {
				if r.IntN(2) == 0 {
					b.WriteString(", edge: hash")
					j.keyed = append(j.keyed, name)
					if r.IntN(2) == 0 {
						b.WriteString(", state: true")
					}
					if r.IntN(3) == 0 {
						fmt.Fprintf(&b, ", key_skew: %.2f", unif(0.1, 0.8))
					}
				} else {
					b.WriteString(", edge: rebalance")
				}
			}
			b.WriteString("}\n")
		}
		jobs = append(jobs, j)
		used += p
	}
	if r.Float64() >= 0.3 || shape.MinFaults > 0 {
		b.WriteString("faults:\n")
		busy := map[int][][3]int{}
		kinds := scenario.FaultKinds
		draws := 1 + r.IntN(4)
		if shape.MinFaults > 0 {
			draws = max(draws, shape.MinFaults)
		}
		for range draws {
			kind := kinds[r.IntN(len(kinds))]
			if len(shape.Faults) > 0 {
				kind = shape.Faults[r.IntN(len(shape.Faults))]
			}
			start := 3 + r.IntN(dur-10)
			d := 3 + r.IntN(min(13, dur-start-3))
			n := r.IntN(nodes)
			useZone := zones > 0 && r.IntN(8) == 0 && kind != scenario.FaultGCStorm
			clash := false
			for _, s := range busy[n] {
				// Two faults on a node may overlap only when their kinds differ.
				clash = clash || (start < s[1] && s[0] < start+d && (s[2] == slicesIndex(kinds, kind) || r.IntN(2) == 0))
			}
			if clash || (useZone && len(busy) > 0) {
				continue
			}
			busy[n] = append(busy[n], [3]int{start, start + d, slicesIndex(kinds, kind)})
			if useZone {
				fmt.Fprintf(&b, "  - {kind: %s, zone: z%d, start: %dm, duration: %dm, severity: %.2f", kind, r.IntN(zones), start, d, unif(0.2, 0.8))
			} else {
				fmt.Fprintf(&b, "  - {kind: %s, nodes: [node-%04d], start: %dm, duration: %dm, severity: %.2f", kind, n, start, d, unif(0.2, 0.8))
			}
			switch kind {
			case scenario.FaultGCStorm:
				fmt.Fprintf(&b, ", task_manager: %d", r.IntN(tms))
			case scenario.FaultCPUContention:
				if r.IntN(2) == 0 {
					fmt.Fprintf(&b, ", neighbour: {unit: batch-%d.service}", r.IntN(100))
				} else {
					fmt.Fprintf(&b, ", neighbour: {pod: tenant-%d, namespace: ns-%d}", r.IntN(100), r.IntN(5))
				}
			case scenario.FaultNetworkLoss:
				if r.IntN(3) == 0 {
					b.WriteString(", direction: receive")
				}
			}
			if kind != scenario.FaultGCStorm && r.IntN(4) == 0 {
				fmt.Fprintf(&b, ", share: %.2f", unif(0.4, 0.75))
			}
			if r.IntN(5) == 0 {
				fmt.Fprintf(&b, ", intermittent: {on: %ds, off: %ds}", 30+10*r.IntN(6), 20+10*r.IntN(6))
			} else if r.IntN(4) == 0 {
				fmt.Fprintf(&b, ", ramp: %dm", 1+r.IntN(2))
			}
			b.WriteString("}\n")
		}
	}
	b.WriteString("controls:\n")
	for range 1 + r.IntN(3) {
		start := 2 + r.IntN(dur-8)
		d := 1 + r.IntN(min(10, dur-start-2))
		j := jobs[r.IntN(len(jobs))]
		kinds := scenario.ControlKinds
		if len(shape.Controls) > 0 {
			kinds = shape.Controls
		}
		switch k := kinds[r.IntN(len(kinds))]; k {
		case scenario.ControlDataSkew:
			if len(j.keyed) == 0 {
				continue
			}
			fmt.Fprintf(&b, "  - {kind: %s, job: %s, operator: %s, start: %dm, duration: %dm, magnitude: %.1f, cost_factor: %.1f}\n",
				k, j.name, j.keyed[r.IntN(len(j.keyed))], start, d, unif(1.5, 5), unif(1, 2))
		case scenario.ControlTrafficSpike:
			fmt.Fprintf(&b, "  - {kind: %s, start: %dm, duration: %dm, magnitude: %.1f}\n", k, start, d, unif(1.5, 4))
		case scenario.ControlUnderProvisioned:
			fmt.Fprintf(&b, "  - {kind: %s, job: %s, start: %dm, duration: %dm, magnitude: %.1f}\n", k, j.name, start, d, unif(2, 5))
		case scenario.ControlClusterSlowdown:
			fmt.Fprintf(&b, "  - {kind: %s, start: %dm, duration: %dm, magnitude: %.2f}\n", k, start, d, unif(0.2, 0.6))
		case scenario.ControlPartition:
			fmt.Fprintf(&b, "  - {kind: %s, fraction: %.2f, start: %dm, duration: %dm}\n", k, unif(0.1, 0.6), start, d)
		case scenario.ControlAgentRestart:
			fmt.Fprintf(&b, "  - {kind: %s, count: %d, start: %dm, duration: %ds}\n", k, 1+r.IntN(max(1, nodes/5)), start, 5+r.IntN(55))
		case scenario.ControlSlowExternal:
			fmt.Fprintf(&b, "  - {kind: %s, job: %s, operator: %s, start: %dm, duration: %dm, magnitude: %.1f, share: %.2f}\n",
				k, j.name, j.ops[len(j.ops)-1], start, d, unif(1.5, 4), unif(0.1, 0.5))
		case scenario.ControlStaleMetrics:
			fmt.Fprintf(&b, "  - {kind: %s, count: %d, mode: %s, start: %dm, duration: %dm}\n", k, 1+r.IntN(2), []string{"missing", "stale"}[r.IntN(2)], start, d)
		case scenario.ControlTaskManagerRestart:
			fmt.Fprintf(&b, "  - {kind: %s, count: %d, start: %dm, duration: %ds}\n", k, 1+r.IntN(3), start, 10+r.IntN(50))
		case scenario.ControlJobFailover:
			fmt.Fprintf(&b, "  - {kind: %s, job: %s, start: %dm, duration: %ds}\n", k, j.name, start, 10+r.IntN(40))
		}
	}
	return b.String()
}

func slicesIndex(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// TestGeneratedSet replays TMWARDEN_GENERATED scenarios from generateScenario, seeds from
// TMWARDEN_SEED (default 1000), and prints the pooled table; TMWARDEN_DUMP=dir also writes
// them out to look at, and the TMWARDEN_GEN_* variables (genShape) bend their shape. It is how
// the detector's generality is checked on sets nobody tuned to.
func TestGeneratedSet(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TMWARDEN_GENERATED"))
	if n <= 0 {
		t.Skip("set TMWARDEN_GENERATED to the number of scenarios to generate and score")
	}
	seed := uint64(1000)
	if s, err := strconv.ParseUint(os.Getenv("TMWARDEN_SEED"), 10, 64); err == nil {
		seed = s
	}
	shape, err := shapeFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	var scs []*scenario.Scenario
	for ; len(scs) < n; seed++ {
		y := generateScenario(seed, shape)
		sc, err := scenario.Load(strings.NewReader(y), fmt.Sprintf("gen-%d", seed))
		if err != nil {
			t.Fatalf("generated scenario does not load: %v\n%s", err, y)
		}
		if _, err := sim.New(sc); err != nil {
			continue // a gc_storm drawn on an idle TaskManager
		}
		if dir := os.Getenv("TMWARDEN_DUMP"); dir != "" {
			os.WriteFile(fmt.Sprintf("%s/gen-%d.yaml", dir, seed), []byte(y), 0o644)
		}
		scs = append(scs, sc)
	}
	res, err := RunAll(context.Background(), scs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("TMWARDEN_PER_SCENARIO") == "" {
		res = Result{Totals: res.Totals}
	}
	res.WriteTable(os.Stdout)
}

// TestGeneratorShape: the zero shape leaves a seed's scenario as it was (the sets measured
// before the knobs existed stay comparable), and each knob says what it says.
func TestGeneratorShape(t *testing.T) {
	base := generateScenario(250029, genShape{})
	if got := generateScenario(250029, genShape{}); got != base {
		t.Fatal("one seed gave two scenarios")
	}
	y := generateScenario(250029, genShape{Nodes: 7, MaxParallelism: 3, Classes: 2, Faults: []string{scenario.FaultCPUContention}, MinFaults: 3,
		Controls: []string{scenario.ControlPartition}})
	sc, err := scenario.Load(strings.NewReader(y), "shaped")
	if err != nil {
		t.Fatalf("shaped scenario does not load: %v\n%s", err, y)
	}
	if sc.Cluster.Nodes != 7 || len(sc.Cluster.Classes) == 0 {
		t.Errorf("nodes %d classes %d, want 7 and some", sc.Cluster.Nodes, len(sc.Cluster.Classes))
	}
	for _, j := range sc.Jobs {
		if j.Parallelism > 3 {
			t.Errorf("job %s parallelism %d, want at most 3", j.Name, j.Parallelism)
		}
	}
	for _, f := range sc.Faults {
		if f.Kind != scenario.FaultCPUContention {
			t.Errorf("fault kind %s, want only %s", f.Kind, scenario.FaultCPUContention)
		}
	}
	if len(sc.Faults) == 0 {
		t.Error("no faults drawn with MinFaults 3")
	}
	if len(sc.Controls) == 0 {
		t.Error("no controls drawn")
	}
	for _, c := range sc.Controls {
		if c.Kind != scenario.ControlPartition {
			t.Errorf("control kind %s, want only %s", c.Kind, scenario.ControlPartition)
		}
	}
}
