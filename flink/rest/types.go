package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
)

// Double is a JSON number that Jackson may also write as a string ("NaN", "Infinity") or, in
// metric endpoints, as a quoted decimal.
type Double float64

func (d *Double) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*d = Double(math.NaN())
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "NaN":
			*d = Double(math.NaN())
			return nil
		case "Infinity", "+Infinity":
			*d = Double(math.Inf(1))
			return nil
		case "-Infinity":
			*d = Double(math.Inf(-1))
			return nil
		}
		b = []byte(s)
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("not a double: %s", b)
	}
	*d = Double(f)
	return nil
}

// ClusterOverview is GET /overview.
type ClusterOverview struct {
	TaskManagers   int    `json:"taskmanagers"`
	SlotsTotal     int    `json:"slots-total"`
	SlotsAvailable int    `json:"slots-available"`
	JobsRunning    int    `json:"jobs-running"`
	JobsFinished   int    `json:"jobs-finished"`
	JobsCancelled  int    `json:"jobs-cancelled"`
	JobsFailed     int    `json:"jobs-failed"`
	FlinkVersion   string `json:"flink-version"`
	FlinkCommit    string `json:"flink-commit"`
}

// JobIDStatus is one entry of GET /jobs.
type JobIDStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// JobOverview is one entry of GET /jobs/overview.
type JobOverview struct {
	ID               string         `json:"jid"`
	Name             string         `json:"name"`
	State            string         `json:"state"`
	StartTime        int64          `json:"start-time"`
	EndTime          int64          `json:"end-time"`
	Duration         int64          `json:"duration"`
	LastModification int64          `json:"last-modification"`
	JobType          string         `json:"jobType,omitempty"`
	Tasks            map[string]int `json:"tasks"`
}

// IOMetrics is the IOMetricsInfo object on vertices, subtasks and vertex TaskManagers.
type IOMetrics struct {
	ReadBytes              int64  `json:"read-bytes"`
	WriteBytes             int64  `json:"write-bytes"`
	ReadRecords            int64  `json:"read-records"`
	WriteRecords           int64  `json:"write-records"`
	AccumulatedBackPressed int64  `json:"accumulated-backpressured-time"`
	AccumulatedIdle        int64  `json:"accumulated-idle-time"`
	AccumulatedBusy        Double `json:"accumulated-busy-time"`
}

// JobVertex is one vertex in GET /jobs/:jid.
type JobVertex struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Parallelism    int            `json:"parallelism"`
	MaxParallelism int            `json:"maxParallelism"`
	Status         string         `json:"status"`
	StartTime      int64          `json:"start-time"`
	Duration       int64          `json:"duration"`
	Tasks          map[string]int `json:"tasks"`
	Metrics        IOMetrics      `json:"metrics"`
}

// JobDetails is GET /jobs/:jid.
type JobDetails struct {
	ID        string      `json:"jid"`
	Name      string      `json:"name"`
	State     string      `json:"state"`
	JobType   string      `json:"job-type"`
	StartTime int64       `json:"start-time"`
	Duration  int64       `json:"duration"`
	Now       int64       `json:"now"`
	Vertices  []JobVertex `json:"vertices"`
}

// Subtask is one execution in GET /jobs/:jid/vertices/:vid (and .../subtasks/:idx).
type Subtask struct {
	Index         int       `json:"subtask"`
	Status        string    `json:"status"`
	Attempt       int       `json:"attempt"`
	Endpoint      string    `json:"endpoint"`
	HostDeprec    string    `json:"host,omitempty"` // 1.x only, removed in 2.0
	StartTime     int64     `json:"start-time"`
	Duration      int64     `json:"duration"`
	Metrics       IOMetrics `json:"metrics"`
	TaskManagerID string    `json:"taskmanager-id"`
}

// Host is the TaskManager's host: the 1.x `host` field, or the host part of the 2.x
// `endpoint` ("<host>:<dataPort>"); "" while unassigned.
func (s Subtask) Host() string {
	if s.HostDeprec != "" {
		return s.HostDeprec
	}
	return endpointHost(s.Endpoint)
}

func endpointHost(ep string) string {
	if ep == "" || strings.HasPrefix(ep, "(") { // "(unassigned)"
		return ""
	}
	if h, _, err := net.SplitHostPort(ep); err == nil {
		return h
	}
	return ep
}

// VertexDetails is GET /jobs/:jid/vertices/:vid.
type VertexDetails struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Parallelism int       `json:"parallelism"`
	Now         int64     `json:"now"`
	Subtasks    []Subtask `json:"subtasks"`
}

// VertexTaskManager is one entry of GET /jobs/:jid/vertices/:vid/taskmanagers.
type VertexTaskManager struct {
	Endpoint      string         `json:"endpoint"`
	HostDeprec    string         `json:"host,omitempty"`
	Status        string         `json:"status"`
	TaskManagerID string         `json:"taskmanager-id"`
	Metrics       IOMetrics      `json:"metrics"`
	StatusCounts  map[string]int `json:"status-counts"`
}

// Host is as Subtask.Host.
func (t VertexTaskManager) Host() string {
	if t.HostDeprec != "" {
		return t.HostDeprec
	}
	return endpointHost(t.Endpoint)
}

// VertexTaskManagers is GET /jobs/:jid/vertices/:vid/taskmanagers.
type VertexTaskManagers struct {
	ID           string              `json:"id"`
	Name         string              `json:"name"`
	Now          int64               `json:"now"`
	TaskManagers []VertexTaskManager `json:"taskmanagers"`
}

// BackPressure is GET /jobs/:jid/vertices/:vid/backpressure. Status "deprecated" alone means
// Flink has no data yet.
type BackPressure struct {
	Status       string                `json:"status"`
	Level        string                `json:"backpressure-level"`
	LevelCamel   string                `json:"backpressureLevel"`
	EndTimestamp int64                 `json:"end-timestamp"`
	Subtasks     []SubtaskBackPressure `json:"subtasks"`
}

// SubtaskBackPressure is one subtask's ratios (metric store ms-per-second / 1000).
type SubtaskBackPressure struct {
	Subtask    int    `json:"subtask"`
	Level      string `json:"backpressure-level"`
	LevelCamel string `json:"backpressureLevel"`
	Ratio      Double `json:"ratio"`
	IdleRatio  Double `json:"idleRatio"`
	BusyRatio  Double `json:"busyRatio"`
}

// Checkpoint is one checkpoint statistics entry (latest.* and history[]).
type Checkpoint struct {
	ClassName        string `json:"className"`
	ID               int64  `json:"id"`
	Status           string `json:"status"`
	IsSavepoint      bool   `json:"is_savepoint"`
	TriggerTimestamp int64  `json:"trigger_timestamp"`
	LatestAck        int64  `json:"latest_ack_timestamp"`
	// CheckpointedSize is the incremental size; StateSize the full size (FLINK-13390).
	CheckpointedSize int64  `json:"checkpointed_size"`
	StateSize        int64  `json:"state_size"`
	EndToEndDuration int64  `json:"end_to_end_duration"`
	NumSubtasks      int    `json:"num_subtasks"`
	NumAcknowledged  int    `json:"num_acknowledged_subtasks"`
	CheckpointType   string `json:"checkpoint_type"`
	ExternalPath     string `json:"external_path,omitempty"`
	Discarded        bool   `json:"discarded,omitempty"`
	FailureTimestamp int64  `json:"failure_timestamp,omitempty"`
	FailureMessage   string `json:"failure_message,omitempty"`
}

// CheckpointStats is GET /jobs/:jid/checkpoints.
type CheckpointStats struct {
	Counts struct {
		Restored   int64 `json:"restored"`
		Total      int64 `json:"total"`
		InProgress int64 `json:"in_progress"`
		Completed  int64 `json:"completed"`
		Failed     int64 `json:"failed"`
	} `json:"counts"`
	Latest struct {
		Completed *Checkpoint `json:"completed"`
		Savepoint *Checkpoint `json:"savepoint"`
		Failed    *Checkpoint `json:"failed"`
		Restored  *struct {
			ID           int64  `json:"id"`
			ExternalPath string `json:"external_path"`
		} `json:"restored"`
	} `json:"latest"`
	History []Checkpoint `json:"history"`
}

// TriggerResponse is the 202 body of POST /jobs/:jid/checkpoints.
type TriggerResponse struct {
	RequestID string `json:"request-id"`
}

// FailureCause is a serialised Java throwable.
type FailureCause struct {
	Class      string `json:"class"`
	StackTrace string `json:"stack-trace"`
}

// CheckpointOperation is GET /jobs/:jid/checkpoints/:triggerid.
type CheckpointOperation struct {
	Status struct {
		ID string `json:"id"` // IN_PROGRESS or COMPLETED
	} `json:"status"`
	Operation *struct {
		CheckpointID *int64        `json:"checkpointId"`
		FailureCause *FailureCause `json:"failureCause"`
	} `json:"operation"`
}

// TaskManagerInfo is one entry of GET /taskmanagers.
type TaskManagerInfo struct {
	ID   string `json:"id"`
	Path string `json:"path"`
	Data int    `json:"dataPort"`
	JMX  int    `json:"jmxPort"`
	// LastHeartbeat is an epoch-ms timestamp, despite Flink's field name.
	LastHeartbeat int64 `json:"timeSinceLastHeartbeat"`
	Slots         int   `json:"slotsNumber"`
	FreeSlots     int   `json:"freeSlots"`
	Blocked       bool  `json:"blocked,omitempty"`
	Hardware      struct {
		CPUCores       int   `json:"cpuCores"`
		PhysicalMemory int64 `json:"physicalMemory"`
	} `json:"hardware"`
}

// RPCHost is the host of the TaskManager's RPC address (from `path`, e.g.
// "pekko.tcp://flink@10.0.1.23:36471/user/rpc/taskmanager_0"); it is what the PrometheusReporter
// puts in the `host` label.
func (t TaskManagerInfo) RPCHost() string {
	p := t.Path
	if i := strings.Index(p, "@"); i >= 0 {
		p = p[i+1:]
	} else if i := strings.Index(p, "://"); i >= 0 {
		p = p[i+3:]
	}
	if i := strings.Index(p, "/"); i >= 0 {
		p = p[:i]
	}
	return endpointHost(p)
}

// TaskManagerDetails is GET /taskmanagers/:tmid.
type TaskManagerDetails struct {
	TaskManagerInfo
	Metrics struct {
		HeapUsed          int64 `json:"heapUsed"`
		HeapCommitted     int64 `json:"heapCommitted"`
		HeapMax           int64 `json:"heapMax"`
		GarbageCollectors []struct {
			Name  string `json:"name"`
			Count int64  `json:"count"`
			Time  int64  `json:"time"`
		} `json:"garbageCollectors"`
	} `json:"metrics"`
}
