package detect

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cluster is a hand-built cluster: 8 nodes with 2 TaskManagers each, three vertices of
// parallelism 16, subtask i on node i/2 and TaskManager i%2.
type cluster struct {
	m     *model.Model
	tick  int
	slow  map[string]float64 // TaskManager id -> TPR divisor
	input map[string]float64 // TaskManager id -> input multiplier (skew)
	hot   map[string]float64 // TaskManager id -> per-record cost multiplier of its vertex A subtask
	gc    map[string]float64 // TaskManager id -> GC ms/s
	runq  map[string]float64 // node -> mean run-queue latency
	steal map[string]float64
	gone  map[string]bool
	// edit changes a node's report before the model sees it (cgroups, TCP).
	edit map[string]func(*tmwardenv1.Report)
	// cut holds a node's reports back (its agent cannot reach the coordinator); they are
	// delivered, oldest first, before its first report once it is no longer cut.
	cut  map[string]bool
	held map[string][]*tmwardenv1.Report
	// watch, when set, sees every round eval returns.
	watch func(Round)
}

func newCluster() *cluster {
	return &cluster{m: model.New(model.DefaultConfig(), topology.New(topology.Options{})), slow: map[string]float64{}, input: map[string]float64{}, hot: map[string]float64{},
		gc: map[string]float64{}, runq: map[string]float64{}, steal: map[string]float64{}, gone: map[string]bool{},
		edit: map[string]func(*tmwardenv1.Report){}, cut: map[string]bool{}, held: map[string][]*tmwardenv1.Report{}}
}

func node(i int) string    { return fmt.Sprintf("node-%d", i) }
func tmOf(i, t int) string { return fmt.Sprintf("node-%d-tm-%d", i, t) }

func (c *cluster) step() time.Time {
	c.tick++
	at := t0.Add(time.Duration(c.tick) * 5 * time.Second)
	for n := range 8 {
		if c.gone[node(n)] {
			continue
		}
		runq := 20.0
		if v, ok := c.runq[node(n)]; ok {
			runq = v
		}
		r := &tmwardenv1.Report{Sequence: uint64(c.tick), CollectedAt: timestamppb.New(at), IntervalSeconds: 5,
			Host: &tmwardenv1.HostSignals{NumCpus: 16, Cpu: &tmwardenv1.CpuShares{User: 0.3, Idle: 0.7 - c.steal[node(n)], Steal: c.steal[node(n)], Iowait: 0.003},
				Tcp: &tmwardenv1.TcpStats{RetransmitsPerSecond: 1}, Memory: &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: 30 << 30}},
			Histograms: []*tmwardenv1.LatencyHistogram{{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: "/tm", Count: 1000, SumMicroseconds: 1000 * runq, Buckets: make([]uint64, 20)}},
		}
		for t := range 2 {
			id := tmOf(n, t)
			tm := &tmwardenv1.TaskManager{ResourceId: id, Jvm: &tmwardenv1.JvmStats{GcTimeMsPerSecond: 8 + c.gc[id]}}
			for _, v := range []string{"A", "B", "C"} {
				idx := n*2 + t
				div, mul := 1.0, 1.0
				if d, ok := c.slow[id]; ok {
					div = d
				}
				if x, ok := c.input[id]; ok && v == "A" {
					mul = x
				}
				if x, ok := c.hot[id]; ok && v == "A" {
					div *= x
				}
				// A little spread between subtasks, as real ones have.
				jit := 1 + 0.03*float64((idx*7+c.tick)%5-2)
				in := 4000 * mul
				busy := min(1000, 400*mul*div*jit)
				if busy == 1000 {
					in = 1000 * 10000 / div / jit / 1000
				}
				tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{JobId: "job", JobName: "job", VertexId: v, VertexName: v,
					SubtaskIndex: int32(idx), BusyMsPerSecond: busy, IdleMsPerSecond: 1000 - busy, RecordsInPerSecond: in, RecordsOutPerSecond: in})
			}
			r.TaskManagers = append(r.TaskManagers, tm)
		}
		if f := c.edit[node(n)]; f != nil {
			f(r)
		}
		if c.cut[node(n)] {
			c.held[node(n)] = append(c.held[node(n)], r)
			continue
		}
		for _, h := range c.held[node(n)] {
			c.m.Observe(node(n), at, h)
		}
		delete(c.held, node(n))
		c.m.Observe(node(n), at, r)
	}
	return at
}

func (c *cluster) eval(d Detector) Round {
	at := c.step()
	v := c.m.View()
	defer v.Release()
	r := d.Evaluate(v, at)
	if c.watch != nil {
		c.watch(r)
	}
	return r
}

// warm runs the clean windows in which the detector learns every node's speed.
func (c *cluster) warm(d Detector) {
	for range DefaultPeerConfig().LearnWindows {
		c.eval(d)
	}
}

func verdict(r Round, node, tm string) (Verdict, bool) {
	for _, v := range r.Verdicts {
		if v.Node == node && v.TaskManager == tm {
			return v, true
		}
	}
	return Verdict{}, false
}

// Node-wide stragglers and a clear host anomaly in the same window are two independent
// witnesses: the node is slow at once. Either witness alone is not enough.
func TestPeerDecisiveWindow(t *testing.T) {
	cases := []struct {
		name       string
		slow       bool
		runq, stl  float64
		wantStatus Status
	}{
		{"stragglers and a clear CPU anomaly", true, 4000, 0.2, StatusSlow},
		{"stragglers and a mild CPU anomaly", true, 400, 0.1, StatusSuspect},
		{"a clear CPU anomaly and no stragglers", false, 4000, 0.2, StatusSuspect},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			p := NewPeer(DefaultPeerConfig())
			for range 3 {
				c.eval(p)
			}
			if tc.slow {
				c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 2, 2
			}
			c.runq[node(3)], c.steal[node(3)] = tc.runq, tc.stl
			r := c.eval(p)
			v, _ := verdict(r, node(3), "")
			if v.Status != tc.wantStatus {
				t.Fatalf("after one window want %s, got %+v", tc.wantStatus, v)
			}
			if v.Status == StatusSlow && (v.Cause != CauseSteal || !v.Since.Equal(r.At)) {
				t.Fatalf("a decisive verdict names its cause and starts at its window: %+v", v)
			}
		})
	}
}

func TestPeerSlowNodeWithHostCorroboration(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	for range 3 {
		if r := c.eval(p); len(r.Slow()) != 0 {
			t.Fatalf("healthy cluster flagged: %+v", r.Slow())
		}
	}
	// A mild host anomaly: run-queue latency 20x the median and a little steal, each only one
	// or two floors above the median.
	c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 2, 2
	c.runq[node(3)] = 400
	c.steal[node(3)] = 0.1
	r := c.eval(p)
	if v, _ := verdict(r, node(3), ""); v.Status != StatusSuspect {
		t.Fatalf("one window of mild evidence makes a suspect, got %+v", v)
	}
	firstAt := r.At
	r = c.eval(p)
	v, _ := verdict(r, node(3), "")
	if v.Status != StatusSlow || v.Cause != CauseSteal {
		t.Fatalf("two windows of app and host evidence make a slow node with a steal cause, got %+v", v)
	}
	var subs, host int
	for _, e := range v.Evidence {
		switch e.Kind {
		case "subtask":
			subs++
			if e.Slowdown < 1.8 || e.Slowdown > 2.2 || e.PeerMedianTPR < 9000 {
				t.Errorf("subtask evidence should show about 2x slower than peers: %+v", e)
			}
			if !e.Since.Equal(firstAt) {
				t.Errorf("subtask evidence should say it has been slow since %s, got %s", firstAt, e.Since)
			}
		case "host":
			host++
			if e.Signal == "runqueue_mean_us" && (e.Value != 400 || e.PeerMedian != 20) {
				t.Errorf("host evidence wrong: %+v", e)
			}
		}
	}
	if subs != 6 || host == 0 {
		t.Fatalf("want 6 subtask and some host evidence, got %d and %d", subs, host)
	}
	if len(r.Slow()) != 1 || r.Fleet.Anomalous != 1 || r.Fleet.Reporting != 8 {
		t.Fatalf("exactly one slow node, the only anomalous one of 8 reporting, got %+v fleet %+v", r.Slow(), r.Fleet)
	}
	// Recovery: slow until ClearWindows clean windows.
	delete(c.slow, tmOf(3, 0))
	delete(c.slow, tmOf(3, 1))
	delete(c.runq, node(3))
	delete(c.steal, node(3))
	for i := range DefaultPeerConfig().ClearWindows {
		r = c.eval(p)
		v, _ := verdict(r, node(3), "")
		if i < DefaultPeerConfig().ClearWindows-1 && v.Status != StatusSlow {
			t.Fatalf("cleared too early at clean window %d", i+1)
		}
	}
	if _, ok := verdict(r, node(3), ""); ok {
		t.Fatal("node still listed after clearing")
	}
}

func TestPeerAppOnlyNeedsMoreWindows(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	c.slow[tmOf(5, 0)], c.slow[tmOf(5, 1)] = 1.8, 1.8
	for i := 1; i <= DefaultPeerConfig().WeakWindows; i++ {
		v, _ := verdict(c.eval(p), node(5), "")
		if slow := v.Status == StatusSlow; slow != (i == DefaultPeerConfig().WeakWindows) {
			t.Fatalf("window %d: status %s", i, v.Status)
		}
	}
}

func TestPeerSkewIsNotSlowness(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	f := NewFlinkSlowTask(1.5, 3)
	// Node 2's subtasks of vertex A get twice the input: busier, same rate per busy second.
	c.input[tmOf(2, 0)], c.input[tmOf(2, 1)] = 2, 2
	for range 10 {
		at := c.step()
		v := c.m.View()
		for _, d := range []Detector{p, f} {
			if r := d.Evaluate(v, at); len(r.Slow()) != 0 {
				t.Fatalf("%s flagged input skew as a slow node: %+v", d.Name(), r.Slow())
			}
		}
		v.Release()
	}
}

func TestPeerGCStormIsATaskManagerProblem(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.eval(p)
	c.slow[tmOf(6, 1)] = 2.5
	c.gc[tmOf(6, 1)] = 600
	var r Round
	for range 3 {
		r = c.eval(p)
	}
	v, ok := verdict(r, node(6), tmOf(6, 1))
	if !ok || v.Status != StatusSlow || v.Cause != CauseGC {
		t.Fatalf("want the TaskManager slow with a GC cause, got %+v", r.Verdicts)
	}
	if nv, ok := verdict(r, node(6), ""); ok && nv.Status == StatusSlow {
		t.Fatalf("the node must not be blamed for one JVM: %+v", nv)
	}
	found := false
	for _, e := range v.Evidence {
		if e.Kind == "taskmanager" && e.Signal == "gc_time_ms_per_s" && e.Value == 608 {
			found = true
		}
		if e.Kind == "subtask" && e.TaskManager != tmOf(6, 1) {
			t.Errorf("evidence from another TaskManager: %+v", e)
		}
	}
	if !found {
		t.Errorf("GC evidence missing: %+v", v.Evidence)
	}
}

func TestPeerHostOnly(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	// Mild: steal a little over the floor, subtasks as fast as their peers: only a suspect.
	c.steal[node(1)] = 0.08
	// Severe (3 floors over its peers): slow when held long enough, even with no subtask
	// feeling it yet.
	c.steal[node(2)] = 0.15
	// Far out (6 floors, above the decisive score): slow when held for the strong windows.
	c.steal[node(3)] = 0.3
	cfg := DefaultPeerConfig()
	for i := 1; i <= cfg.HostOnlyWindows+2; i++ {
		r := c.eval(p)
		v1, _ := verdict(r, node(1), "")
		if v1.Status != StatusSuspect || v1.Cause != CauseSteal {
			t.Fatalf("window %d: a mild host anomaly is a CPU suspect, got %+v", i, v1)
		}
		v2, _ := verdict(r, node(2), "")
		if want := i >= cfg.HostOnlyWindows; (v2.Status == StatusSlow) != want {
			t.Fatalf("window %d: severe host-only anomaly slow=%v, want %v", i, v2.Status == StatusSlow, want)
		}
		v3, _ := verdict(r, node(3), "")
		if want := i >= cfg.StrongWindows; (v3.Status == StatusSlow) != want {
			t.Fatalf("window %d: host-only anomaly at the decisive score slow=%v, want %v", i, v3.Status == StatusSlow, want)
		}
	}
}

func TestPeerFlickeringEvidenceAddsUp(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	slowOn := []bool{true, true, false, true, true}
	var v Verdict
	for _, on := range slowOn {
		if on {
			c.slow[tmOf(5, 0)], c.slow[tmOf(5, 1)] = 1.8, 1.8
		} else {
			clear(c.slow)
		}
		v, _ = verdict(c.eval(p), node(5), "")
	}
	if v.Status != StatusSlow {
		t.Fatalf("4 of 5 windows of app evidence should make the node slow, got %+v", v.Status)
	}
}

// TestFleetCounts: detection keeps no circuit breaker, it counts what the decision layer's
// breaker judges: agents late, then unreachable, and nodes anomalous at once.
func TestFleetCounts(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	if r := c.eval(p); r.Fleet != (Fleet{Reporting: 8}) {
		t.Fatalf("a calm cluster of 8: %+v", r.Fleet)
	}
	for _, n := range []int{0, 1, 2} {
		c.gone[node(n)] = true
	}
	// One missed report is within an interval's slack; two make the agents late; past
	// StaleAfter they are unreachable.
	if r := c.eval(p); r.Fleet.Late != 0 || r.Fleet.Unreachable != 0 {
		t.Fatalf("one missed report is neither late nor unreachable: %+v", r.Fleet)
	}
	if r := c.eval(p); r.Fleet.Late != 3 || r.Fleet.Unreachable != 0 || r.Fleet.Reporting != 8 {
		t.Fatalf("three of eight agents late: %+v", r.Fleet)
	}
	c.eval(p)
	r := c.eval(p)
	if r.Fleet.Unreachable != 3 || r.Fleet.Late != 0 || r.Fleet.Reporting != 5 {
		t.Fatalf("three of eight agents unreachable: %+v", r.Fleet)
	}
	if v, _ := verdict(r, node(0), ""); v.Status != StatusUnreachable {
		t.Fatalf("a vanished node is unreachable, got %+v", v)
	}

	c = newCluster()
	p = NewPeer(DefaultPeerConfig())
	c.eval(p)
	for _, n := range []int{1, 4, 7} {
		c.slow[tmOf(n, 0)], c.slow[tmOf(n, 1)] = 2, 2
	}
	if r := c.eval(p); r.Fleet.Anomalous != 3 || r.Fleet.Reporting != 8 {
		t.Fatalf("three of eight nodes anomalous at once: %+v", r.Fleet)
	}
}

func TestBaselines(t *testing.T) {
	c := newCluster()
	f := NewFlinkSlowTask(1.5, 3)
	h := NewHostThreshold(DefaultHostThresholds())
	c.slow[tmOf(4, 0)] = 2
	c.steal[node(2)] = 0.2
	var fr, hr Round
	for i := 1; i <= 3; i++ {
		at := c.step()
		v := c.m.View()
		fr, hr = f.Evaluate(v, at), h.Evaluate(v, at)
		v.Release()
		if i == 2 {
			if len(fr.Slow()) != 0 {
				t.Fatal("flink-slow-task needs 3 windows")
			}
			if s := hr.Slow(); len(s) != 1 || s[0].Node != node(2) || s[0].Cause != CauseCPU {
				t.Fatalf("host-threshold should flag the stealing node after 2 windows: %+v", s)
			}
		}
	}
	if s := fr.Slow(); len(s) != 1 || s[0].Node != node(4) || len(s[0].Evidence) != 3 {
		t.Fatalf("flink-slow-task should mark node-4 through its 3 slow subtasks: %+v", s)
	}
}

func TestRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Registry {
		d := New(r.Name)
		if d == nil || d.Name() != r.Name || seen[r.Name] {
			t.Fatalf("registry row %q broken", r.Name)
		}
		seen[r.Name] = true
	}
	if New("nope") != nil {
		t.Fatal("unknown detector built")
	}
}

func finding(r Round, node, kind string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Node == node && f.Kind == kind {
			return f, true
		}
	}
	return Finding{}, false
}

// A machine that has been 1.4x slower than its peers since it joined, with nothing on its
// host, is slower hardware: a finding, never a slow verdict. When the same machine then
// becomes slower than its own speed, it is caught as quickly as any other node.
func TestPeerSlowerHardwareIsNotASlowNode(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.slow[tmOf(2, 0)], c.slow[tmOf(2, 1)] = 1.4, 1.4
	var r Round
	for i := range 40 {
		r = c.eval(p)
		if v, ok := verdict(r, node(2), ""); ok && v.Status == StatusSlow {
			t.Fatalf("window %d: a slower machine was judged slow: %+v", i+1, v)
		}
	}
	f, ok := finding(r, node(2), FindingSlowerHardware)
	if !ok || f.Speed > 0.8 || f.Speed < 0.65 {
		t.Fatalf("want a slower-hardware finding near speed 0.71, got %+v (all: %+v)", f, r.Findings)
	}
	if _, ok := finding(r, node(3), FindingSlowerHardware); ok {
		t.Fatal("a normal node reported as slower hardware")
	}
	// Now it degrades to 1.4 × 1.8 with no host signal: app evidence against its own speed.
	c.slow[tmOf(2, 0)], c.slow[tmOf(2, 1)] = 1.4*1.8, 1.4*1.8
	for i := 1; i <= DefaultPeerConfig().WeakWindows; i++ {
		r = c.eval(p)
	}
	if v, _ := verdict(r, node(2), ""); v.Status != StatusSlow {
		t.Fatalf("a slower machine that became slower than itself must be caught in %d windows, got %+v", DefaultPeerConfig().WeakWindows, v)
	}
}

// A subtask slowed by something of its own — a hot key's costlier records, a sink writing to a
// slow broker — is no property of the machine it runs on, however long it lasts: node 2 runs the
// hot subtask of vertex A in both its TaskManagers (1.8x the cost per record, a third of its
// subtasks) for half an hour. It is not learned as the node's speed (no slower-hardware finding)
// and the node is not judged slow; the node's other subtasks still set its speed, so when the
// whole node then slows it is caught.
func TestPeerSubtaskSlowdownIsNoMachineSpeed(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	c.hot[tmOf(2, 0)], c.hot[tmOf(2, 1)] = 1.8, 1.8
	for i := range 360 {
		r := c.eval(p)
		if f, ok := finding(r, node(2), FindingSlowerHardware); ok {
			t.Fatalf("window %d: a node running hot-key subtasks reported as slower hardware: %+v", i+1, f)
		}
		if v, ok := verdict(r, node(2), ""); ok && v.Status == StatusSlow {
			t.Fatalf("window %d: a node running hot-key subtasks judged slow: %+v", i+1, v)
		}
	}
	if sp := p.speed[node(2)].rel; sp < 0.95 {
		t.Fatalf("node 2 learned speed %.3f from its hot-key subtasks, want about 1", sp)
	}
	c.slow[tmOf(2, 0)], c.slow[tmOf(2, 1)] = 1.8, 1.8
	var r Round
	for range DefaultPeerConfig().WeakWindows {
		r = c.eval(p)
	}
	if v, _ := verdict(r, node(2), ""); v.Status != StatusSlow {
		t.Fatalf("the node slowed 1.8x must be caught in %d windows, got %+v", DefaultPeerConfig().WeakWindows, v)
	}
}

// Node 2 joins at its peers' speed; later the work placed on it becomes a fifth costlier (every
// subtask 1.22x slower: under the straggler margin, so it is never judged slow) for an hour,
// with nothing on its host. Its learned speed follows and drops below the slower-hardware cut,
// but the machine has not changed since it joined: no slower-hardware finding. Node 3, slower
// from the start, is reported.
func TestPeerSpeedDriftIsNoSlowerHardware(t *testing.T) {
	c := newCluster()
	c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 1.25, 1.25
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	c.slow[tmOf(2, 0)], c.slow[tmOf(2, 1)] = 1.22, 1.22
	var r Round
	for i := range 720 {
		r = c.eval(p)
		if f, ok := finding(r, node(2), FindingSlowerHardware); ok {
			t.Fatalf("window %d: a node that slowed after joining reported as slower hardware (learned %.3f): %+v", i+1, p.speed[node(2)].rel, f)
		}
	}
	if sp := p.speed[node(2)].rel; sp*DefaultPeerConfig().SlowerHardware >= 1 {
		t.Fatalf("node 2's learned speed %.3f did not drift below the cut: the test shows nothing", sp)
	}
	if _, ok := finding(r, node(3), FindingSlowerHardware); !ok {
		t.Fatalf("node 3, 1.25x slower since it joined, not reported as slower hardware")
	}
}

// Node 5's Flink metrics go stale (its reports repeat the same figures) and later its peers'
// load moves on, their rates rising 1.6x: figures that have not moved for FrozenAfter say
// nothing about now, and the node is not judged slow on them. They still count in their
// vertices' medians.
func TestPeerStaleFiguresAreNoSlowness(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	var frozen []*tmwardenv1.TaskManager
	c.edit[node(5)] = func(r *tmwardenv1.Report) {
		if frozen == nil {
			for _, tm := range r.TaskManagers {
				frozen = append(frozen, proto.Clone(tm).(*tmwardenv1.TaskManager))
			}
		}
		r.TaskManagers = nil
		for _, tm := range frozen {
			r.TaskManagers = append(r.TaskManagers, proto.Clone(tm).(*tmwardenv1.TaskManager))
		}
	}
	for range 8 {
		c.eval(p)
	}
	for n := range 8 {
		if n != 5 {
			c.slow[tmOf(n, 0)], c.slow[tmOf(n, 1)] = 1/1.6, 1/1.6
		}
	}
	for i := range 10 {
		if v, ok := verdict(c.eval(p), node(5), ""); ok && v.Status == StatusSlow {
			t.Fatalf("window %d: a node judged slow on figures frozen for %s: %+v", i+1, model.DefaultConfig().FrozenAfter, v)
		}
	}
}

// Nodes of one hardware class start from their class's learned speed: a new node of the slow
// class is not flagged while it learns, one of the fast class that is slow is.
func TestPeerClassPeers(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		cls := "m5.xlarge"
		if n < 4 {
			cls = "m4.xlarge"
			c.slow[tmOf(n, 0)], c.slow[tmOf(n, 1)] = 1.4, 1.4
		}
		c.m.Describe(node(n), t0, model.NodeInfo{Labels: map[string]string{"instance_type": cls}, NumCPUs: 16})
	}
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	// Forget what node 1 learned: it is new, and compared with its class at once.
	delete(p.speed, node(1))
	for range 5 {
		if v, ok := verdict(c.eval(p), node(1), ""); ok && v.Status == StatusSlow {
			t.Fatalf("a new node of the slower class judged slow: %+v", v)
		}
	}
}

// A node that runs no Flink work cannot be a slow Flink node: its host trouble is a finding.
func TestPeerNodeWithoutWork(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	at := c.step()
	// node-9 runs no TaskManager and retransmits heavily.
	for range 2 {
		r := &tmwardenv1.Report{Sequence: 1, CollectedAt: timestamppb.New(at), IntervalSeconds: 5,
			Host: &tmwardenv1.HostSignals{NumCpus: 16, Cpu: &tmwardenv1.CpuShares{User: 0.9, Idle: 0.1}, Tcp: &tmwardenv1.TcpStats{RetransmitsPerSecond: 500, OutSegmentsPerSecond: 1000}}}
		c.m.Observe("node-9", at, r)
	}
	v := c.m.View()
	r := p.Evaluate(v, at)
	v.Release()
	if vd, ok := verdict(r, "node-9", ""); ok {
		t.Fatalf("a node without Flink work got a verdict: %+v", vd)
	}
	if f, ok := finding(r, "node-9", FindingHostOnly); !ok || f.Cause != CauseNetwork {
		t.Fatalf("want a host-only network finding, got %+v", r.Findings)
	}
}

// A weak GC storm in the only JVM of a node slows its subtasks; the JVM is blamed, not the node.
// A weak GC storm: one JVM spending 15% of its time in GC against its peers' 1%, its subtasks
// 1.18x slower — under the straggler margin, so no rate shows it — is that TaskManager's
// slowdown, GC time being processing time lost outright; the node is not blamed.
func TestPeerWeakGCStormBelowTheStragglerMargin(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	c.gc[tmOf(4, 0)] = 150
	c.slow[tmOf(4, 0)] = 1 / (1 - 0.15)
	var r Round
	for range DefaultPeerConfig().StrongWindows {
		r = c.eval(p)
	}
	if nv, ok := verdict(r, node(4), ""); ok && nv.Status == StatusSlow {
		t.Fatalf("the node blamed for one JVM's GC: %+v", nv)
	}
	if v, ok := verdict(r, node(4), tmOf(4, 0)); !ok || v.Status != StatusSlow || v.Cause != CauseGC {
		t.Fatalf("want the JVM slow with a GC cause after %d windows, got %+v", DefaultPeerConfig().StrongWindows, r.Verdicts)
	}
}

func TestPeerWeakGCStormInTheOnlyJVM(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	// Both TaskManagers of node 4 stand for "the node's JVMs"; only tm-0 has work slowed by GC,
	// tm-1's subtasks are as slow (one JVM per node: its stragglers are all there are).
	c.slow[tmOf(4, 0)] = 1.6
	c.gc[tmOf(4, 0)] = 120
	var r Round
	for range DefaultPeerConfig().WeakWindows + 1 {
		r = c.eval(p)
	}
	if nv, ok := verdict(r, node(4), ""); ok && nv.Status == StatusSlow {
		t.Fatalf("the node blamed for one JVM's GC: %+v", nv)
	}
	if v, ok := verdict(r, node(4), tmOf(4, 0)); !ok || v.Status != StatusSlow || v.Cause != CauseGC {
		t.Fatalf("want the JVM slow with a GC cause, got %+v", r.Verdicts)
	}
}

// TestPeerGCStormHoldingFewerThanHalfOfTheOnlyJVMsSubtasks: a node runs one JVM, far out on GC
// time; the pauses leave three of its seven subtasks straggling this window (pauses stall tasks
// unevenly). That is enough of the node's subtasks for the node to look slow, but the JVM holds
// every straggler: the JVM is blamed, not the node.
func TestPeerGCStormHoldingFewerThanHalfOfTheOnlyJVMsSubtasks(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	oneJVM := func(r *tmwardenv1.Report) {
		tm0, tm1 := r.TaskManagers[0], r.TaskManagers[1]
		extra := proto.Clone(tm1.Subtasks[0]).(*tmwardenv1.SubtaskMetrics)
		extra.SubtaskIndex = 99
		tm0.Subtasks = append(append(tm0.Subtasks, tm1.Subtasks...), extra)
		r.TaskManagers = r.TaskManagers[:1]
	}
	c.edit[node(4)] = oneJVM
	c.warm(p)
	c.slow[tmOf(4, 0)] = 1.6 // its own three subtasks (A, B, C) straggle; the other four do not
	c.gc[tmOf(4, 0)] = 250   // a quarter of its time in GC: far out, not merely elevated
	var r Round
	for range DefaultPeerConfig().WeakWindows + 1 {
		r = c.eval(p)
		if nv, ok := verdict(r, node(4), ""); ok && nv.Status != StatusHealthy {
			t.Fatalf("the node judged %s for its one JVM's GC: %+v", nv.Status, nv.Evidence)
		}
	}
	if v, ok := verdict(r, node(4), tmOf(4, 0)); !ok || v.Status != StatusSlow || v.Cause != CauseGC {
		t.Fatalf("want the JVM slow with a GC cause, got %+v", r.Verdicts)
	}
}

// withTMCgroup gives every node's TaskManagers the cgroup its run-queue histogram is for, so
// the TaskManagers' own wait is told apart from the neighbours'.
func withTMCgroup(c *cluster, n int, extra func(*tmwardenv1.Report)) {
	c.edit[node(n)] = func(r *tmwardenv1.Report) {
		for _, tm := range r.TaskManagers {
			tm.Cgroup = "/tm"
		}
		r.Host.Tcp.OutSegmentsPerSecond = 1000
		r.Cgroups = append(r.Cgroups, &tmwardenv1.CgroupStats{Path: "/tm", TaskManager: true, CpuUsageCores: 4},
			&tmwardenv1.CgroupStats{Path: "/system.slice/sshd.service", SystemdUnit: "sshd.service", CpuUsageCores: 0.05})
		if extra != nil {
			extra(r)
		}
	}
}

// TestPeerCPUStarvationExplainsRetransmits: a neighbour cgroup takes the CPU on a machine
// already full (CPU used outside the TaskManagers barely rises), the TaskManagers' threads
// wait, and TCP retransmits because the kernel's packet work waits too. The cause is CPU, the
// neighbour is named, and the retransmits are not called network.
func TestPeerCPUStarvationExplainsRetransmits(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		withTMCgroup(c, n, nil)
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	c.runq[node(3)] = 4000
	c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 4, 4
	withTMCgroup(c, 3, func(r *tmwardenv1.Report) {
		r.Cgroups = append(r.Cgroups, &tmwardenv1.CgroupStats{Path: "/noisy", CpuUsageCores: 1.6})
		r.Host.Tcp.RetransmitsPerSecond = 150 // a ratio of 0.15 against the peers' 0.001
	})
	var v Verdict
	for range 3 {
		r := c.eval(d)
		v, _ = verdict(r, node(3), "")
	}
	if v.Status != StatusSlow || v.Cause != CauseCPU {
		t.Fatalf("node-3 = %s / %s, want slow / cpu_contention: %+v", v.Status, v.Cause, v.Evidence)
	}
	if v.Culprit == nil || v.Culprit.Cgroup != "/noisy" || v.Culprit.CPUCores != 1.6 {
		t.Fatalf("culprit = %+v, want /noisy at 1.6 cores", v.Culprit)
	}
}

// TestPeerNeighbourOnASaturatedNode: across a busy fleet every node's run queue is long, so
// the contended node's is not far above the median; but it has no idle CPU left and one
// neighbour uses far more than any peer's: the neighbour's CPU comes out of the TaskManagers'
// share. The cause is CPU contention and the neighbour is named; on a node with idle CPU the
// same neighbour alone, the TaskManagers' threads waiting no longer than the peers' (within
// the run queue's floor), is not contention. (Threads waiting longer than every peer's beside
// a neighbour are: TestPeerCPUTakenUnderAFleetWideWaitIsContention.)
func TestPeerNeighbourOnASaturatedNode(t *testing.T) {
	for _, tc := range []struct {
		name      string
		idle      float64
		runq      float64
		contended bool
	}{{"saturated", 0.02, 3000, true}, {"idle CPU left, nothing waits longer", 0.4, 2200, false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			for n := range 8 {
				withTMCgroup(c, n, nil)
				c.runq[node(n)] = 2000 // a busy fleet
			}
			d := NewPeer(DefaultPeerConfig())
			c.warm(d)
			c.runq[node(3)] = tc.runq // at most 1.5 times the median, not the 4 times it takes alone
			c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 1.8, 1.8
			withTMCgroup(c, 3, func(r *tmwardenv1.Report) {
				// The TaskManagers use what the neighbour (2.2 cores) and a little else leave:
				// CPU used outside them is 1.5 cores, not far above the peers' 0.8.
				r.Host.Cpu.User, r.Host.Cpu.Idle = 1-tc.idle, tc.idle
				r.Cgroups[0].CpuUsageCores = (1-tc.idle)*16 - 1.5
				r.Cgroups = append(r.Cgroups, &tmwardenv1.CgroupStats{Path: "/noisy", CpuUsageCores: 2.2})
			})
			var v Verdict
			for range 4 {
				v, _ = verdict(c.eval(d), node(3), "")
			}
			if !tc.contended {
				if v.Cause == CauseCPU || v.Culprit != nil {
					t.Fatalf("a busy neighbour on a node with idle CPU called contention: %s / %s, culprit %+v", v.Status, v.Cause, v.Culprit)
				}
				return
			}
			if v.Status != StatusSlow || v.Cause != CauseCPU {
				t.Fatalf("node-3 = %s / %s, want slow / cpu_contention: %+v", v.Status, v.Cause, v.Evidence)
			}
			if v.Culprit == nil || v.Culprit.Cgroup != "/noisy" {
				t.Fatalf("culprit = %+v, want /noisy", v.Culprit)
			}
		})
	}
}

// TestPeerQuotaIsThrottling: the TaskManagers' own CFS quota holds them back while no
// neighbour takes more: the cause is throttling, with no culprit.
func TestPeerQuotaIsThrottling(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		withTMCgroup(c, n, nil)
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	c.runq[node(2)] = 3000
	c.slow[tmOf(2, 0)], c.slow[tmOf(2, 1)] = 5, 5
	withTMCgroup(c, 2, func(r *tmwardenv1.Report) {
		r.Cgroups[0].ThrottledShare, r.Cgroups[0].CpuUsageCores = 0.9, 1
	})
	var v Verdict
	for range 3 {
		v, _ = verdict(c.eval(d), node(2), "")
	}
	if v.Status != StatusSlow || v.Cause != CauseThrottled || v.Culprit != nil {
		t.Fatalf("node-2 = %s / %s, culprit %+v, want slow / cpu_throttled without a culprit: %+v", v.Status, v.Cause, v.Culprit, v.Evidence)
	}
}

// TestPeerSevereOwnLoss: a node losing a tenth of its segments is slow within the strong
// windows although no subtask's true processing rate shows it (waiting on the network is
// never busy time); a mild blip of loss in one window is not.
func TestPeerSevereOwnLoss(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		withTMCgroup(c, n, nil)
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	withTMCgroup(c, 4, func(r *tmwardenv1.Report) { r.Host.Tcp.RetransmitsPerSecond = 8 }) // ratio 0.008: mild
	for range 3 {
		if v, ok := verdict(c.eval(d), node(4), ""); ok && v.Status == StatusSlow {
			t.Fatalf("mild loss made node-4 slow: %+v", v.Evidence)
		}
	}
	withTMCgroup(c, 4, func(r *tmwardenv1.Report) { r.Host.Tcp.RetransmitsPerSecond = 100 })
	var v Verdict
	for range 2 {
		v, _ = verdict(c.eval(d), node(4), "")
	}
	if v.Status != StatusSlow || v.Cause != CauseNetwork {
		t.Fatalf("node-4 = %s / %s, want slow / network after two windows: %+v", v.Status, v.Cause, v.Evidence)
	}
}

// CPU used outside the TaskManagers on a node with idle CPU left, while no thread waits for a
// CPU, takes nothing from them: a pod using two of sixteen cores beside node 3's TaskManagers,
// whose hot-key subtasks lag (a third of them, as data skew does), is neither contention nor
// host evidence that makes the node slow.
func TestPeerCPUUsedBesideIdleCPUIsNoContention(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		withTMCgroup(c, n, nil)
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	c.hot[tmOf(3, 0)], c.hot[tmOf(3, 1)] = 1.9, 1.9
	withTMCgroup(c, 3, func(r *tmwardenv1.Report) {
		r.Host.Cpu.User, r.Host.Cpu.Idle = 0.3+2.0/16, 0.7-2.0/16
		r.Cgroups = append(r.Cgroups, &tmwardenv1.CgroupStats{Path: "/kubepods/pod-a", CpuUsageCores: 2})
	})
	for i := range 10 {
		v, ok := verdict(c.eval(d), node(3), "")
		if ok && (v.Status == StatusSlow || v.Cause == CauseCPU) {
			t.Fatalf("window %d: a pod using CPU beside idle CPU, nothing waiting, made node-3 %s / %s: %+v", i+1, v.Status, v.Cause, v.Evidence)
		}
	}
}

// A cluster-wide slowdown: every machine loses a fifth of its CPU to steal and every thread
// waits about 2.3 ms for a CPU. On node 3 a pod takes 4 of 16 cores beside idle CPU, its
// TaskManagers' threads wait 0.7 ms more than the median node's (not the 4x the run queue
// needs to be evidence on its own, over the wait the whole fleet shares) and its subtasks are
// 1.5x slower. That CPU is felt: node 3 is slow, cpu_contention, the pod named.
func TestPeerCPUTakenUnderAFleetWideWaitIsContention(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		c.steal[node(n)] = 0.19
		c.runq[node(n)] = 2000 + 100*float64(n)
		withTMCgroup(c, n, nil)
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	c.runq[node(3)] = 3150
	c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 1.5, 1.5
	withTMCgroup(c, 3, func(r *tmwardenv1.Report) {
		r.Host.Cpu.User, r.Host.Cpu.Idle = 0.3+4.0/16, 0.7-4.0/16-0.19
		r.Cgroups = append(r.Cgroups, &tmwardenv1.CgroupStats{Path: "/kubepods/pod-a", PodName: "pod-a", PodNamespace: "ns", CpuUsageCores: 4})
	})
	var v Verdict
	for range 2 {
		v, _ = verdict(c.eval(d), node(3), "")
	}
	if v.Status != StatusSlow || v.Cause != CauseCPU || v.Culprit == nil || v.Culprit.Cgroup != "/kubepods/pod-a" {
		t.Fatalf("node-3 = %s / %s (culprit %+v), want slow / cpu_contention naming /kubepods/pod-a: %+v", v.Status, v.Cause, v.Culprit, v.Evidence)
	}
}

// A cluster-wide slowdown: every machine loses about 0.19 of its CPU to steal, within a
// thousandth of each other. Node 3 loses 0.29, ten points more than any peer but not the 3x of
// the median steal needs to be, and its subtasks are 1.4x slower: it is slow with cause
// cpu_steal. Its peers, at the shared level, are not raised.
func TestPeerStealStandingOutOfAFleetWideSteal(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		c.steal[node(n)] = 0.188 + 0.0005*float64(n)
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	c.steal[node(3)] = 0.29
	c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 1.4, 1.4
	var r Round
	for range 2 {
		r = c.eval(d)
	}
	if v, _ := verdict(r, node(3), ""); v.Status != StatusSlow || v.Cause != CauseSteal {
		t.Fatalf("node-3 = %s / %s, want slow / cpu_steal: %+v", v.Status, v.Cause, v.Evidence)
	}
	for _, v := range r.Verdicts {
		if v.Node != node(3) && v.Status != StatusHealthy {
			t.Fatalf("%s at the fleet's shared steal = %s / %s: %+v", v.Node, v.Status, v.Cause, v.Evidence)
		}
	}
}

// Packets lost on their way into node 4 show at its senders: nodes 0-2 retransmit to node 4's
// address and their subtasks block on their output to it. Node 4 is slow (network), witnessed by
// three senders; the senders are not — their retransmits are node 4's loss, and their blocked
// subtasks wait for node 4.
func TestPeerLossAtAReceiverIsNotTheSenders(t *testing.T) {
	c := newCluster()
	sender := func(n int) func(*tmwardenv1.Report) {
		return func(r *tmwardenv1.Report) {
			for _, tm := range r.TaskManagers {
				tm.Host = fmt.Sprintf("10.0.0.%d", n)
			}
		}
	}
	for n := range 8 {
		withTMCgroup(c, n, sender(n))
	}
	d := NewPeer(DefaultPeerConfig())
	c.warm(d)
	for n := range 3 {
		withTMCgroup(c, n, func(r *tmwardenv1.Report) {
			sender(n)(r)
			r.Host.Tcp.RetransmitsPerSecond = 61
			r.Retransmits = append(r.Retransmits, &tmwardenv1.TcpRetransmits{RemoteAddress: "10.0.0.4:6121", Retransmits: 300})
			for _, tm := range r.TaskManagers {
				for _, st := range tm.Subtasks {
					st.BackpressuredMsPerSecond = 600
				}
			}
		})
	}
	var r Round
	for i := range 8 {
		r = c.eval(d)
		for n := range 3 {
			if v, ok := verdict(r, node(n), ""); ok && v.Status == StatusSlow {
				t.Fatalf("window %d: %s, a sender to the lossy receiver, judged slow: %+v", i+1, node(n), v)
			}
		}
	}
	if v, _ := verdict(r, node(4), ""); v.Status != StatusSlow || v.Cause != CauseNetwork {
		t.Fatalf("node-4 = %s / %s, want slow / network: %+v", v.Status, v.Cause, v.Evidence)
	}
}

// TestPeerGCStormBesideANodeFault: two faults on one node, its own trouble and one of its two
// JVMs far out on GC time. Network loss does not make a JVM collect garbage, and CPU taken by
// the hypervisor slows every JVM's collector on the node alike while the other JVM's GC is as
// its peers': the node is slow with its cause and the JVM is judged on its own at once. When
// both JVMs' GC rises together under the taken CPU, the node's trouble explains it and no
// TaskManager is judged.
func TestPeerGCStormBesideANodeFault(t *testing.T) {
	lossy := func(c *cluster) {
		withTMCgroup(c, 5, func(r *tmwardenv1.Report) { r.Host.Tcp.RetransmitsPerSecond = 100 })
	}
	stolen := func(c *cluster) { c.steal[node(5)], c.runq[node(5)] = 0.3, 4000 }
	for _, tc := range []struct {
		name      string
		fault     func(*cluster)
		nodeCause Cause
		otherGC   float64
		wantTM    bool
	}{
		{"network loss", lossy, CauseNetwork, 0, true},
		{"steal, one JVM stands out", stolen, CauseSteal, 0, true},
		{"steal, both JVMs collect more", stolen, CauseSteal, 300, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			for n := range 8 {
				withTMCgroup(c, n, nil)
			}
			d := NewPeer(DefaultPeerConfig())
			c.warm(d)
			tc.fault(c)
			c.gc[tmOf(5, 1)], c.gc[tmOf(5, 0)] = 500, tc.otherGC
			c.slow[tmOf(5, 1)] = 2
			var nv, tm Verdict
			for range 2 {
				r := c.eval(d)
				nv, _ = verdict(r, node(5), "")
				tm, _ = verdict(r, node(5), tmOf(5, 1))
			}
			if nv.Status != StatusSlow || nv.Cause != tc.nodeCause {
				t.Errorf("node-5 = %s / %s, want slow / %s", nv.Status, nv.Cause, tc.nodeCause)
			}
			if got := tm.Status == StatusSlow && tm.Cause == CauseGC; got != tc.wantTM {
				t.Errorf("node-5's tm-1 = %q / %q, want a taskmanager_gc verdict: %v", tm.Status, tm.Cause, tc.wantTM)
			}
		})
	}
}

// describeClasses labels nodes 0..nodes-1 with their instance type: older ones m4.xlarge, the
// rest m5.xlarge, all 16 cores.
func describeClasses(m *model.Model, nodes int, older func(n int) bool) {
	for n := range nodes {
		cls := "m5.xlarge"
		if older(n) {
			cls = "m4.xlarge"
		}
		m.Describe(node(n), t0, model.NodeInfo{Labels: map[string]string{"instance_type": cls}, NumCPUs: 16})
	}
}

// idleHostReport is one window's report of a 16-core node with nothing on its host: a third of
// its CPU used, no steal, no retransmit storm, half its memory free, 20 us run-queue waits.
func idleHostReport(tick int, at time.Time) *tmwardenv1.Report {
	return &tmwardenv1.Report{Sequence: uint64(tick), CollectedAt: timestamppb.New(at), IntervalSeconds: 5,
		Host: &tmwardenv1.HostSignals{NumCpus: 16, Cpu: &tmwardenv1.CpuShares{User: 0.3, Idle: 0.7, Iowait: 0.003},
			Tcp: &tmwardenv1.TcpStats{RetransmitsPerSecond: 1}, Memory: &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: 30 << 30}},
		Histograms: []*tmwardenv1.LatencyHistogram{{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: "/tm", Count: 1000, SumMicroseconds: 1000 * 20, Buckets: make([]uint64, 20)}},
	}
}

// steadySubtask is a subtask busy 300 ms/s times div (a slower machine or a fault divides its
// rate), with +-6 % jitter that differs by subtask and window.
func steadySubtask(job, vertex string, idx, tick int, div float64) *tmwardenv1.SubtaskMetrics {
	busy := 300 * div * (1 + 0.03*float64((idx*7+tick)%5-2))
	return &tmwardenv1.SubtaskMetrics{JobId: job, JobName: job, VertexId: vertex, VertexName: vertex,
		SubtaskIndex: int32(idx), BusyMsPerSecond: busy, IdleMsPerSecond: 1000 - busy, RecordsInPerSecond: 3000, RecordsOutPerSecond: 3000}
}

// mixedClusterStep sends one window of a 16-node cluster, two TaskManagers a node, in which the
// vertices run on different mixes of machines: nodes 0-4 are a slower class (rates divided by
// 1.5, nothing on their hosts), vertices P1-P3 run on TaskManager 0 of nodes 0-7 (mostly the
// slower class), Q1-Q2 on TaskManager 1 of nodes 4-15 (mostly the faster one). slow divides
// one TaskManager's rates further.
func mixedClusterStep(m *model.Model, tick int, slow map[string]float64) time.Time {
	at := t0.Add(time.Duration(tick) * 5 * time.Second)
	for n := range 16 {
		r := idleHostReport(tick, at)
		for t := range 2 {
			id := tmOf(n, t)
			tm := &tmwardenv1.TaskManager{ResourceId: id, Jvm: &tmwardenv1.JvmStats{GcTimeMsPerSecond: 8}}
			var vertices []string
			idx := n
			switch {
			case t == 0 && n < 8:
				vertices = []string{"P1", "P2", "P3"}
			case t == 1 && n >= 4:
				vertices, idx = []string{"Q1", "Q2"}, n-4
			}
			for _, v := range vertices {
				div := 1.0
				if n < 5 {
					div = 1.5
				}
				if d, ok := slow[id]; ok {
					div *= d
				}
				tm.Subtasks = append(tm.Subtasks, steadySubtask("job", v, idx, tick, div))
			}
			r.TaskManagers = append(r.TaskManagers, tm)
		}
		m.Observe(node(n), at, r)
	}
	return at
}

// A node's speed is fitted against its peers' speeds, not against the raw median of whichever
// machines a vertex runs on. Node 4 is of the slower class; its TaskManager 0 runs vertices
// placed mostly on that class, its TaskManager 1 vertices placed mostly on the faster one; nodes
// 5-7, of the faster class, run both too. Against raw medians a node's one learned speed fits
// neither of its TaskManagers, and a TaskManager whose vertices run mostly on the other class
// was judged slow (cause unknown) for the whole run, with nothing on its JVM or host. With the
// fit nothing is slow, the slower class is reported as slower hardware, and when a TaskManager
// then becomes slower than its own speed it is caught within the weak windows.
func TestPeerNodeSpeedAcrossVertexPlacements(t *testing.T) {
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	p := NewPeer(DefaultPeerConfig())
	slow := map[string]float64{}
	tick := 0
	eval := func() Round {
		tick++
		at := mixedClusterStep(m, tick, slow)
		v := m.View()
		defer v.Release()
		return p.Evaluate(v, at)
	}
	var r Round
	for i := range 40 {
		r = eval()
		for _, vd := range r.Verdicts {
			if vd.Status == StatusSlow {
				t.Fatalf("window %d: a node of the slower class judged slow for where its vertices run: %+v", i+1, vd)
			}
		}
	}
	for n := range 16 {
		_, ok := finding(r, node(n), FindingSlowerHardware)
		if ok != (n < 5) {
			t.Errorf("%s: slower-hardware finding %v, want %v (findings %+v)", node(n), ok, n < 5, r.Findings)
		}
	}
	slow[tmOf(4, 1)] = 1.8
	for i := 1; i <= DefaultPeerConfig().WeakWindows; i++ {
		r = eval()
	}
	if v, _ := verdict(r, node(4), tmOf(4, 1)); v.Status != StatusSlow {
		t.Fatalf("a TaskManager that became 1.8x slower than itself must be caught in %d windows, got %+v (all %+v)", DefaultPeerConfig().WeakWindows, v, r.Verdicts)
	}
}

// A TaskManager whose metrics the agent could not read (its scrape_error set, no subtasks)
// runs work nobody can see, not none: a severe host anomaly on its node is judged by the
// host-only rule like any node's, not filed as a host finding on a node without Flink work.
// A node whose TaskManager reports no subtasks and no error still runs nothing.
func TestPeerUnscrapedTaskManagerStillRunsWork(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	c.steal[node(2)], c.steal[node(3)] = 0.3, 0.3
	c.edit[node(2)] = func(r *tmwardenv1.Report) {
		for _, tm := range r.TaskManagers {
			tm.Subtasks, tm.ScrapeError = nil, "scrape http://10.0.0.2:9249/metrics: context deadline exceeded"
		}
	}
	c.edit[node(3)] = func(r *tmwardenv1.Report) {
		for _, tm := range r.TaskManagers {
			tm.Subtasks = nil
		}
	}
	var r Round
	for range DefaultPeerConfig().HostOnlyWindows {
		r = c.eval(p)
	}
	if v, _ := verdict(r, node(2), ""); v.Status != StatusSlow || v.Cause != CauseSteal {
		t.Fatalf("severe steal on a node whose TaskManager's metrics are missing: want slow (steal), got %+v", v)
	}
	if v, ok := verdict(r, node(3), ""); ok {
		t.Fatalf("a node whose TaskManagers run no subtasks got a verdict: %+v", v)
	}
	if _, ok := finding(r, node(3), FindingHostOnly); !ok {
		t.Fatalf("want a host-only finding for the node without work, got %+v", r.Findings)
	}
}

// twoJobsStep sends one window of a 16-node cluster, one TaskManager a node, running two jobs
// that share no node: X (vertices X1-X3) on nodes 0-7, Y on nodes 8-15 (Y1-Y3, but node 12
// runs only Y1 and Y2). The older nodes are 0.6x as fast (rates divided by 1/0.6), nothing on
// their hosts.
func twoJobsStep(m *model.Model, tick int, older func(n int) bool) time.Time {
	at := t0.Add(time.Duration(tick) * 5 * time.Second)
	for n := range 16 {
		r := idleHostReport(tick, at)
		tm := &tmwardenv1.TaskManager{ResourceId: tmOf(n, 0), Jvm: &tmwardenv1.JvmStats{GcTimeMsPerSecond: 8}}
		job, vertices, idx := "X", []string{"X1", "X2", "X3"}, n
		switch {
		case n == 12:
			job, vertices, idx = "Y", []string{"Y1", "Y2"}, n-8
		case n >= 8:
			job, vertices, idx = "Y", []string{"Y1", "Y2", "Y3"}, n-8
		}
		div := 1.0
		if older(n) {
			div = 1 / 0.6
		}
		for _, v := range vertices {
			tm.Subtasks = append(tm.Subtasks, steadySubtask(job, v, idx, tick, div))
		}
		r.TaskManagers = append(r.TaskManagers, tm)
		m.Observe(node(n), at, r)
	}
	return at
}

// A class's speed is lent only to nodes whose rates are compared with its members'. Nodes 0-6
// of the older class run job X beside one newer node, node 12 of the same class runs two
// subtasks of job Y (too few to learn its own speed) beside newer nodes. Jobs X and Y share no
// node, so nothing fixes X's speeds against Y's: X's median node, one of the older class, is
// its speed 1, while node 12 is 0.6x its peers. Held to the class's speed of 1 in X, node 12's
// two subtasks straggled 1.7x and it was judged slow (cause unknown) within WeakWindows; with no
// class member linked to it, it is a node still learning, and app evidence alone does not make
// it slow.
func TestPeerClassSpeedOnlyFromLinkedPeers(t *testing.T) {
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	older := func(n int) bool { return n < 7 || n == 12 }
	describeClasses(m, 16, older)
	p := NewPeer(DefaultPeerConfig())
	for tick := 1; tick <= 60; tick++ {
		at := twoJobsStep(m, tick, older)
		v := m.View()
		r := p.Evaluate(v, at)
		v.Release()
		if vd, ok := verdict(r, node(12), ""); ok && vd.Status == StatusSlow {
			t.Fatalf("window %d: a node of the older class judged slow against its class's speed in another job (class learned %.3f): %+v",
				tick, p.speed[node(0)].rel, vd)
		}
	}
	if sp := p.speed[node(0)]; sp == nil || sp.rel < 0.8 {
		t.Fatalf("the older class in job X learned %+v, want about 1: the test shows nothing", sp)
	}
}

// Nothing changes in twoJobsStep's cluster for half an hour, so no learned speed may move: each
// group of linked nodes is scaled by its own median node. Scaled by the fleet's median node
// alone, the level of job X's nodes against job Y's was wherever the window before left it,
// moved by whichever group that median node fell in: job X's older nodes drifted from 0.90 to
// 0.60 and job Y's nodes from 1.10 to 1.67.
func TestPeerSpeedsOfUnlinkedGroupsHoldStill(t *testing.T) {
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	older := func(n int) bool { return n < 7 || n == 12 }
	p := NewPeer(DefaultPeerConfig())
	for tick := 1; tick <= 360; tick++ {
		at := twoJobsStep(m, tick, older)
		v := m.View()
		p.Evaluate(v, at)
		v.Release()
	}
	for n := range 16 {
		sp := p.speed[node(n)]
		if n == 12 {
			if sp != nil && sp.n > 0 {
				t.Fatalf("node 12 learned a speed from two subtasks: %+v", sp)
			}
			continue
		}
		if sp == nil || sp.n < DefaultPeerConfig().LearnWindows {
			t.Fatalf("%s learned no speed: %+v", node(n), sp)
		}
		if math.Abs(sp.rel-sp.joined) > 0.03 {
			t.Errorf("%s's learned speed moved from %.3f when it joined to %.3f with nothing changed", node(n), sp.joined, sp.rel)
		}
	}
}

// Node 5 runs one JVM (its TaskManager 1 is gone) and the hypervisor takes its CPU. With no
// node-mate to compare GC time with, its subtasks measure how much the taken CPU stretches
// what the JVM does: a JVM collecting 500 ms/s while its subtasks are 2x slower (the fleet
// collects 8) collects more, not more slowly, and is judged beside the node; one collecting
// 150 ms/s while its subtasks are 8x slower is within that stretch (8 x 8 + the 100 ms/s
// outlier margin), and the node's verdict covers it.
func TestPeerGCStormInTheOnlyJVMOfACPULosingNode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gc, slow float64
		wantTM   bool
	}{
		{"a storm beyond the stretch", 500, 2, true},
		{"GC stretched with the subtasks", 150, 8, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster()
			c.edit[node(5)] = func(r *tmwardenv1.Report) { r.TaskManagers = r.TaskManagers[:1] }
			d := NewPeer(DefaultPeerConfig())
			c.warm(d)
			c.steal[node(5)], c.runq[node(5)] = 0.3, 4000
			c.gc[tmOf(5, 0)], c.slow[tmOf(5, 0)] = tc.gc, tc.slow
			var nv, tm Verdict
			for range 2 {
				r := c.eval(d)
				nv, _ = verdict(r, node(5), "")
				tm, _ = verdict(r, node(5), tmOf(5, 0))
			}
			if nv.Status != StatusSlow || nv.Cause != CauseSteal {
				t.Errorf("node-5 = %s / %s, want slow / %s", nv.Status, nv.Cause, CauseSteal)
			}
			if got := tm.Status == StatusSlow && tm.Cause == CauseGC; got != tc.wantTM {
				t.Errorf("node-5's only JVM = %q / %q, want a taskmanager_gc verdict: %v", tm.Status, tm.Cause, tc.wantTM)
			}
		})
	}
}

// A group of linked nodes made mostly of an older class still shows that class slower: its
// speed 1 is the median of the fleet's most common class where it has MinClassPeers of them.
// Job X runs on older nodes 0-4 and newer nodes 5-7, job Y on newer nodes 8-15. Scaled by its
// own median node, one of the older ones, X showed its older nodes at speed 1 and its newer
// ones at 1.67: no slower-hardware finding for nodes 0.6x as fast as the fleet's usual machine.
func TestPeerOlderClassMostOfItsGroup(t *testing.T) {
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	older := func(n int) bool { return n < 5 }
	describeClasses(m, 16, older)
	p := NewPeer(DefaultPeerConfig())
	var r Round
	for tick := 1; tick <= 60; tick++ {
		at := twoJobsStep(m, tick, older)
		v := m.View()
		r = p.Evaluate(v, at)
		v.Release()
		for _, vd := range r.Verdicts {
			if vd.Status == StatusSlow {
				t.Fatalf("window %d: a machine judged slow for its class: %+v", tick, vd)
			}
		}
	}
	for n := range 16 {
		f, ok := finding(r, node(n), FindingSlowerHardware)
		if ok != older(n) {
			t.Errorf("%s: slower-hardware finding %v (%+v), want %v; learned %.3f", node(n), ok, f, older(n), p.speed[node(n)].rel)
		}
	}
}

// Older machines can be the fleet's most common class and still be slower hardware. Nodes 0-6
// are an old class (0.64x as fast), 7-9 an older-still-newer one (0.77x), 10-15 the usual
// machines, 16-20 a newer class (1.18x); one job runs on all of them. The old class is the
// largest, so scaled by it alone it showed at speed 1, the 0.77x class faster than it, and no
// node got a slower-hardware finding. The fleet's median machine is one of the usual ones:
// nodes 0-9 are slower hardware, the usual and the newer machines are not, and no node is slow.
func TestPeerOlderClassMostCommonInTheFleet(t *testing.T) {
	speed := func(n int) (string, float64) {
		switch {
		case n < 7:
			return "m3.xlarge", 0.64
		case n < 10:
			return "m4.xlarge", 0.77
		case n < 16:
			return "m5.xlarge", 1
		}
		return "m6.xlarge", 1.18
	}
	r, p := replayFaultFreeClassFleet(t, speed, 60, nil)
	for n := range 21 {
		f, ok := finding(r, node(n), FindingSlowerHardware)
		if want := n < 10; ok != want {
			t.Errorf("%s: slower-hardware finding %v (%+v), want %v; learned %.3f", node(n), ok, f, want, p.speed[node(n)].rel)
		}
	}
}

// Older machines that are together most of the fleet are its usual machines, even where a newer
// class is the largest single one. Nodes 0-5 are an old class (0.64x as fast as the newest),
// 6-11 another (0.68x), 12-20 the newest machines, the most common class; one job runs on all.
// The fleet's median machine is of the 0.68x class, and the 0.64x class is within 1.15x of it:
// no node is slower hardware. Judged against the most common class alone, the twelve older
// machines, most of the fleet, were reported as slower hardware (generated gen-82007, gen-82038).
func TestPeerOlderMachinesMostOfTheFleet(t *testing.T) {
	speed := func(n int) (string, float64) {
		switch {
		case n < 6:
			return "m3.xlarge", 0.64
		case n < 12:
			return "m4.xlarge", 0.68
		}
		return "m6.xlarge", 1
	}
	r, p := replayFaultFreeClassFleet(t, speed, 60, nil)
	for n := range 21 {
		if f, ok := finding(r, node(n), FindingSlowerHardware); ok {
			t.Errorf("%s: slower-hardware finding %+v in a fleet mostly of its generation; learned %.3f", node(n), f, p.speed[node(n)].rel)
		}
	}
}

// The machines at the fleet's median are never slower hardware, not even in the round in which
// the fleet's speeds are first learned. Nodes 0-3 are an old class (0.5x as fast as the newest),
// 4-7 another (0.53x), 8-12 the cluster's own machines (0.77x), 13-20 the newest, the most
// common class. The median machine is one of the cluster's own; only nodes 0-7 are slower
// hardware, in every round. Before, the round that first learned the speeds judged them against
// the most common class, as though no other class were learned, and reported nodes 8-12 in it
// (generated gen-82038).
func TestPeerMedianMachinesNeverSlowerHardware(t *testing.T) {
	speed := func(n int) (string, float64) {
		switch {
		case n < 4:
			return "m3.xlarge", 0.5
		case n < 8:
			return "m4.xlarge", 0.53
		case n < 13:
			return "m5.xlarge", 0.77
		}
		return "m6.xlarge", 1
	}
	reported := map[string]bool{}
	replayFaultFreeClassFleetWatched(t, speed, 40, nil, func(r Round) {
		for _, f := range r.Findings {
			if f.Kind == FindingSlowerHardware {
				reported[f.Node] = true
			}
		}
	})
	for n := range 21 {
		if want := n < 8; reported[node(n)] != want {
			t.Errorf("%s: reported as slower hardware %v, want %v", node(n), reported[node(n)], want)
		}
	}
}

// A fault that begins and ends while its node's agent cannot reach the coordinator is seen only
// when the held-back reports arrive. Nodes 3 and 5 are cut off for 40 windows; node 3's
// hypervisor takes 30 % of its CPU in windows 6-25 of them. When the reports arrive, node 3
// gets a retrospective finding (cause steal, over those windows) and no verdict; node 5, cut
// off with nothing wrong, gets nothing.
func TestPeerRetrospectiveFindingAfterAPartition(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	r, faultFrom, faultTo := c.faultInsideAPartition(t, p, func() {
		c.steal[node(3)], c.runq[node(3)] = 0.3, 4000
	}, func() {
		delete(c.steal, node(3))
		delete(c.runq, node(3))
	})
	f, ok := finding(r, node(3), FindingRetrospective)
	if !ok {
		t.Fatalf("no retrospective finding for node-3's steal inside its partition; findings %+v", r.Findings)
	}
	if f.Cause != CauseSteal || f.Since.Before(faultFrom) || f.Until.After(faultTo) || f.Until.Sub(f.Since) < 10*5*time.Second {
		t.Errorf("node-3's retrospective finding = %s from %s to %s, want steal within %s-%s", f.Cause, f.Since, f.Until, faultFrom, faultTo)
	}
}

// faultInsideAPartition cuts nodes 3 and 5 off for 40 windows, with on called before window 6
// and off before window 26 (the fault is in windows 6-25), and then lets them report again for
// three windows, failing if either is judged slow for a fault that is over or node 5, cut off with
// nothing wrong, gets a retrospective finding. It returns the last round and the times of the
// fault's first and last windows.
func (c *cluster) faultInsideAPartition(t *testing.T, p *Peer, on, off func()) (r Round, faultFrom, faultTo time.Time) {
	t.Helper()
	c.cut[node(3)], c.cut[node(5)] = true, true
	for i := 1; i <= 40; i++ {
		switch i {
		case 6:
			on()
		case 26:
			off()
		}
		r := c.eval(p)
		if i == 6 {
			faultFrom = r.At
		}
		if i == 25 {
			faultTo = r.At
		}
	}
	c.cut[node(3)], c.cut[node(5)] = false, false
	for range 3 {
		r = c.eval(p)
		for _, n := range []string{node(3), node(5)} {
			if v, ok := verdict(r, n, ""); ok && v.Status == StatusSlow {
				t.Fatalf("%s judged slow after its partition for a fault that is over: %+v", n, v)
			}
		}
	}
	if f, ok := finding(r, node(5), FindingRetrospective); ok {
		t.Errorf("node-5, cut off with nothing wrong, got a retrospective finding: %+v", f)
	}
	return r, faultFrom, faultTo
}

// A GC storm that begins and ends while its node's agent is cut off shows on no host signal:
// the held-back reports carry only the JVM's GC time. Nodes 3 and 5 are cut off for 40 windows;
// node 3's second JVM spends 400 ms/s in GC (its subtasks 1.6x slower) in windows 6-25 of them.
// When the reports arrive, node 3 gets a retrospective finding with cause taskmanager_gc that
// names that JVM, and no verdict; node 5 gets nothing. The host rules alone found nothing here.
func TestPeerRetrospectiveGCStormInsideAPartition(t *testing.T) {
	c := newCluster()
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	r, faultFrom, faultTo := c.faultInsideAPartition(t, p, func() {
		c.gc[tmOf(3, 1)], c.slow[tmOf(3, 1)] = 400, 1.6
	}, func() {
		delete(c.gc, tmOf(3, 1))
		delete(c.slow, tmOf(3, 1))
	})
	f, ok := finding(r, node(3), FindingRetrospective)
	if !ok {
		t.Fatalf("no retrospective finding for node-3's GC storm inside its partition; findings %+v", r.Findings)
	}
	if f.Cause != CauseGC || f.Since.Before(faultFrom) || f.Until.After(faultTo) || f.Until.Sub(f.Since) < 10*5*time.Second {
		t.Errorf("node-3's retrospective finding = %s from %s to %s, want taskmanager_gc within %s-%s", f.Cause, f.Since, f.Until, faultFrom, faultTo)
	}
	if len(f.Evidence) == 0 || f.Evidence[0].TaskManager != tmOf(3, 1) {
		t.Errorf("node-3's retrospective finding does not name its JVM %s: %+v", tmOf(3, 1), f.Evidence)
	}
}

// Packets lost on their way into a node while its agent is cut off show only at its senders,
// which still report live: their reports are the only account of it. Nodes 0-2 retransmit to
// node 3's address in windows 6-25 of node 3's 40-window partition; when its held-back reports
// arrive, node 3 gets a retrospective finding with cause network. Nodes 0-2 are never judged
// slow: what they retransmit goes to a peer. Before, node 3's reports showed nothing, no
// finding was made, and the fault was missed (generated gen-250018).
func TestPeerRetrospectiveLossOnTheWayIn(t *testing.T) {
	c := newCluster()
	addressed := func(n int, more func(*tmwardenv1.Report)) func(*tmwardenv1.Report) {
		return func(r *tmwardenv1.Report) {
			for _, tm := range r.TaskManagers {
				tm.Host = fmt.Sprintf("10.0.0.%d", n)
			}
			if more != nil {
				more(r)
			}
		}
	}
	for n := range 8 {
		withTMCgroup(c, n, addressed(n, nil))
	}
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	c.watch = func(r Round) {
		for n := range 3 {
			if v, ok := verdict(r, node(n), ""); ok && v.Status == StatusSlow {
				t.Errorf("%s, a sender to the cut-off receiver, judged slow at %s: %+v", node(n), r.At, v)
			}
		}
	}
	r, faultFrom, faultTo := c.faultInsideAPartition(t, p, func() {
		for n := range 3 {
			withTMCgroup(c, n, addressed(n, func(r *tmwardenv1.Report) {
				r.Host.Tcp.RetransmitsPerSecond = 61
				r.Retransmits = append(r.Retransmits, &tmwardenv1.TcpRetransmits{RemoteAddress: "10.0.0.3:6121", Retransmits: 300})
			}))
		}
	}, func() {
		for n := range 3 {
			withTMCgroup(c, n, addressed(n, nil))
		}
	})
	f, ok := finding(r, node(3), FindingRetrospective)
	if !ok {
		t.Fatalf("no retrospective finding for node-3's inbound loss inside its partition; findings %+v", r.Findings)
	}
	if f.Cause != CauseNetwork || f.Since.Before(faultFrom) || f.Until.After(faultTo) || f.Until.Sub(f.Since) < 10*5*time.Second {
		t.Errorf("node-3's retrospective finding = %s from %s to %s, want network within %s-%s", f.Cause, f.Since, f.Until, faultFrom, faultTo)
	}
}

// A node's own severe loss is evidence on its own, live and in retrospect alike: held
// StrongWindows, not HostOnlyWindows. Node 3, cut off, retransmits 61/s against its peers' 1 (3
// floors) for four windows of its partition: a retrospective finding, cause network.
func TestPeerRetrospectiveOwnLossHeldTwoWindows(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		withTMCgroup(c, n, nil)
	}
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	r, _, _ := c.faultInsideAPartition(t, p, func() {
		windows := 0
		withTMCgroup(c, 3, func(r *tmwardenv1.Report) {
			if windows++; windows <= 4 {
				r.Host.Tcp.RetransmitsPerSecond, r.Host.Tcp.OutSegmentsPerSecond = 61, 100000
			}
		})
	}, func() { withTMCgroup(c, 3, nil) })
	if f, ok := finding(r, node(3), FindingRetrospective); !ok || f.Cause != CauseNetwork {
		t.Fatalf("node-3's own loss for four windows inside its partition: finding %v %+v, want one with cause network", ok, f)
	}
}

// Retransmits to a peer that loses packets on their way in are that peer's loss, in retrospect
// as live: node 3, cut off, retransmits 300/s to node 4, whose inbound loss nodes 0-2 witness
// live. Node 3 gets no retrospective finding (generated gen-700011: a finding, cause network,
// on a sender cut off beside a lossy receiver).
func TestPeerRetrospectiveSenderToALossyReceiver(t *testing.T) {
	c := newCluster()
	addressed := func(n int, more func(*tmwardenv1.Report)) func(*tmwardenv1.Report) {
		return func(r *tmwardenv1.Report) {
			for _, tm := range r.TaskManagers {
				tm.Host = fmt.Sprintf("10.0.0.%d", n)
			}
			if more != nil {
				more(r)
			}
		}
	}
	for n := range 8 {
		withTMCgroup(c, n, addressed(n, nil))
	}
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	// The witnesses send little else; node 3 sends the fleet's most.
	witness := func(r *tmwardenv1.Report) {
		r.Retransmits = append(r.Retransmits, &tmwardenv1.TcpRetransmits{RemoteAddress: "10.0.0.4:6121", Retransmits: 300})
	}
	r, _, _ := c.faultInsideAPartition(t, p, func() {
		for _, n := range []int{0, 1, 2} {
			withTMCgroup(c, n, addressed(n, witness))
		}
		withTMCgroup(c, 3, addressed(3, func(r *tmwardenv1.Report) {
			witness(r)
			r.Host.Tcp.RetransmitsPerSecond = 61
		}))
	}, func() {
		for _, n := range []int{0, 1, 2, 3} {
			withTMCgroup(c, n, addressed(n, nil))
		}
	})
	if f, ok := finding(r, node(3), FindingRetrospective); ok {
		t.Errorf("node-3, a sender to node-4's lossy receiver, got a retrospective finding: %+v", f)
	}
}

// Which machines a fleet has does not change while some cannot be heard. Nodes 0-9 are the
// most common class (m4), 10-17 a class 1.5x faster (m6), 18-20 one 1.25x faster (m5); one job
// runs on all. A partition cuts off nodes 0-5 for 100 windows: among the nodes still reporting,
// m6 outnumbers m4. Counted over those, the reference class became m6, the nodes that kept
// reporting learned their speeds in its frame, and when the partition healed the m4 nodes that
// had been cut off (still expected at their old speed) were slower than the drifted median by a
// straggler's margin on every vertex, and judged slow. No node is slow here, before, during or
// after the partition.
func TestPeerReferenceClassHeldThroughAPartition(t *testing.T) {
	replayFaultFreeClassFleet(t, threeClasses, 200, func(n, window int) bool { return n < 6 && window > 60 && window <= 160 })
}

// A neighbour that takes the CPU while its node's agent is cut off is named in retrospect, as a
// verdict would name it: node 3's /noisy cgroup uses 3 cores and its TaskManagers' threads wait
// in windows 6-25 of a 40-window partition; its retrospective finding says cpu_contention and
// names /noisy. Node 5, cut off with only its usual small cgroups, gets nothing.
func TestPeerRetrospectiveNamesTheNeighbour(t *testing.T) {
	c := newCluster()
	for n := range 8 {
		withTMCgroup(c, n, nil)
	}
	p := NewPeer(DefaultPeerConfig())
	c.warm(p)
	r, _, _ := c.faultInsideAPartition(t, p, func() {
		c.runq[node(3)] = 4000
		c.slow[tmOf(3, 0)], c.slow[tmOf(3, 1)] = 2, 2
		withTMCgroup(c, 3, func(r *tmwardenv1.Report) {
			r.Cgroups = append(r.Cgroups, &tmwardenv1.CgroupStats{Path: "/noisy", CpuUsageCores: 3})
		})
	}, func() {
		delete(c.runq, node(3))
		delete(c.slow, tmOf(3, 0))
		delete(c.slow, tmOf(3, 1))
		withTMCgroup(c, 3, nil)
	})
	f, ok := finding(r, node(3), FindingRetrospective)
	if !ok {
		t.Fatalf("no retrospective finding for node-3's neighbour inside its partition; findings %+v", r.Findings)
	}
	if f.Cause != CauseCPU || f.Culprit == nil || f.Culprit.Cgroup != "/noisy" {
		t.Errorf("node-3's retrospective finding = %s, culprit %+v; want cpu_contention naming /noisy", f.Cause, f.Culprit)
	}
}

// A partition that leaves too few of the reference class reporting to scale a group by them
// must not move the learned speeds of the nodes that stay. Nodes 0-9 are the most common class
// (m4), 10-17 a class 1.5x faster (m6), 18-20 one 1.25x faster (m5); a partition cuts off nodes
// 0-7 for 160 windows, leaving two m4 nodes reporting: the group is scaled by its median node,
// an m6. Learned from, those windows moved every reporting node's speed toward that frame, and
// when the partition healed nodes 0-7 were slower than the drifted median on every vertex and
// judged slow. No node is slow here.
func TestPeerLearnedSpeedsHeldWhileTheReferenceClassIsCutOff(t *testing.T) {
	replayFaultFreeClassFleet(t, threeClasses, 260, func(n, window int) bool { return n < 8 && window > 60 && window <= 220 })
}

// threeClasses is the fleet of the partition tests: nodes 0-9 are the most common class (m4),
// 10-17 a class 1.5x faster (m6), 18-20 one 1.25x faster (m5).
func threeClasses(n int) (class string, speed float64) {
	switch {
	case n < 10:
		return "m4.xlarge", 1
	case n < 18:
		return "m6.xlarge", 1.5
	}
	return "m5.xlarge", 1.25
}

// replayFaultFreeClassFleet replays a fleet of 21 nodes with no fault, one job on all of them,
// each node of the class and speed that speed gives, for windows 1..windows; a node for which
// cut(n, window) is true does not report in that window. It fails at the first slow verdict and
// returns the last round and the detector.
func replayFaultFreeClassFleet(t *testing.T, speed func(n int) (string, float64), windows int, cut func(n, window int) bool) (Round, *Peer) {
	t.Helper()
	return replayFaultFreeClassFleetWatched(t, speed, windows, cut, nil)
}

// replayFaultFreeClassFleetWatched is replayFaultFreeClassFleet with watch, when set, seeing
// every round.
func replayFaultFreeClassFleetWatched(t *testing.T, speed func(n int) (string, float64), windows int, cut func(n, window int) bool, watch func(Round)) (Round, *Peer) {
	t.Helper()
	const nodes = 21
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	for n := range nodes {
		cls, _ := speed(n)
		m.Describe(node(n), t0, model.NodeInfo{Labels: map[string]string{"instance_type": cls}, NumCPUs: 16})
	}
	p := NewPeer(DefaultPeerConfig())
	var r Round
	for tick := 1; tick <= windows; tick++ {
		at := t0.Add(time.Duration(tick) * 5 * time.Second)
		for n := range nodes {
			if cut != nil && cut(n, tick) {
				continue
			}
			_, s := speed(n)
			rep := idleHostReport(tick, at)
			tm := &tmwardenv1.TaskManager{ResourceId: tmOf(n, 0), Jvm: &tmwardenv1.JvmStats{GcTimeMsPerSecond: 8}}
			for _, v := range []string{"V1", "V2", "V3"} {
				tm.Subtasks = append(tm.Subtasks, steadySubtask("job", v, n, tick, 1/s))
			}
			rep.TaskManagers = append(rep.TaskManagers, tm)
			m.Observe(node(n), at, rep)
		}
		v := m.View()
		r = p.Evaluate(v, at)
		v.Release()
		if watch != nil {
			watch(r)
		}
		for _, vd := range r.Verdicts {
			if vd.Status == StatusSlow {
				t.Fatalf("window %d: %s judged slow with no fault: %+v", tick, vd.Node, vd)
			}
		}
	}
	return r, p
}
