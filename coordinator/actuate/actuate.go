// Package actuate holds the mechanisms that carry decisions out: Kubernetes (taint, node
// condition, checkpoint, eviction), bare metal (the agent's drain command), a webhook, and
// log-only. Each actuator turns an action into a persisted plan of idempotent steps, so the
// executor in coordinator/decisions can resume a plan after a restart without repeating a step.
package actuate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/flink/rest"
)

// Step is one idempotent unit of a plan. Name is unique within its plan; Target carries what
// the step needs to be redone exactly (a pod's namespace/name/uid, a job id).
type Step struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"`
}

// Actuator carries out actions. Plan must not change anything (dry-run shows its plan); Do
// carries out one step and must be safe to repeat with the same key: the executor repeats a
// step whose outcome it did not record before a crash.
type Actuator interface {
	Name() string
	Plan(ctx context.Context, a decide.Action) ([]Step, error)
	Do(ctx context.Context, a decide.Action, s Step, key string) (string, error)
}

// Marker is an actuator that leaves marks on the cluster (the Kubernetes actuator's taint and
// node condition). It owns them level-triggered: every round the executor hands it the nodes the
// policy holds quarantined and it makes the cluster match, so a failed or abandoned migration, a
// crash, a leader change or a deleted decision never leaves a mark behind. A new leader reads
// Marked to learn what earlier leaders marked; it needs no actuator-specific take-over.
type Marker interface {
	// Marked lists the nodes that carry this actuator's marks now, sorted.
	Marked(ctx context.Context) ([]string, error)
	// ReconcileMarks marks exactly the nodes in want (node name -> why) and clears the marks on
	// every other node. It returns what it changed, one line per node, and the errors of the
	// nodes it could not bring in line (the others are done anyway).
	ReconcileMarks(ctx context.Context, want map[string]string) ([]string, error)
}

// RetryError says a step cannot finish now and should be tried again after After. Underway
// tells the two kinds of wait apart: the step's action was taken and is running (an agent
// draining, an evicted pod terminating), or something refuses it for now (a
// PodDisruptionBudget, an agent out of reach). Operators read the first as progress and the
// second as blocked, and the decision's status says which.
type RetryError struct {
	After    time.Duration
	Reason   string
	Underway bool
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry in %s: %s", e.After, e.Reason) }

// ErrNodeGone says the node was deleted while the action ran.
var ErrNodeGone = errors.New("node no longer exists")

// Checkpointer triggers a Flink checkpoint and waits for it; *rest.Client is one.
type Checkpointer interface {
	Checkpoint(ctx context.Context, jobID string, typ rest.CheckpointType, poll time.Duration) (int64, error)
}

// Config selects and configures the actuator.
type Config struct {
	// Kind is log (default), kubernetes, baremetal or webhook.
	Kind       string           `yaml:"kind" json:"kind"`
	Kubernetes KubernetesConfig `yaml:"kubernetes" json:"kubernetes"`
	BareMetal  BareMetalConfig  `yaml:"baremetal" json:"baremetal"`
	Webhook    WebhookConfig    `yaml:"webhook" json:"webhook"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Kind: "log", Kubernetes: DefaultKubernetesConfig(), BareMetal: DefaultBareMetalConfig(), Webhook: DefaultWebhookConfig()}
}

// Deps are the live parts an actuator may need; each actuator checks for its own.
type Deps struct {
	// Kube is the Kubernetes client; nil builds one from Kubernetes.Kubeconfig or in-cluster.
	Kube kubernetes.Interface
	// Checkpointer is the JobManager REST client, used when Kubernetes.Checkpoint is on.
	Checkpointer Checkpointer
	// Commands reaches the agents (the coordinator); Records holds what they answered (its store).
	Commands CommandSender
	Records  CommandRecords
	HTTP     *http.Client
	Log      *slog.Logger
}

// Registration is one row of the actuator table.
type Registration struct {
	Name string
	Help string
	New  func(Config, Deps) (Actuator, error)
}

// Registry lists the actuators configuration can choose from.
var Registry = []Registration{
	{Name: "log", Help: "log what would be done; change nothing", New: func(_ Config, d Deps) (Actuator, error) { return NewLog(d.Log), nil }},
	{Name: "kubernetes", Help: "taint and condition the node, checkpoint, evict TaskManager pods through the Eviction API", New: newKubernetesFromConfig},
	{Name: "baremetal", Help: "ask the node's agent to run its configured drain command", New: func(c Config, d Deps) (Actuator, error) {
		return NewBareMetal(d.Commands, d.Records, c.BareMetal, d.Log)
	}},
	{Name: "webhook", Help: "POST the decision and its evidence as JSON", New: func(c Config, d Deps) (Actuator, error) {
		return NewWebhook(c.Webhook, d.HTTP, d.Log)
	}},
}

// Build returns the actuator cfg.Kind names.
func Build(cfg Config, d Deps) (Actuator, error) {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	kind := cfg.Kind
	if kind == "" {
		kind = "log"
	}
	for _, r := range Registry {
		if r.Name == kind {
			a, err := r.New(cfg, d)
			if err != nil {
				return nil, fmt.Errorf("actuator %s: %w", kind, err)
			}
			return a, nil
		}
	}
	return nil, fmt.Errorf("actuator kind %q: want log, kubernetes, baremetal or webhook", cfg.Kind)
}

// Log is the log-only actuator: every action is one step that logs it.
type Log struct{ log *slog.Logger }

// NewLog returns the log-only actuator.
func NewLog(l *slog.Logger) *Log {
	if l == nil {
		l = slog.Default()
	}
	return &Log{log: l}
}

func (*Log) Name() string { return "log" }

func (*Log) Plan(_ context.Context, a decide.Action) ([]Step, error) {
	return []Step{{Name: "log", Kind: "log", Target: a.Node}}, nil
}

func (l *Log) Do(_ context.Context, a decide.Action, _ Step, key string) (string, error) {
	l.log.Info("actuator log-only: action", "key", key, "kind", a.Kind, "node", a.Node, "jobs", a.Jobs,
		"task_managers", a.TaskManagers, "reason", a.Reason)
	return "logged; nothing changed (log-only actuator)", nil
}

// Validate names every option of the configured actuator that cannot work as given. Defaults
// come from DefaultConfig by omission; an explicit zero wait, timeout or rate is refused here
// rather than quietly replaced by its default.
func (c Config) Validate() error {
	var errs []error
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("actuator.%s %v: must be positive", key, d))
		}
	}
	switch c.Kind {
	case "kubernetes":
		k := c.Kubernetes
		positive("kubernetes.checkpoint_timeout", k.CheckpointTimeout)
		positive("kubernetes.pdb_retry", k.PDBRetry)
		positive("kubernetes.pod_gone_poll", k.PodGonePoll)
		if k.QPS <= 0 || k.Burst < 1 {
			errs = append(errs, fmt.Errorf("actuator.kubernetes.qps %v / burst %d: must be positive (zero would mean client-go's own 5/10)", k.QPS, k.Burst))
		}
	case "baremetal":
		positive("baremetal.command_timeout", c.BareMetal.CommandTimeout)
		positive("baremetal.poll", c.BareMetal.Poll)
	case "webhook":
		positive("webhook.timeout", c.Webhook.Timeout)
		positive("webhook.backoff", c.Webhook.Backoff)
		if c.Webhook.Retries < 0 {
			errs = append(errs, fmt.Errorf("actuator.webhook.retries %d: must not be negative (0 means no retry)", c.Webhook.Retries))
		}
	}
	return errors.Join(errs...)
}
