package coordinator_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/leader"
	"github.com/tmwarden/tmwarden/telemetry"
)

func readyz(t *testing.T, c *coordinator.Coordinator) int {
	t.Helper()
	resp, err := http.Get("http://" + c.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOnlyTheLeaderActs runs two coordinator replicas electing a leader on a Lease. The
// Kubernetes API is client-go's fake clientset (no API server runs here). The follower refuses
// agents and is not ready; the leader adopts the node a previous leader had tainted as
// quarantined; when the leader stops, the follower takes over.
func TestOnlyTheLeaderActs(t *testing.T) {
	t.Parallel()
	kube := fake.NewSimpleClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "tainted-node"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "tmwarden.io/slow-node", Effect: corev1.TaintEffectNoSchedule}}},
	})
	start := func(id string) (*coordinator.Coordinator, context.CancelFunc, chan error) {
		cfg := coordinator.DefaultConfig()
		cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
		cfg.Actuator.Kind = "kubernetes"
		cfg.Detection.Interval = 100 * time.Millisecond
		cfg.Leader = leader.Config{LeaseName: "tmwarden-coordinator", Namespace: "tmwarden", Identity: id,
			LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond, TakeOverTimeout: time.Minute}
		c, err := coordinator.New(cfg, coordinator.WithKubernetes(kube), coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Serve(ctx) }()
		return c, cancel, done
	}
	a, stopA, doneA := start("replica-a")
	waitFor(t, 20*time.Second, "replica-a to lead", func() bool { return readyz(t, a) == http.StatusOK })
	b, stopB, doneB := start("replica-b")
	defer func() { stopB(); <-doneB }()
	time.Sleep(500 * time.Millisecond)
	if code := readyz(t, b); code != http.StatusServiceUnavailable {
		t.Errorf("follower /readyz: %d, want 503", code)
	}
	s := rawStream(t, b.GRPCAddr())
	_ = s.Send(hello("some-node", 1))
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("follower accepted an agent stream: %v, want Unavailable", err)
	}
	waitFor(t, 10*time.Second, "the leader to adopt the tainted node", func() bool {
		st, ok := a.Decisions().NodeState("tainted-node")
		return ok && st.State == "quarantined"
	})

	stopA()
	<-doneA
	waitFor(t, 20*time.Second, "replica-b to take over", func() bool { return readyz(t, b) == http.StatusOK })
	waitFor(t, 10*time.Second, "the new leader to adopt the tainted node too", func() bool {
		st, ok := b.Decisions().NodeState("tainted-node")
		return ok && st.State == "quarantined"
	})
}

// TestLeaderThatCannotActStepsDown: the leader's take-over read is refused (the permission is
// missing). It retries, answers /readyz 503 with the reason, and after take_over_timeout
// releases the Lease; the other replica, whose reads work, takes over and acts.
func TestLeaderThatCannotActStepsDown(t *testing.T) {
	t.Parallel()
	kube := fake.NewSimpleClientset(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "tainted-node"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "tmwarden.io/slow-node", Effect: corev1.TaintEffectNoSchedule}}},
	})
	// Reads fail while replica-a holds the Lease (it lacks the permission), work for replica-b.
	kube.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		l, err := kube.Tracker().Get(schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}, "tmwarden", "tmwarden-coordinator")
		if err != nil {
			return false, nil, nil
		}
		if h := l.(*coordinationv1.Lease).Spec.HolderIdentity; h != nil && *h == "replica-a" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("RBAC: list nodes not granted"))
		}
		return false, nil, nil
	})
	start := func(id string) (*coordinator.Coordinator, context.CancelFunc, chan error) {
		cfg := coordinator.DefaultConfig()
		cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
		cfg.Actuator.Kind = "kubernetes"
		cfg.Leader = leader.Config{LeaseName: "tmwarden-coordinator", Namespace: "tmwarden", Identity: id,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond, TakeOverTimeout: 3 * time.Second}
		c, err := coordinator.New(cfg, coordinator.WithKubernetes(kube), coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Serve(ctx) }()
		return c, cancel, done
	}
	body := func(c *coordinator.Coordinator) (int, string) {
		resp, err := http.Get("http://" + c.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	a, stopA, doneA := start("replica-a")
	defer func() { stopA(); <-doneA }()
	waitFor(t, 20*time.Second, "replica-a to lead and fail to take over", func() bool {
		code, b := body(a)
		return code == http.StatusServiceUnavailable && strings.Contains(b, "forbidden")
	})
	b, stopB, doneB := start("replica-b")
	defer func() { stopB(); <-doneB }()
	waitFor(t, 30*time.Second, "replica-a to step down and replica-b to act", func() bool { return readyz(t, b) == http.StatusOK })
	if code, why := body(a); code != http.StatusServiceUnavailable || !(strings.Contains(why, "stepped down") || strings.Contains(why, "leader is replica-b")) {
		t.Errorf("replica-a after stepping down: /readyz %d %s, want 503 saying it stepped down or naming replica-b", code, why)
	}
	waitFor(t, 10*time.Second, "replica-b to adopt the tainted node", func() bool {
		st, ok := b.Decisions().NodeState("tainted-node")
		return ok && st.State == "quarantined"
	})
}
