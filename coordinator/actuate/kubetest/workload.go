package kubetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TaskManagers runs a Deployment of n TaskManager pods (labels component=taskmanager and
// app=name) in namespace, all placed on node: the other nodes are held off with a temporary
// NoSchedule taint while the scheduler stand-in binds them. It then adds a PodDisruptionBudget
// of minAvailable and waits until the disruption controller has computed it.
func (c *Cluster) TaskManagers(t testing.TB, namespace, name, node string, n, minAvailable int) {
	t.Helper()
	ctx := context.Background()
	nodes, err := c.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hold := corev1.Taint{Key: "kubetest/hold", Effect: corev1.TaintEffectNoSchedule}
	setHold := func(on bool) {
		for _, nd := range nodes.Items {
			if nd.Name == node {
				continue
			}
			for {
				cur, err := c.Admin.CoreV1().Nodes().Get(ctx, nd.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				var ts []corev1.Taint
				for _, x := range cur.Spec.Taints {
					if x.Key != hold.Key {
						ts = append(ts, x)
					}
				}
				if on {
					ts = append(ts, hold)
				}
				cur.Spec.Taints = ts
				if _, err = c.Admin.CoreV1().Nodes().Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
					break
				} else if !apierrors.IsConflict(err) {
					t.Fatal(err)
				}
			}
		}
	}
	setHold(true)
	defer setHold(false)
	labels := map[string]string{"component": "taskmanager", "app": name}
	replicas := int32(n)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "tm", Image: "flink:2.0"}}}}}}
	if _, err := c.Admin.AppsV1().Deployments(namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitUntil(t, fmt.Sprintf("%d pods of %s Ready on %s", n, name, node), 2*time.Minute, func() bool {
		return len(c.RunningPods(t, namespace, name, node)) == n
	})
	ma := intstr.FromInt32(int32(minAvailable))
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &ma, Selector: &metav1.LabelSelector{MatchLabels: labels}}}
	if _, err := c.Admin.PolicyV1().PodDisruptionBudgets(namespace).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitUntil(t, "the disruption controller to compute "+name+"'s budget", time.Minute, func() bool {
		p, err := c.Admin.PolicyV1().PodDisruptionBudgets(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.ObservedGeneration == p.Generation && p.Status.CurrentHealthy == int32(n)
	})
}

// RunningPods lists app's pods on node that run and are not being deleted.
func (c *Cluster) RunningPods(t testing.TB, namespace, app, node string) []corev1.Pod {
	t.Helper()
	pods, err := c.Admin.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Spec.NodeName == node && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

// KubeconfigFor writes a kubeconfig file that authenticates with a bearer token (from
// ServiceAccountConfig), for a process that reads one, and returns its path.
func (c *Cluster) KubeconfigFor(t testing.TB, name, token string) string {
	t.Helper()
	p := filepath.Join(c.dir, name+".kubeconfig")
	write(t, p, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: kt, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: kt, context: {cluster: kt, user: %s}}]
current-context: kt
`, c.Config.Host, name, token, name)))
	return p
}

// WaitUntil polls f every 100 ms until it holds, failing t after d: the tests' one way to wait
// for the control plane's controllers and the stand-ins.
func WaitUntil(t testing.TB, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
