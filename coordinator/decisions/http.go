package decisions

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
)

// Handler serves GET /api/v1/decisions, GET /api/v1/decisions/{id} and
// POST /api/v1/decisions/{id}/approve. Mount it for the "/api/v1/decisions" and
// "/api/v1/decisions/" patterns.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/decisions", m.serveList)
	mux.HandleFunc("GET /api/v1/decisions/{id}", m.serveOne)
	mux.HandleFunc("POST /api/v1/decisions/{id}/approve", m.serveApprove)
	return mux
}

func (m *Manager) serveList(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeErr(w, http.StatusBadRequest, "limit "+strconv.Quote(s)+": want a positive integer")
			return
		}
		limit = n
	}
	ds, err := m.Decisions(limit, r.URL.Query().Get("node"))
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := httpv1.DecisionList{Decisions: make([]httpv1.Decision, 0, len(ds)), Mode: string(m.Mode()),
		Breaker: BreakerToAPI(m.Breaker())}
	for _, d := range ds {
		out.Decisions = append(out.Decisions, ToAPI(d, nil))
	}
	httpv1.WriteJSON(w, http.StatusOK, out)
}

// BreakerToAPI maps the policy's circuit breaker to its API form.
func BreakerToAPI(b decide.BreakerState) httpv1.Breaker {
	c := b.Counts
	return httpv1.Breaker{Open: b.Open, Reason: b.Reason, Since: b.Since, Held: b.Held,
		KnownNodes: c.Known, BadNodes: c.Bad, VanishedNodes: c.Vanished, RegressedNodes: c.Regressed,
		ReportingNodes: c.Reporting, LateNodes: c.Late}
}

func (m *Manager) serveOne(w http.ResponseWriter, r *http.Request) {
	d, audit, err := m.Decision(r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		writeErr(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	httpv1.WriteJSON(w, http.StatusOK, ToAPI(d, audit))
}

func (m *Manager) serveApprove(w http.ResponseWriter, r *http.Request) {
	var req httpv1.ApproveRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeErr(w, http.StatusBadRequest, "body: "+err.Error())
			return
		}
	}
	d, err := m.Approve(r.PathValue("id"), req.By)
	switch {
	case errors.Is(err, ErrNotFound):
		writeErr(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrNotApprovable), errors.Is(err, decide.ErrBlocked), errors.Is(err, decide.ErrUnknownAction):
		writeErr(w, http.StatusConflict, err.Error())
	case err != nil:
		writeErr(w, http.StatusInternalServerError, err.Error())
	default:
		httpv1.WriteJSON(w, http.StatusOK, ToAPI(d, nil))
	}
}

// NodeDetail is the decision side of /api/v1/nodes/{name}, for the lead to embed in the node
// detail; ok is false for a node the policy has not seen.
func (m *Manager) NodeDetail(name string) (httpv1.NodeDecisionState, bool) {
	ns, ok := m.NodeState(name)
	if !ok {
		return httpv1.NodeDecisionState{}, false
	}
	out := httpv1.NodeDecisionState{State: string(ns.State), Since: ns.Since, Verdict: ns.Verdict, Score: ns.Score,
		Cause: ns.Cause, Evidence: evidenceToAPI(ns.Evidence), Note: ns.Note, OpenDecision: ns.Action,
		WouldMigrate: ns.WouldMigrate}
	if !ns.VerdictSince.IsZero() {
		t := ns.VerdictSince
		out.VerdictSince = &t
	}
	return out, true
}

// statusToAPI maps stored decision statuses to the API's; a status this build does not know is
// shown as it is stored rather than hidden.
var statusToAPI = map[string]string{
	StatusProposed: httpv1.DecisionProposed, StatusPending: httpv1.DecisionPending, StatusRunning: httpv1.DecisionRunning,
	StatusBlocked: httpv1.DecisionBlocked, StatusSucceeded: httpv1.DecisionSucceeded, StatusDryRun: httpv1.DecisionDryRun,
	StatusFailed: httpv1.DecisionFailed, StatusCancelled: httpv1.DecisionCancelled, StatusNodeGone: httpv1.DecisionNodeGone,
	StatusRecorded: httpv1.DecisionRecorded,
}

func apiStatus(s string) string {
	if a, ok := statusToAPI[s]; ok {
		return a
	}
	return s
}

// ToAPI converts a decision record and its audit log to the API's document.
func ToAPI(d Decision, audit []AuditEntry) httpv1.Decision {
	a := d.Action
	out := httpv1.Decision{ID: a.ID, Kind: string(a.Kind), Node: a.Node, Status: apiStatus(d.Status), Mode: string(a.Mode), DryRun: a.DryRun,
		NeedsApproval: d.Status == StatusProposed, Reason: a.Reason, Score: a.Score, Cause: a.Cause, Jobs: a.Jobs,
		TaskManagers: a.TaskManagers, Evidence: evidenceToAPI(a.Evidence), Target: a.Target, Actuator: d.Actuator,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, ApprovedBy: d.ApprovedBy, Message: d.Message, Error: d.Error}
	for _, e := range audit {
		out.Audit = append(out.Audit, httpv1.AuditEntry{Time: e.Time, Event: e.Event, Step: e.Step, Message: e.Message})
	}
	if !d.ApprovedAt.IsZero() {
		t := d.ApprovedAt
		out.ApprovedAt = &t
	}
	if !d.NextAttempt.IsZero() && d.open() {
		t := d.NextAttempt
		out.NextAttempt = &t
	}
	for _, s := range d.Steps {
		ds := httpv1.DecisionStep{Name: s.Name, Kind: s.Kind, Target: s.Target, Status: s.Status, Attempts: s.Attempts, Message: s.Message}
		if !s.DoneAt.IsZero() {
			t := s.DoneAt
			ds.DoneAt = &t
		}
		out.Steps = append(out.Steps, ds)
	}
	return out
}

func evidenceToAPI(es []detect.Evidence) []httpv1.Evidence {
	if len(es) == 0 {
		return nil
	}
	out := make([]httpv1.Evidence, len(es))
	for i, e := range es {
		out[i] = httpv1.Evidence{Kind: e.Kind, JobID: e.JobID, JobName: e.JobName, VertexID: e.VertexID, VertexName: e.VertexName,
			Subtask: e.Subtask, TPR: e.TPR, PeerMedianTPR: e.PeerMedianTPR, Slowdown: e.Slowdown, TaskManager: e.TaskManager,
			Signal: e.Signal, Value: e.Value, PeerMedian: e.PeerMedian, Since: e.Since}
	}
	return out
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	httpv1.WriteJSON(w, code, httpv1.Error{Error: msg})
}
