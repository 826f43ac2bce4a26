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
// after every step both topologies (one with confirmReport, one without) must be equal.
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
				fast.ObserveReport(node, r, at)
				full.ObserveReport(node, r, at)
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
