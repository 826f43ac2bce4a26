package coordinator_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/actuate/kubetest"
	"github.com/tmwarden/tmwarden/coordinator/leader"
	"github.com/tmwarden/tmwarden/telemetry"
)

// TestRealLeaderThatCannotActStepsDown runs two real coordinators against a real kube-apiserver
// (kubetest; scheduler and kubelet stood in for). Replica A runs as an account with the
// permissions docs/rbac.md used to list, which leave out `list nodes`: it wins the Lease, cannot
// take over, says so on /readyz and steps down. Replica B runs as the chart's own
// ServiceAccount, takes over, adopts the node an earlier leader tainted, and acts. The audit log
// shows B's calls were never refused.
func TestRealLeaderThatCannotActStepsDown(t *testing.T) {
	kc := kubetest.Start(t)
	ctx := context.Background()
	const ns = "tmwarden"
	if _, err := kc.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc.ApplyRBAC(t, ns, kc.RenderChart(t, "t", ns, "--set", "coordinator.config.actuator.kind=kubernetes"))
	weak := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
	}
	subj := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "weak", Namespace: ns}}
	kc.ApplyRBAC(t, ns, []runtime.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "weak"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "weak"}, Rules: weak},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "weak"}, Subjects: subj, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "weak"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "weak-leader"}, Subjects: subj, RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "t-tmwarden-coordinator-leader"}},
	})
	kc.AddNode(t, "n1")
	kc.AddNode(t, "n2")
	n, err := kc.Admin.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "tmwarden.io/slow-node", Value: "true", Effect: corev1.TaintEffectNoSchedule})
	if _, err := kc.Admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	start := func(id, account string) (*coordinator.Coordinator, func()) {
		cs, err := kubernetes.NewForConfig(kc.ServiceAccountConfig(t, ns, account))
		if err != nil {
			t.Fatal(err)
		}
		cfg := coordinator.DefaultConfig()
		cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
		cfg.Actuator.Kind = "kubernetes"
		cfg.Leader = leader.Config{LeaseName: "t-tmwarden-coordinator", Namespace: ns, Identity: id,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond, TakeOverTimeout: 4 * time.Second}
		c, err := coordinator.New(cfg, coordinator.WithKubernetes(cs), coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Serve(cctx) }()
		return c, func() { cancel(); <-done }
	}
	readyzBody := func(c *coordinator.Coordinator) (int, string) {
		resp, err := http.Get("http://" + c.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	a, stopA := start("replica-a", "weak")
	defer stopA()
	waitFor(t, time.Minute, "replica-a to lead and fail its take-over", func() bool {
		code, body := readyzBody(a)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "forbidden")
	})
	b, stopB := start("replica-b", "t-tmwarden-coordinator")
	defer stopB()
	waitFor(t, time.Minute, "replica-a to step down and replica-b to act", func() bool { return readyz(t, b) == http.StatusOK })
	if code, body := readyzBody(a); code != http.StatusServiceUnavailable {
		t.Errorf("replica-a after stepping down: /readyz %d %s", code, body)
	}
	waitFor(t, 30*time.Second, "replica-b to adopt the tainted node", func() bool {
		st, ok := b.Decisions().NodeState("n1")
		return ok && st.State == "quarantined"
	})
	refusedA := 0
	for _, e := range kc.Audit(t, "system:serviceaccount:"+ns+":weak") {
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			refusedA++
		}
	}
	if refusedA == 0 {
		t.Error("the audit log shows no refused call of replica-a: the test did not exercise a failing take-over")
	}
	for _, e := range kc.Audit(t, "system:serviceaccount:"+ns+":t-tmwarden-coordinator") {
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("chart ServiceAccount refused: %s %s", e.Verb, e.RequestURI)
		}
	}
}

// TestRealLogOnlyCoordinatorUsesOnlyItsLease: with the default values (log-only actuator, leader
// election on) the chart grants nothing but the Lease, and a real coordinator running as that
// ServiceAccount uses exactly those verbs: no 403, nothing granted unused (audit log).
func TestRealLogOnlyCoordinatorUsesOnlyItsLease(t *testing.T) {
	kc := kubetest.Start(t)
	ctx := context.Background()
	const ns = "tmw-log"
	if _, err := kc.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applied := kc.ApplyRBAC(t, ns, kc.RenderChart(t, "l", ns))
	cs, err := kubernetes.NewForConfig(kc.ServiceAccountConfig(t, ns, "l-tmwarden-coordinator"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Leader = leader.Config{LeaseName: "l-tmwarden-coordinator", Namespace: ns, Identity: "only",
		LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond, TakeOverTimeout: time.Minute}
	c, err := coordinator.New(cfg, coordinator.WithKubernetes(cs), coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Serve(cctx) }()
	waitFor(t, time.Minute, "the log-only coordinator to act", func() bool { return readyz(t, c) == http.StatusOK })
	user := "system:serviceaccount:" + ns + ":l-tmwarden-coordinator"
	waitFor(t, time.Minute, "a Lease renewal", func() bool {
		for _, u := range kubetest.Used(kc.Audit(t, user)) {
			if u == "coordination.k8s.io/leases update" {
				return true
			}
		}
		return false
	})
	cancel()
	<-done
	evs := kc.Audit(t, user)
	for _, e := range evs {
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("403 for %s %s", e.Verb, e.RequestURI)
		}
	}
	used, granted := kubetest.Used(evs), kubetest.Granted(applied)
	if strings.Join(used, ",") != strings.Join(granted, ",") {
		t.Errorf("log-only coordinator: used %v, the chart grants %v", used, granted)
	}
}
