package httpv1

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// Decision statuses.
const (
	DecisionProposed  = "proposed"  // waiting for an operator's approval
	DecisionPending   = "pending"   // approved (or auto), not started
	DecisionRunning   = "running"   // steps under way
	DecisionBlocked   = "blocked"   // a step is refused for now (PodDisruptionBudget, agent out of reach)
	DecisionSucceeded = "succeeded" // every step done
	DecisionDryRun    = "dry_run"   // planned and recorded; nothing changed
	DecisionFailed    = "failed"
	DecisionCancelled = "cancelled" // withdrawn before it ran
	DecisionNodeGone  = "node_gone" // the node was deleted while the action ran
	DecisionRecorded  = "recorded"  // alerts and cancellations: records, not actions
)

// DecisionList is GET /api/v1/decisions, newest first.
type DecisionList struct {
	Decisions []Decision `json:"decisions"`
	Breaker   Breaker    `json:"breaker"`
	Mode      string     `json:"mode"`
}

// Breaker is the decision policy's circuit breaker, the one tmwarden has: the
// tmwarden.circuit_breaker.open gauge and the breaker_open / breaker_closed events follow it.
type Breaker struct {
	Open   bool      `json:"open"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitempty"`
	// Held, with the breaker closed, says why the last round started no migration (agents late
	// with their reports); it lasts one round.
	Held string `json:"held,omitempty"`
	// The counts the last round's judgement rested on.
	KnownNodes     int `json:"known_nodes"`
	BadNodes       int `json:"bad_nodes"`
	VanishedNodes  int `json:"vanished_nodes"`
	RegressedNodes int `json:"regressed_nodes"`
	ReportingNodes int `json:"reporting_nodes"`
	LateNodes      int `json:"late_nodes"`
}

// Evidence is one observation behind a verdict (the detector's Evidence, as JSON).
type Evidence struct {
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

// Decision is GET /api/v1/decisions/{id}: one action, why it was taken, and what was done.
type Decision struct {
	ID            string         `json:"id"`
	Kind          string         `json:"kind"`
	Node          string         `json:"node,omitempty"`
	Status        string         `json:"status"`
	Mode          string         `json:"mode"`
	DryRun        bool           `json:"dry_run"`
	NeedsApproval bool           `json:"needs_approval"`
	Reason        string         `json:"reason"`
	Score         float64        `json:"score,omitempty"`
	Cause         string         `json:"cause,omitempty"`
	Jobs          []string       `json:"jobs,omitempty"`
	TaskManagers  []string       `json:"task_managers,omitempty"`
	Evidence      []Evidence     `json:"evidence,omitempty"`
	Target        string         `json:"target,omitempty"`
	Actuator      string         `json:"actuator,omitempty"`
	Steps         []DecisionStep `json:"steps,omitempty"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
	ApprovedAt    *time.Time     `json:"approved_at,omitempty"`
	ApprovedBy    string         `json:"approved_by,omitempty"`
	NextAttempt   *time.Time     `json:"next_attempt,omitempty"`
	Message       string         `json:"message,omitempty"`
	Error         string         `json:"error,omitempty"`
	Audit         []AuditEntry   `json:"audit,omitempty"`
}

// DecisionStep is one step of an actuator's plan.
type DecisionStep struct {
	Name     string     `json:"name"`
	Kind     string     `json:"kind"`
	Target   string     `json:"target,omitempty"`
	Status   string     `json:"status"`
	Attempts int        `json:"attempts"`
	Message  string     `json:"message,omitempty"`
	DoneAt   *time.Time `json:"done_at,omitempty"`
}

// AuditEntry is one line of a decision's audit log, written before and after each step.
type AuditEntry struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"`
	Step    string    `json:"step,omitempty"`
	Message string    `json:"message,omitempty"`
}

// NodeDecisionState is the decision side of GET /api/v1/nodes/{name}: where the node is in the
// migration life cycle, the verdict behind it and the evidence.
type NodeDecisionState struct {
	State        string     `json:"state"`
	Since        time.Time  `json:"since"`
	Verdict      string     `json:"verdict"`
	Score        float64    `json:"score"`
	Cause        string     `json:"cause,omitempty"`
	VerdictSince *time.Time `json:"verdict_since,omitempty"`
	Evidence     []Evidence `json:"evidence,omitempty"`
	Note         string     `json:"note,omitempty"`
	OpenDecision string     `json:"open_decision,omitempty"`
	// WouldMigrate is the dry-run decision that would have migrated the node (see Node).
	WouldMigrate string `json:"would_migrate,omitempty"`
}

// ApproveRequest is the optional body of POST /api/v1/decisions/{id}/approve.
type ApproveRequest struct {
	By string `json:"by,omitempty"`
}

// Decisions calls GET /api/v1/decisions; node filters when not empty, limit <= 0 means the server's default.
func (c *Client) Decisions(ctx context.Context, node string, limit int) (DecisionList, error) {
	var l DecisionList
	err := c.get(ctx, DecisionsPath(node, limit), &l)
	return l, err
}

// DecisionsPath is the request path of Decisions (for `-o json` raw output).
func DecisionsPath(node string, limit int) string {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := "/api/v1/decisions"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// Decision calls GET /api/v1/decisions/{id}.
func (c *Client) Decision(ctx context.Context, id string) (Decision, error) {
	var d Decision
	err := c.get(ctx, "/api/v1/decisions/"+url.PathEscape(id), &d)
	return d, err
}

// Approve calls POST /api/v1/decisions/{id}/approve and returns the decision as it now stands.
func (c *Client) Approve(ctx context.Context, id, by string) (Decision, error) {
	var d Decision
	err := c.post(ctx, "/api/v1/decisions/"+url.PathEscape(id)+"/approve", ApproveRequest{By: by}, &d)
	return d, err
}
