package topology

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// A report that repeats the node's last one takes confirmReport instead of the full path; the
// topology must come out exactly as the full path leaves it. Random fleets report mostly the
// same placements, with TaskManagers and subtasks moving between nodes, new attempts, renamed
// vertices, hosts changing, unidentified TaskManagers, nodes forgotten and REST views in between;
// after every step both topologies (one with confirmReport, one without) must be equal, and so
// must what Place answers for the report.
func TestConfirmReportMatchesFullPath(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			opts := Options{StaleAfter: 20 * time.Second, MaxMoves: 100_000}
			fast, full := New(opts), New(opts)
			full.fullOnly = true
			const nodes, tms = 4, 6
			// placement[tm] is the node a TaskManager runs on; subtasks[tm] what it runs.
			placement := make([]int, tms)
			subtasks := make([][]*tmwardenv1.SubtaskMetrics, tms)
			hosts := make([]string, tms)
			for i := range tms {
				placement[i] = i % nodes
				hosts[i] = fmt.Sprintf("10.0.0.%d", i)
				for j := range 3 {
					subtasks[i] = append(subtasks[i], &tmwardenv1.SubtaskMetrics{JobId: "j1", VertexId: fmt.Sprintf("v%d", j),
						SubtaskIndex: int32(i), JobName: "job one", VertexName: fmt.Sprintf("Map %d", j)})
				}
			}
			at := time.Unix(1_000_000, 0)
			repeated, last := 0, map[string]*tmwardenv1.Report{}
			for step := range 400 {
				at = at.Add(time.Duration(1+rng.IntN(3000)) * time.Millisecond)
				switch x := rng.IntN(100); {
				case x < 4: // a TaskManager moves to another node
					placement[rng.IntN(tms)] = rng.IntN(nodes)
				case x < 7: // a subtask fails over to a new attempt, maybe on another TaskManager
					from, to := rng.IntN(tms), rng.IntN(tms)
					if len(subtasks[from]) > 0 {
						i := rng.IntN(len(subtasks[from]))
						st := subtasks[from][i]
						subtasks[from] = append(subtasks[from][:i:i], subtasks[from][i+1:]...)
						moved := proto.Clone(st).(*tmwardenv1.SubtaskMetrics)
						moved.AttemptNumber++
						subtasks[to] = append(subtasks[to], moved)
					}
				case x < 9: // a vertex renamed (the report carries names too)
					v := fmt.Sprintf("v%d", rng.IntN(3))
					for _, s := range subtasks {
						for _, st := range s {
							if st.VertexId == v {
								st.VertexName += "'"
							}
						}
					}
				case x < 11:
					hosts[rng.IntN(tms)] = fmt.Sprintf("10.0.1.%d", rng.IntN(tms))
				case x < 13: // REST polled: it may lag behind the agents
					var jobs []RESTJob
					j := RESTJob{ID: "j1", Name: "job one", State: "RUNNING"}
					for v := range 3 {
						rv := RESTVertex{ID: fmt.Sprintf("v%d", v), Name: fmt.Sprintf("Map %d", v), Parallelism: tms}
						for tm := range tms {
							for _, st := range subtasks[tm] {
								if st.VertexId == rv.ID && rng.IntN(4) > 0 {
									rv.Subtasks = append(rv.Subtasks, RESTSubtask{Index: int(st.SubtaskIndex), Attempt: int(st.AttemptNumber),
										TaskManagerID: fmt.Sprintf("tm-%d", tm), Host: hosts[tm]})
								}
							}
						}
						j.Vertices = append(j.Vertices, rv)
					}
					jobs = append(jobs, j)
					rtms := []RESTTaskManager{{ID: "tm-0", RPCHost: hosts[0]}}
					fast.ObserveREST(jobs, rtms, at)
					full.ObserveREST(jobs, rtms, at)
					continue
				case x < 14:
					n := fmt.Sprintf("node-%d", rng.IntN(nodes))
					fast.ForgetNode(n, at)
					full.ForgetNode(n, at)
					continue
				}
				n := rng.IntN(nodes)
				r := &tmwardenv1.Report{}
				for tm := range tms {
					if placement[tm] != n {
						continue
					}
					id := fmt.Sprintf("tm-%d", tm)
					if rng.IntN(50) == 0 {
						id = "" // discovery has no id yet
					}
					r.TaskManagers = append(r.TaskManagers, &tmwardenv1.TaskManager{ResourceId: id, Host: hosts[tm], Subtasks: subtasks[tm]})
				}
				node := fmt.Sprintf("node-%d", n)
				if proto.Equal(last[node], r) {
					repeated++
				}
				last[node] = proto.Clone(r).(*tmwardenv1.Report)
				// Place answers from the node's cache where confirmReport left it valid.
				if a, b := fast.Place(node, r, at, nil), full.Place(node, r, at, nil); !slices.Equal(a, b) {
					t.Fatalf("step %d: report from %s: placed %v from the cache, %v by the full path", step, node, a, b)
				}
				checkOnNode(t, fast)
				checkOnNode(t, full)
				if a, b := sorted(fast.Snapshot()), sorted(full.Snapshot()); !reflect.DeepEqual(a, b) {
					t.Fatalf("step %d: report from %s: confirmReport left\n%+v\nthe full path\n%+v", step, node, a, b)
				}
			}
			if repeated < 50 {
				t.Fatalf("only %d of 400 steps repeated a node's last report: the test does not exercise confirmReport", repeated)
			}
		})
	}
}

// sorted orders what Snapshot leaves in map order (a job's vertices when REST has not listed
// it; the moves one observation records, which it resolves in map order) and drops a vertex's name, which Snapshot takes from whichever placement it meets first
// while REST and a renaming agent disagree; every placement's own names are still compared.
func sorted(s Snapshot) Snapshot {
	for _, j := range s.Jobs {
		slices.SortFunc(j.Vertices, func(a, b VertexView) int { return strings.Compare(a.ID, b.ID) })
		for i := range j.Vertices {
			j.Vertices[i].Name = ""
		}
	}
	slices.SortStableFunc(s.Moves, func(a, b Move) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.VertexID, b.VertexID), cmp.Compare(a.Index, b.Index))
	})
	return s
}

// A change on one node leaves every other node's cached entries valid: after node-new joins and
// node-a's subtask fails over (two full-path reports), node-b's next report, which repeats its
// last, is confirmed from its cache without looking its entries up again, and node-a's own next
// one looks them up anew.
func TestConfirmCacheOfOtherNodesSurvivesAChange(t *testing.T) {
	top := New(Options{})
	report := func(node string, attempt int32) *tmwardenv1.Report {
		return &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: node + "-tm", Host: node,
			Subtasks: []*tmwardenv1.SubtaskMetrics{{JobId: "j1", VertexId: "v1", SubtaskIndex: int32(len(node)), AttemptNumber: attempt},
				{JobId: "j1", VertexId: "v2", SubtaskIndex: int32(len(node)), AttemptNumber: attempt}}}}}
	}
	at := time.Unix(1_000_000, 0)
	place := func(node string, r *tmwardenv1.Report) []bool {
		at = at.Add(time.Second)
		return top.Place(node, r, at, nil)
	}
	a, b := report("node-a", 0), report("node-bb", 0)
	for range 2 { // the first report takes the full path, the second fills the cache
		place("node-a", a)
		place("node-bb", b)
	}
	place("node-new", report("node-new", 0))
	a.TaskManagers[0].Subtasks[0].AttemptNumber++
	place("node-a", a)
	before := top.refills
	if got := place("node-bb", b); !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("node-bb's subtasks placed %v, want both", got)
	}
	if n := top.refills - before; n != 0 {
		t.Fatalf("node-bb's report looked its entries up again (%d refills) after other nodes' changes", n)
	}
	place("node-a", a)
	if n := top.refills - before; n != 1 {
		t.Fatalf("node-a's next report after its own change refilled its cache %d times, want 1", n)
	}
}

// Changes that reach a node's cached entries through other nodes and REST, each a sequence the
// random fleets of TestConfirmReportMatchesFullPath rarely produce; after every step the topology
// with confirmReport must equal the full path's, and so must Place's answers.
func TestConfirmCacheFollowsChangesElsewhere(t *testing.T) {
	tm := func(id, host string, subs ...*tmwardenv1.SubtaskMetrics) *tmwardenv1.TaskManager {
		return &tmwardenv1.TaskManager{ResourceId: id, Host: host, Subtasks: subs}
	}
	sub := &tmwardenv1.SubtaskMetrics{JobId: "j1", VertexId: "v1", SubtaskIndex: 0}
	restView := func(tmID, host string) []RESTJob {
		return []RESTJob{{ID: "j1", Name: "job", State: "RUNNING", Vertices: []RESTVertex{{ID: "v1", Name: "Map", Parallelism: 1,
			Subtasks: []RESTSubtask{{Index: 0, TaskManagerID: tmID, Host: host}}}}}}
	}
	type step struct {
		wait time.Duration
		node string             // a report of this node, or
		r    *tmwardenv1.Report //
		rest []RESTJob          // REST's view when node is ""
	}
	report := func(tms ...*tmwardenv1.TaskManager) *tmwardenv1.Report { return &tmwardenv1.Report{TaskManagers: tms} }
	for _, tc := range []struct {
		name  string
		steps []step
	}{{
		// REST polled again with the same view leaves every placement as it was, but the
		// sighting node-a's cache held is gone: later, when the first poll is stale and the
		// second is not, the subtask is still placed by both.
		name: "REST polled again", steps: []step{
			{rest: restView("tm-a", "host-a")},
			{wait: time.Second, node: "node-a", r: report(tm("tm-a", "host-a", sub))},
			{wait: time.Second, node: "node-a", r: report(tm("tm-a", "host-a", sub))},
			{wait: 10 * time.Second, rest: restView("tm-a", "host-a")},
			{wait: 11 * time.Second, node: "node-a", r: report(tm("tm-a", "host-a", sub))},
		},
	}, {
		// An idle TaskManager (no subtasks to tell) shows up on node-b, with node-b's host, and
		// back on node-a before node-a reports again: node-b's report replaced the entry
		// node-a's cache held.
		name: "idle TaskManager away and back", steps: []step{
			{node: "node-a", r: report(tm("tm-a", "host-a"))},
			{wait: time.Second, node: "node-a", r: report(tm("tm-a", "host-a"))},
			{wait: time.Second, node: "node-b", r: report(tm("tm-a", "host-b"))},
			{wait: time.Second, node: "node-a", r: report(tm("tm-a", "host-a"))},
		},
	}, {
		// REST, polled as node-a reports, places node-a's subtask on tm-x, which no agent has
		// reported (REST wins a tie); node-b's first report names tm-x's node, which changes
		// the placement of a subtask node-a's cache holds; node-a's next report moves the
		// subtask back to node-a, from node-b.
		name: "REST placement resolved by another node", steps: []step{
			{node: "node-a", r: report(tm("tm-a", "host-a", sub))},
			{wait: time.Second, rest: restView("tm-x", "host-x")},
			{node: "node-a", r: report(tm("tm-a", "host-a", sub))},
			{wait: time.Second, node: "node-b", r: report(tm("tm-x", "host-x"))},
			{wait: time.Second, node: "node-a", r: report(tm("tm-a", "host-a", sub))},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{StaleAfter: 20 * time.Second}
			fast, full := New(opts), New(opts)
			full.fullOnly = true
			at := time.Unix(1_000_000, 0)
			for i, s := range tc.steps {
				at = at.Add(s.wait)
				if s.node == "" {
					fast.ObserveREST(s.rest, nil, at)
					full.ObserveREST(s.rest, nil, at)
				} else if a, b := fast.Place(s.node, s.r, at, nil), full.Place(s.node, s.r, at, nil); !slices.Equal(a, b) {
					t.Fatalf("step %d: report from %s: placed %v from the cache, %v by the full path", i, s.node, a, b)
				}
				if a, b := sorted(fast.Snapshot()), sorted(full.Snapshot()); !reflect.DeepEqual(a, b) {
					t.Fatalf("step %d: confirmReport left\n%+v\nthe full path\n%+v", i, a, b)
				}
			}
		})
	}
}

// checkOnNode holds the node index (onNode) against the placements it indexes: every placement
// under its node and nothing else, so Residents and OnNode find what a walk over every
// placement finds.
func checkOnNode(t *testing.T, top *Topology) {
	t.Helper()
	indexed := map[Key]bool{}
	for node, keys := range top.onNode {
		for _, k := range keys {
			if p := top.current[k]; p == nil || p.node != node || indexed[k] {
				t.Fatalf("onNode lists %v under %q (listed before: %v), placed %+v", k, node, indexed[k], p)
			}
			indexed[k] = true
		}
	}
	if len(indexed) != len(top.current) {
		t.Fatalf("onNode indexes %d placements of %d", len(indexed), len(top.current))
	}
}
