// Package scenario defines the simulator's scenario files: cluster shape, jobs, the fault and
// control schedule, the seed and the ground truth. Load parses and validates one file and names
// the field and line of anything malformed or contradictory; docs/scenarios.md documents every field.
package scenario

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written the Go way in YAML ("90s", "2h").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string like \"90s\": %w", n.Line, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (write it like 90s, 10m or 2h)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go form.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Scenario is one scenario file.
type Scenario struct {
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Seed        uint64   `yaml:"seed"`
	Duration    Duration `yaml:"duration"`
	Interval    Duration `yaml:"interval"`
	// Noise is the relative per-interval jitter of processing speed (lognormal sigma).
	Noise       *float64     `yaml:"noise"`
	Cluster     Cluster      `yaml:"cluster"`
	Jobs        []Job        `yaml:"jobs"`
	Faults      []Fault      `yaml:"faults"`
	Controls    []Control    `yaml:"controls"`
	GroundTruth []TruthEntry `yaml:"ground_truth"`

	// Truth is the ground truth derived from Faults (and checked against GroundTruth).
	Truth []TruthEntry `yaml:"-"`
	// Negative is true when the scenario has no node fault at all: any migration is wrong.
	Negative bool `yaml:"-"`
	// File is where the scenario was loaded from.
	File string `yaml:"-"`
}

// Cluster is the cluster shape.
type Cluster struct {
	Nodes               int     `yaml:"nodes"`
	CPUs                int     `yaml:"cpus"`
	MemoryGiB           int     `yaml:"memory_gib"`
	TaskManagersPerNode int     `yaml:"task_managers_per_node"`
	SlotsPerTaskManager int     `yaml:"slots_per_task_manager"`
	SpeedJitter         float64 `yaml:"speed_jitter"`
	NamePrefix          string  `yaml:"name_prefix"`
	// Zones are spread over the nodes round-robin as the label topology.kubernetes.io/zone.
	Zones []string `yaml:"zones"`
	// Classes mix hardware classes in the cluster: each takes Count nodes (or Fraction of
	// them), spread over the node indexes by seed; the rest keep the cluster's own shape.
	Classes []Class `yaml:"classes"`
	// Neighbours is how many small background cgroups (daemonset pods, system units) every
	// node runs beside the TaskManagers. Default 2.
	Neighbours *int `yaml:"neighbours"`
}

// Class is one hardware class: machines of one type, as the agent describes them in Hello.
type Class struct {
	Name     string  `yaml:"name"`
	Count    int     `yaml:"count"`
	Fraction float64 `yaml:"fraction"`
	// Speed is the class's processing speed relative to the cluster's default machines
	// (0.77 for a generation that is 1.3x slower).
	Speed     float64 `yaml:"speed"`
	CPUs      int     `yaml:"cpus"`
	MemoryGiB int     `yaml:"memory_gib"`
	CPUModel  string  `yaml:"cpu_model"`
	// Nodes is resolved from Count or Fraction at load.
	Nodes []string `yaml:"-"`
}

// Job is a job template; Count > 1 replicates it as name-000, name-001, ...
type Job struct {
	Name               string     `yaml:"name"`
	Count              int        `yaml:"count"`
	Parallelism        int        `yaml:"parallelism"`
	CheckpointInterval Duration   `yaml:"checkpoint_interval"`
	Input              Input      `yaml:"input"`
	Operators          []Operator `yaml:"operators"`
}

// Input is the Kafka-like source traffic of a job.
type Input struct {
	// Rate is records per second over all partitions at the diurnal mean.
	Rate          float64  `yaml:"rate"`
	Partitions    int      `yaml:"partitions"`
	PartitionSkew float64  `yaml:"partition_skew"`
	Diurnal       *Diurnal `yaml:"diurnal"`
	Bursts        *Bursts  `yaml:"bursts"`
}

// Diurnal is a sine wave on the input rate.
type Diurnal struct {
	Amplitude float64  `yaml:"amplitude"`
	Period    Duration `yaml:"period"`
	Phase     Duration `yaml:"phase"`
}

// Bursts are random short rate increases.
type Bursts struct {
	PerHour   float64  `yaml:"per_hour"`
	Magnitude float64  `yaml:"magnitude"`
	Duration  Duration `yaml:"duration"`
}

// Operator is one vertex of the job graph.
type Operator struct {
	Name string `yaml:"name"`
	// Inputs names upstream operators; empty means the previous operator (none for the first).
	Inputs []string `yaml:"inputs"`
	// Edge is how records reach this operator: forward, hash or rebalance.
	Edge        string   `yaml:"edge"`
	Parallelism int      `yaml:"parallelism"`
	CostUS      float64  `yaml:"cost_us"`
	Selectivity *float64 `yaml:"selectivity"`
	// State marks RocksDB-backed keyed state: part of the cost is disk IO.
	State bool `yaml:"state"`
	// KeySkew is the extra share the hottest key group sends to one subtask (0 = uniform).
	KeySkew float64 `yaml:"key_skew"`
}

// Fault kinds: node faults are ground truth; gc_storm is a TaskManager fault.
const (
	FaultCPUContention  = "cpu_contention"
	FaultCPUSteal       = "cpu_steal"
	FaultSlowDisk       = "slow_disk"
	FaultNetworkLoss    = "network_loss"
	FaultMemoryPressure = "memory_pressure"
	FaultGCStorm        = "gc_storm"
)

// FaultKinds lists the fault kinds in a stable order.
var FaultKinds = []string{FaultCPUContention, FaultCPUSteal, FaultSlowDisk, FaultNetworkLoss, FaultMemoryPressure, FaultGCStorm}

// Fault is a scheduled node or TaskManager fault.
type Fault struct {
	Kind  string   `yaml:"kind"`
	Nodes []string `yaml:"nodes"`
	// Count picks that many distinct random nodes (by seed) instead of naming them.
	Count    int      `yaml:"count"`
	Start    Duration `yaml:"start"`
	Duration Duration `yaml:"duration"`
	// Severity in (0, 1): how much of the node's capacity the fault takes.
	Severity float64 `yaml:"severity"`
	// TaskManager is the index of the TaskManager on the node (gc_storm only).
	TaskManager *int `yaml:"task_manager"`
	// Ramp is how long the fault takes to reach full severity (gray failures creep in).
	Ramp Duration `yaml:"ramp"`
	// Zone picks every node of that zone (cluster.zones) instead of naming them: a slow rack.
	Zone string `yaml:"zone"`
	// Intermittent turns the fault on and off within its span.
	Intermittent *Intermittent `yaml:"intermittent"`
	// Share is the part of the node's resource the fault hits: some of its cores, one of its
	// disks, one of its NICs. The subtasks on the rest run as before. Default 1.
	Share float64 `yaml:"share"`
	// Neighbour is who takes the CPU in a cpu_contention fault (a pod, or a systemd unit);
	// by default a pod named after the fault.
	Neighbour *Neighbour `yaml:"neighbour"`
	// Direction of a network_loss: send (default: the node's own packets are lost) or
	// receive (packets to the node are lost, which its senders see).
	Direction string `yaml:"direction"`
	// Line is where the fault is in the file, for errors found after loading.
	Line int `yaml:"-"`
}

// Intermittent is an on/off pattern within a fault's span, starting on.
type Intermittent struct {
	On  Duration `yaml:"on"`
	Off Duration `yaml:"off"`
}

// Neighbour is the cgroup that takes the CPU in a cpu_contention fault.
type Neighbour struct {
	Pod       string `yaml:"pod"`
	Namespace string `yaml:"namespace"`
	Unit      string `yaml:"unit"`
	// Cgroup, PodUID are derived at load.
	Cgroup string `yaml:"-"`
	PodUID string `yaml:"-"`
}

// Control kinds: things that look like trouble but are not node faults.
const (
	ControlDataSkew         = "data_skew"
	ControlTrafficSpike     = "traffic_spike"
	ControlUnderProvisioned = "under_provisioned"
	ControlClusterSlowdown  = "cluster_slowdown"
	ControlPartition        = "partition"
	ControlAgentRestart     = "agent_restart"
	// ControlSlowExternal: an external system (a sink, a Kafka broker) slows the subtasks of
	// one operator that talk to it, on whatever nodes they run.
	ControlSlowExternal = "slow_external"
	// ControlStaleMetrics: one node's Flink metrics go missing (mode missing) or stop
	// changing (mode stale) while its host reports go on.
	ControlStaleMetrics = "stale_metrics"
	// ControlTaskManagerRestart: the TaskManagers on the nodes restart; their subtasks stop
	// and come back as new attempts that catch up on their backlog.
	ControlTaskManagerRestart = "tm_restart"
	// ControlJobFailover: every subtask of the job restarts (a failover) and catches up.
	ControlJobFailover = "job_failover"
)

// ControlKinds lists the control kinds in a stable order.
var ControlKinds = []string{ControlDataSkew, ControlTrafficSpike, ControlUnderProvisioned, ControlClusterSlowdown, ControlPartition, ControlAgentRestart,
	ControlSlowExternal, ControlStaleMetrics, ControlTaskManagerRestart, ControlJobFailover}

// Control is a scheduled negative-control event.
type Control struct {
	Kind     string   `yaml:"kind"`
	Start    Duration `yaml:"start"`
	Duration Duration `yaml:"duration"`
	// Job names the job template (data_skew, under_provisioned); empty means every job.
	Job      string `yaml:"job"`
	Operator string `yaml:"operator"`
	// Magnitude: rate multiplier (traffic_spike, under_provisioned), hot-key input multiplier
	// (data_skew), slowdown share (cluster_slowdown).
	Magnitude float64 `yaml:"magnitude"`
	// CostFactor makes the hot key group's records that much more expensive (data_skew).
	CostFactor float64 `yaml:"cost_factor"`
	// Fraction of nodes affected (partition, agent_restart), or Nodes by name.
	Fraction float64  `yaml:"fraction"`
	Nodes    []string `yaml:"nodes"`
	Count    int      `yaml:"count"`
	// Share of the operator's subtasks slowed (slow_external: those that talk to the slow
	// broker). Default 0.25.
	Share float64 `yaml:"share"`
	// Mode of stale_metrics: missing (default) or stale.
	Mode string `yaml:"mode"`
}

// TruthEntry says a node (or one TaskManager on it) is truly slow from From to To.
type TruthEntry struct {
	Node        string   `yaml:"node"`
	TaskManager string   `yaml:"task_manager"`
	From        Duration `yaml:"from"`
	To          Duration `yaml:"to"`
	Cause       string   `yaml:"cause"`
	// Culprit is the cgroup of the neighbour that takes the CPU (cpu_contention faults).
	Culprit string `yaml:"culprit"`
	// Onset is when the fault behind the entry started; before From for a ramped fault, whose
	// target is degrading but not yet slow. A verdict between Onset and From is early, not false.
	Onset Duration `yaml:"-"`
}
