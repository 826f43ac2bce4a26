package decisions

// The restart tests drive the real Kubernetes actuator against client-go's fake clientset,
// because no Kubernetes API server runs on this machine; the store is a real pebble directory.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cluster is a fake Kubernetes cluster that outlives coordinator restarts.
type cluster struct {
	cs        *fake.Clientset
	mu        sync.Mutex
	evictions map[string]int
	taints    int
}

func newCluster(t *testing.T, pods ...string) *cluster {
	c := &cluster{evictions: map[string]int{}}
	objs := []runtime.Object{}
	for i := range 10 {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i)}})
	}
	for _, p := range pods {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "flink", Name: p, UID: types.UID("u-" + p),
			Labels: map[string]string{"component": "taskmanager"}}, Spec: corev1.PodSpec{NodeName: "n1"}})
	}
	c.cs = fake.NewClientset(objs...)
	c.cs.PrependReactor("create", "pods/eviction", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		c.mu.Lock()
		c.evictions[ev.Name]++
		c.mu.Unlock()
		return true, nil, c.cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name)
	})
	c.cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// The actuator writes the taint, and nothing else of a node's spec, with a JSON patch.
		if a.GetSubresource() == "" && strings.Contains(string(a.(k8stesting.PatchAction).GetPatch()), `"key":"tmwarden.io/slow-node"`) {
			c.mu.Lock()
			c.taints++
			c.mu.Unlock()
		}
		return false, nil, nil
	})
	return c
}

// counting wraps an actuator, counts Do calls per step and can "crash" the coordinator: after
// the crashAt-th call has done its work it cancels the executor's context, so the executor
// never records the step as done.
type counting struct {
	actuate.Actuator
	mu      sync.Mutex
	calls   map[string]int
	n       int
	crashAt int
	cancel  context.CancelFunc
}

func (c *counting) Do(ctx context.Context, a decide.Action, s actuate.Step, key string) (string, error) {
	msg, err := c.Actuator.Do(ctx, a, s, key)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[s.Name]++
	c.n++
	if c.n == c.crashAt {
		c.cancel()
	}
	return msg, err
}

func slowObs(node string) []decide.Observation {
	return []decide.Observation{{Node: node, Slow: true, Score: 4, Cause: "cpu_contention", Since: t0, Jobs: []string{"job1"},
		Evidence: []detect.Evidence{{Kind: "subtask", JobID: "job1", VertexName: "map", Subtask: 3, TPR: 100, PeerMedianTPR: 400, Slowdown: 4}}}}
}

func reach() map[string]bool {
	m := map[string]bool{}
	for i := range 10 {
		m[fmt.Sprintf("n%d", i)] = true
	}
	return m
}

func testConfig(mode decide.Mode) Config {
	c := DefaultConfig()
	c.Policy.Mode = mode
	c.Policy.ConfirmRounds = 1
	return c
}

// TestRestartMidMigrationResumes kills the coordinator in the middle of each step in turn and
// checks that, after reopening the store, every step took effect exactly once.
func TestRestartMidMigrationResumes(t *testing.T) {
	pods := []string{"tm-a", "tm-b", "tm-c"}
	// The plan is taint, condition, then evict+gone per pod: 8 steps.
	for crashAt := 1; crashAt <= 8; crashAt++ {
		t.Run(fmt.Sprintf("crash during step %d", crashAt), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			cl := newCluster(t, pods...)
			clk := &clock{t: t0}
			k, err := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}

			st, err := store.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			first := &counting{Actuator: k, calls: map[string]int{}, crashAt: crashAt, cancel: cancel}
			m, err := New(st, testConfig(decide.Auto), first, WithClock(clk.now))
			if err != nil {
				t.Fatal(err)
			}
			ds, err := m.Round(clk.now(), slowObs("n1"), reach())
			if err != nil || len(ds) != 1 || ds[0].Action.Kind != decide.KindMigrate {
				t.Fatalf("round: %v %+v", err, ds)
			}
			id := ds[0].Action.ID
			for i := 0; i < 20 && ctx.Err() == nil; i++ {
				_, _ = m.Execute(ctx)
				clk.add(3 * time.Second)
			}
			if ctx.Err() == nil {
				t.Fatalf("the crash at call %d never happened", crashAt)
			}
			if err := st.Close(); err != nil { // the coordinator dies
				t.Fatal(err)
			}

			st, err = store.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			second := &counting{Actuator: k, calls: map[string]int{}}
			m2, err := New(st, testConfig(decide.Auto), second, WithClock(clk.now))
			if err != nil {
				t.Fatal(err)
			}
			if ns, _ := m2.NodeState("n1"); ns.State != decide.Migrating {
				t.Fatalf("after restart n1 is %s, want migrating", ns.State)
			}
			// The next round must not start a second migration of the same node.
			if ds, _ := m2.Round(clk.now(), slowObs("n1"), reach()); len(ds) != 0 {
				t.Fatalf("restart produced new actions: %+v", ds)
			}
			for i := 0; i < 20; i++ {
				if _, err := m2.Execute(context.Background()); err != nil {
					t.Fatal(err)
				}
				clk.add(3 * time.Second)
			}
			d, audit, err := m2.Decision(id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != httpv1.DecisionSucceeded {
				t.Fatalf("status %s (%s)", d.Status, d.Message)
			}
			cl.mu.Lock()
			defer cl.mu.Unlock()
			for _, p := range pods {
				if cl.evictions[p] != 1 {
					t.Fatalf("pod %s evicted %d times", p, cl.evictions[p])
				}
			}
			if cl.taints != 1 {
				t.Fatalf("taint written %d times", cl.taints)
			}
			// Steps completed before the crash were not called again; the interrupted one was
			// called once more, under the same key, and took effect once.
			for i, s := range d.Steps {
				if s.Status != StepDone {
					t.Fatalf("step %s is %s", s.Name, s.Status)
				}
				total := first.calls[s.Name] + second.calls[s.Name]
				want := 1
				if i == crashAt-1 {
					want = 2
				}
				// wait-gone steps may poll more than once before the pod is gone; they have no effect.
				if s.Kind != "wait-gone" && total != want {
					t.Fatalf("step %s called %d times (first run %d, after restart %d), want %d", s.Name, total,
						first.calls[s.Name], second.calls[s.Name], want)
				}
			}
			var starts, dones int
			for _, e := range audit {
				switch e.Event {
				case "step_start":
					starts++
				case "step_done":
					dones++
				}
			}
			if dones != len(d.Steps) || starts < dones {
				t.Fatalf("audit: %d starts, %d dones for %d steps", starts, dones, len(d.Steps))
			}
			if ns, _ := m2.NodeState("n1"); ns.State != decide.Quarantined {
				t.Fatalf("n1 ends %s, want quarantined", ns.State)
			}
		})
	}
}

// TestRestartBetweenDecisionAndSnapshot covers a crash after the decision record was written
// but before the policy's snapshot: the reload adopts the decision instead of losing it or
// deciding again.
func TestRestartBetweenDecisionAndSnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(st, testConfig(decide.Auto), nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := m.Round(t0, slowObs("n1"), reach())
	if err != nil || len(ds) != 1 {
		t.Fatal(err, ds)
	}
	// Roll the snapshot back to "before the round".
	if err := st.PutJSON(keyPolicy, decide.New(testConfig(decide.Auto).Policy).Snapshot(), store.Durable); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m2, err := New(st, testConfig(decide.Auto), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ns, _ := m2.NodeState("n1"); ns.State != decide.Migrating || ns.Action != ds[0].Action.ID {
		t.Fatalf("adopted state %+v", ns)
	}
	if got, _ := m2.Round(t0.Add(time.Second), slowObs("n1"), reach()); len(got) != 0 {
		t.Fatalf("decided again: %+v", got)
	}
	if n, err := m2.Execute(context.Background()); err != nil || n != 1 {
		t.Fatalf("execute: %d %v", n, err)
	}
	if ns, _ := m2.NodeState("n1"); ns.State != decide.Quarantined {
		t.Fatalf("state %s", ns.State)
	}
}

func TestDryRunRecordsPlanAndChangesNothing(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl := newCluster(t, "tm-a")
	k, _ := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{}, nil, nil)
	m, err := New(st, testConfig(""), k) // empty mode: dry-run by default
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := m.Round(t0, slowObs("n1"), reach())
	if len(ds) != 1 || !ds[0].Action.DryRun {
		t.Fatalf("%+v", ds)
	}
	if _, err := m.Execute(context.Background()); err != nil {
		t.Fatal(err)
	}
	d, _, _ := m.Decision(ds[0].Action.ID)
	if d.Status != httpv1.DecisionDryRun || len(d.Steps) != 4 || d.Steps[2].Status != StepSkipped || !strings.Contains(d.Steps[2].Message, "would evict/flink/tm-a") {
		t.Fatalf("dry-run decision %+v", d)
	}
	n, _ := cl.cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if len(n.Spec.Taints) != 0 || cl.evictions["tm-a"] != 0 {
		t.Fatal("dry-run changed the cluster")
	}
	evs, _ := st.LatestEvents(10, "n1")
	if len(evs) == 0 {
		t.Fatal("no decision events in the node's event log")
	}
}

func TestNodeGoneFinishesDecision(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl := newCluster(t, "tm-a")
	k, _ := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{}, nil, nil)
	m, _ := New(st, testConfig(decide.Auto), k)
	ds, _ := m.Round(t0, slowObs("n1"), reach())
	_ = cl.cs.CoreV1().Nodes().Delete(context.Background(), "n1", metav1.DeleteOptions{})
	if _, err := m.Execute(context.Background()); err != nil {
		t.Fatal(err)
	}
	d, _, _ := m.Decision(ds[0].Action.ID)
	if d.Status != httpv1.DecisionNodeGone {
		t.Fatalf("status %s", d.Status)
	}
	if _, ok := m.NodeState("n1"); ok {
		t.Fatal("deleted node still tracked")
	}
}

// TestHTTPApproveFlow exercises the handler over a real loopback server with the API client.
func TestHTTPApproveFlow(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := New(st, testConfig(decide.Approve), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	c := httpv1.NewClient(srv.URL)
	ctx := context.Background()

	ds, _ := m.Round(t0, slowObs("n1"), reach())
	id := ds[0].Action.ID
	l, err := c.Decisions(ctx, "", 0)
	if err != nil || len(l.Decisions) != 1 || l.Decisions[0].Status != httpv1.DecisionProposed || l.Mode != "approve" {
		t.Fatalf("list: %v %+v", err, l)
	}
	if len(l.Decisions[0].Evidence) != 1 || l.Decisions[0].Evidence[0].Slowdown != 4 {
		t.Fatalf("evidence lost: %+v", l.Decisions[0])
	}
	// Nothing runs before approval.
	if n, _ := m.Execute(ctx); n != 0 {
		t.Fatalf("executed %d steps before approval", n)
	}
	if _, err := c.Approve(ctx, "nope", "x"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("approve unknown: %v", err)
	}
	d, err := c.Approve(ctx, id, "alice")
	if err != nil || d.Status != httpv1.DecisionPending || d.ApprovedBy != "alice" {
		t.Fatalf("approve: %v %+v", err, d)
	}
	if _, err := c.Approve(ctx, id, "bob"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("second approve: %v", err)
	}
	if n, err := m.Execute(ctx); err != nil || n != 1 {
		t.Fatalf("execute after approval: %d %v", n, err)
	}
	d, err = c.Decision(ctx, id)
	if err != nil || d.Status != httpv1.DecisionSucceeded || len(d.Audit) < 4 || d.Steps[0].Status != StepDone {
		t.Fatalf("decision: %v %+v", err, d)
	}
	if _, err := c.Decision(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown decision: %v", err)
	}
	resp, err := http.Get(srv.URL + "/api/v1/decisions?limit=zero")
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad limit: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	nd, ok := m.NodeDetail("n1")
	if !ok || nd.State != "quarantined" || nd.Verdict != "slow" || len(nd.Evidence) != 1 {
		t.Fatalf("node detail %+v", nd)
	}
	b, _ := json.Marshal(nd)
	if !strings.Contains(string(b), `"peer_median_tpr":400`) {
		t.Fatalf("node detail JSON %s", b)
	}
}

func TestRoundFromDetect(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The placement source, not the evidence, says what runs on the node.
	m, _ := New(st, testConfig(decide.Auto), nil, WithResidents(func(node string) ([]string, []string) {
		return []string{"j", "k"}, []string{node + "-tm-1"}
	}))
	r := detect.Round{At: t0, Verdicts: []detect.Verdict{{Node: "n1", Status: detect.StatusSlow, Score: 3, Cause: detect.CauseCPU, Since: t0,
		Evidence: []detect.Evidence{{Kind: "subtask", JobID: "j", TaskManager: "tm-1"}}}}}
	ds, err := m.RoundFromDetect(t0, r, reach(), nil)
	if err != nil || len(ds) != 1 || ds[0].Action.Node != "n1" || strings.Join(ds[0].Action.TaskManagers, ",") != "n1-tm-1" || strings.Join(ds[0].Action.Jobs, ",") != "j,k" {
		t.Fatalf("%v %+v", err, ds)
	}
}

// TestPDBBlockedThenTimesOut: an eviction refused by a PodDisruptionBudget leaves the decision
// blocked and retried; one refused for longer than BlockedTimeout fails it.
func TestPDBBlockedThenTimesOut(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl := newCluster(t, "tm-a")
	refusals := 0
	cl.cs.PrependReactor("create", "pods/eviction", func(k8stesting.Action) (bool, runtime.Object, error) {
		refusals++
		return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
	})
	k, _ := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{PDBRetry: 30 * time.Second}, nil, nil)
	clk := &clock{t: t0}
	cfg := testConfig(decide.Auto)
	cfg.BlockedTimeout = 5 * time.Minute
	m, _ := New(st, cfg, k, WithClock(clk.now))
	ds, _ := m.Round(clk.now(), slowObs("n1"), reach())
	id := ds[0].Action.ID
	if _, err := m.Execute(context.Background()); err != nil {
		t.Fatal(err)
	}
	d, _, _ := m.Decision(id)
	if d.Status != httpv1.DecisionBlocked || !strings.Contains(d.Message, "PodDisruptionBudget") || refusals != 1 {
		t.Fatalf("status %s message %q refusals %d", d.Status, d.Message, refusals)
	}
	// Not retried before its time.
	clk.add(10 * time.Second)
	_, _ = m.Execute(context.Background())
	if refusals != 1 {
		t.Fatalf("retried early: %d", refusals)
	}
	for range 12 {
		clk.add(30 * time.Second)
		_, _ = m.Execute(context.Background())
	}
	d, _, _ = m.Decision(id)
	if d.Status != httpv1.DecisionFailed || !strings.Contains(d.Error, "still waiting") || refusals < 5 {
		t.Fatalf("status %s error %q refusals %d", d.Status, d.Error, refusals)
	}
	if ns, _ := m.NodeState("n1"); ns.State != decide.Slow || ns.Action != "" {
		t.Fatalf("after failure n1 is %+v", ns)
	}
}

// TestTerminatingPodIsProgressNotBlocked: an evicted pod that takes a while to terminate keeps
// the decision running (the step's action is under way), not blocked as a refusal would; the
// wait is audited once, not at every poll; the decision succeeds when the pod is gone.
func TestTerminatingPodIsProgressNotBlocked(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl := newCluster(t, "tm-a")
	// The eviction is accepted and the pod starts terminating; it stays until released.
	var release bool
	cl.cs.PrependReactor("create", "pods/eviction", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ev := a.(k8stesting.CreateAction).GetObject().(*policyv1.Eviction)
		if !release {
			return true, nil, nil
		}
		return true, nil, cl.cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name)
	})
	k, _ := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{PDBRetry: 30 * time.Second, PodGonePoll: 5 * time.Second}, nil, nil)
	clk := &clock{t: t0}
	m, _ := New(st, testConfig(decide.Auto), k, WithClock(clk.now))
	ds, _ := m.Round(clk.now(), slowObs("n1"), reach())
	id := ds[0].Action.ID
	for range 4 {
		if _, err := m.Execute(context.Background()); err != nil {
			t.Fatal(err)
		}
		d, _, _ := m.Decision(id)
		if d.Status != httpv1.DecisionRunning || !strings.Contains(d.Message, "still on") {
			t.Fatalf("while the pod terminates: status %s message %q, want running", d.Status, d.Message)
		}
		clk.add(5 * time.Second)
	}
	_, audit, _ := m.Decision(id)
	waits := 0
	for _, e := range audit {
		if e.Event == "step_blocked" {
			t.Fatalf("a terminating pod audited as blocked: %+v", e)
		}
		if e.Event == "step_waiting" {
			waits++
		}
	}
	if waits != 1 {
		t.Fatalf("%d step_waiting audit entries over four polls of the same wait, want 1: %+v", waits, audit)
	}
	release = true
	_ = cl.cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "flink", "tm-a")
	for range 5 {
		_, _ = m.Execute(context.Background())
		clk.add(5 * time.Second)
	}
	if d, _, _ := m.Decision(id); d.Status != httpv1.DecisionSucceeded {
		t.Fatalf("after the pod went: status %s message %q error %q", d.Status, d.Message, d.Error)
	}
}

// TestRunLoopStopsOnCancel runs the executor goroutine for real.
func TestRunLoopStopsOnCancel(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := testConfig(decide.Auto)
	cfg.ExecInterval = 10 * time.Millisecond
	m, _ := New(st, cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- m.Run(ctx) }()
	ds, _ := m.Round(time.Now(), slowObs("n1"), reach())
	deadline := time.After(10 * time.Second)
	for {
		d, _, _ := m.Decision(ds[0].Action.ID)
		if d.Status == httpv1.DecisionSucceeded {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("executor never finished the decision: %s", d.Status)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestHealthTransitionsAreEvents: healthy → suspect → healthy lands in the event log, one
// health_changed event per change, with the metric hook called alike.
func TestHealthTransitionsAreEvents(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var hooked []string
	cfg := DefaultConfig()
	cfg.Policy.ClearRounds = 1
	m, err := New(st, cfg, nil, WithTransition(func(n string, from, to decide.State) { hooked = append(hooked, n+":"+string(from)+">"+string(to)) }))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	reach := map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true}
	for i, o := range [][]decide.Observation{nil, {{Node: "n1", Suspect: true, Score: 0.4, Cause: "cpu_contention"}}, nil} {
		if _, err := m.Round(now.Add(time.Duration(i)*time.Minute), o, reach); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := st.LatestEvents(100, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Type == "health_changed" {
			got = append(got, e.Attrs["from"]+">"+e.Attrs["to"])
		}
	}
	if strings.Join(got, ",") != "healthy>suspect,suspect>healthy" && strings.Join(got, ",") != "suspect>healthy,healthy>suspect" {
		t.Errorf("health_changed events for n1: %v, want healthy>suspect and suspect>healthy", got)
	}
	if strings.Join(hooked, ",") != "n1:healthy>suspect,n1:suspect>healthy" {
		t.Errorf("transition hook saw %v", hooked)
	}
}

// RoundFromDetect's decided is called once, when the round has decided and before it writes
// anything: the coordinator holds the fleet's reports until then, and a slow store must not
// hold them. Here the round decides a migration, so it writes a health event, the decision,
// its audit entry and the policy's memory; none of them is in the store when decided runs.
func TestRoundFromDetectDecidedBeforeItWrites(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, _ := New(st, testConfig(decide.Auto), nil)
	stored := func() (n int) {
		for _, prefix := range []string{prefixDecision, prefixAudit, keyPolicy} {
			if err := st.ScanJSON(prefix, func(string, []byte) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		evs, err := st.Events(0, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		return n + len(evs)
	}
	r := detect.Round{At: t0, Verdicts: []detect.Verdict{{Node: "n1", Status: detect.StatusSlow, Score: 3, Cause: detect.CauseCPU, Since: t0,
		Evidence: []detect.Evidence{{Kind: "subtask", JobID: "j", TaskManager: "tm-1"}}}}}
	calls, atDecided := 0, -1
	ds, err := m.RoundFromDetect(t0, r, reach(), func() { calls++; atDecided = stored() })
	if err != nil || len(ds) != 1 {
		t.Fatalf("%v %+v", err, ds)
	}
	if calls != 1 {
		t.Fatalf("decided called %d times, want once", calls)
	}
	if atDecided != 0 {
		t.Errorf("%d records were in the store when decided was called, want none", atDecided)
	}
	if after := stored(); after < 4 {
		t.Errorf("%d records in the store after the round, want the health event, the decision, its audit entry and the policy's memory", after)
	}
}
