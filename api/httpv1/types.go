// Package httpv1 defines the JSON documents of the coordinator's HTTP API under /api/v1/.
// The coordinator serves them and tmwardenctl decodes them, so both sides share one definition.
package httpv1

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
	LastReport json.RawMessage `json:"last_report,omitempty"`
	Events     []Event         `json:"events"`
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
