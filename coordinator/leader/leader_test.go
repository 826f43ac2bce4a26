package leader_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/decisions"
	"github.com/tmwarden/tmwarden/coordinator/leader"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// These tests use client-go's fake clientset because no API server runs here. The fake keeps
// Leases in memory but does not check resourceVersions, so it cannot show two writers racing on
// one update; the timings are generous so that a loaded machine does not let a live lease expire.

func fastConfig(id string) leader.Config {
	return leader.Config{LeaseName: "tmwarden-coordinator", Namespace: "tmwarden", Identity: id,
		LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond}
}

type candidate struct {
	e      *leader.Elector
	cancel context.CancelFunc
	done   chan struct{}
	starts atomic.Int32
	stops  atomic.Int32
}

func campaign(t *testing.T, kube kubernetes.Interface, id string, onStarted func(context.Context), onStopped func()) *candidate {
	t.Helper()
	e, err := leader.New(fastConfig(id), kube, quiet)
	if err != nil {
		t.Fatalf("leader.New(%s): %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{e: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = e.Run(ctx, func(lctx context.Context) {
			c.starts.Add(1)
			if onStarted != nil {
				onStarted(lctx)
			}
		}, func() {
			c.stops.Add(1)
			if onStopped != nil {
				onStopped()
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second) // bounds a failing test only; generous under load
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExactlyOneLeadsAndTheOtherTakesOver(t *testing.T) {
	kube := fake.NewClientset()
	a := campaign(t, kube, "coord-a", nil, nil)
	b := campaign(t, kube, "coord-b", nil, nil)
	waitFor(t, "a leader", func() bool { return a.e.IsLeader() || b.e.IsLeader() })

	// Over several lease durations, never both at once and never none for long.
	for range 150 {
		if a.e.IsLeader() && b.e.IsLeader() {
			t.Fatal("both candidates lead at once")
		}
		time.Sleep(10 * time.Millisecond)
	}
	first, second := a, b
	if b.e.IsLeader() {
		first, second = b, a
	}
	if !first.e.IsLeader() || first.starts.Load() != 1 || second.starts.Load() != 0 {
		t.Fatalf("leadership moved without cause: first starts %d, second starts %d", first.starts.Load(), second.starts.Load())
	}
	lease, err := kube.CoordinationV1().Leases("tmwarden").Get(context.Background(), "tmwarden-coordinator", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	if got := *lease.Spec.HolderIdentity; got != first.e.Identity() {
		t.Fatalf("lease holder %q, leader %q", got, first.e.Identity())
	}
	waitFor(t, "the follower to learn the leader", func() bool { return second.e.Leader() == first.e.Identity() })

	first.cancel()
	<-first.done
	if first.e.IsLeader() || first.stops.Load() != 1 {
		t.Fatalf("stopped leader: IsLeader %v, stops %d", first.e.IsLeader(), first.stops.Load())
	}
	waitFor(t, "the follower to take over", second.e.IsLeader)
	waitFor(t, "the new leader to see itself as holder", func() bool { return second.e.Leader() == second.e.Identity() })
}

func TestLeaderThatCannotRenewStopsActing(t *testing.T) {
	kube := fake.NewClientset()
	// A partition from the API server: every Lease update fails while cut is set.
	var cut atomic.Bool
	kube.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if cut.Load() {
			return true, nil, errors.New("connection refused (test partition)")
		}
		return false, nil, nil
	})
	var stopped, termCtxDone atomic.Bool
	a := campaign(t, kube, "coord-a", func(ctx context.Context) {
		<-ctx.Done()
		termCtxDone.Store(true)
	}, func() { stopped.Store(true) })
	waitFor(t, "a to lead", a.e.IsLeader)

	// The leader must stop acting within its renew deadline: after that a follower may take
	// the Lease once it expires, and two coordinators must never act at once.
	cut.Store(true)
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() && stopped.Load() })
	if !termCtxDone.Load() {
		t.Fatal("onStopped ran before the term's work returned")
	}
	cut.Store(false)
	waitFor(t, "a to lead again once the API server is back", a.e.IsLeader)
	if a.e.Terms() != 2 || a.starts.Load() != 2 {
		t.Fatalf("terms %d, starts %d; want 2", a.e.Terms(), a.starts.Load())
	}
}

func TestFollowerGuard(t *testing.T) {
	kube := fake.NewClientset()
	a := campaign(t, kube, "coord-a", nil, nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := campaign(t, kube, "coord-b", nil, nil)
	waitFor(t, "b to follow a", func() bool { return b.e.Leader() == "coord-a" })

	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		e      *leader.Elector
		method string
		want   int
	}{
		{a.e, http.MethodPost, http.StatusNoContent},
		{b.e, http.MethodGet, http.StatusNoContent},
		{b.e, http.MethodHead, http.StatusNoContent},
		{b.e, http.MethodPost, http.StatusServiceUnavailable},
		{b.e, http.MethodDelete, http.StatusServiceUnavailable},
	} {
		srv := httptest.NewServer(tc.e.FollowerGuard(ok))
		req, _ := http.NewRequest(tc.method, srv.URL+"/api/v1/decisions/d-1/approve", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s on %s: HTTP %d, want %d", tc.method, "approve", tc.e.Identity(), resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusServiceUnavailable {
			if resp.Header.Get(leader.HeaderLeader) != "coord-a" || !strings.Contains(string(body), "coord-a") {
				t.Errorf("503 names leader %q, body %s", resp.Header.Get(leader.HeaderLeader), body)
			}
		}
	}
}

// slowRound feeds the policy one round in which node n1 of ten is slow.
func slowRound(m *decisions.Manager, now time.Time) ([]decisions.Decision, error) {
	var obs []decide.Observation
	reach := map[string]bool{}
	for i := range 10 {
		n := fmt.Sprintf("n%d", i)
		reach[n] = true
		o := decide.Observation{Node: n, Jobs: []string{"job-1"}, TaskManagers: []string{"tm-" + n}}
		if n == "n1" {
			o.Slow, o.Score, o.Cause, o.Since = true, 4, "cpu", now.Add(-time.Minute)
		}
		obs = append(obs, o)
	}
	return m.Round(now, obs, reach)
}

// TestNewLeaderRebuildsFromStoreAndCluster: the first leader decides a migration and dies before
// carrying it out; the next leader loads the open decision from the store, carries it out once,
// does not decide it again, and reads the quarantined nodes back from the cluster's taints.
func TestNewLeaderRebuildsFromStoreAndCluster(t *testing.T) {
	kube := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n7"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "tmwarden.io/slow-node", Value: "true", Effect: corev1.TaintEffectNoSchedule}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n8"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "other", Effect: corev1.TaintEffectNoSchedule}}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n9"}},
	)
	dir := t.TempDir()
	pol := decisions.DefaultConfig()
	pol.Policy.Mode = decide.Auto
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// The store stands for the volume the leaders share; pebble takes one writer, so whoever
	// leads opens it (retrying while the previous leader still closes it).
	openStore := func(ctx context.Context) (*store.Store, error) {
		for {
			st, err := store.Open(dir)
			if err == nil || ctx.Err() != nil {
				return st, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var mu sync.Mutex
	var firstDecided []decisions.Decision
	var firstErr, secondErr error
	var quarantined []string
	var secondOpen, secondAfter []decisions.Decision
	executed := make(chan int, 1)

	a := campaign(t, kube, "coord-a", func(ctx context.Context) {
		st, err := openStore(ctx)
		if err != nil {
			mu.Lock()
			firstErr = err
			mu.Unlock()
			return
		}
		defer st.Close()
		m, err := decisions.New(st, pol, actuate.NewLog(quiet), decisions.WithLogger(quiet))
		if err == nil {
			for i := range 3 {
				var ds []decisions.Decision
				ds, err = slowRound(m, t0.Add(time.Duration(i)*time.Second))
				mu.Lock()
				firstDecided = append(firstDecided, ds...)
				mu.Unlock()
			}
		}
		mu.Lock()
		firstErr = err
		mu.Unlock()
		<-ctx.Done() // dies before its executor ran
	}, nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	waitFor(t, "a to decide", func() bool { mu.Lock(); defer mu.Unlock(); return len(firstDecided) > 0 || firstErr != nil })
	mu.Lock()
	if firstErr != nil {
		t.Fatalf("first leader: %v", firstErr)
	}
	mu.Unlock()

	b := campaign(t, kube, "coord-b", func(ctx context.Context) {
		st, err := openStore(ctx)
		if err != nil {
			secondErr = err
			return
		}
		defer st.Close()
		k, err := actuate.NewKubernetes(kube, actuate.KubernetesConfig{}, nil, quiet)
		if err != nil {
			secondErr = err
			return
		}
		if quarantined, err = k.Marked(ctx); err != nil {
			secondErr = err
			return
		}
		m, err := decisions.New(st, pol, actuate.NewLog(quiet), decisions.WithLogger(quiet))
		if err != nil {
			secondErr = err
			return
		}
		if secondOpen, err = m.Decisions(100, ""); err != nil {
			secondErr = err
			return
		}
		n, err := m.Execute(ctx)
		if err != nil {
			secondErr = err
			return
		}
		for i := range 3 {
			if _, err := slowRound(m, t0.Add(time.Duration(10+i)*time.Second)); err != nil {
				secondErr = err
				return
			}
		}
		secondAfter, secondErr = m.Decisions(100, "")
		executed <- n
		<-ctx.Done()
	}, nil)
	time.Sleep(300 * time.Millisecond)
	if b.e.IsLeader() {
		t.Fatal("b leads while a holds the lease")
	}
	a.cancel()
	<-a.done

	var steps int
	select {
	case steps = <-executed:
	case <-time.After(15 * time.Second):
		t.Fatal("the new leader did not rebuild in time")
	}
	if secondErr != nil {
		t.Fatalf("second leader: %v", secondErr)
	}
	var migrations []decisions.Decision
	for _, d := range firstDecided {
		if d.Action.Kind == decide.KindMigrate {
			migrations = append(migrations, d)
		}
	}
	if len(migrations) != 1 || migrations[0].Action.Node != "n1" || migrations[0].Status != httpv1.DecisionPending {
		t.Fatalf("first leader's migrations: %+v", migrations)
	}
	id := migrations[0].Action.ID
	found := false
	for _, d := range secondOpen {
		found = found || (d.Action.ID == id && d.Status == httpv1.DecisionPending)
	}
	if !found {
		t.Fatalf("new leader did not load open decision %s from the store: %+v", id, secondOpen)
	}
	if steps == 0 {
		t.Fatal("new leader's executor carried out no step of the inherited decision")
	}
	var migrateIDs []string
	for _, d := range secondAfter {
		if d.Action.Kind == decide.KindMigrate {
			migrateIDs = append(migrateIDs, d.Action.ID+"="+d.Status)
		}
	}
	if len(migrateIDs) != 1 || migrateIDs[0] != id+"="+httpv1.DecisionSucceeded {
		t.Fatalf("migrations after the takeover: %v, want only %s succeeded (never decided twice)", migrateIDs, id)
	}
	if len(quarantined) != 1 || quarantined[0] != "n7" {
		t.Fatalf("quarantined nodes from the cluster: %v, want [n7]", quarantined)
	}
}

func TestConfig(t *testing.T) {
	t.Setenv(leader.EnvLeaseName, "from-env")
	t.Setenv(leader.EnvNamespace, "ns-env")
	t.Setenv(leader.EnvPodName, "pod-0")
	c := leader.Config{}.WithEnv()
	if c.LeaseName != "from-env" || c.Namespace != "ns-env" || c.Identity != "pod-0" || c.LeaseDuration != 15*time.Second ||
		c.RenewDeadline != 10*time.Second || c.RetryPeriod != 2*time.Second {
		t.Fatalf("WithEnv: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	c.RenewDeadline = 20 * time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "lease_duration") {
		t.Fatalf("renew deadline beyond lease duration accepted: %v", err)
	}
	t.Setenv(leader.EnvLeaseName, "")
	if (leader.Config{}).WithEnv().Enabled() {
		t.Fatal("election on without a lease name")
	}
	if _, err := leader.New(leader.Config{}, fake.NewClientset(), nil); err == nil {
		t.Fatal("New without a lease name accepted")
	}
}
