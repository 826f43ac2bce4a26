// Package httpv1 defines the JSON documents of the coordinator's HTTP API under /api/v1/.
// The coordinator serves them and tmwardenctl decodes them, so both sides share one definition.
package httpv1

// The status page's type definitions are generated from these types (checked by its test).
//go:generate go run ./jsdoc -o ../../coordinator/statuspage/web/api-types.js

import (
	"encoding/json"
	"time"
)

// Node states for reachability.
const (
	StateReachable   = "reachable"
	StateUnreachable = "unreachable"
)

// NodeList is GET /api/v1/nodes.
type NodeList struct {
	Nodes []Node `json:"nodes"`
}

// Node is one node's summary.
type Node struct {
	Name            string            `json:"name"`
	State           string            `json:"state"`
	Connected       bool              `json:"connected"`
	AgentVersion    string            `json:"agent_version"`
	InstanceID      string            `json:"instance_id"`
	Hostname        string            `json:"hostname"`
	Labels          map[string]string `json:"labels,omitempty"`
	IntervalSeconds float64           `json:"interval_seconds"`
	FirstSeen       time.Time         `json:"first_seen"`
	LastSeen        time.Time         `json:"last_seen"`
	LastReportAt    *time.Time        `json:"last_report_at,omitempty"`
	LastSequence    uint64            `json:"last_sequence"`
	ReportsReceived uint64            `json:"reports_received"`
	SequenceGaps    uint64            `json:"sequence_gaps"`
	DroppedByAgent  uint64            `json:"dropped_by_agent"`
	Collectors      []Collector       `json:"collectors"`
	Host            *HostSummary      `json:"host,omitempty"`
	TaskManagers    int               `json:"task_managers"`
	Subtasks        int               `json:"subtasks"`
	// Health is the decision state: healthy, suspect, slow, migrating, quarantined, probation.
	Health string `json:"health"`
	// Cause is what detection blames when the node is not healthy (cpu, disk, network, ...).
	Cause string `json:"cause,omitempty"`
	// Verdict and Score are detection's last word on the node (healthy, suspect, slow; the
	// peer-comparison score, 0 when healthy).
	Verdict string  `json:"verdict,omitempty"`
	Score   float64 `json:"score"`
	// WouldMigrate names the dry-run decision that would have migrated this node in its
	// current slow spell (dry-run mode moves nothing, so Health stays slow).
	WouldMigrate string `json:"would_migrate,omitempty"`
	// Stale is true when the host figures and TaskManagers are older than the node's
	// unreachable limit: the agent has not reported since LastReportAt.
	Stale bool `json:"stale,omitempty"`
	// Culprit names the neighbour (cgroup, pod or systemd unit) detection blames for taking
	// the node's CPU, with its figures; absent unless the cause is CPU contention.
	Culprit *Culprit `json:"culprit,omitempty"`
	// Findings are detection's notes on the node that are not a slow verdict: slower_hardware
	// (a slower machine than its peers since it joined: a class finding, never migrated) or
	// host_only (host trouble on a node running no Flink work).
	Findings []Finding `json:"findings,omitempty"`
}

// Culprit is detection's named neighbour (coordinator/detect's Culprit, as JSON).
type Culprit struct {
	Cgroup                string  `json:"cgroup"`
	PodName               string  `json:"pod_name,omitempty"`
	PodNamespace          string  `json:"pod_namespace,omitempty"`
	PodUID                string  `json:"pod_uid,omitempty"`
	ContainerID           string  `json:"container_id,omitempty"`
	SystemdUnit           string  `json:"systemd_unit,omitempty"`
	CPUCores              float64 `json:"cpu_cores"`
	OtherCPUCores         float64 `json:"other_cpu_cores"`
	TaskManagerRunqMeanUS float64 `json:"task_manager_runq_mean_us,omitempty"`
	RunqPeerMedianUS      float64 `json:"runq_peer_median_us,omitempty"`
}

// Finding is one of detection's notes on a node that is not a slow verdict, and is never acted
// on. Kind is slower_hardware (a slower machine, with its Speed against the fleet's), host_only
// (a host anomaly on a node that runs no Flink work), or retrospective: reports the node's agent
// held back while it could not reach the coordinator (a partition) show, judged against what the
// fleet looked like when they were collected, that the node was slow, for Cause, from Since to
// Until; it was over before the reports arrived.
type Finding struct {
	Kind   string    `json:"kind"`
	Class  string    `json:"class,omitempty"`
	Speed  float64   `json:"speed,omitempty"`
	Cause  string    `json:"cause,omitempty"`
	Detail string    `json:"detail"`
	Since  time.Time `json:"since"`
	// Until ends a retrospective finding's time range (absent for the other kinds).
	Until *time.Time `json:"until,omitempty"`
	// Culprit names the neighbour that took the CPU, for a retrospective finding whose cause is
	// cpu_contention.
	Culprit *Culprit `json:"culprit,omitempty"`
}

// Collector is a collector's or probe's status as the agent last reported it.
type Collector struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// HostSummary is the headline of the last host signals.
type HostSummary struct {
	NumCPUs       uint32  `json:"num_cpus"`
	CPUBusy       float64 `json:"cpu_busy"`
	CPUSteal      float64 `json:"cpu_steal"`
	CPUIOWait     float64 `json:"cpu_iowait"`
	Load1         float64 `json:"load1"`
	MemUsedRatio  float64 `json:"mem_used_ratio"`
	TCPRetransmit float64 `json:"tcp_retransmits_per_second"`
}

// NodeDetail is GET /api/v1/nodes/{name}.
type NodeDetail struct {
	Node
	// LastReport is the last report in protobuf JSON form.
	LastReport      json.RawMessage `json:"last_report,omitempty"`
	TaskManagerList []TaskManager   `json:"task_manager_list"`
	// Decision is the node's state, verdict, cause and evidence.
	Decision *NodeDecisionState `json:"decision,omitempty"`
	Events   []Event            `json:"events"`
}

// EventList is GET /api/v1/events.
type EventList struct {
	Events []Event `json:"events"`
}

// Event is one entry of the coordinator's event log.
type Event struct {
	ID      uint64            `json:"id"`
	Time    time.Time         `json:"time"`
	Node    string            `json:"node,omitempty"`
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// TaskManager is one Flink TaskManager on a node, from the node's last report.
type TaskManager struct {
	ResourceID      string    `json:"resource_id"`
	PID             int32     `json:"pid,omitempty"`
	Pod             string    `json:"pod,omitempty"`
	Namespace       string    `json:"namespace,omitempty"`
	MetricsEndpoint string    `json:"metrics_endpoint,omitempty"`
	ScrapeError     string    `json:"scrape_error,omitempty"`
	CPULoad         *float64  `json:"cpu_load,omitempty"`
	HeapUsedBytes   uint64    `json:"heap_used_bytes,omitempty"`
	HeapMaxBytes    uint64    `json:"heap_max_bytes,omitempty"`
	GCTimeMsPerSec  *float64  `json:"gc_time_ms_per_second,omitempty"`
	Subtasks        []Subtask `json:"subtasks"`
}

// Subtask is one subtask's headline metrics. A nil number means Flink did not measure it.
type Subtask struct {
	JobID                 string   `json:"job_id"`
	JobName               string   `json:"job_name,omitempty"`
	VertexID              string   `json:"vertex_id"`
	VertexName            string   `json:"vertex_name,omitempty"`
	Index                 int32    `json:"index"`
	BusyMsPerSecond       *float64 `json:"busy_ms_per_second,omitempty"`
	BackPressuredMsPerSec *float64 `json:"backpressured_ms_per_second,omitempty"`
	RecordsInPerSecond    *float64 `json:"records_in_per_second,omitempty"`
	RecordsOutPerSecond   *float64 `json:"records_out_per_second,omitempty"`
	// TrueProcessingRate is records processed per second of busy time (DS2's model).
	TrueProcessingRate *float64 `json:"true_processing_rate,omitempty"`
}

// RoundList is GET /api/v1/rounds: the coordinator's most recent evaluation rounds, oldest
// first, timed directly (the evaluation duration histogram on /metrics only has buckets).
type RoundList struct {
	Rounds []Round `json:"rounds"`
}

// Round is one evaluation round: detection over the model, then the decision policy.
type Round struct {
	Started time.Time `json:"started"`
	// Seconds is the whole round; DetectSeconds and DecideSeconds its two steps.
	Seconds       float64 `json:"seconds"`
	DetectSeconds float64 `json:"detect_seconds"`
	DecideSeconds float64 `json:"decide_seconds"`
	// CPUSeconds is the CPU time the round's own thread used (Linux; 0 elsewhere): on a busy
	// machine a round waits for a core and Seconds grows, its CPU time does not.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// RunQueueSeconds is how long the round's thread was ready to run but waited for a core in
	// the kernel's run queue (Linux with schedstats; 0 elsewhere). What remains of Seconds after
	// CPUSeconds and RunQueueSeconds the round spent off its thread: waiting for a lock, in the
	// Go scheduler's run queue, or for the garbage collector.
	RunQueueSeconds float64 `json:"run_queue_seconds,omitempty"`
	// Nodes is how many nodes the model held; Verdicts how many verdicts detection gave.
	Nodes    int `json:"nodes"`
	Verdicts int `json:"verdicts"`
}
