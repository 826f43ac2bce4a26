package decisions

import (
	"time"

	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
)

// The stored shapes of this package's records. Decisions and the policy's memory hold types of
// other packages (decide.Action, detect.Evidence, actuate.Step); writing those as they are would
// make a renamed field there silently blank it in every record read back after an upgrade. The
// store gets these types instead, owned here, versioned with store.RecordVersion and mapped
// field by field: a change to decide, detect or actuate cannot change what is on disk, and a
// change of these types is a new record version. testdata/*-v1.json are records written by
// version 1; TestRecordsOfVersion1 reads them back.

// decisionRecord is a Decision as stored.
type decisionRecord struct {
	V            int          `json:"v,omitempty"`
	Action       actionRecord `json:"action"`
	Status       string       `json:"status"`
	Actuator     string       `json:"actuator,omitempty"`
	Planned      bool         `json:"planned"`
	PlanAttempts int          `json:"plan_attempts,omitempty"`
	Steps        []stepRecord `json:"steps,omitempty"`
	CreatedAt    time.Time    `json:"created_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
	ApprovedAt   time.Time    `json:"approved_at,omitempty"`
	ApprovedBy   string       `json:"approved_by,omitempty"`
	NextAttempt  time.Time    `json:"next_attempt,omitempty"`
	Message      string       `json:"message,omitempty"`
	Error        string       `json:"error,omitempty"`
	AuditN       int          `json:"audit_n"`
}

// actionRecord is a decide.Action as stored.
type actionRecord struct {
	ID            string           `json:"id"`
	Kind          string           `json:"kind"`
	Node          string           `json:"node,omitempty"`
	Mode          string           `json:"mode"`
	DryRun        bool             `json:"dry_run"`
	NeedsApproval bool             `json:"needs_approval"`
	Jobs          []string         `json:"jobs,omitempty"`
	TaskManagers  []string         `json:"task_managers,omitempty"`
	Reason        string           `json:"reason"`
	Score         float64          `json:"score,omitempty"`
	Cause         string           `json:"cause,omitempty"`
	Evidence      []evidenceRecord `json:"evidence,omitempty"`
	At            time.Time        `json:"at"`
	Target        string           `json:"target,omitempty"`
}

// evidenceRecord is a detect.Evidence as stored.
type evidenceRecord struct {
	Kind          string    `json:"kind"`
	JobID         string    `json:"job_id,omitempty"`
	JobName       string    `json:"job_name,omitempty"`
	VertexID      string    `json:"vertex_id,omitempty"`
	VertexName    string    `json:"vertex_name,omitempty"`
	Subtask       int       `json:"subtask,omitempty"`
	TPR           float64   `json:"tpr,omitempty"`
	PeerMedianTPR float64   `json:"peer_median_tpr,omitempty"`
	Slowdown      float64   `json:"slowdown,omitempty"`
	TaskManager   string    `json:"task_manager,omitempty"`
	Signal        string    `json:"signal,omitempty"`
	Value         float64   `json:"value,omitempty"`
	PeerMedian    float64   `json:"peer_median,omitempty"`
	Since         time.Time `json:"since"`
}

// stepRecord is a StepRecord (an actuate.Step and how far it got) as stored.
type stepRecord struct {
	Name     string    `json:"name"`
	Kind     string    `json:"kind"`
	Target   string    `json:"target,omitempty"`
	Status   string    `json:"status"`
	Attempts int       `json:"attempts"`
	Message  string    `json:"message,omitempty"`
	FirstAt  time.Time `json:"first_at,omitempty"`
	DoneAt   time.Time `json:"done_at,omitempty"`
}

// policyRecord is the policy's memory (decide.Snapshot) as stored.
type policyRecord struct {
	V        int                        `json:"v,omitempty"`
	Nodes    map[string]nodeStateRecord `json:"nodes"`
	Open     map[string]actionRecord    `json:"open"`
	Cooldown map[string]time.Time       `json:"cooldown"`
	Breaker  breakerRecord              `json:"breaker"`
	Seq      uint64                     `json:"seq"`
}

// nodeStateRecord is a decide.NodeState as stored.
type nodeStateRecord struct {
	Node         string           `json:"node"`
	State        string           `json:"state"`
	Since        time.Time        `json:"since"`
	Verdict      string           `json:"verdict"`
	Score        float64          `json:"score"`
	Cause        string           `json:"cause,omitempty"`
	Evidence     []evidenceRecord `json:"evidence,omitempty"`
	VerdictSince time.Time        `json:"verdict_since,omitempty"`
	Jobs         []string         `json:"jobs,omitempty"`
	TaskManagers []string         `json:"task_managers,omitempty"`
	Reachable    bool             `json:"reachable"`
	LostAt       time.Time        `json:"lost_at,omitempty"`
	SlowRounds   int              `json:"slow_rounds"`
	CleanRounds  int              `json:"clean_rounds"`
	Action       string           `json:"action,omitempty"`
	NotBefore    time.Time        `json:"not_before,omitempty"`
	Note         string           `json:"note,omitempty"`
	WouldMigrate string           `json:"would_migrate,omitempty"`
}

// breakerRecord is a decide.BreakerState as stored.
type breakerRecord struct {
	Open     bool      `json:"open"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since,omitempty"`
	LastTrip time.Time `json:"last_trip,omitempty"`
	Held     string    `json:"held,omitempty"`
	Counts   struct {
		Known     int `json:"known_nodes"`
		Bad       int `json:"bad_nodes"`
		Vanished  int `json:"vanished_nodes"`
		Regressed int `json:"regressed_nodes"`
		Reporting int `json:"reporting_nodes"`
		Late      int `json:"late_nodes"`
	} `json:"counts"`
}

func decisionToRecord(d Decision) decisionRecord {
	r := decisionRecord{V: d.V, Action: actionToRecord(d.Action), Status: d.Status, Actuator: d.Actuator, Planned: d.Planned,
		PlanAttempts: d.PlanAttempts, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, ApprovedAt: d.ApprovedAt,
		ApprovedBy: d.ApprovedBy, NextAttempt: d.NextAttempt, Message: d.Message, Error: d.Error, AuditN: d.AuditN}
	for _, s := range d.Steps {
		r.Steps = append(r.Steps, stepRecord{Name: s.Name, Kind: s.Kind, Target: s.Target, Status: s.Status,
			Attempts: s.Attempts, Message: s.Message, FirstAt: s.FirstAt, DoneAt: s.DoneAt})
	}
	return r
}

func decisionFromRecord(r decisionRecord) Decision {
	d := Decision{V: r.V, Action: actionFromRecord(r.Action), Status: r.Status, Actuator: r.Actuator, Planned: r.Planned,
		PlanAttempts: r.PlanAttempts, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, ApprovedAt: r.ApprovedAt,
		ApprovedBy: r.ApprovedBy, NextAttempt: r.NextAttempt, Message: r.Message, Error: r.Error, AuditN: r.AuditN}
	for _, s := range r.Steps {
		d.Steps = append(d.Steps, StepRecord{Step: actuate.Step{Name: s.Name, Kind: s.Kind, Target: s.Target}, Status: s.Status,
			Attempts: s.Attempts, Message: s.Message, FirstAt: s.FirstAt, DoneAt: s.DoneAt})
	}
	return d
}

func actionToRecord(a decide.Action) actionRecord {
	return actionRecord{ID: a.ID, Kind: string(a.Kind), Node: a.Node, Mode: string(a.Mode), DryRun: a.DryRun,
		NeedsApproval: a.NeedsApproval, Jobs: a.Jobs, TaskManagers: a.TaskManagers, Reason: a.Reason, Score: a.Score,
		Cause: a.Cause, Evidence: evidenceToRecord(a.Evidence), At: a.At, Target: a.Target}
}

func actionFromRecord(r actionRecord) decide.Action {
	return decide.Action{ID: r.ID, Kind: decide.Kind(r.Kind), Node: r.Node, Mode: decide.Mode(r.Mode), DryRun: r.DryRun,
		NeedsApproval: r.NeedsApproval, Jobs: r.Jobs, TaskManagers: r.TaskManagers, Reason: r.Reason, Score: r.Score,
		Cause: r.Cause, Evidence: evidenceFromRecord(r.Evidence), At: r.At, Target: r.Target}
}

func evidenceToRecord(ev []detect.Evidence) []evidenceRecord {
	if ev == nil {
		return nil
	}
	out := make([]evidenceRecord, len(ev))
	for i, e := range ev {
		out[i] = evidenceRecord{Kind: e.Kind, JobID: e.JobID, JobName: e.JobName, VertexID: e.VertexID, VertexName: e.VertexName,
			Subtask: e.Subtask, TPR: e.TPR, PeerMedianTPR: e.PeerMedianTPR, Slowdown: e.Slowdown, TaskManager: e.TaskManager,
			Signal: e.Signal, Value: e.Value, PeerMedian: e.PeerMedian, Since: e.Since}
	}
	return out
}

func evidenceFromRecord(rs []evidenceRecord) []detect.Evidence {
	if rs == nil {
		return nil
	}
	out := make([]detect.Evidence, len(rs))
	for i, r := range rs {
		out[i] = detect.Evidence{Kind: r.Kind, JobID: r.JobID, JobName: r.JobName, VertexID: r.VertexID, VertexName: r.VertexName,
			Subtask: r.Subtask, TPR: r.TPR, PeerMedianTPR: r.PeerMedianTPR, Slowdown: r.Slowdown, TaskManager: r.TaskManager,
			Signal: r.Signal, Value: r.Value, PeerMedian: r.PeerMedian, Since: r.Since}
	}
	return out
}

func policyToRecord(s decide.Snapshot, v int) policyRecord {
	r := policyRecord{V: v, Nodes: make(map[string]nodeStateRecord, len(s.Nodes)), Open: make(map[string]actionRecord, len(s.Open)),
		Cooldown: s.Cooldown, Seq: s.Seq}
	for k, n := range s.Nodes {
		r.Nodes[k] = nodeStateRecord{Node: n.Node, State: string(n.State), Since: n.Since, Verdict: n.Verdict, Score: n.Score,
			Cause: n.Cause, Evidence: evidenceToRecord(n.Evidence), VerdictSince: n.VerdictSince, Jobs: n.Jobs,
			TaskManagers: n.TaskManagers, Reachable: n.Reachable, LostAt: n.LostAt, SlowRounds: n.SlowRounds,
			CleanRounds: n.CleanRounds, Action: n.Action, NotBefore: n.NotBefore, Note: n.Note, WouldMigrate: n.WouldMigrate}
	}
	for k, a := range s.Open {
		r.Open[k] = actionToRecord(a)
	}
	b := s.Breaker
	r.Breaker = breakerRecord{Open: b.Open, Reason: b.Reason, Since: b.Since, LastTrip: b.LastTrip, Held: b.Held}
	c := &r.Breaker.Counts
	c.Known, c.Bad, c.Vanished, c.Regressed, c.Reporting, c.Late = b.Counts.Known, b.Counts.Bad, b.Counts.Vanished,
		b.Counts.Regressed, b.Counts.Reporting, b.Counts.Late
	return r
}

func policyFromRecord(r policyRecord) decide.Snapshot {
	s := decide.Snapshot{Nodes: make(map[string]decide.NodeState, len(r.Nodes)), Open: make(map[string]decide.Action, len(r.Open)),
		Cooldown: r.Cooldown, Seq: r.Seq}
	for k, n := range r.Nodes {
		s.Nodes[k] = decide.NodeState{Node: n.Node, State: decide.State(n.State), Since: n.Since, Verdict: n.Verdict, Score: n.Score,
			Cause: n.Cause, Evidence: evidenceFromRecord(n.Evidence), VerdictSince: n.VerdictSince, Jobs: n.Jobs,
			TaskManagers: n.TaskManagers, Reachable: n.Reachable, LostAt: n.LostAt, SlowRounds: n.SlowRounds,
			CleanRounds: n.CleanRounds, Action: n.Action, NotBefore: n.NotBefore, Note: n.Note, WouldMigrate: n.WouldMigrate}
	}
	for k, a := range r.Open {
		s.Open[k] = actionFromRecord(a)
	}
	b := r.Breaker
	s.Breaker = decide.BreakerState{Open: b.Open, Reason: b.Reason, Since: b.Since, LastTrip: b.LastTrip, Held: b.Held,
		Counts: decide.BreakerCounts{Known: b.Counts.Known, Bad: b.Counts.Bad, Vanished: b.Counts.Vanished,
			Regressed: b.Counts.Regressed, Reporting: b.Counts.Reporting, Late: b.Counts.Late}}
	return s
}
