package actuate_test

// These tests run against a real kube-apiserver, etcd and kube-controller-manager (disruption,
// deployment, replicaset, serviceaccount controllers) started by kubetest; the scheduler and the
// kubelet are stand-ins (kubetest binds pods, marks them Ready and finishes graceful deletions).
// The actuator runs as the Helm chart's own ServiceAccount with a TokenRequest token, and the API
// server's audit log is the witness of what it called. They skip, saying why, when the control
// plane is not built (`make test-deps`).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/actuate/kubetest"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/decisions"
	"github.com/tmwarden/tmwarden/coordinator/leader"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

const (
	release = "t"
	relNS   = "tmwarden"
	saName  = "t-tmwarden-coordinator"
	flinkNS = "flink"
)

var quietLog = slog.New(slog.DiscardHandler)

type real struct {
	c    *kubetest.Cluster
	sa   kubernetes.Interface // the chart's coordinator ServiceAccount
	rbac []string             // granted "group/resource verb"
	ctx  context.Context
}

func TestRealAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()
	t.Logf("real control plane %s; scheduler and kubelet are kubetest stand-ins", c.Version)
	mustCreateNS(t, c, relNS, map[string]string{"pod-security.kubernetes.io/enforce": "privileged"})
	mustCreateNS(t, c, flinkNS, nil)
	objs := c.RenderChart(t, release, relNS, "--set", "coordinator.config.actuator.kind=kubernetes")
	applied := c.ApplyRBAC(t, relNS, objs)
	cfg := c.ServiceAccountConfig(t, relNS, saName)
	d := actuate.DefaultKubernetesConfig()
	cfg.QPS, cfg.Burst = d.QPS, d.Burst
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &real{c: c, sa: sa, rbac: kubetest.Granted(applied), ctx: ctx}
	for i := 1; i <= 8; i++ {
		c.AddNode(t, fmt.Sprintf("n%d", i))
	}

	t.Run("migrate PDB-blocked then relaxed, one pod at a time, then release", r.migrateAndRelease)
	t.Run("failed migration then recovery leaves no mark", r.failedMigrationLeavesNoMark)
	t.Run("concurrent node writer at 10 writes per second", r.concurrentWriter)
	t.Run("leader failover in the middle of a migration finishes it once", r.failover)
	t.Run("a pod under two PodDisruptionBudgets is blocked with the reason", r.twoBudgets)
	t.Run("helm install under Pod Security and server-side dry run of every values variant", r.chart)

	// The audit log as witness: no call of the chart's ServiceAccount was refused, and every
	// verb the chart grants was used by some call.
	evs := c.Audit(t, "system:serviceaccount:"+relNS+":"+saName)
	for _, e := range evs {
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("403 for %s %s: %s", e.Verb, e.RequestURI, e.ResponseStatus.Message)
		}
	}
	used := kubetest.Used(evs)
	for _, g := range r.rbac {
		if !slices.Contains(used, g) {
			t.Errorf("the chart grants %q, which no call used (calls: %v)", g, used)
		}
	}
	t.Logf("calls of the chart's ServiceAccount (%d requests): %v; granted: %v", len(evs), used, r.rbac)
}

func mustCreateNS(t *testing.T, c *kubetest.Cluster, name string, labels map[string]string) {
	t.Helper()
	if _, err := c.Admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods need the namespace's default ServiceAccount (the serviceaccount controller makes it).
	kubetest.WaitUntil(t, "default ServiceAccount in "+name, time.Minute, func() bool {
		_, err := c.Admin.CoreV1().ServiceAccounts(name).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	})
}

// taskManagers runs a Deployment of n TaskManager pods on node with a PodDisruptionBudget of
// minAvailable (kubetest.Cluster.TaskManagers).
func (r *real) taskManagers(t *testing.T, name, node string, n, minAvailable int) {
	t.Helper()
	r.c.TaskManagers(t, flinkNS, name, node, n, minAvailable)
}

func (r *real) readyPods(t *testing.T, app, node string) []corev1.Pod {
	t.Helper()
	return r.c.RunningPods(t, flinkNS, app, node)
}

func (r *real) relaxPDB(t *testing.T, name string, minAvailable int) {
	t.Helper()
	p, err := r.c.Admin.PolicyV1().PodDisruptionBudgets(flinkNS).Get(r.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ma := intstr.FromInt32(int32(minAvailable))
	p.Spec.MinAvailable = &ma
	if _, err := r.c.Admin.PolicyV1().PodDisruptionBudgets(flinkNS).Update(r.ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// marks reports whether node carries the taint and the condition's status.
func (r *real) marks(t *testing.T, node string) (bool, corev1.ConditionStatus) {
	t.Helper()
	n, err := r.c.Admin.CoreV1().Nodes().Get(r.ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := actuate.DefaultKubernetesConfig()
	taint := false
	for _, x := range n.Spec.Taints {
		taint = taint || (x.Key == d.TaintKey && x.Effect == corev1.TaintEffectNoSchedule)
	}
	var cond corev1.ConditionStatus
	for _, c := range n.Status.Conditions {
		if string(c.Type) == d.ConditionType {
			cond = c.Status
		}
	}
	return taint, cond
}

// manager is one acting coordinator's decision layer, as the chart's ServiceAccount.
func (r *real) manager(t *testing.T, dir string, tweak func(*decisions.Config)) (*decisions.Manager, *store.Store) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := r.managerOn(t, st, tweak)
	return m, st
}

func (r *real) managerOn(t *testing.T, st *store.Store, tweaks ...func(*decisions.Config)) (*decisions.Manager, *store.Store) {
	k, err := actuate.NewKubernetes(r.sa, actuate.KubernetesConfig{PDBRetry: 500 * time.Millisecond, PodGonePoll: 200 * time.Millisecond}, nil, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cfg := decisions.DefaultConfig()
	cfg.Policy.Mode = decide.Auto
	cfg.Policy.ConfirmRounds = 1
	cfg.Policy.RecoveryRounds = 1
	cfg.Policy.ClearRounds = 1
	cfg.Policy.QuarantineMin = time.Millisecond
	cfg.Policy.ProbationMin = time.Millisecond
	cfg.Policy.MaxQuarantinedShare = 0.5
	cfg.ExecInterval = 100 * time.Millisecond
	for _, tw := range tweaks {
		if tw != nil {
			tw(&cfg)
		}
	}
	m, err := decisions.New(st, cfg, k, decisions.WithLogger(quietLog))
	if err != nil {
		t.Error(err)
		return nil, st
	}
	return m, st
}

func observe(node string, slow bool) ([]decide.Observation, map[string]bool) {
	reach := map[string]bool{}
	var obs []decide.Observation
	for i := 1; i <= 8; i++ {
		n := fmt.Sprintf("n%d", i)
		reach[n] = true
		o := decide.Observation{Node: n}
		if n == node && slow {
			o.Slow, o.Score, o.Cause, o.Since = true, 4, "cpu_contention", time.Now().Add(-time.Minute)
		}
		obs = append(obs, o)
	}
	return obs, reach
}

// decide runs one round on node and returns the decision it opened (kind), failing otherwise.
func decideOne(t *testing.T, m *decisions.Manager, node string, slow bool, kind decide.Kind) string {
	t.Helper()
	obs, reach := observe(node, slow)
	ds, err := m.Round(time.Now(), obs, reach)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Action.Kind == kind && d.Action.Node == node {
			return d.Action.ID
		}
	}
	t.Fatalf("round on %s opened no %s: %+v", node, kind, ds)
	return ""
}

func status(t *testing.T, m *decisions.Manager, id string) decisions.Decision {
	t.Helper()
	d, _, err := m.Decision(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (r *real) migrateAndRelease(t *testing.T) {
	r.taskManagers(t, "tm-a", "n1", 3, 3) // minAvailable 3 of 3: no eviction allowed
	m, st := r.manager(t, filepath.Join(t.TempDir(), "db"), nil)
	defer st.Close()
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	if err := m.TakeOver(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	id := decideOne(t, m, "n1", true, decide.KindMigrate)
	kubetest.WaitUntil(t, "the migration to be blocked by the budget", time.Minute, func() bool {
		return status(t, m, id).Status == httpv1.DecisionBlocked && strings.Contains(status(t, m, id).Message, "disruption budget")
	})
	d := status(t, m, id)
	if !strings.Contains(d.Message, "needs 3 healthy pods") {
		t.Errorf("blocked without the API's cause: %q", d.Message)
	}
	if taint, cond := r.marks(t, "n1"); !taint || cond != corev1.ConditionTrue {
		t.Fatalf("migrating n1: taint %v condition %q", taint, cond)
	}
	r.relaxPDB(t, "tm-a", 2)
	kubetest.WaitUntil(t, "the migration to succeed", 3*time.Minute, func() bool { return status(t, m, id).Status == httpv1.DecisionSucceeded })
	if left := r.readyPods(t, "tm-a", "n1"); len(left) != 0 {
		t.Errorf("%d TaskManager pods still on n1", len(left))
	}
	// One pod at a time: each pod's eviction is followed by its gone step before the next eviction.
	var order []string
	for _, s := range status(t, m, id).Steps {
		order = append(order, s.Kind)
	}
	if want := "taint condition evict wait-gone evict wait-gone evict wait-gone"; strings.Join(order, " ") != want {
		t.Errorf("plan %v, want %s", order, want)
	}
	evictions := 0
	for _, e := range r.c.Audit(t, "system:serviceaccount:"+relNS+":"+saName) {
		if e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Subresource == "eviction" && e.ObjectRef.Namespace == flinkNS &&
			strings.HasPrefix(e.ObjectRef.Name, "tm-a") && e.ResponseStatus != nil && e.ResponseStatus.Code < 300 {
			evictions++
		}
	}
	if evictions != 3 {
		t.Errorf("%d successful evictions of tm-a pods in the audit log, want 3", evictions)
	}
	// No hidden client-side retries: the API server saw exactly one eviction request per
	// attempt the executor recorded (client-go would repeat a 429 up to 10 times by itself).
	requests, attempts := 0, 0
	for _, e := range r.c.Audit(t, "system:serviceaccount:"+relNS+":"+saName) {
		if e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Subresource == "eviction" && strings.HasPrefix(e.ObjectRef.Name, "tm-a") {
			requests++
		}
	}
	for _, s := range status(t, m, id).Steps {
		if s.Kind == "evict" {
			attempts += s.Attempts
		}
	}
	if requests != attempts || requests <= 3 {
		t.Errorf("%d eviction requests reached the API server for %d recorded attempts (want equal, and more than 3: the budget refused some)", requests, attempts)
	}

	// Recovery: clean rounds release the node; taint and condition go.
	rid := ""
	kubetest.WaitUntil(t, "a release of n1", time.Minute, func() bool {
		obs, reach := observe("n1", false)
		ds, err := m.Round(time.Now(), obs, reach)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Action.Kind == decide.KindRelease {
				rid = d.Action.ID
			}
		}
		return rid != ""
	})
	kubetest.WaitUntil(t, "the release to succeed", time.Minute, func() bool { return status(t, m, rid).Status == httpv1.DecisionSucceeded })
	if taint, cond := r.marks(t, "n1"); taint || cond != corev1.ConditionFalse {
		t.Fatalf("released n1: taint %v condition %q", taint, cond)
	}
}

func (r *real) failedMigrationLeavesNoMark(t *testing.T) {
	r.taskManagers(t, "tm-b", "n2", 2, 2) // never allows an eviction
	m, st := r.manager(t, filepath.Join(t.TempDir(), "db"), func(c *decisions.Config) { c.BlockedTimeout = 3 * time.Second })
	defer st.Close()
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	if err := m.TakeOver(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	id := decideOne(t, m, "n2", true, decide.KindMigrate)
	kubetest.WaitUntil(t, "n2 marked", time.Minute, func() bool { taint, cond := r.marks(t, "n2"); return taint && cond == corev1.ConditionTrue })
	kubetest.WaitUntil(t, "the migration to fail past blocked_timeout", time.Minute, func() bool { return status(t, m, id).Status == httpv1.DecisionFailed })
	kubetest.WaitUntil(t, "the marks of the failed migration to go", 30*time.Second, func() bool {
		taint, cond := r.marks(t, "n2")
		return !taint && cond == corev1.ConditionFalse
	})
	// Recovery: healthy rounds, no action, and still no mark.
	for range 6 {
		obs, reach := observe("n2", false)
		ds, err := m.Round(time.Now(), obs, reach)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Action.Node == "n2" {
				t.Errorf("recovering n2 got an action: %+v", d.Action)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ns, _ := m.NodeState("n2"); ns.State != decide.Healthy {
		t.Errorf("n2 is %s after 6 healthy rounds", ns.State)
	}
	if taint, cond := r.marks(t, "n2"); taint || cond == corev1.ConditionTrue {
		t.Errorf("recovered n2 keeps taint %v condition %q", taint, cond)
	}
}

// concurrentWriter: another writer updates n3 (labels with whole-object updates, as a label
// controller does, and the Ready condition's heartbeat, as a kubelet does) at 10 writes/s while
// the actuator taints, conditions, untaints and clears it 40 times: every step must succeed.
func (r *real) concurrentWriter(t *testing.T) {
	ctx, cancel := context.WithCancel(r.ctx)
	var writes, conflicts atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(80 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for try := 0; try < 5 && ctx.Err() == nil; try++ {
				n, err := r.c.Admin.CoreV1().Nodes().Get(ctx, "n3", metav1.GetOptions{})
				if err != nil {
					continue
				}
				switch i % 4 {
				case 0, 2:
					n.Labels["kubetest/writer"] = fmt.Sprint(i)
					_, err = r.c.Admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
				case 1:
					// Another owner's taint comes and goes (an autoscaler, a drain tool).
					var ts []corev1.Taint
					found := false
					for _, x := range n.Spec.Taints {
						if x.Key == "kubetest/other" {
							found = true
						} else {
							ts = append(ts, x)
						}
					}
					if !found {
						ts = append(ts, corev1.Taint{Key: "kubetest/other", Effect: corev1.TaintEffectPreferNoSchedule})
					}
					n.Spec.Taints = ts
					_, err = r.c.Admin.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
				default:
					for j := range n.Status.Conditions {
						if n.Status.Conditions[j].Type == corev1.NodeReady {
							n.Status.Conditions[j].LastHeartbeatTime = metav1.Now()
						}
					}
					_, err = r.c.Admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
				}
				if err == nil {
					writes.Add(1)
					break
				}
				if apierrors.IsConflict(err) {
					conflicts.Add(1)
				}
			}
		}
	}()
	k, err := actuate.NewKubernetes(r.sa, actuate.KubernetesConfig{}, nil, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	a := decide.Action{ID: "w", Kind: decide.KindMigrate, Node: "n3", Reason: "concurrent writer test"}
	start := time.Now()
	kinds := []string{"taint", "condition", "untaint", "condition-clear"}
	var failed []string
	for i := range 40 {
		kind := kinds[i%4]
		if _, err := k.Do(r.ctx, a, actuate.Step{Name: kind, Kind: kind}, fmt.Sprintf("w/%d", i)); err != nil {
			var re *actuate.RetryError
			failed = append(failed, fmt.Sprintf("step %d %s: %v (retry later: %v)", i, kind, err, errors.As(err, &re)))
		}
		time.Sleep(100 * time.Millisecond) // spread the steps over the writer's run
	}
	elapsed := time.Since(start)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	rate := float64(writes.Load()) / (elapsed + time.Second).Seconds()
	t.Logf("other writer: %d writes (%.1f/s), %d of its own conflicts; 40 actuator steps in %s", writes.Load(), rate, conflicts.Load(), elapsed.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Errorf("%d of 40 steps failed beside a writer at %.1f writes/s:\n%s", len(failed), rate, strings.Join(failed, "\n"))
	}
	if rate < 10 {
		t.Errorf("the other writer reached only %.1f writes/s, below the 10/s this test is about", rate)
	}
}

// failover: replica A leads and starts migrating n4's three TaskManagers; it is stopped after
// the first eviction; replica B takes the Lease, resumes the decision from the store they
// share, and finishes it: every pod evicted exactly once (the audit log counts).
func (r *real) failover(t *testing.T) {
	r.taskManagers(t, "tm-c", "n4", 3, 2)
	dir := filepath.Join(t.TempDir(), "db")
	type replica struct {
		mu     sync.Mutex
		m      *decisions.Manager
		cancel context.CancelFunc
		done   chan struct{}
		err    error
	}
	start := func(id string, onTerm func(ctx context.Context, m *decisions.Manager)) *replica {
		rep := &replica{done: make(chan struct{})}
		ctx, cancel := context.WithCancel(r.ctx)
		rep.cancel = cancel
		e, err := leader.New(leader.Config{LeaseName: saName, Namespace: relNS, Identity: id, LeaseDuration: 4 * time.Second,
			RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}, r.sa, quietLog)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(rep.done)
			_ = e.Run(ctx, func(term context.Context) {
				var st *store.Store
				var err error
				for { // the store is the volume the replicas share; pebble takes one writer
					if st, err = store.Open(dir); err == nil || term.Err() != nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err != nil {
					return
				}
				defer st.Close()
				m, mst := r.managerOn(t, st)
				_ = mst
				if err := m.TakeOver(term); err != nil {
					rep.mu.Lock()
					rep.err = err
					rep.mu.Unlock()
					return
				}
				rep.mu.Lock()
				rep.m = m
				rep.mu.Unlock()
				if onTerm != nil {
					onTerm(term, m)
				}
				_ = m.Run(term)
			}, nil)
		}()
		return rep
	}
	get := func(rep *replica) *decisions.Manager { rep.mu.Lock(); defer rep.mu.Unlock(); return rep.m }

	var id string
	var idMu sync.Mutex
	a := start("coord-a", func(_ context.Context, m *decisions.Manager) {
		idMu.Lock()
		id = decideOne(t, m, "n4", true, decide.KindMigrate)
		idMu.Unlock()
	})
	kubetest.WaitUntil(t, "coord-a to lead and decide", time.Minute, func() bool { idMu.Lock(); defer idMu.Unlock(); return id != "" })
	b := start("coord-b", nil)
	defer func() { b.cancel(); <-b.done }()
	kubetest.WaitUntil(t, "coord-a's first eviction", 2*time.Minute, func() bool { return len(r.readyPods(t, "tm-c", "n4")) < 3 })
	a.cancel()
	<-a.done
	kubetest.WaitUntil(t, "coord-b to take over", time.Minute, func() bool { return get(b) != nil })
	mb := get(b)
	kubetest.WaitUntil(t, "coord-b to finish the migration", 3*time.Minute, func() bool { return status(t, mb, id).Status == httpv1.DecisionSucceeded })
	// An eviction counts unless the server refused it (429: the PDB; 404: the pod was gone). Not
	// only 2xx: coord-a's term can end while an eviction it sent is in flight, and the server
	// then evicts the pod and records 504 "context canceled" for the request it could not answer.
	perPod := map[string]int{}
	for _, e := range r.c.Audit(t, "system:serviceaccount:"+relNS+":"+saName) {
		if e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Subresource == "eviction" && strings.HasPrefix(e.ObjectRef.Name, "tm-c") &&
			e.ResponseStatus != nil && e.ResponseStatus.Code != http.StatusTooManyRequests && e.ResponseStatus.Code != http.StatusNotFound {
			perPod[e.ObjectRef.Name]++
		}
	}
	if len(perPod) != 3 {
		t.Errorf("evicted pods %v, want the 3 of n4", perPod)
	}
	for p, n := range perPod {
		if n != 1 {
			t.Errorf("pod %s evicted %d times", p, n)
		}
	}
	if taint, cond := r.marks(t, "n4"); !taint || cond != corev1.ConditionTrue {
		t.Errorf("quarantined n4 after failover: taint %v condition %q", taint, cond)
	}
}

// twoBudgets: the Eviction API answers 500 for a pod covered by two PodDisruptionBudgets; the
// step is blocked (RetryError) with the API's reason, after exactly one request.
func (r *real) twoBudgets(t *testing.T) {
	r.taskManagers(t, "tm-d", "n5", 1, 0)
	ma := intstr.FromInt32(0)
	second := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "tm-d-second", Namespace: flinkNS},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &ma, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tm-d"}}}}
	if _, err := r.c.Admin.PolicyV1().PodDisruptionBudgets(flinkNS).Create(r.ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k, err := actuate.NewKubernetes(r.sa, actuate.KubernetesConfig{}, nil, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	a := decide.Action{ID: "two", Kind: decide.KindMigrate, Node: "n5"}
	steps, err := k.Plan(r.ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	var evict actuate.Step
	for _, s := range steps {
		if s.Kind == "evict" {
			evict = s
		}
	}
	_, err = k.Do(r.ctx, a, evict, "two/evict")
	var re *actuate.RetryError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "more than one PodDisruptionBudget") {
		t.Fatalf("eviction of a pod under two budgets: %v, want a RetryError naming the two budgets", err)
	}
	n := 0
	pod := strings.Split(evict.Target, "/")[1]
	for _, e := range r.c.Audit(t, "system:serviceaccount:"+relNS+":"+saName) {
		if e.ObjectRef != nil && e.ObjectRef.Subresource == "eviction" && e.ObjectRef.Name == pod {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d eviction requests for %s, want 1", n, pod)
	}
	t.Logf("blocked: %s", re.Reason)
}

// chart: helm install refuses a namespace whose Pod Security level would refuse the agent,
// installs into one labelled as docs/rbac.md says, the agent's pod is admitted there and
// refused under baseline, and every values variant passes server-side dry run.
func (r *real) chart(t *testing.T) {
	priv := map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}
	mustCreateNS(t, r.c, "tmw-priv", priv)
	mustCreateNS(t, r.c, "tmw-base", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	mustCreateNS(t, r.c, "tmw-restricted", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	chart := kubetest.ChartPath(t)
	out, err := r.c.HelmRun(t, "install", "inst", chart, "--namespace", "tmw-base")
	if err == nil || !strings.Contains(out, "pod-security.kubernetes.io/enforce=privileged") {
		t.Errorf("helm install into a baseline namespace: err %v, output %s; want a refusal naming the label", err, out)
	}
	if out, err := r.c.HelmRun(t, "install", "inst", chart, "--namespace", "tmw-priv", "--set", "coordinator.config.actuator.kind=kubernetes"); err != nil {
		t.Fatalf("helm install into the documented namespace: %v\n%s", err, out)
	}
	ds, err := r.c.Admin.AppsV1().DaemonSets("tmw-priv").Get(r.ctx, "inst-tmwarden-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := r.c.Admin.AppsV1().Deployments("tmw-priv").Get(r.ctx, "inst-tmwarden-coordinator", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(ns string, spec corev1.PodSpec) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}, Spec: *spec.DeepCopy()}
		p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount = "", "" // the release's accounts live in tmw-priv only
		_, err := r.c.Admin.CoreV1().Pods(ns).Create(r.ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	if err := admit("tmw-priv", ds.Spec.Template.Spec); err != nil {
		t.Errorf("the agent's pod is refused in the documented (privileged) namespace: %v", err)
	}
	if err := admit("tmw-base", ds.Spec.Template.Spec); err == nil || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("the agent's pod under baseline: %v, want a PodSecurity refusal", err)
	}
	if err := admit("tmw-restricted", dep.Spec.Template.Spec); err != nil {
		t.Errorf("the coordinator's pod under restricted: %v", err)
	}
	for _, v := range [][]string{
		nil,
		{"--set", "coordinator.config.actuator.kind=kubernetes"},
		{"--set", "coordinator.leaderElection.enabled=false"},
		{"--set", "coordinator.persistence.enabled=false", "--set", "coordinator.replicas=2"},
		{"--set", "coordinator.pdb.enabled=false"},
		{"--set", "agent.enabled=false"},
		{"--set", "agent.sysResource=true", "--set", "agent.hostPID=true"},
		{"--set", "rbac.create=false"},
		{"--set", "serviceAccount.create=false"},
		{"--set", "telemetry.otlp.endpoint=otel:4317"},
		{"--set", "networkPolicy.enabled=true", "--set", "agent.stateCache.enabled=true", "--set", "agent.stateCache.existingSecret=keys",
			"--set", "agent.stateCache.upstream.endpoint=http://minio:9000", "--set", "networkPolicy.grpcFrom[0].ipBlock.cidr=10.20.0.0/16",
			"--set", "networkPolicy.httpFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"},
		{"--set", "networkPolicy.enabled=true"},
	} {
		if refused := r.c.DryRunChart(t, "dry", "tmw-priv", v...); len(refused) > 0 {
			t.Errorf("values %v: the API server refuses:\n%s", v, strings.Join(refused, "\n"))
		}
	}
	// ServiceMonitor is the Prometheus Operator's CRD: installed from the committed copy, the
	// serviceMonitor variant is validated against its schema like the rest.
	r.c.InstallServiceMonitorCRD(t)
	sm := []string{"--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.labels.release=prom"}
	if refused := r.c.DryRunChart(t, "dry", "tmw-priv", sm...); len(refused) > 0 {
		t.Errorf("values %v: the API server refuses:\n%s", sm, strings.Join(refused, "\n"))
	}
}
