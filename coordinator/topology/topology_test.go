package topology_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/coordinator/topology"
	"github.com/tmwarden/tmwarden/flink/promscrape"
	"github.com/tmwarden/tmwarden/flink/rest"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// agentRound does what an agent on node does each interval: the TaskManager list from discovery
// (here: the endpoint only), then the real "flink" collector scrapes it over loopback HTTP.
func agentRound(t *testing.T, flink collector.Collector, endpoints []string) *tmwardenv1.Report {
	t.Helper()
	r := &tmwardenv1.Report{}
	for _, ep := range endpoints {
		r.TaskManagers = append(r.TaskManagers, &tmwardenv1.TaskManager{MetricsEndpoint: ep})
	}
	if err := flink.Collect(context.Background(), r); err != nil {
		t.Fatalf("flink collector: %v", err)
	}
	return r
}

func flinkCollector(t *testing.T) collector.Collector {
	t.Helper()
	for _, reg := range collector.Registrations() {
		if reg.Name == "flink" {
			c, err := reg.New(collector.Options{Config: collector.DefaultConfig()})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatal(`no "flink" collector registered`)
	return nil
}

// The agent scrapes simulated TaskManagers over real HTTP, the coordinator polls the simulated
// JobManager's REST API, and the topology shows every subtask on the node it runs on, also
// after its TaskManager's tasks move to another node.
func TestEndToEndPlacementFollowsMoves(t *testing.T) {
	for _, version := range []string{flinksim.Version120, flinksim.Version20} {
		t.Run(version, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := flinksim.DemoConfig(3, 2)
			cfg.Version = version
			cl, err := flinksim.Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			client, err := rest.New(rest.Options{BaseURL: cl.RESTURL()})
			if err != nil {
				t.Fatal(err)
			}
			flink := flinkCollector(t)
			byNode := map[string][]string{}
			for _, tm := range cl.TaskManagers() {
				byNode[tm.Node] = append(byNode[tm.Node], tm.MetricsAddr)
			}
			topo := topology.New(topology.Options{})
			now := time.Unix(1_800_000_000, 0)
			round := func() {
				now = now.Add(5 * time.Second)
				for node, eps := range byNode {
					topo.ObserveReport(node, agentRound(t, flink, eps), now)
				}
				cp, err := client.Placement(ctx)
				if err != nil {
					t.Fatalf("REST placement: %v", err)
				}
				jobs, tms := topology.FromREST(cp)
				topo.ObserveREST(jobs, tms, now)
			}
			check := func(stage string) {
				t.Helper()
				want := cl.Placements()
				for _, p := range want {
					got, ok := topo.Locate(topology.Key{JobID: p.JobID, VertexID: p.VertexID, Index: p.SubtaskIndex})
					if !ok {
						t.Errorf("%s: %s#%d not in topology", stage, p.VertexName, p.SubtaskIndex)
						continue
					}
					if got.Node != p.Node || got.TaskManagerID != promscrape.SanitizeLabelValue(p.TaskManagerID) || got.Source != "rest+agent" {
						t.Errorf("%s: %s#%d at %s/%s (%s), want %s/%s", stage, p.VertexName, p.SubtaskIndex,
							got.Node, got.TaskManagerID, got.Source, p.Node, p.TaskManagerID)
					}
					if got.VertexName != p.VertexName || got.JobName != p.JobName {
						t.Errorf("%s: names %q/%q, want the REST names %q/%q", stage, got.JobName, got.VertexName, p.JobName, p.VertexName)
					}
				}
				snap := topo.Snapshot()
				n := 0
				for _, j := range snap.Jobs {
					for _, v := range j.Vertices {
						n += len(v.Subtasks)
					}
				}
				if n != len(want) || snap.Unplaced != 0 || len(snap.Nodes) != 3 {
					t.Errorf("%s: snapshot has %d subtasks (want %d), %d unplaced, %d nodes", stage, n, len(want), snap.Unplaced, len(snap.Nodes))
				}
			}
			round()
			check("initial")

			tms := cl.TaskManagers()
			if err := cl.MoveTaskManagerTasks(tms[0].ID, tms[1].ID); err != nil {
				t.Fatal(err)
			}
			round()
			check("after move")
			moves := topo.Snapshot().Moves
			if len(moves) == 0 {
				t.Fatal("no moves recorded")
			}
			for _, m := range moves {
				if m.FromNode != tms[0].Node || m.ToNode != tms[1].Node {
					t.Errorf("move %+v, want %s → %s", m, tms[0].Node, tms[1].Node)
				}
			}
			if len(topo.OnNode(tms[0].Node)) != 0 {
				t.Errorf("%s still hosts subtasks after the move", tms[0].Node)
			}
			if _, err := json.Marshal(topo.Snapshot()); err != nil {
				t.Errorf("snapshot does not marshal: %v", err)
			}
		})
	}
}

const (
	jobID = "5e20cb6b0f357591171dfcca2eea09de"
	vSrc  = "cbc357ccb763df2852fee8c4fc7d55f2"
	vEnr  = "90bea66de1c231edf33913ecd54406c1"
	tmRaw = "10.0.1.23:36471-7b3c9e"
	tmSan = "10_0_1_23:36471_7b3c9e"
	tm2   = "10.0.1.24:41877-0c9d2f"
)

func restJob(tmOf func(vertex string, idx int) string) []topology.RESTJob {
	j := topology.RESTJob{ID: jobID, Name: "orders-enrichment", State: "RUNNING"}
	for _, v := range []struct{ id, name string }{{vSrc, "Source: orders-kafka"}, {vEnr, "Enrich"}} {
		rv := topology.RESTVertex{ID: v.id, Name: v.name, Parallelism: 2}
		for i := 0; i < 2; i++ {
			tm := tmOf(v.id, i)
			rv.Subtasks = append(rv.Subtasks, topology.RESTSubtask{Index: i, TaskManagerID: tm, Host: strings.Split(tm, ":")[0], Status: "RUNNING"})
		}
		j.Vertices = append(j.Vertices, rv)
	}
	return []topology.RESTJob{j}
}

func TestRESTOnlyThenAgentJoinsByIDAndHost(t *testing.T) {
	topo := topology.New(topology.Options{})
	t0 := time.Unix(1000, 0)
	jobs := restJob(func(string, int) string { return tmRaw })
	topo.ObserveREST(jobs, []topology.RESTTaskManager{{ID: tmRaw, RPCHost: "10.0.1.23"}}, t0)
	if s := topo.Snapshot(); s.Unplaced != 4 {
		t.Fatalf("before any agent report: %d unplaced, want 4", s.Unplaced)
	}
	p, ok := topo.Locate(topology.Key{JobID: jobID, VertexID: vEnr, Index: 1})
	if !ok || p.Node != "" || p.TaskManagerID != tmSan || p.Source != "rest" || p.VertexName != "Enrich" {
		t.Fatalf("REST-only placement %+v %v", p, ok)
	}

	// The agent knows the TaskManager only by host (its scrape failed, no resource id yet).
	topo.ObserveReport("node-a", &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{Host: "10.0.1.23", ScrapeError: "timeout"}}}, t0.Add(time.Second))
	p, _ = topo.Locate(topology.Key{JobID: jobID, VertexID: vEnr, Index: 1})
	if p.Node != "node-a" {
		t.Errorf("host fallback: node %q, want node-a", p.Node)
	}

	// Then by resource id (raw form from discovery: the topology sanitises it).
	topo.ObserveReport("node-a", &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: tmRaw, Host: "10_0_1_23",
		Subtasks: []*tmwardenv1.SubtaskMetrics{{JobId: jobID, VertexId: vEnr, SubtaskIndex: 1, VertexName: "Enrich"}}}}}, t0.Add(2*time.Second))
	p, _ = topo.Locate(topology.Key{JobID: jobID, VertexID: vEnr, Index: 1})
	if p.Node != "node-a" || p.Source != "rest+agent" {
		t.Errorf("joined placement %+v", p)
	}
	if n, ok := topo.NodeOf(tmRaw); !ok || n != "node-a" {
		t.Errorf("NodeOf = %q %v", n, ok)
	}
	if peers := topo.Peers(jobID, vEnr); len(peers) != 2 || peers[0].Index != 0 || peers[1].Index != 1 {
		t.Errorf("peers = %+v", peers)
	}
}

func TestAgentSeesMoveBeforeREST(t *testing.T) {
	topo := topology.New(topology.Options{})
	t0 := time.Unix(1000, 0)
	report := func(node, tm string, subs ...*tmwardenv1.SubtaskMetrics) *tmwardenv1.Report {
		return &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: promscrape.SanitizeLabelValue(tm), Subtasks: subs}}}
	}
	sub := func(attempt int32) *tmwardenv1.SubtaskMetrics {
		return &tmwardenv1.SubtaskMetrics{JobId: jobID, VertexId: vEnr, SubtaskIndex: 0, AttemptNumber: attempt}
	}
	topo.ObserveReport("node-a", report("node-a", tmRaw, sub(0)), t0)
	topo.ObserveReport("node-b", report("node-b", tm2), t0)
	topo.ObserveREST(restJob(func(string, int) string { return tmRaw }), nil, t0)

	// The task fails over to node-b: node-b's agent scrapes it before REST is polled again.
	topo.ObserveReport("node-a", report("node-a", tmRaw), t0.Add(5*time.Second))
	topo.ObserveReport("node-b", report("node-b", tm2, sub(1)), t0.Add(5*time.Second))
	key := topology.Key{JobID: jobID, VertexID: vEnr, Index: 0}
	p, _ := topo.Locate(key)
	if p.Node != "node-b" || p.Attempt != 1 || p.Source != "agent" {
		t.Errorf("after the agent saw the move: %+v", p)
	}
	// REST catches up and agrees.
	topo.ObserveREST(restJob(func(v string, i int) string {
		if v == vEnr && i == 0 {
			return tm2
		}
		return tmRaw
	}), nil, t0.Add(6*time.Second))
	p, _ = topo.Locate(key)
	if p.Node != "node-b" || p.Source != "rest+agent" {
		t.Errorf("after REST agreed: %+v", p)
	}
	// What a migration of node-b would touch: the moved subtask's job and node-b's TaskManager.
	if jobs, tms := topo.Residents("node-b"); !slices.Equal(jobs, []string{jobID}) || !slices.Equal(tms, []string{promscrape.SanitizeLabelValue(tm2)}) {
		t.Errorf("residents of node-b: jobs %v, TaskManagers %v", jobs, tms)
	}
	if jobs, tms := topo.Residents("node-c"); jobs != nil || tms != nil {
		t.Errorf("residents of an unknown node: %v %v", jobs, tms)
	}
	moves := topo.Snapshot().Moves
	if len(moves) != 1 || moves[0].FromNode != "node-a" || moves[0].ToNode != "node-b" {
		t.Errorf("moves = %+v, want exactly one node-a → node-b", moves)
	}
}

func TestStaleAndGone(t *testing.T) {
	topo := topology.New(topology.Options{StaleAfter: 30 * time.Second})
	t0 := time.Unix(1000, 0)
	topo.ObserveReport("node-a", &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: tmSan,
		Subtasks: []*tmwardenv1.SubtaskMetrics{{JobId: jobID, VertexId: vEnr, SubtaskIndex: 0}}}}}, t0)
	key := topology.Key{JobID: jobID, VertexID: vEnr, Index: 0}
	if _, ok := topo.Locate(key); !ok {
		t.Fatal("agent-only placement missing")
	}
	// Another node reports much later; node-a went silent, so its view is stale.
	topo.ObserveReport("node-b", &tmwardenv1.Report{}, t0.Add(time.Minute))
	if p, ok := topo.Locate(key); ok {
		t.Errorf("stale placement still served: %+v", p)
	}
	if s := topo.Snapshot(); len(s.Jobs) != 0 {
		t.Errorf("stale jobs in snapshot: %+v", s.Jobs)
	}
	// The job ends: REST no longer lists it.
	topo.ObserveREST(restJob(func(string, int) string { return tmRaw }), nil, t0.Add(61*time.Second))
	topo.ObserveREST(nil, nil, t0.Add(62*time.Second))
	if s := topo.Snapshot(); len(s.Jobs) != 0 {
		t.Errorf("ended job still in snapshot: %+v", s.Jobs)
	}
	topo.ForgetNode("node-b", t0.Add(63*time.Second))
	if s := topo.Snapshot(); len(s.Nodes) != 1 || s.Nodes[0].Name != "node-a" {
		t.Errorf("nodes after forgetting node-b: %+v", s.Nodes)
	}
}
