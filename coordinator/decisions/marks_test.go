package decisions

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

func marksOn(t *testing.T, cl *cluster, node string) (taint bool, cond corev1.ConditionStatus) {
	t.Helper()
	n, err := cl.cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := actuate.DefaultKubernetesConfig()
	for _, tt := range n.Spec.Taints {
		taint = taint || tt.Key == d.TaintKey
	}
	for _, c := range n.Status.Conditions {
		if string(c.Type) == d.ConditionType {
			cond = c.Status
		}
	}
	return taint, cond
}

// TestFailedMigrationLeavesNoMark is the bug of a failed migration leaving its node tainted
// with nobody owning it: a PodDisruptionBudget refuses every eviction past blocked_timeout, the
// decision fails, and the next reconcile removes the taint and sets the condition False, with no
// new leader and no new decision involved.
func TestFailedMigrationLeavesNoMark(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl := newCluster(t, "tm-a")
	cl.cs.PrependReactor("create", "pods/eviction", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
	})
	k, _ := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{PDBRetry: 30 * time.Second}, nil, nil)
	clk := &clock{t: t0}
	cfg := testConfig(decide.Auto)
	cfg.BlockedTimeout = 2 * time.Minute
	m, _ := New(st, cfg, k, WithClock(clk.now))
	ctx := context.Background()
	if err := m.TakeOver(ctx); err != nil {
		t.Fatal(err)
	}
	ds, _ := m.Round(clk.now(), slowObs("n1"), reach())
	id := ds[0].Action.ID
	pass := func() {
		m.execMu.Lock()
		m.syncMarksIfDue(ctx)
		m.execMu.Unlock()
		_, _ = m.Execute(ctx)
	}
	pass()
	pass() // the policy's wish (n1 migrating) reaches the cluster even before the plan's steps
	if taint, cond := marksOn(t, cl, "n1"); !taint || cond != corev1.ConditionTrue {
		t.Fatalf("migrating n1: taint %v condition %q", taint, cond)
	}
	for i := 0; i < 10; i++ {
		clk.add(31 * time.Second)
		pass()
	}
	d, _, _ := m.Decision(id)
	if d.Status != httpv1.DecisionFailed {
		t.Fatalf("decision %s (%s), want failed", d.Status, d.Message)
	}
	pass()
	if taint, cond := marksOn(t, cl, "n1"); taint || cond != corev1.ConditionFalse {
		t.Fatalf("after the failed migration n1 keeps taint %v condition %q", taint, cond)
	}
	if ns, _ := m.NodeState("n1"); ns.State != decide.Slow {
		t.Fatalf("n1 is %s, want slow", ns.State)
	}
}

// TestTakeOverAdoptsMarkedNodes: a node the cluster shows marked that this store does not know
// is adopted as quarantined and keeps its marks; a take-over whose read fails says so.
func TestTakeOverAdoptsMarkedNodes(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cl := newCluster(t)
	ctx := context.Background()
	k, _ := actuate.NewKubernetes(cl.cs, actuate.KubernetesConfig{}, nil, nil)
	if _, err := k.ReconcileMarks(ctx, map[string]string{"n7": "an earlier leader"}); err != nil {
		t.Fatal(err)
	}
	m, _ := New(st, testConfig(decide.Auto), k, WithClock((&clock{t: t0}).now))

	deny := true
	cl.cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if deny {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC: list nodes not granted"))
		}
		return false, nil, nil
	})
	if err := m.TakeOver(ctx); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("take-over with list forbidden: %v", err)
	}
	deny = false
	if err := m.TakeOver(ctx); err != nil {
		t.Fatal(err)
	}
	if ns, _ := m.NodeState("n7"); ns.State != decide.Quarantined {
		t.Fatalf("n7 is %q, want quarantined (adopted)", ns.State)
	}
	if taint, cond := marksOn(t, cl, "n7"); !taint || cond != corev1.ConditionTrue {
		t.Fatalf("adopted n7 lost its marks: taint %v condition %q", taint, cond)
	}
}
