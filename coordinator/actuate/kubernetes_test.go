package actuate

// These tests use client-go's fake clientset (k8s.io/client-go/kubernetes/fake) because no
// Kubernetes API server runs on this machine. Reactors stand in for the API server's eviction
// handling (delete the pod, or answer 429 as a PodDisruptionBudget would) and for 409 conflicts.

import (
	"context"
	"errors"
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

	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/flink/rest"
)

func node(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

func tmPod(ns, name, node string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name),
		Labels: map[string]string{"component": "taskmanager"}, Annotations: ann}, Spec: corev1.PodSpec{NodeName: node}}
}

// evictions makes evictions delete the pod, as the API server does when no PDB objects, and
// counts them per pod; refuse429 answers 429 for the first n evictions of a pod.
type evictions struct {
	mu     sync.Mutex
	count  map[string]int
	refuse map[string]int
}

func (e *evictions) install(cs *fake.Clientset) {
	e.count = map[string]int{}
	cs.PrependReactor("create", "pods/eviction", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		if ca.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := ca.GetObject().(*policyv1.Eviction)
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.refuse[ev.Name] > 0 {
			e.refuse[ev.Name]--
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
		}
		e.count[ev.Name]++
		err := cs.Tracker().Delete(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ev.Namespace, ev.Name)
		return true, nil, err
	})
}

func migrate(node string, jobs ...string) decide.Action {
	return decide.Action{ID: "d1", Kind: decide.KindMigrate, Node: node, Jobs: jobs, Reason: "slow for 3 rounds", Mode: decide.Auto}
}

// runPlan plans and runs every step, retrying RetryErrors up to 10 times per step.
func runPlan(t *testing.T, k Actuator, a decide.Action) ([]string, error) {
	t.Helper()
	ctx := context.Background()
	steps, err := k.Plan(ctx, a)
	if err != nil {
		return nil, err
	}
	var msgs []string
	for _, s := range steps {
		for try := 0; ; try++ {
			msg, err := k.Do(ctx, a, s, a.ID+"/"+s.Name)
			var re *RetryError
			if errors.As(err, &re) && try < 10 {
				continue
			}
			if err != nil {
				return msgs, err
			}
			msgs = append(msgs, s.Name+": "+msg)
			break
		}
	}
	return msgs, nil
}

func TestKubernetesMigrateAndRelease(t *testing.T) {
	cs := fake.NewClientset(node("n1"), node("n2"),
		tmPod("flink", "tm-a", "n1", nil), tmPod("flink", "tm-b", "n1", nil),
		tmPod("flink", "tm-other", "n2", nil),
		tmPod("flink", "tm-keep", "n1", map[string]string{SafeToEvictAnnotation: "false"}),
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "flink", Name: "jobmanager", Labels: map[string]string{"component": "jobmanager"}}, Spec: corev1.PodSpec{NodeName: "n1"}})
	var ev evictions
	ev.install(cs)
	k, err := NewKubernetes(cs, KubernetesConfig{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := runPlan(t, k, migrate("n1"))
	if err != nil {
		t.Fatalf("migrate: %v (%v)", err, msgs)
	}
	n, _ := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "tmwarden.io/slow-node" || n.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Fatalf("taints %+v", n.Spec.Taints)
	}
	if len(n.Status.Conditions) != 1 || n.Status.Conditions[0].Type != "TmwardenSlowNode" || n.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("conditions %+v", n.Status.Conditions)
	}
	if ev.count["tm-a"] != 1 || ev.count["tm-b"] != 1 || ev.count["tm-other"] != 0 || ev.count["tm-keep"] != 0 || ev.count["jobmanager"] != 0 {
		t.Fatalf("evictions %v", ev.count)
	}
	if !strings.Contains(strings.Join(msgs, "\n"), "skipped: "+SafeToEvictAnnotation+"=false") {
		t.Fatalf("safe-to-evict pod not reported as skipped: %v", msgs)
	}
	// Repeating every step (a restarted executor) changes nothing more.
	if _, err := runPlan(t, k, migrate("n1")); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if len(n.Spec.Taints) != 1 || ev.count["tm-a"] != 1 {
		t.Fatalf("repeat was not idempotent: taints %v evictions %v", n.Spec.Taints, ev.count)
	}

	rel := decide.Action{ID: "d2", Kind: decide.KindRelease, Node: "n1", Reason: "clean"}
	if _, err := runPlan(t, k, rel); err != nil {
		t.Fatal(err)
	}
	n, _ = cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if len(n.Spec.Taints) != 0 || n.Status.Conditions[0].Status != corev1.ConditionFalse {
		t.Fatalf("after release: taints %v conditions %v", n.Spec.Taints, n.Status.Conditions)
	}
}

func TestKubernetesEviction429IsRetryLater(t *testing.T) {
	cs := fake.NewClientset(node("n1"), tmPod("flink", "tm-a", "n1", nil))
	ev := evictions{refuse: map[string]int{"tm-a": 2}}
	ev.install(cs)
	k, _ := NewKubernetes(cs, KubernetesConfig{PDBRetry: 7 * time.Second}, nil, nil)
	a := migrate("n1")
	steps, err := k.Plan(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	var evict Step
	for _, s := range steps {
		if s.Kind == "evict" {
			evict = s
		}
	}
	for i := range 2 {
		_, err := k.Do(context.Background(), a, evict, "k")
		var re *RetryError
		if !errors.As(err, &re) || re.After != 7*time.Second || !strings.Contains(re.Reason, "PodDisruptionBudget") {
			t.Fatalf("attempt %d: want a PDB RetryError, got %v", i, err)
		}
	}
	if _, err := k.Do(context.Background(), a, evict, "k"); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if ev.count["tm-a"] != 1 {
		t.Fatalf("evictions %v", ev.count)
	}
}

func TestKubernetesUpdateConflictIsRetried(t *testing.T) {
	cs := fake.NewClientset(node("n1"))
	conflicts := 2
	cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "" && conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	k, _ := NewKubernetes(cs, KubernetesConfig{}, nil, nil)
	msg, err := k.Do(context.Background(), migrate("n1"), Step{Name: "taint", Kind: "taint"}, "k")
	if err != nil || conflicts != 0 {
		t.Fatalf("taint after conflicts: %q %v (conflicts left %d)", msg, err, conflicts)
	}
	n, _ := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if len(n.Spec.Taints) != 1 {
		t.Fatalf("taints %v", n.Spec.Taints)
	}
}

func TestKubernetesNodeDeletedMidAction(t *testing.T) {
	cs := fake.NewClientset(node("n1"), tmPod("flink", "tm-a", "n1", nil))
	var ev evictions
	ev.install(cs)
	k, _ := NewKubernetes(cs, KubernetesConfig{}, nil, nil)
	a := migrate("n1")
	steps, err := k.Plan(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Do(context.Background(), a, steps[0], "k/taint"); err != nil {
		t.Fatal(err)
	}
	// The node and its pods disappear (scaled down by the autoscaler, say).
	_ = cs.CoreV1().Nodes().Delete(context.Background(), "n1", metav1.DeleteOptions{})
	_ = cs.CoreV1().Pods("flink").Delete(context.Background(), "tm-a", metav1.DeleteOptions{})
	if _, err := k.Do(context.Background(), a, steps[1], "k/condition"); !errors.Is(err, ErrNodeGone) {
		t.Fatalf("condition on a deleted node: want ErrNodeGone, got %v", err)
	}
	if msg, err := k.Do(context.Background(), a, steps[2], "k/evict"); err != nil || !strings.Contains(msg, "gone") {
		t.Fatalf("evicting a vanished pod: %q %v", msg, err)
	}
	if _, err := k.Plan(context.Background(), a); !errors.Is(err, ErrNodeGone) {
		t.Fatalf("plan on a deleted node: %v", err)
	}
}

type fakeCheckpointer struct{ jobs []string }

func (f *fakeCheckpointer) Checkpoint(_ context.Context, job string, _ rest.CheckpointType, _ time.Duration) (int64, error) {
	f.jobs = append(f.jobs, job)
	if job == "bad" {
		return 0, errors.New("declined")
	}
	return 42, nil
}

func TestKubernetesCheckpointBeforeEviction(t *testing.T) {
	cs := fake.NewClientset(node("n1"), tmPod("flink", "tm-a", "n1", nil))
	var ev evictions
	ev.install(cs)
	if _, err := NewKubernetes(cs, KubernetesConfig{Checkpoint: true}, nil, nil); err == nil {
		t.Fatal("checkpoint without a REST client was accepted")
	}
	cp := &fakeCheckpointer{}
	k, _ := NewKubernetes(cs, KubernetesConfig{Checkpoint: true}, cp, nil)
	msgs, err := runPlan(t, k, migrate("n1", "job1", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(msgs, "\n")
	if strings.Join(cp.jobs, ",") != "job1,bad" || !strings.Contains(all, "checkpoint 42 of job job1") || !strings.Contains(all, "continuing") {
		t.Fatalf("checkpoints %v, messages %v", cp.jobs, msgs)
	}
	if i, j := strings.Index(all, "checkpoint/job1"), strings.Index(all, "evict/"); i < 0 || j < i {
		t.Fatalf("checkpoint must come before eviction: %v", msgs)
	}
}

func TestBuild(t *testing.T) {
	if a, err := Build(Config{}, Deps{}); err != nil || a.Name() != "log" {
		t.Fatalf("default: %v %v", a, err)
	}
	if _, err := Build(Config{Kind: "teleport"}, Deps{}); err == nil || !strings.Contains(err.Error(), "teleport") {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := Build(Config{Kind: "webhook"}, Deps{}); err == nil {
		t.Fatal("webhook without a URL was accepted")
	}
	if a, err := Build(Config{Kind: "kubernetes"}, Deps{Kube: fake.NewClientset()}); err != nil || a.Name() != "kubernetes" {
		t.Fatalf("kubernetes: %v", err)
	}
}

func condition(n *corev1.Node, typ string) (corev1.NodeCondition, bool) {
	for _, c := range n.Status.Conditions {
		if string(c.Type) == typ {
			return c, true
		}
	}
	return corev1.NodeCondition{}, false
}

// TestReconcileMarks: the marks follow the wanted set exactly; foreign taints and conditions
// stay; a second reconcile changes nothing.
func TestReconcileMarks(t *testing.T) {
	ctx := context.Background()
	d := DefaultKubernetesConfig()
	n1 := node("n1") // marked, not wanted: a failed migration's leftover
	n1.Spec.Taints = []corev1.Taint{{Key: "other", Effect: corev1.TaintEffectNoExecute}, {Key: d.TaintKey, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	n1.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}, {Type: corev1.NodeConditionType(d.ConditionType), Status: corev1.ConditionTrue}}
	n3 := node("n3") // only the condition left
	n3.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeConditionType(d.ConditionType), Status: corev1.ConditionTrue}}
	cs := fake.NewClientset(n1, node("n2"), n3, node("n4"))
	k, _ := NewKubernetes(cs, KubernetesConfig{}, nil, nil)

	marked, err := k.Marked(ctx)
	if err != nil || strings.Join(marked, ",") != "n1,n3" {
		t.Fatalf("Marked before: %v %v", marked, err)
	}
	changed, err := k.ReconcileMarks(ctx, map[string]string{"n2": "quarantined: cpu"})
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 5 {
		t.Errorf("changes %q, want 5 (n1 taint and condition, n2 taint and condition, n3 condition)", changed)
	}
	get := func(name string) *corev1.Node {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	g1 := get("n1")
	if len(g1.Spec.Taints) != 1 || g1.Spec.Taints[0].Key != "other" {
		t.Errorf("n1 taints %v, want only the foreign one", g1.Spec.Taints)
	}
	if c, _ := condition(g1, d.ConditionType); c.Status != corev1.ConditionFalse {
		t.Errorf("n1 condition %+v, want False", c)
	}
	if c, _ := condition(g1, string(corev1.NodeReady)); c.Status != corev1.ConditionTrue {
		t.Errorf("n1 lost its Ready condition: %+v", g1.Status.Conditions)
	}
	g2 := get("n2")
	if len(g2.Spec.Taints) != 1 || g2.Spec.Taints[0].Key != d.TaintKey || g2.Spec.Taints[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("n2 taints %v", g2.Spec.Taints)
	}
	if c, _ := condition(g2, d.ConditionType); c.Status != corev1.ConditionTrue || c.Message != "quarantined: cpu" {
		t.Errorf("n2 condition %+v", c)
	}
	if _, ok := condition(get("n4"), d.ConditionType); ok {
		t.Error("n4, never marked, got a condition")
	}
	if marked, _ := k.Marked(ctx); strings.Join(marked, ",") != "n2" {
		t.Errorf("Marked after: %v", marked)
	}
	if changed, err := k.ReconcileMarks(ctx, map[string]string{"n2": "quarantined: cpu"}); err != nil || len(changed) != 0 {
		t.Errorf("second reconcile changed %q (%v)", changed, err)
	}
}

// TestTaintPatchMeetsAnotherTaintWriter: someone else changes the taints between our read and
// our patch; the patch's test fails, we read again, and both taints end up on the node.
func TestTaintPatchMeetsAnotherTaintWriter(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(node("n1"))
	interfere := 2
	cs.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "" || interfere == 0 {
			return false, nil, nil
		}
		interfere--
		n, err := cs.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, "", "n1")
		if err != nil {
			return true, nil, err
		}
		cp := n.(*corev1.Node).DeepCopy()
		cp.Spec.Taints = append(cp.Spec.Taints, corev1.Taint{Key: "autoscaler/" + string(rune('a'+interfere)), Effect: corev1.TaintEffectPreferNoSchedule})
		return false, nil, cs.Tracker().Update(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, cp, "")
	})
	k, _ := NewKubernetes(cs, KubernetesConfig{}, nil, nil)
	if _, err := k.Do(ctx, migrate("n1"), Step{Name: "taint", Kind: "taint"}, "k"); err != nil {
		t.Fatal(err)
	}
	n, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if len(n.Spec.Taints) != 3 || !k.hasTaint(n) {
		t.Fatalf("taints %v: want the two foreign ones and ours", n.Spec.Taints)
	}
}

// TestWriteThatKeepsConflictingWaits: a write that still conflicts after the backoff is a
// RetryError (the decision waits), not a failure; Forbidden is a failure at once.
func TestWriteThatKeepsConflictingWaits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"conflict", apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("the object has been modified")), true},
		{"overloaded", apierrors.NewTooManyRequests("too many requests", 1), true},
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("no RBAC")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(node("n1"))
			calls := 0
			cs.PrependReactor("patch", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
				calls++
				return true, nil, tc.err
			})
			k, _ := NewKubernetes(cs, KubernetesConfig{}, nil, nil)
			k.backoff.Duration, k.backoff.Factor = time.Millisecond, 1
			_, err := k.Do(context.Background(), migrate("n1"), Step{Name: "taint", Kind: "taint"}, "k")
			var re *RetryError
			if errors.As(err, &re) != tc.retry {
				t.Fatalf("error %v: RetryError %v, want %v", err, errors.As(err, &re), tc.retry)
			}
			if want := map[bool]int{true: k.backoff.Steps, false: 1}[tc.retry]; calls != want {
				t.Errorf("%d patch calls, want %d", calls, want)
			}
		})
	}
}

// TestEvictionRefusalsExplainThemselves: the API's causes reach the message, and a pod under two
// PodDisruptionBudgets (the API answers 500) blocks the decision with the reason instead of
// failing it.
func TestEvictionRefusalsExplainThemselves(t *testing.T) {
	pdb := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 429, Reason: metav1.StatusReasonTooManyRequests,
		Message: "Cannot evict pod as it would violate the pod's disruption budget.",
		Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "DisruptionBudget", Message: "The disruption budget tm-pdb needs 2 healthy pods and has 2 currently"}}}}}
	two := apierrors.NewInternalError(errors.New("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
	for _, tc := range []struct {
		err  error
		want string
	}{{pdb, "needs 2 healthy pods and has 2 currently"}, {two, "more than one PodDisruptionBudget"}} {
		cs := fake.NewClientset(node("n1"), tmPod("flink", "tm-a", "n1", nil))
		cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() == "eviction" {
				return true, nil, tc.err
			}
			return false, nil, nil
		})
		k, _ := NewKubernetes(cs, KubernetesConfig{}, nil, nil)
		_, err := k.Do(context.Background(), migrate("n1"), Step{Name: "evict/flink/tm-a", Kind: "evict", Target: "flink/tm-a/uid-tm-a"}, "k")
		var re *RetryError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, tc.want) {
			t.Errorf("eviction answered %v: got %v, want a RetryError naming %q", tc.err, err, tc.want)
		}
	}
}
