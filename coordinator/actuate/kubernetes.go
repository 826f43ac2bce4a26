package actuate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"

	"github.com/tmwarden/tmwarden/coordinator/decide"
	flinkrest "github.com/tmwarden/tmwarden/flink/rest"
)

// SafeToEvictAnnotation is cluster-autoscaler's; "false" means the pod must not be evicted.
const SafeToEvictAnnotation = "cluster-autoscaler.kubernetes.io/safe-to-evict"

// KubernetesConfig configures the Kubernetes actuator.
type KubernetesConfig struct {
	// Kubeconfig is a kubeconfig path; empty means in-cluster. Default empty.
	Kubeconfig string `yaml:"kubeconfig" json:"kubeconfig,omitempty"`
	// TaintKey is the NoSchedule taint put on a slow node. Default tmwarden.io/slow-node.
	TaintKey string `yaml:"taint_key" json:"taint_key"`
	// ConditionType is the node condition set the way node-problem-detector does. Default TmwardenSlowNode.
	ConditionType string `yaml:"condition_type" json:"condition_type"`
	// Namespace limits the TaskManager pods considered; empty means all. Default empty.
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	// PodSelector is the label selector of TaskManager pods. Default component=taskmanager
	// (what Flink's native Kubernetes integration and the operator put on TaskManager pods).
	PodSelector string `yaml:"pod_selector" json:"pod_selector"`
	// Checkpoint triggers a checkpoint of every affected job before evicting. Default false.
	Checkpoint bool `yaml:"checkpoint" json:"checkpoint"`
	// CheckpointTimeout bounds the wait for that checkpoint. Default 5m.
	CheckpointTimeout time.Duration `yaml:"checkpoint_timeout" json:"checkpoint_timeout"`
	// PDBRetry is the wait after an eviction refused by a PodDisruptionBudget (HTTP 429). Default 30s.
	PDBRetry time.Duration `yaml:"pdb_retry" json:"pdb_retry"`
	// PodGonePoll is the wait between checks that an evicted pod has terminated. Default 2s.
	PodGonePoll time.Duration `yaml:"pod_gone_poll" json:"pod_gone_poll"`
}

// DefaultKubernetesConfig returns the documented defaults.
func DefaultKubernetesConfig() KubernetesConfig {
	return KubernetesConfig{
		TaintKey:          "tmwarden.io/slow-node",
		ConditionType:     "TmwardenSlowNode",
		PodSelector:       "component=taskmanager",
		CheckpointTimeout: 5 * time.Minute,
		PDBRetry:          30 * time.Second,
		PodGonePoll:       2 * time.Second,
	}
}

// Kubernetes is the client-go actuator.
type Kubernetes struct {
	cs  kubernetes.Interface
	cfg KubernetesConfig
	cp  Checkpointer
	log *slog.Logger
}

// NewKubernetes returns the Kubernetes actuator; cp may be nil when cfg.Checkpoint is off.
func NewKubernetes(cs kubernetes.Interface, cfg KubernetesConfig, cp Checkpointer, log *slog.Logger) (*Kubernetes, error) {
	d := DefaultKubernetesConfig()
	if cfg.TaintKey == "" {
		cfg.TaintKey = d.TaintKey
	}
	if cfg.ConditionType == "" {
		cfg.ConditionType = d.ConditionType
	}
	if cfg.PodSelector == "" {
		cfg.PodSelector = d.PodSelector
	}
	if cfg.CheckpointTimeout <= 0 {
		cfg.CheckpointTimeout = d.CheckpointTimeout
	}
	if cfg.PDBRetry <= 0 {
		cfg.PDBRetry = d.PDBRetry
	}
	if cfg.PodGonePoll <= 0 {
		cfg.PodGonePoll = d.PodGonePoll
	}
	if cs == nil {
		return nil, errors.New("no Kubernetes client")
	}
	if cfg.Checkpoint && cp == nil {
		return nil, errors.New("checkpoint is on but no Flink JobManager REST client is configured")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Kubernetes{cs: cs, cfg: cfg, cp: cp, log: log}, nil
}

// KubeClient builds a clientset from a kubeconfig path, or in-cluster when it is empty.
func KubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return kubernetes.NewForConfig(rc)
}

func newKubernetesFromConfig(c Config, d Deps) (Actuator, error) {
	cs := d.Kube
	if cs == nil {
		var err error
		if cs, err = KubeClient(c.Kubernetes.Kubeconfig); err != nil {
			return nil, err
		}
	}
	return NewKubernetes(cs, c.Kubernetes, d.Checkpointer, d.Log)
}

func (*Kubernetes) Name() string { return "kubernetes" }

// Plan reads the node and its TaskManager pods; it changes nothing.
func (k *Kubernetes) Plan(ctx context.Context, a decide.Action) ([]Step, error) {
	if _, err := k.cs.CoreV1().Nodes().Get(ctx, a.Node, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("planning %s on %s: %w", a.Kind, a.Node, ErrNodeGone)
		}
		return nil, fmt.Errorf("planning %s on %s: reading node: %w", a.Kind, a.Node, err)
	}
	switch a.Kind {
	case decide.KindRelease:
		return []Step{{Name: "untaint", Kind: "untaint"}, {Name: "condition-clear", Kind: "condition-clear"}}, nil
	case decide.KindMigrate:
	default:
		return nil, nil
	}
	steps := []Step{{Name: "taint", Kind: "taint"}, {Name: "condition", Kind: "condition"}}
	if k.cfg.Checkpoint {
		for _, j := range a.Jobs {
			steps = append(steps, Step{Name: "checkpoint/" + j, Kind: "checkpoint", Target: j})
		}
	}
	pods, err := k.cs.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: k.cfg.PodSelector,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", a.Node).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("planning migrate on %s: listing TaskManager pods: %w", a.Node, err)
	}
	items := pods.Items
	sort.Slice(items, func(i, j int) bool {
		return items[i].Namespace+"/"+items[i].Name < items[j].Namespace+"/"+items[j].Name
	})
	for _, p := range items {
		if p.Spec.NodeName != a.Node || p.DeletionTimestamp != nil {
			continue
		}
		t := p.Namespace + "/" + p.Name + "/" + string(p.UID)
		steps = append(steps,
			Step{Name: "evict/" + p.Namespace + "/" + p.Name, Kind: "evict", Target: t},
			Step{Name: "gone/" + p.Namespace + "/" + p.Name, Kind: "wait-gone", Target: t})
	}
	return steps, nil
}

// Do carries out one step; every step checks the live object first, so repeating one is safe.
func (k *Kubernetes) Do(ctx context.Context, a decide.Action, s Step, key string) (string, error) {
	switch s.Kind {
	case "taint":
		return k.updateNode(ctx, a.Node, func(n *corev1.Node) (bool, string) {
			for _, t := range n.Spec.Taints {
				if t.Key == k.cfg.TaintKey && t.Effect == corev1.TaintEffectNoSchedule {
					return false, "already tainted"
				}
			}
			now := metav1.Now()
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: k.cfg.TaintKey, Value: "true", Effect: corev1.TaintEffectNoSchedule, TimeAdded: &now})
			return true, "tainted " + k.cfg.TaintKey + ":NoSchedule"
		})
	case "untaint":
		return k.updateNode(ctx, a.Node, func(n *corev1.Node) (bool, string) {
			kept := n.Spec.Taints[:0]
			for _, t := range n.Spec.Taints {
				if t.Key != k.cfg.TaintKey {
					kept = append(kept, t)
				}
			}
			if len(kept) == len(n.Spec.Taints) {
				return false, "taint already gone"
			}
			n.Spec.Taints = kept
			return true, "removed taint " + k.cfg.TaintKey
		})
	case "condition":
		return k.setCondition(ctx, a.Node, corev1.ConditionTrue, "SlowNode", truncate(a.Reason, 1024))
	case "condition-clear":
		return k.setCondition(ctx, a.Node, corev1.ConditionFalse, "NodeRecovered", "released from quarantine: "+truncate(a.Reason, 900))
	case "checkpoint":
		cctx, cancel := context.WithTimeout(ctx, k.cfg.CheckpointTimeout)
		defer cancel()
		id, err := k.cp.Checkpoint(cctx, s.Target, flinkrest.CheckpointConfigured, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			// A failed checkpoint does not keep work on a slow node: the job recovers from its
			// last completed checkpoint instead, with more to replay.
			k.log.Warn("checkpoint before eviction failed; continuing", "job", s.Target, "node", a.Node, "err", err)
			return fmt.Sprintf("checkpoint of job %s failed (%v); continuing from the last completed one", s.Target, err), nil
		}
		return fmt.Sprintf("checkpoint %d of job %s completed", id, s.Target), nil
	case "evict":
		return k.evict(ctx, a.Node, s.Target)
	case "wait-gone":
		return k.waitGone(ctx, a.Node, s.Target)
	}
	return "", fmt.Errorf("kubernetes actuator: unknown step kind %q", s.Kind)
}

// updateNode applies change to the live node, re-reading it on a 409 conflict.
func (k *Kubernetes) updateNode(ctx context.Context, name string, change func(*corev1.Node) (bool, string)) (string, error) {
	var msg string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var write bool
		write, msg = change(n)
		if !write {
			return nil
		}
		_, err = k.cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("node %s: %w", name, ErrNodeGone)
	}
	if err != nil {
		return "", fmt.Errorf("updating node %s: %w", name, err)
	}
	return msg, nil
}

func (k *Kubernetes) setCondition(ctx context.Context, name string, status corev1.ConditionStatus, reason, message string) (string, error) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		c := corev1.NodeCondition{Type: corev1.NodeConditionType(k.cfg.ConditionType), Status: status, Reason: reason,
			Message: message, LastHeartbeatTime: now, LastTransitionTime: now}
		found := false
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == c.Type {
				if n.Status.Conditions[i].Status == status {
					c.LastTransitionTime = n.Status.Conditions[i].LastTransitionTime
				}
				n.Status.Conditions[i], found = c, true
			}
		}
		if !found {
			n.Status.Conditions = append(n.Status.Conditions, c)
		}
		_, err = k.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("node %s: %w", name, ErrNodeGone)
	}
	if err != nil {
		return "", fmt.Errorf("setting condition %s on %s: %w", k.cfg.ConditionType, name, err)
	}
	return fmt.Sprintf("condition %s=%s (%s)", k.cfg.ConditionType, status, reason), nil
}

func splitTarget(t string) (ns, name, uid string, err error) {
	parts := strings.SplitN(t, "/", 3)
	if len(parts) != 3 || parts[1] == "" {
		return "", "", "", fmt.Errorf("bad pod target %q: want namespace/name/uid", t)
	}
	return parts[0], parts[1], parts[2], nil
}

// livePod returns the pod the step was planned for, or nil when it is gone or replaced.
func (k *Kubernetes) livePod(ctx context.Context, node, target string) (*corev1.Pod, error) {
	ns, name, uid, err := splitTarget(target)
	if err != nil {
		return nil, err
	}
	p, err := k.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pod %s/%s: %w", ns, name, err)
	}
	if (uid != "" && string(p.UID) != uid) || p.Spec.NodeName != node {
		return nil, nil
	}
	return p, nil
}

func (k *Kubernetes) evict(ctx context.Context, node, target string) (string, error) {
	p, err := k.livePod(ctx, node, target)
	if err != nil {
		return "", err
	}
	if p == nil {
		return "pod already gone from the node", nil
	}
	if p.DeletionTimestamp != nil {
		return "pod already terminating", nil
	}
	if v, ok := p.Annotations[SafeToEvictAnnotation]; ok && strings.EqualFold(v, "false") {
		return fmt.Sprintf("skipped: %s=false on pod %s/%s", SafeToEvictAnnotation, p.Namespace, p.Name), nil
	}
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}}
	err = k.cs.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev)
	switch {
	case err == nil:
		return fmt.Sprintf("evicted pod %s/%s", p.Namespace, p.Name), nil
	case apierrors.IsNotFound(err):
		return "pod already gone", nil
	case apierrors.IsTooManyRequests(err):
		return "", &RetryError{After: k.cfg.PDBRetry, Reason: fmt.Sprintf("eviction of %s/%s blocked by a PodDisruptionBudget: %v", p.Namespace, p.Name, err)}
	case apierrors.IsConflict(err):
		// The UID precondition failed: the pod was replaced; the new one is not ours to evict.
		return "pod was replaced; nothing to evict", nil
	}
	return "", fmt.Errorf("evicting %s/%s: %w", p.Namespace, p.Name, err)
}

func (k *Kubernetes) waitGone(ctx context.Context, node, target string) (string, error) {
	p, err := k.livePod(ctx, node, target)
	if err != nil {
		return "", err
	}
	if p == nil {
		return "pod gone from the node", nil
	}
	if v := p.Annotations[SafeToEvictAnnotation]; strings.EqualFold(v, "false") {
		return "pod stays (not safe to evict)", nil
	}
	return "", &RetryError{After: k.cfg.PodGonePoll, Reason: fmt.Sprintf("pod %s/%s still on %s", p.Namespace, p.Name, node)}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
