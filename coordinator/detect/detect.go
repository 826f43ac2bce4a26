// Package detect holds the slow-node detection policies: each detector reads the cluster model
// and returns verdicts with their evidence, never acting itself. tmwarden's peer-comparison
// detector and the two baselines it is scored against live here side by side; a new detector is
// one file and one line in Registry.
package detect

import (
	"cmp"
	"slices"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/model"
)

// Status is a node's (or TaskManager's) detection state.
type Status string

const (
	StatusHealthy     Status = "healthy"
	StatusSuspect     Status = "suspect"
	StatusSlow        Status = "slow"
	StatusUnreachable Status = "unreachable"
)

// Cause names the likely reason a node is slow.
type Cause string

const (
	CauseUnknown Cause = "unknown"
	CauseCPU     Cause = "cpu_contention"
	// CauseSteal is CPU taken by the hypervisor: the node's share of the physical machine
	// shrank, which no neighbour on the node explains.
	CauseSteal Cause = "cpu_steal"
	// CauseThrottled is the TaskManagers' own CPU quota holding them back (CFS throttling):
	// their cgroup, not the machine, is short of CPU.
	CauseThrottled Cause = "cpu_throttled"
	CauseDisk      Cause = "disk"
	CauseNetwork   Cause = "network"
	CauseMemory    Cause = "memory"
	CauseGC        Cause = "taskmanager_gc"
)

// Evidence is one observation behind a verdict.
type Evidence struct {
	// Kind is "subtask", "host" or "taskmanager".
	Kind string `json:"kind"`

	JobID      string `json:"job_id,omitempty"`
	JobName    string `json:"job_name,omitempty"`
	VertexID   string `json:"vertex_id,omitempty"`
	VertexName string `json:"vertex_name,omitempty"`
	Subtask    int    `json:"subtask,omitempty"`
	// TPR and PeerMedianTPR are records per busy second; Slowdown is PeerMedianTPR / TPR.
	TPR           float64 `json:"tpr,omitempty"`
	PeerMedianTPR float64 `json:"peer_median_tpr,omitempty"`
	Slowdown      float64 `json:"slowdown,omitempty"`

	TaskManager string `json:"task_manager,omitempty"`
	// Signal is a host or JVM signal name; Value is this node's, PeerMedian the cluster's.
	Signal     string  `json:"signal,omitempty"`
	Value      float64 `json:"value,omitempty"`
	PeerMedian float64 `json:"peer_median,omitempty"`

	Since time.Time `json:"since"`
}

// Verdict is a detector's judgement of one node, or of one TaskManager when TaskManager is set.
type Verdict struct {
	Node        string     `json:"node"`
	TaskManager string     `json:"task_manager,omitempty"`
	Status      Status     `json:"status"`
	Score       float64    `json:"score"`
	Cause       Cause      `json:"cause"`
	Since       time.Time  `json:"since"`
	Evidence    []Evidence `json:"evidence,omitempty"`
	// Culprit names the neighbour taking the CPU when Cause is cpu_contention and the agent
	// reported the cgroups on the node; nil when nobody on the node stands out.
	Culprit *Culprit `json:"culprit,omitempty"`
}

// Culprit is the cgroup (and the pod or systemd unit it belongs to) that takes the CPU from
// a node's TaskManagers, with the figures that single it out.
type Culprit struct {
	Cgroup       string `json:"cgroup"`
	PodName      string `json:"pod_name,omitempty"`
	PodNamespace string `json:"pod_namespace,omitempty"`
	PodUID       string `json:"pod_uid,omitempty"`
	ContainerID  string `json:"container_id,omitempty"`
	SystemdUnit  string `json:"systemd_unit,omitempty"`
	// CPUCores is what the cgroup used; OtherCPUCores all CPU used outside the TaskManagers,
	// so CPUCores/OtherCPUCores is the culprit's share of the contention.
	CPUCores      float64 `json:"cpu_cores"`
	OtherCPUCores float64 `json:"other_cpu_cores"`
	// TaskManagerRunqMeanUS is how long the TaskManagers' threads waited for a CPU on average,
	// against RunqPeerMedianUS on the node's peers.
	TaskManagerRunqMeanUS float64 `json:"task_manager_runq_mean_us,omitempty"`
	RunqPeerMedianUS      float64 `json:"runq_peer_median_us,omitempty"`
}

// Finding kinds: what a detector notices about a node that is not a slow node.
const (
	// FindingSlowerHardware: the node has been equally slower than its peers since it joined,
	// with no host signal: a slower machine, to be known but never migrated away from.
	FindingSlowerHardware = "slower_hardware"
	// FindingHostOnly: a host anomaly on a node that runs no Flink work, which therefore cannot
	// be a slow Flink node.
	FindingHostOnly = "host_only"
	// FindingRetrospective: reports a node's agent held back while it could not reach the
	// coordinator (a partition) show, judged against what the fleet looked like then, that the
	// node was slow for a while that is over. Nothing can be done about it any more; it is for
	// the record (Since to Until), never acted on.
	FindingRetrospective = "retrospective"
)

// Finding is an observation about a node that is deliberately not a slow verdict.
type Finding struct {
	Node string `json:"node"`
	// TaskManager is the JVM a retrospective finding blames, when its cause is one JVM's own
	// (taskmanager_gc); empty when the finding is about the node.
	TaskManager string `json:"task_manager,omitempty"`
	Kind        string `json:"kind"`
	// Class is the node's hardware class (labels and what the agent read of the machine).
	Class string `json:"class,omitempty"`
	// Speed is the node's processing speed relative to its peers (1 = the median node).
	Speed  float64   `json:"speed,omitempty"`
	Cause  Cause     `json:"cause,omitempty"`
	Detail string    `json:"detail"`
	Since  time.Time `json:"since"`
	// Until ends what a retrospective finding covers (zero for the other kinds).
	Until    time.Time  `json:"until,omitzero"`
	Evidence []Evidence `json:"evidence,omitempty"`
	// Culprit names the neighbour that took the CPU, for a retrospective finding whose cause is
	// cpu_contention, as a verdict's does.
	Culprit *Culprit `json:"culprit,omitempty"`
}

// Fleet counts what one round saw across the fleet. Detection only counts; the decision
// layer's circuit breaker (coordinator/decide) judges whether the counts stop migrations.
type Fleet struct {
	// Reporting is how many nodes have a current report this round.
	Reporting int `json:"reporting_nodes"`
	// Anomalous is how many reporting nodes show straggling subtasks or host anomalies this
	// round, before any persistence: the first sign of a fleet-wide spike.
	Anomalous int `json:"anomalous_nodes"`
	// Regressed is how many reporting nodes run far above their own run-queue baseline.
	Regressed int `json:"regressed_nodes"`
	// Late is how many agents are still reachable but overdue with their report: how a
	// partition looks before its agents count as unreachable.
	Late int `json:"late_nodes"`
	// Unreachable is how many agents are silent past the staleness limit but not yet forgotten.
	Unreachable int `json:"unreachable_nodes"`
}

// Round is the outcome of one evaluation round. Verdicts lists every node that is not healthy,
// sorted by node and TaskManager.
type Round struct {
	At       time.Time `json:"at"`
	Verdicts []Verdict `json:"verdicts"`
	Fleet    Fleet     `json:"fleet"`
	// Findings are notes about nodes that are not slow: slower hardware, host trouble on a
	// node without Flink work. Nothing is decided on them.
	Findings []Finding `json:"findings,omitempty"`
}

// Slow returns the verdicts whose status is slow.
func (r Round) Slow() []Verdict {
	var out []Verdict
	for _, v := range r.Verdicts {
		if v.Status == StatusSlow {
			out = append(out, v)
		}
	}
	return out
}

// Detector is one detection policy. Evaluate is called once per round with a consistent view of
// the model; a detector keeps its own memory between rounds (streaks, baselines) and is not safe
// for concurrent rounds.
type Detector interface {
	Name() string
	Evaluate(v model.View, now time.Time) Round
}

// Registration is one row of the detector table.
type Registration struct {
	Name string
	Help string
	// Baseline marks detectors kept only to be scored against.
	Baseline bool
	// New builds the detector; tmwarden's takes its tuning from cfg (the coordinator's
	// detection.peer section), the baselines keep their published rules.
	New func(cfg PeerConfig) Detector
}

// Registry lists the detectors in the order they are reported.
var Registry = []Registration{
	{Name: "tmwarden", Help: "peer comparison of true processing rate, host signals and JVM GC, with persistence", New: func(cfg PeerConfig) Detector { return NewPeer(cfg) }},
	{Name: "flink-slow-task", Baseline: true, Help: "Flink's batch slow-task rule applied to streaming: a subtask 1.5x slower per record than its vertex median for 3 windows marks its node", New: func(PeerConfig) Detector { return NewFlinkSlowTask(1.5, 3) }},
	{Name: "host-threshold", Baseline: true, Help: "fixed thresholds on CPU steal, iowait and run-queue latency for 2 windows", New: func(PeerConfig) Detector { return NewHostThreshold(DefaultHostThresholds()) }},
}

// New builds the named detector with the default tuning, or returns nil.
func New(name string) Detector {
	return NewWith(name, DefaultPeerConfig())
}

// NewWith builds the named detector with cfg as tmwarden's tuning, or returns nil.
func NewWith(name string, cfg PeerConfig) Detector {
	for _, r := range Registry {
		if r.Name == name {
			return r.New(cfg)
		}
	}
	return nil
}

func sortVerdicts(vs []Verdict) {
	slices.SortFunc(vs, func(a, b Verdict) int {
		if a.Node != b.Node {
			if a.Node < b.Node {
				return -1
			}
			return 1
		}
		switch {
		case a.TaskManager < b.TaskManager:
			return -1
		case a.TaskManager > b.TaskManager:
			return 1
		}
		return 0
	})
}

// median returns the median of xs, reordering xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	// Selection, not a sort: a round takes the median of every vertex's ten thousand rates at
	// fleet scale, and only the middle is needed. The order is slices.Sort's (cmp.Less: NaN
	// first), so the value is the one sorting gives.
	m := len(xs) / 2
	upper := selectNth(xs, m)
	if len(xs)%2 == 1 {
		return upper
	}
	lower := xs[0]
	for _, x := range xs[1:m] {
		if cmp.Less(lower, x) {
			lower = x
		}
	}
	return (lower + upper) / 2
}

// selectNth reorders xs so that xs[k] is the element sorting would put there, every element
// before it is not greater and every element after it not less (Hoare's selection with a
// median-of-three pivot), and returns xs[k].
func selectNth(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		a, b, c := xs[lo], xs[lo+(hi-lo)/2], xs[hi]
		if cmp.Less(b, a) {
			a, b = b, a
		}
		if cmp.Less(c, b) {
			b = c
			if cmp.Less(b, a) {
				b = a
			}
		}
		pivot := b
		i, j := lo, hi
		for i <= j {
			for cmp.Less(xs[i], pivot) {
				i++
			}
			for cmp.Less(pivot, xs[j]) {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return xs[k]
		}
	}
	return xs[k]
}
