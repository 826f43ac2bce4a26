package actuate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
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
	// QPS and Burst pace this coordinator's requests to the API server (client-go's defaults
	// are 5 and 10, which a reconcile of many nodes plus leader election exceeds). Default 20, 40.
	QPS   float32 `yaml:"qps" json:"qps"`
	Burst int     `yaml:"burst" json:"burst"`
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
		QPS:               20,
		Burst:             40,
	}
}

// FieldManager is the name tmwarden's writes carry in a node's managedFields.
const FieldManager = "tmwarden-coordinator"

// Kubernetes is the client-go actuator.
type Kubernetes struct {
	cs      kubernetes.Interface
	cfg     KubernetesConfig
	cp      Checkpointer
	log     *slog.Logger
	backoff wait.Backoff // writeBackoff; tests shorten it
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
	return &Kubernetes{cs: cs, cfg: cfg, cp: cp, log: log, backoff: writeBackoff}, nil
}

// KubeClient builds a clientset from a kubeconfig path, or in-cluster when it is empty, paced at
// qps and burst (zero or less: the defaults of DefaultKubernetesConfig).
func KubeClient(kubeconfig string, qps float32, burst int) (kubernetes.Interface, error) {
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
	d := DefaultKubernetesConfig()
	rc.QPS, rc.Burst = d.QPS, d.Burst
	if qps > 0 {
		rc.QPS = qps
	}
	if burst > 0 {
		rc.Burst = burst
	}
	rc.UserAgent = FieldManager
	return kubernetes.NewForConfig(rc)
}

func newKubernetesFromConfig(c Config, d Deps) (Actuator, error) {
	cs := d.Kube
	if cs == nil {
		var err error
		if cs, err = KubeClient(c.Kubernetes.Kubeconfig, c.Kubernetes.QPS, c.Kubernetes.Burst); err != nil {
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
// A write that meets a concurrent change or a passing API error is retried with backoff and,
// if it still cannot finish, reported as a RetryError: the decision waits, it does not fail.
func (k *Kubernetes) Do(ctx context.Context, a decide.Action, s Step, key string) (string, error) {
	switch s.Kind {
	case "taint":
		return k.setTaint(ctx, a.Node, true)
	case "untaint":
		return k.setTaint(ctx, a.Node, false)
	case "condition":
		return k.setCondition(ctx, a.Node, nil, true, truncate(a.Reason, 1024))
	case "condition-clear":
		return k.setCondition(ctx, a.Node, nil, false, "released from quarantine: "+truncate(a.Reason, 900))
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

// Marked lists the nodes that carry the taint or the condition set to True.
func (k *Kubernetes) Marked(ctx context.Context) ([]string, error) {
	var out []string
	err := k.eachNode(ctx, func(n *corev1.Node) {
		if k.hasTaint(n) || k.conditionTrue(n) {
			out = append(out, n.Name)
		}
	})
	sort.Strings(out)
	return out, err
}

// ReconcileMarks taints and conditions the nodes in want and clears both everywhere else. A
// node whose condition is False or absent and that has no taint is left untouched.
func (k *Kubernetes) ReconcileMarks(ctx context.Context, want map[string]string) ([]string, error) {
	var nodes []*corev1.Node
	if err := k.eachNode(ctx, func(n *corev1.Node) { nodes = append(nodes, n) }); err != nil {
		return nil, err
	}
	var changed []string
	var errs []error
	for _, n := range nodes {
		why, marked := want[n.Name]
		if marked != k.hasTaint(n) {
			msg, err := k.setTaint(ctx, n.Name, marked)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			changed = append(changed, n.Name+": "+msg)
		}
		if marked != k.conditionTrue(n) {
			msg := "not quarantined by tmwarden"
			if marked {
				msg = truncate(why, 1024)
			}
			m, err := k.setCondition(ctx, n.Name, n, marked, msg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			changed = append(changed, n.Name+": "+m)
		}
	}
	return changed, errors.Join(errs...)
}

// eachNode lists every node, 500 at a time.
func (k *Kubernetes) eachNode(ctx context.Context, f func(*corev1.Node)) error {
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := k.cs.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing nodes: %w", err)
		}
		for i := range list.Items {
			f(&list.Items[i])
		}
		if list.Continue == "" {
			return nil
		}
		opts.Continue = list.Continue
	}
}

func (k *Kubernetes) hasTaint(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == k.cfg.TaintKey {
			return true
		}
	}
	return false
}

func (k *Kubernetes) conditionTrue(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if string(c.Type) == k.cfg.ConditionType {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// writeBackoff paces re-reads after a write met a concurrent change of the same field or a
// passing API error: 8 tries over about 6-10 s, where client-go's DefaultRetry gives up after 5
// within 50 ms, which a node written ten times a second by others exhausts. (No Cap: reaching
// a wait.Backoff's cap ends it.)
var writeBackoff = wait.Backoff{Steps: 8, Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.5}

// transientRetry is how long a decision waits after a write that still could not finish.
const transientRetry = 5 * time.Second

// retryable says whether doing the same request again may succeed: a concurrent change (409,
// or a failed JSON-patch test), overload (429, 503), a server timeout or internal error, or a
// broken connection. NotFound, Forbidden, Unauthorized and Invalid input are final.
func retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case apierrors.IsConflict(err), apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err),
		apierrors.IsTimeout(err), apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err),
		apierrors.IsUnexpectedServerError(err):
		return true
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsBadRequest(err):
		return false
	case isPatchTestFailed(err):
		return true
	}
	var ae apierrors.APIStatus
	if errors.As(err, &ae) {
		return ae.Status().Code >= 500
	}
	// No answer from the API server at all: a connection refused or reset, a client timeout.
	return !errors.Is(err, context.Canceled)
}

// isPatchTestFailed recognises a JSON patch whose "test" operation found another value: someone
// changed the taints between our read and our write.
func isPatchTestFailed(err error) bool {
	return errors.Is(err, jsonpatch.ErrTestFailed) || strings.Contains(err.Error(), "testing value")
}

// writeNode runs one read-modify-patch attempt until it succeeds, fails for good, or writeBackoff
// runs out; what runs out becomes a RetryError.
func (k *Kubernetes) writeNode(ctx context.Context, name, what string, attempt func() error) error {
	err := retry.OnError(k.backoff, func(err error) bool { return retryable(err) && ctx.Err() == nil }, attempt)
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("node %s: %w", name, ErrNodeGone)
	case retryable(err) && ctx.Err() == nil:
		return &RetryError{After: transientRetry, Reason: fmt.Sprintf("%s on node %s did not go through after %d tries: %s", what, name, k.backoff.Steps, apiMessage(err))}
	}
	return fmt.Errorf("%s on node %s: %w", what, name, err)
}

// setTaint adds or removes the taint with a JSON patch that tests the taints it read: it
// conflicts only with another writer of the taints, never with status, label or annotation
// writers (a whole-object update with a resourceVersion conflicts with all of them). Taints are
// an atomic list, so a strategic merge or server-side apply would have to own the whole list.
func (k *Kubernetes) setTaint(ctx context.Context, name string, want bool) (string, error) {
	msg := "taint already gone"
	if want {
		msg = "already tainted"
	}
	what := "removing taint " + k.cfg.TaintKey
	if want {
		what = "adding taint " + k.cfg.TaintKey + ":NoSchedule"
	}
	err := k.writeNode(ctx, name, what, func() error {
		n, err := k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if k.hasTaint(n) == want {
			return nil
		}
		var next []corev1.Taint
		for _, t := range n.Spec.Taints {
			if t.Key != k.cfg.TaintKey {
				next = append(next, t)
			}
		}
		if want {
			now := metav1.Now()
			next = append(next, corev1.Taint{Key: k.cfg.TaintKey, Value: "true", Effect: corev1.TaintEffectNoSchedule, TimeAdded: &now})
		}
		patch, err := json.Marshal([]jsonPatchOp{
			{Op: "test", Path: "/spec/taints", Value: nilIfEmpty(n.Spec.Taints)},
			{Op: "add", Path: "/spec/taints", Value: nilIfEmpty(next)},
		})
		if err != nil {
			return err
		}
		if _, err := k.cs.CoreV1().Nodes().Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			if apierrors.IsInvalid(err) || isPatchTestFailed(err) {
				// The API server answers a failed "test" with 422 Invalid and no detail; the
				// patch itself is well-formed, so it means the taints changed under us.
				return apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, name, fmt.Errorf("the taints changed since they were read: %w", err))
			}
			return err
		}
		msg = "removed taint " + k.cfg.TaintKey
		if want {
			msg = "tainted " + k.cfg.TaintKey + ":NoSchedule"
		}
		return nil
	})
	return msg, err
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// nilIfEmpty makes an empty taint list JSON null: the API server omits an empty list, and a
// JSON-patch test of a missing member passes only against null.
func nilIfEmpty(ts []corev1.Taint) any {
	if len(ts) == 0 {
		return nil
	}
	return ts
}

// setCondition sets the condition True (quarantined) or False with a strategic merge patch of
// the status, which merges conditions by type: it touches no other condition and needs no
// resourceVersion, so the kubelet's status updates and ours never conflict. n is the node as
// last read, or nil to read it (only to keep lastTransitionTime when the status stays).
func (k *Kubernetes) setCondition(ctx context.Context, name string, n *corev1.Node, want bool, message string) (string, error) {
	status, reason := corev1.ConditionFalse, "NodeRecovered"
	if want {
		status, reason = corev1.ConditionTrue, "SlowNode"
	}
	what := fmt.Sprintf("setting condition %s=%s", k.cfg.ConditionType, status)
	err := k.writeNode(ctx, name, what, func() error {
		if n == nil {
			var err error
			if n, err = k.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		now := metav1.Now()
		c := corev1.NodeCondition{Type: corev1.NodeConditionType(k.cfg.ConditionType), Status: status, Reason: reason,
			Message: message, LastHeartbeatTime: now, LastTransitionTime: now}
		for _, old := range n.Status.Conditions {
			if old.Type == c.Type && old.Status == status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		n = nil // a retry reads the node again
		patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{c}}})
		if err != nil {
			return err
		}
		_, err = k.cs.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}, "status")
		return err
	})
	if err != nil {
		return "", err
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
	err = k.postEviction(ctx, ev)
	who := p.Namespace + "/" + p.Name
	switch {
	case err == nil:
		return fmt.Sprintf("evicted pod %s", who), nil
	case apierrors.IsNotFound(err):
		return "pod already gone", nil
	case apierrors.IsTooManyRequests(err):
		// A PodDisruptionBudget forbids it now, or its status is not computed yet, or the API
		// server sheds load: the decision is blocked and tries again, with the API's reason.
		return "", &RetryError{After: k.cfg.PDBRetry, Reason: fmt.Sprintf("eviction of %s refused (429: a PodDisruptionBudget, or the API server shedding load): %s", who, apiMessage(err))}
	case apierrors.IsConflict(err):
		// The UID precondition failed: the pod was replaced; the new one is not ours to evict.
		return "pod was replaced; nothing to evict", nil
	case retryable(err):
		// Among them the 500 the API answers for a pod covered by more than one
		// PodDisruptionBudget: blocked until an operator fixes the budgets or blocked_timeout.
		return "", &RetryError{After: k.cfg.PDBRetry, Reason: fmt.Sprintf("eviction of %s failed: %s", who, apiMessage(err))}
	}
	return "", fmt.Errorf("evicting %s: %w", who, err)
}

// postEviction creates the Eviction with no client-side retry: client-go repeats a 429 that
// carries Retry-After up to 10 times by itself, which held one step (and every decision behind
// it) for about 100 s while a PodDisruptionBudget's status was not computed yet. The executor
// owns the retry (RetryError). A fake clientset has no REST client; it takes the typed call.
func (k *Kubernetes) postEviction(ctx context.Context, ev *policyv1.Eviction) error {
	if rc, ok := k.cs.CoreV1().RESTClient().(*rest.RESTClient); ok && rc != nil {
		return rc.Post().Namespace(ev.Namespace).Resource("pods").Name(ev.Name).SubResource("eviction").
			MaxRetries(0).Body(ev).Do(ctx).Error()
	}
	return k.cs.CoreV1().Pods(ev.Namespace).EvictV1(ctx, ev)
}

// apiMessage is the API's own explanation of err, its causes included (a PodDisruptionBudget's
// "needs 2 healthy pods and has 2 currently" is a cause, not the message).
func apiMessage(err error) string {
	var ae apierrors.APIStatus
	if !errors.As(err, &ae) {
		return err.Error()
	}
	st := ae.Status()
	msg := st.Message
	if msg == "" {
		msg = err.Error()
	}
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Message != "" && !strings.Contains(msg, c.Message) {
				msg += "; " + c.Message
			}
		}
	}
	return msg
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
	return "", &RetryError{After: k.cfg.PodGonePoll, Reason: fmt.Sprintf("pod %s/%s still on %s", p.Namespace, p.Name, node), Underway: true}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
