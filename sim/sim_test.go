package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

func load(t *testing.T, name string) *scenario.Scenario {
	t.Helper()
	sc, err := scenario.LoadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func loadString(t *testing.T, y string) *scenario.Scenario {
	t.Helper()
	sc, err := scenario.Load(strings.NewReader(y), "inline")
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func newSim(t *testing.T, sc *scenario.Scenario) *Sim {
	t.Helper()
	s, err := New(sc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkConservation verifies that no record is created or lost: what the partitions received is
// read by sources or still lagging, what every edge sent arrived, and every subtask's input was
// processed or is still queued.
func checkConservation(t *testing.T, s *Sim) {
	t.Helper()
	const tol = 1e-6
	close := func(a, b float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b))) }
	var read, lag float64
	for _, j := range s.jobs {
		for _, p := range j.partitions {
			lag += p.lag
		}
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				if v.isSource {
					read += st.cumProcessed
					continue
				}
				if !close(st.cumIn, st.cumProcessed+st.queue) {
					t.Fatalf("tick %d: %s/%s[%d]: received %.3f, processed %.3f + queued %.3f", s.tick, j.name, v.name, st.idx, st.cumIn, st.cumProcessed, st.queue)
				}
				if st.queue < -tol {
					t.Fatalf("tick %d: %s/%s[%d]: negative queue %g", s.tick, j.name, v.name, st.idx, st.queue)
				}
			}
			for _, e := range v.out {
				if !close(e.sent, e.got) {
					t.Fatalf("tick %d: edge %s -> %s sent %.3f but delivered %.3f", s.tick, e.from.name, e.to.name, e.sent, e.got)
				}
				var sent float64
				for _, st := range v.subtasks {
					sent += st.cumProcessed * v.sel
				}
				if !close(e.sent, sent) {
					t.Fatalf("tick %d: edge %s -> %s sent %.3f, its senders emitted %.3f", s.tick, e.from.name, e.to.name, e.sent, sent)
				}
			}
		}
	}
	if !close(s.arrived, read+lag) {
		t.Fatalf("tick %d: partitions received %.3f, sources read %.3f and %.3f lag", s.tick, s.arrived, read, lag)
	}
}

func TestRecordsConserved(t *testing.T) {
	s := newSim(t, load(t, "invariants.yaml"))
	for s.Step(nil) {
		checkConservation(t, s)
	}
	if s.arrived == 0 {
		t.Fatal("no input was produced")
	}
	var sunk float64
	for _, j := range s.jobs {
		v := j.vertices[len(j.vertices)-1]
		for _, st := range v.subtasks {
			sunk += st.cumProcessed
		}
	}
	if sunk == 0 {
		t.Fatal("nothing reached the sinks")
	}
}

// bpScenario has a sink whose per-record cost decides whether it keeps up.
func bpScenario(sinkCost int) string {
	return `
name: bp
seed: 3
duration: 10m
cluster: {nodes: 4}
noise: 0
jobs:
  - name: j
    parallelism: 4
    input: {rate: 20000}
    operators:
      - {name: src, cost_us: 10}
      - {name: mid, edge: hash, cost_us: 40}
      - {name: sink, edge: rebalance, cost_us: ` + strconv.Itoa(sinkCost) + `}
`
}

type vertexStats struct{ busy, bp, lag float64 }

// lastStats runs the scenario and returns, per vertex name, the mean busy and backpressured
// ms/s over the last report and the sources' total Kafka lag.
func lastStats(t *testing.T, sc *scenario.Scenario) map[string]vertexStats {
	s := newSim(t, sc)
	out := map[string]vertexStats{}
	count := map[string]float64{}
	last := s.Ticks()
	s.Run(func(node string, at time.Time, r *tmwardenv1.Report) {
		if s.Tick() != last {
			return
		}
		for _, tm := range r.GetTaskManagers() {
			for _, st := range tm.GetSubtasks() {
				v := out[st.GetVertexName()]
				v.busy += st.GetBusyMsPerSecond()
				v.bp += st.GetBackpressuredMsPerSecond()
				v.lag += st.GetKafkaLag()
				out[st.GetVertexName()] = v
				count[st.GetVertexName()]++
			}
		}
	})
	for k, v := range out {
		v.busy /= count[k]
		v.bp /= count[k]
		out[k] = v
	}
	checkConservation(t, s)
	return out
}

func TestBackpressurePropagatesUpstream(t *testing.T) {
	healthy := lastStats(t, loadString(t, bpScenario(40)))
	if healthy["mid"].bp > 50 || healthy["src"].bp > 50 || healthy["src"].lag > 20000 {
		t.Fatalf("a sink that keeps up must not backpressure anything: %+v", healthy)
	}
	slow := lastStats(t, loadString(t, bpScenario(400)))
	if slow["sink"].busy < 950 {
		t.Fatalf("the overloaded sink should be busy all the time, got %.0f ms/s", slow["sink"].busy)
	}
	if slow["mid"].bp < 500 {
		t.Fatalf("the operator feeding the slow sink should be backpressured, got %.0f ms/s", slow["mid"].bp)
	}
	if slow["src"].bp < 500 {
		t.Fatalf("backpressure should reach the source, got %.0f ms/s", slow["src"].bp)
	}
	// Input is 20000/s, the sinks manage 4 × 2500/s: the rest piles up in Kafka.
	if slow["src"].lag < 1e6 {
		t.Fatalf("the Kafka lag should grow when the job cannot keep up, got %.0f", slow["src"].lag)
	}
}

func runHash(t *testing.T, sc *scenario.Scenario) string {
	t.Helper()
	s := newSim(t, sc)
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	s.Run(func(node string, at time.Time, r *tmwardenv1.Report) {
		var err error
		h.Write([]byte(node))
		b, _ := at.MarshalBinary()
		h.Write(b)
		if buf, err = opts.MarshalAppend(buf[:0], r); err != nil {
			t.Fatal(err)
		}
		h.Write(buf)
	})
	return hex.EncodeToString(h.Sum(nil))
}

func TestSeedReproducesRun(t *testing.T) {
	a := runHash(t, load(t, "invariants.yaml"))
	b := runHash(t, load(t, "invariants.yaml"))
	if a != b {
		t.Fatalf("same seed, different runs: %s vs %s", a, b)
	}
	other := load(t, "invariants.yaml")
	other.Seed++
	if c := runHash(t, other); c == a {
		t.Fatal("a different seed produced the identical run")
	}
}

// TestGroundTruthMatchesFaults checks, tick by tick, that the targets the simulator is
// actually slowing down are exactly the scenario's ground truth.
func TestGroundTruthMatchesFaults(t *testing.T) {
	for _, name := range []string{"invariants.yaml", "ramp.yaml"} {
		sc := load(t, name)
		if len(sc.Truth) == 0 {
			t.Fatalf("%s: no ground truth derived", name)
		}
		s := newSim(t, sc)
		thr := map[string]float64{}
		for _, f := range sc.Faults {
			for _, n := range f.Nodes {
				k := n
				if f.Kind == scenario.FaultGCStorm {
					k = sc.TaskManagerID(n, *f.TaskManager)
				}
				v, ok := thr[k]
				if !ok {
					v = 1
				}
				thr[k] = min(v, scenario.SlowSeverity, f.Severity-1e-6)
			}
		}
		dt := sc.Interval.D()
		checked := 0
		for s.tick < s.ticks {
			s.applySchedule()
			start := s.elapsed()
			end := start + dt
			for _, n := range s.nodes {
				targets := map[string]float64{n.name: n.faultSev}
				for _, tm := range n.tms {
					targets[tm.id] = tm.gcSev
				}
				for k, sev := range targets {
					var inside, touching bool
					for _, e := range sc.Truth {
						id := e.Node
						if e.TaskManager != "" {
							id = e.TaskManager
						}
						if id != k {
							continue
						}
						if start >= e.From.D() && end <= e.To.D() {
							inside = true
						}
						if end >= e.From.D() && start < e.To.D() {
							touching = true
						}
					}
					switch {
					case inside && sev < thr[k]:
						t.Fatalf("%s: %s is in the ground truth at %s but the simulator slows it by only %.2f", name, k, start, sev)
					case !touching && sev >= thr[k] && sev > 0:
						t.Fatalf("%s: %s is slowed (%.2f) at %s but the ground truth says it is healthy", name, k, sev, start)
					case inside:
						checked++
					}
				}
			}
			s.tick++
		}
		if checked == 0 {
			t.Fatalf("%s: no tick fell inside the ground truth", name)
		}
	}
}

func TestGCStormOnIdleTaskManagerRejected(t *testing.T) {
	sc := loadString(t, `
name: idle-tm
seed: 1
duration: 10m
cluster: {nodes: 4, task_managers_per_node: 2, slots_per_task_manager: 2}
jobs:
  - name: j
    parallelism: 2
    input: {rate: 1000}
    operators: [{name: src}, {name: sink, edge: rebalance}]
faults:
  - {kind: gc_storm, nodes: [node-0003], task_manager: 1, start: 1m, duration: 1m, severity: 0.5}
`)
	_, err := New(sc)
	if err == nil || !strings.Contains(err.Error(), "faults[0].task_manager") || !strings.Contains(err.Error(), "runs no subtasks") {
		t.Fatalf("want an error naming faults[0].task_manager, got %v", err)
	}
}
