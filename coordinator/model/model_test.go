package model

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func report(seq uint64, at time.Time, tm string, subtasks ...*tmwardenv1.SubtaskMetrics) *tmwardenv1.Report {
	return &tmwardenv1.Report{
		Sequence: seq, CollectedAt: timestamppb.New(at), IntervalSeconds: 5,
		Host: &tmwardenv1.HostSignals{NumCpus: 8, Cpu: &tmwardenv1.CpuShares{User: 0.3, Idle: 0.6, Steal: 0.1}},
		Histograms: []*tmwardenv1.LatencyHistogram{
			{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: "/a", Count: 10, SumMicroseconds: 100, Buckets: []uint64{0, 0, 0, 10}},
			{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: "/b", Count: 10, SumMicroseconds: 300, Buckets: []uint64{0, 0, 0, 0, 10}},
		},
		TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: tm, Jvm: &tmwardenv1.JvmStats{GcTimeMsPerSecond: 12}, Subtasks: subtasks}},
	}
}

func sub(job, vertex string, idx int32, busy, in float64) *tmwardenv1.SubtaskMetrics {
	return &tmwardenv1.SubtaskMetrics{JobId: job, JobName: job, VertexId: vertex, VertexName: vertex, SubtaskIndex: idx, BusyMsPerSecond: busy, RecordsInPerSecond: in}
}

func TestLatestDigest(t *testing.T) {
	m := New(Config{Window: 3, Interval: 5 * time.Second}, topology.New(topology.Options{}))
	for i := range 5 {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		m.Observe("n1", at, report(uint64(i+1), at, "tm1"))
	}
	v := m.View()
	defer v.Release()
	if r := v.Node("n1").Replayed(); len(r) != 0 {
		t.Fatalf("reports that arrived on time are not replayed ones, got %d", len(r))
	}
	s, _ := v.Node("n1").Latest()
	if s.Seq != 5 || s.Host.NumCPUs != 8 || !s.Host.Valid || s.Host.Signals[SignalSteal] != 0.1 {
		t.Fatalf("latest digest wrong: %+v", s)
	}
	if s.Host.Signals[SignalRunqMean] != 20 {
		t.Fatalf("run-queue mean over both cgroups should be 400us/20 = 20us, got %g", s.Host.Signals[SignalRunqMean])
	}
	if s.Host.RunqP99US < 16 || s.Host.RunqP99US > 32 {
		t.Fatalf("p99 should fall in the [16,32) bucket, got %g", s.Host.RunqP99US)
	}
}

func TestSubtaskIndex(t *testing.T) {
	m := New(DefaultConfig(), topology.New(topology.Options{}))
	m.Observe("n1", t0, report(1, t0, "tm1", sub("j", "v", 1, 500, 1000), sub("j", "w", 0, 100, 10)))
	m.Observe("n2", t0, report(1, t0, "tm2", sub("j", "v", 0, 250, 1000)))
	v := m.View()
	vs := v.Vertices()
	if len(vs) != 2 || vs[0].Key.VertexID != "v" || vs[1].Key.VertexID != "w" {
		t.Fatalf("vertices not indexed in order: %+v", vs)
	}
	subs := vs[0].Subtasks
	if len(subs) != 2 || subs[0].Index != 0 || subs[0].Node != "n2" || subs[1].Node != "n1" || subs[1].TaskManager != "tm1" {
		t.Fatalf("subtasks not indexed by index with their node: %+v %+v", subs[0], subs[1])
	}
	if tpr, ok := subs[0].Metrics.TPR(50); !ok || tpr != 4000 {
		t.Fatalf("TPR = records in / busy seconds = 1000/0.25, got %g %v", tpr, ok)
	}
	if _, ok := vs[1].Subtasks[0].Metrics.TPR(150); ok {
		t.Fatal("a subtask busy 100ms/s is below a 150ms/s floor")
	}
	v.Release()

	// The subtask moves to n3 (a failover); a late report from n1 must not move it back.
	t1 := t0.Add(5 * time.Second)
	m.Observe("n3", t1, report(1, t1, "tm3", sub("j", "v", 1, 500, 1000)))
	m.Observe("n1", t1.Add(time.Second), report(2, t0.Add(-5*time.Second), "tm1", sub("j", "v", 1, 900, 1000)))
	v = m.View()
	defer v.Release()
	st := v.Vertices()[0].Subtasks[1]
	if st.Node != "n3" || st.Metrics.BusyMs != 500 {
		t.Fatalf("late report moved the subtask back: %+v", st)
	}
	if !v.Fresh(st, t1.Add(5*time.Second)) || v.Fresh(st, t1.Add(time.Minute)) {
		t.Fatal("freshness is two intervals")
	}
}

func TestReachabilityAndRestarts(t *testing.T) {
	m := New(Config{Interval: 5 * time.Second, StaleAfter: 3}, topology.New(topology.Options{}))
	m.Observe("n1", t0, report(7, t0, "tm1"))
	m.Observe("n1", t0.Add(5*time.Second), report(1, t0.Add(5*time.Second), "tm1"))
	v := m.View()
	defer v.Release()
	n := v.Node("n1")
	if n.InstanceStarts != 1 {
		t.Fatalf("a sequence going back is an agent restart, got %d", n.InstanceStarts)
	}
	if !v.Reachable("n1", t0.Add(20*time.Second)) || v.Reachable("n1", t0.Add(21*time.Second)) {
		t.Fatal("a node is reachable for StaleAfter intervals after its last report")
	}
	if v.Reachable("nope", t0) {
		t.Fatal("unknown nodes are not reachable")
	}
	if got := v.NodeNames(); len(got) != 1 || got[0] != "n1" || v.NodeCount() != 1 {
		t.Fatalf("node names: %v", got)
	}
}

func TestFirstRoundAfterStartIsNotValid(t *testing.T) {
	m := New(DefaultConfig(), topology.New(topology.Options{}))
	r := report(1, t0, "tm1")
	r.Host.Cpu = &tmwardenv1.CpuShares{}
	m.Observe("n1", t0, r)
	v := m.View()
	defer v.Release()
	s, _ := v.Node("n1").Latest()
	if s.Host.Valid {
		t.Fatal("a report with all-zero CPU shares carries no host rates")
	}
}

func TestPrune(t *testing.T) {
	m := New(DefaultConfig(), topology.New(topology.Options{}))
	m.Observe("old", t0, report(1, t0, "tm0", sub("gone", "v", 0, 100, 100)))
	t1 := t0.Add(time.Hour)
	m.Observe("n1", t1, report(1, t1, "tm1", sub("j", "v", 0, 100, 100)))
	m.Observe("n2", t1, report(1, t1, "tm2", sub("j", "v", 1, 100, 100)))
	m.Prune(t1.Add(-time.Minute))
	v := m.View()
	if got := v.NodeNames(); len(got) != 2 || got[0] != "n1" || v.NodeCount() != 2 {
		t.Fatalf("nodes after prune: %v", got)
	}
	vs := v.Vertices()
	if len(vs) != 1 || vs[0].Key.JobID != "j" || len(vs[0].Subtasks) != 2 {
		t.Fatalf("vertices after prune: %+v", vs)
	}
	for _, st := range vs[0].Subtasks {
		if n := v.Node(st.Node); n == nil || n.Index != st.NodeIndex || st.NodeIndex >= v.NodeCount() {
			t.Fatalf("node index of %+v not renumbered", st)
		}
	}
	v.Release()
	// Reports keep flowing after a prune.
	t2 := t1.Add(5 * time.Second)
	m.Observe("n1", t2, report(2, t2, "tm1", sub("j", "v", 0, 200, 100)))
	v = m.View()
	defer v.Release()
	if st := v.Vertices()[0].Subtasks[0]; st.Metrics.BusyMs != 200 || st.Node != "n1" {
		t.Fatalf("subtask not updated after prune: %+v", st)
	}
}

func TestOtherCPU(t *testing.T) {
	m := New(DefaultConfig(), topology.New(topology.Options{}))
	r := report(1, t0, "tm1")
	r.Host.Cpu = &tmwardenv1.CpuShares{User: 0.5, Idle: 0.5}
	r.TaskManagers[0].Cgroup = "/kubepods/tm1"
	r.Cgroups = []*tmwardenv1.CgroupStats{{Path: "/kubepods/tm1", CpuUsageCores: 1.5}, {Path: "/system.slice/backup", CpuUsageCores: 2}}
	m.Observe("n1", t0, r)
	r2 := report(1, t0, "tm2")
	r2.Host.Cpu = &tmwardenv1.CpuShares{User: 0.5, Idle: 0.5}
	r2.Cgroups = []*tmwardenv1.CgroupStats{{Path: "/elsewhere", CpuUsageCores: 3}}
	m.Observe("n2", t0, r2)
	v := m.View()
	defer v.Release()
	s, _ := v.Node("n1").Latest()
	if s.Host.TaskManagerCPUCores != 1.5 || s.Host.Signals[SignalOtherCPU] != 2.5 {
		t.Fatalf("8 CPUs half busy, 1.5 cores in the TaskManager: want 2.5 other cores, got %+v", s.Host)
	}
	s, _ = v.Node("n2").Latest()
	if s.Host.Signals[SignalOtherCPU] != 0 {
		t.Fatalf("no TaskManager cgroup matched: other CPU is unknown, not everything, got %g", s.Host.Signals[SignalOtherCPU])
	}
}

func TestLateReportDoesNotBecomeLatest(t *testing.T) {
	m := New(DefaultConfig(), topology.New(topology.Options{}))
	t1 := t0.Add(time.Minute)
	m.Observe("n1", t1, report(9, t1, "tm1"))
	m.Observe("n1", t1.Add(time.Second), report(3, t0, "tm1"))
	v := m.View()
	defer v.Release()
	s, ok := v.Node("n1").Latest()
	if !ok || s.Seq != 9 || !s.At.Equal(t1) {
		t.Fatalf("latest should stay the newest collected report, got seq %d at %s", s.Seq, s.At)
	}
	if r := v.Node("n1").Replayed(); len(r) != 1 || !r[0].At.Equal(t0) {
		t.Fatalf("the late report's host digest is kept as a replayed one, got %+v", r)
	}
}

// TestFrozenFigures: a busy subtask whose figures stop changing (a stopped metric reporter, or
// a perfectly steady pipeline) is frozen after FrozenAfter, and stays fresh: its node keeps
// reporting it. New figures unfreeze it. An idle subtask's unchanging zeros are never frozen.
func TestFrozenFigures(t *testing.T) {
	m := New(DefaultConfig(), topology.New(topology.Options{})) // 5 s reports, FrozenAfter 30 s
	state := func(at time.Time, vertex string) (fresh, frozen bool) {
		v := m.View()
		defer v.Release()
		for _, vx := range v.Vertices() {
			if vx.Key.VertexID == vertex {
				return v.Fresh(vx.Subtasks[0], at), v.Frozen(vx.Subtasks[0])
			}
		}
		t.Fatalf("no vertex %s", vertex)
		return false, false
	}
	at := t0
	for i := range 12 { // a minute of the same figures
		at = t0.Add(time.Duration(i) * 5 * time.Second)
		m.Observe("n1", at, report(uint64(i+1), at, "tm1", sub("j", "busy", 0, 500, 1000), sub("j", "idle", 0, 0, 0)))
		fresh, frozen := state(at, "busy")
		if want := at.Sub(t0) > 30*time.Second; !fresh || frozen != want {
			t.Fatalf("after %v of the same figures: fresh %v frozen %v, want fresh and frozen %v", at.Sub(t0), fresh, frozen, want)
		}
		if fresh, frozen := state(at, "idle"); !fresh || frozen {
			t.Fatalf("an idle subtask after %v: fresh %v frozen %v", at.Sub(t0), fresh, frozen)
		}
	}
	at = at.Add(5 * time.Second)
	m.Observe("n1", at, report(13, at, "tm1", sub("j", "busy", 0, 510, 1002), sub("j", "idle", 0, 0, 0)))
	if _, frozen := state(at, "busy"); frozen {
		t.Fatal("new figures did not unfreeze the subtask")
	}
}

// The model keeps a subtask's figures only from where the placement source (the topology) puts
// it: a TaskManager still showing an older attempt of a subtask that moved, and one the
// JobManager placed elsewhere since the agent's report, are not where the subtask runs.
func TestFiguresOnlyFromWhereTheTopologyPlacesTheSubtask(t *testing.T) {
	attempt := func(s *tmwardenv1.SubtaskMetrics, a int32) *tmwardenv1.SubtaskMetrics {
		s.AttemptNumber = a
		return s
	}
	t1, t2 := t0.Add(5*time.Second), t0.Add(10*time.Second)
	for _, c := range []struct {
		name string
		feed func(m *Model, topo *topology.Topology)
	}{
		{"an older attempt still shown on the node it left", func(m *Model, _ *topology.Topology) {
			m.Observe("n1", t1, report(2, t1, "tm1", attempt(sub("j", "v", 0, 500, 1000), 1)))
			m.Observe("n2", t2, report(2, t2, "tm2", attempt(sub("j", "v", 0, 900, 1000), 0)))
		}},
		{"the JobManager placed it elsewhere after the report", func(m *Model, topo *topology.Topology) {
			m.Observe("n1", t0, report(1, t0, "tm1", sub("j", "v", 0, 500, 1000)))
			topo.ObserveREST([]topology.RESTJob{{ID: "j", Vertices: []topology.RESTVertex{{ID: "v", Parallelism: 1,
				Subtasks: []topology.RESTSubtask{{Index: 0, TaskManagerID: "tm1"}}}}}}, nil, t1)
			// n2 still shows the subtask, but the JobManager, asked at the same moment, says tm1.
			m.Observe("n2", t1, report(2, t1, "tm2", sub("j", "v", 0, 900, 1000)))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			topo := topology.New(topology.Options{})
			m := New(DefaultConfig(), topo)
			c.feed(m, topo)
			v := m.View()
			defer v.Release()
			st := v.Vertices()[0].Subtasks[0]
			if st.Node != "n1" || st.TaskManager != "tm1" || st.Metrics.BusyMs != 500 {
				t.Fatalf("subtask is on %s/%s with busy %g; want n1/tm1 with busy 500 (the figures from where it runs)", st.Node, st.TaskManager, st.Metrics.BusyMs)
			}
			if p, _ := topo.Locate(topology.Key{JobID: "j", VertexID: "v"}); p.Node != st.Node {
				t.Fatalf("the topology places it on %q, the model on %q", p.Node, st.Node)
			}
		})
	}
}
