// Package decisions is the durable side of the decision policy: it persists decisions, the
// policy's node states and a per-step audit log in the coordinator's pebble store, and runs the
// executor that carries decisions out through an actuator. Every step is written as an intent
// before it runs and as done after, so a coordinator restarted at any point resumes each
// decision where it stopped: no action lost, no completed step done again.
package decisions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// Key prefixes in the store.
const (
	prefixDecision = "decision/"
	prefixAudit    = "decaudit/"
	keyPolicy      = "decpolicy/state"
)

// Decision statuses as stored. Their values are part of the stored format; ToAPI maps them to
// the API's (today the same words).
const (
	StatusProposed  = "proposed"  // waiting for an operator's approval
	StatusPending   = "pending"   // approved (or auto), not started
	StatusRunning   = "running"   // steps under way
	StatusBlocked   = "blocked"   // a step is refused for now (PodDisruptionBudget, agent out of reach)
	StatusSucceeded = "succeeded" // every step done
	StatusDryRun    = "dry_run"   // planned and recorded; nothing changed
	StatusFailed    = "failed"
	StatusCancelled = "cancelled" // withdrawn before it ran
	StatusNodeGone  = "node_gone" // the node was deleted while the action ran
	StatusRecorded  = "recorded"  // alerts and cancellations: records, not actions
)

// Step statuses.
const (
	StepPending = "pending"
	StepIntent  = "intent" // written before the actuator is called
	StepDone    = "done"
	StepFailed  = "failed"
	StepSkipped = "skipped" // dry run
)

// Config configures the executor.
type Config struct {
	// Policy is the decision policy's configuration.
	Policy decide.Config `yaml:"policy" json:"policy"`
	// ExecInterval is how often the executor looks for work. Default 1s.
	ExecInterval time.Duration `yaml:"exec_interval" json:"exec_interval"`
	// StepTimeout bounds one actuator step. Default 10m.
	StepTimeout time.Duration `yaml:"step_timeout" json:"step_timeout"`
	// MaxPlanAttempts fails a decision whose plan cannot be made this many times. Default 5.
	MaxPlanAttempts int `yaml:"max_plan_attempts" json:"max_plan_attempts"`
	// BlockedTimeout fails a decision whose step has been asking to wait (a PodDisruptionBudget,
	// a pod that will not terminate, an agent that does not answer) for this long. Default 1h.
	BlockedTimeout time.Duration `yaml:"blocked_timeout" json:"blocked_timeout"`
}

// Validate checks c (defaults come from DefaultConfig by omission, so a zero is what the
// operator wrote) and returns it with the policy normalized.
func (c Config) Validate() (Config, error) {
	pc, err := c.Policy.Normalize()
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("decisions.policy: %w", err))
	}
	c.Policy = pc
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"exec_interval", c.ExecInterval}, {"step_timeout", c.StepTimeout}, {"blocked_timeout", c.BlockedTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("decisions.%s %v: must be positive", d.key, d.v))
		}
	}
	if c.MaxPlanAttempts < 1 {
		errs = append(errs, fmt.Errorf("decisions.max_plan_attempts %d: must be at least 1", c.MaxPlanAttempts))
	}
	return c, errors.Join(errs...)
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Policy: decide.DefaultConfig(), ExecInterval: time.Second, StepTimeout: 10 * time.Minute, MaxPlanAttempts: 5,
		BlockedTimeout: time.Hour}
}

// StepRecord is one planned step and how far it got.
type StepRecord struct {
	actuate.Step
	Status   string    `json:"status"`
	Attempts int       `json:"attempts"`
	Message  string    `json:"message,omitempty"`
	FirstAt  time.Time `json:"first_at,omitempty"`
	DoneAt   time.Time `json:"done_at,omitempty"`
}

// Decision is one action and how far it got. It is stored as a decisionRecord (record.go,
// versioned with store.RecordVersion); ToAPI maps it to the API's document.
type Decision struct {
	// V is the record version (store.RecordVersion when written; 0 in records older than versions).
	V            int           `json:"v,omitempty"`
	Action       decide.Action `json:"action"`
	Status       string        `json:"status"`
	Actuator     string        `json:"actuator,omitempty"`
	Planned      bool          `json:"planned"`
	PlanAttempts int           `json:"plan_attempts,omitempty"`
	Steps        []StepRecord  `json:"steps,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
	ApprovedAt   time.Time     `json:"approved_at,omitempty"`
	ApprovedBy   string        `json:"approved_by,omitempty"`
	NextAttempt  time.Time     `json:"next_attempt,omitempty"`
	Message      string        `json:"message,omitempty"`
	Error        string        `json:"error,omitempty"`
	// AuditN numbers this decision's audit entries.
	AuditN int `json:"audit_n"`
}

func (d *Decision) open() bool {
	switch d.Status {
	case StatusProposed, StatusPending, StatusRunning, StatusBlocked:
		return true
	}
	return false
}

func (d *Decision) runnable(now time.Time) bool {
	switch d.Status {
	case StatusPending, StatusRunning, StatusBlocked:
		return !now.Before(d.NextAttempt)
	}
	return false
}

// Option changes a Manager.
type Option func(*Manager)

// WithClock sets the clock (tests, the simulator).
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithResidents sets the placement source decisions ask for a node's jobs and TaskManagers.
func WithResidents(r decide.Residents) Option { return func(m *Manager) { m.residents = r } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithTracer traces each executor pass over a decision and each actuator step in it.
func WithTracer(t trace.Tracer) Option { return func(m *Manager) { m.tracer = t } }

// WithTransition calls f for every change of a node's health (decision state), after the
// health_changed event is written: the coordinator counts them by from and to.
func WithTransition(f func(node string, from, to decide.State)) Option {
	return func(m *Manager) { m.transition = f }
}

// WithFinished calls f once with every decision that ends (succeeded, failed, dry_run,
// node_gone), after its end is stored: the coordinator counts migrations there, by outcome.
func WithFinished(f func(Decision)) Option { return func(m *Manager) { m.finished = f } }

// Manager owns the policy, the decision records and the executor.
type Manager struct {
	st  *store.Store
	cfg Config
	act actuate.Actuator
	log *slog.Logger
	now func() time.Time
	// residents is the placement source: which jobs and TaskManagers run on a node.
	residents decide.Residents
	// tracer and finished are optional (WithTracer, WithFinished).
	tracer     trace.Tracer
	finished   func(Decision)
	transition func(node string, from, to decide.State)

	mu sync.Mutex // guards pol, open and savedPolicy
	// savedPolicy is the policy state as last written to the store.
	savedPolicy []byte
	pol         *decide.Policy
	open        map[string]*Decision
	execMu      sync.Mutex // one executor pass or marks reconcile at a time
	kick        chan struct{}
	marks       marks // guarded by execMu
}

// New loads the policy's memory and the open decisions from st and reconciles them, so a
// restarted coordinator carries on exactly where it stopped.
func New(st *store.Store, cfg Config, act actuate.Actuator, opts ...Option) (*Manager, error) {
	cfg, err := cfg.Validate()
	if err != nil {
		return nil, err
	}
	pc := cfg.Policy
	if act == nil {
		act = actuate.NewLog(nil)
	}
	m := &Manager{st: st, cfg: cfg, act: act, log: slog.Default(), now: time.Now, pol: decide.New(pc),
		open: map[string]*Decision{}, kick: make(chan struct{}, 1), tracer: noop.NewTracerProvider().Tracer("")}
	for _, o := range opts {
		o(m)
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) load() error {
	var snap policyRecord
	switch err := m.st.GetJSON(keyPolicy, &snap); {
	case err == nil:
		if err := store.CheckVersion(keyPolicy, snap.V); err != nil {
			return err
		}
		m.pol.Restore(policyFromRecord(snap))
	case errors.Is(err, store.ErrNotFound):
	default:
		return fmt.Errorf("loading decision policy state: %w", err)
	}
	polOpen := map[string]bool{}
	for _, a := range m.pol.Open() {
		polOpen[a.ID] = true
	}
	now := m.now()
	var changed bool
	var maxSeq uint64
	err := m.st.ScanJSON(prefixDecision, func(key string, raw []byte) error {
		r, err := decodeRecord(key, raw, decisionVersion)
		if err != nil {
			return err
		}
		d := decisionFromRecord(r)
		maxSeq = max(maxSeq, decide.SeqOf(d.Action.ID))
		switch {
		case d.open():
			// Written before the crash, maybe not in the last snapshot: make the policy hold it.
			if !polOpen[d.Action.ID] {
				a := d.Action
				a.NeedsApproval = d.Status == StatusProposed
				m.pol.Adopt(a)
				changed = true
			}
			m.open[d.Action.ID] = &d
		case polOpen[d.Action.ID]:
			// Finished before the crash, but the snapshot did not learn it.
			m.pol.Finished(d.Action.ID, outcomeOf(d.Status), d.Error, now)
			changed = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading decisions: %w", err)
	}
	if maxSeq > m.pol.Seq() {
		m.pol.AtLeastSeq(maxSeq)
		changed = true
	}
	if changed {
		return m.saveSnapshot()
	}
	return nil
}

func outcomeOf(status string) decide.Outcome {
	switch status {
	case StatusSucceeded, StatusDryRun:
		return decide.Succeeded
	case StatusNodeGone:
		return decide.NodeGone
	}
	return decide.Failed
}

// saveSnapshot persists the policy's memory. Healthy nodes with nothing open carry no state
// worth keeping (a restarted policy meets them again next round), so they are left out: at
// 10,000 nodes that turns a megabytes-per-round write into a few kilobytes.
func (m *Manager) saveSnapshot() error {
	b, err := m.encodeSnapshot()
	if err != nil {
		return err
	}
	return m.writeSnapshot(b)
}

// encodeSnapshot is the policy's memory as saveSnapshot writes it.
func (m *Manager) encodeSnapshot() ([]byte, error) {
	snap := m.pol.SnapshotKeeping(func(ns decide.NodeState) bool {
		return ns.State != decide.Healthy || ns.Action != "" || ns.Verdict != "healthy"
	})
	b, err := json.Marshal(policyToRecord(snap, store.RecordVersion))
	if err != nil {
		return nil, fmt.Errorf("encoding decision policy state: %w", err)
	}
	return b, nil
}

// writeSnapshot writes an encoded snapshot unless it is the one last written.
func (m *Manager) writeSnapshot(b []byte) error {
	// Most rounds change nothing the policy remembers; a durable write (an fsync) every round
	// anyway put the disk's latency, on a busy machine seconds, into every evaluation round.
	if bytes.Equal(b, m.savedPolicy) {
		return nil
	}
	if err := m.st.PutJSON(keyPolicy, json.RawMessage(b), store.Durable); err != nil {
		return fmt.Errorf("saving decision policy state: %w", err)
	}
	m.savedPolicy = b
	return nil
}

// AuditEntry is one stored line of a decision's audit log, written before and after each step.
type AuditEntry struct {
	// V is the record version (store.RecordVersion when written; 0 in records older than versions).
	V       int       `json:"v,omitempty"`
	Time    time.Time `json:"time"`
	Event   string    `json:"event"`
	Step    string    `json:"step,omitempty"`
	Message string    `json:"message,omitempty"`
}

// decodeRecord decodes one of this package's stored records and refuses a newer version.
func decodeRecord[T any](key string, raw []byte, version func(*T) int) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decoding %s: %w", key, err)
	}
	return v, store.CheckVersion(key, version(&v))
}

func decisionVersion(d *decisionRecord) int { return d.V }
func auditVersion(e *AuditEntry) int        { return e.V }

func (m *Manager) put(d *Decision) error {
	d.UpdatedAt, d.V = m.now().UTC(), store.RecordVersion
	if err := m.st.PutJSON(prefixDecision+d.Action.ID, decisionToRecord(*d), store.Durable); err != nil {
		return fmt.Errorf("saving decision %s: %w", d.Action.ID, err)
	}
	return nil
}

func (m *Manager) audit(d *Decision, event, step, msg string) error {
	d.AuditN++
	e := AuditEntry{V: store.RecordVersion, Time: m.now().UTC(), Event: event, Step: step, Message: msg}
	key := fmt.Sprintf("%s%s/%06d", prefixAudit, d.Action.ID, d.AuditN)
	if err := m.st.PutJSON(key, e, store.Durable); err != nil {
		return fmt.Errorf("writing audit entry for %s: %w", d.Action.ID, err)
	}
	return nil
}

// event mirrors the milestones of a decision into the coordinator's event log, where
// `tmwardenctl node` shows them.
func (m *Manager) event(d *Decision, typ, msg string) {
	attrs := map[string]string{"decision": d.Action.ID, "kind": string(d.Action.Kind), "status": d.Status, "mode": string(d.Action.Mode)}
	if d.Action.DryRun {
		attrs["dry_run"] = "true"
	}
	if _, err := m.st.AppendEvent(store.Event{Time: m.now().UTC(), Node: d.Action.Node, Type: typ, Message: msg,
		Attrs: attrs}); err != nil {
		m.log.Error("cannot append decision event", "decision", d.Action.ID, "err", err)
	}
}

// The event types of the circuit breaker's transitions.
const (
	EventBreakerOpen   = "breaker_open"
	EventBreakerClosed = "breaker_closed"
)

// breakerEvent records a breaker transition in the event log with the counts it rests on.
func (m *Manager) breakerEvent(d *Decision, typ string, b decide.BreakerState) {
	c := b.Counts
	if _, err := m.st.AppendEvent(store.Event{Time: m.now().UTC(), Type: typ, Message: d.Action.Reason,
		Attrs: map[string]string{"decision": d.Action.ID, "known_nodes": fmt.Sprint(c.Known), "bad_nodes": fmt.Sprint(c.Bad),
			"vanished_nodes": fmt.Sprint(c.Vanished), "regressed_nodes": fmt.Sprint(c.Regressed), "late_nodes": fmt.Sprint(c.Late)}}); err != nil {
		m.log.Error("cannot append circuit breaker event", "decision", d.Action.ID, "err", err)
	}
}

// RoundFromDetect runs a decision round on a detection round. known lists every node the
// coordinator knows with whether it reports; nodes missing from it are taken from the verdicts.
// decided, unless nil, is called once the round's decisions are made in memory, before the
// first of the round's store writes: the coordinator holds new reports until then (a round
// waiting behind ten thousand streams' reports for the CPU took seconds), and no longer (a slow
// store must not hold the fleet's reports).
func (m *Manager) RoundFromDetect(now time.Time, r detect.Round, known map[string]bool, decided func()) ([]Decision, error) {
	obs, reach := decide.FromRound(r, m.residents)
	for n, up := range known {
		if _, ok := reach[n]; !ok || !up {
			reach[n] = up
		}
	}
	return m.round(now, obs, reach, r.Fleet, decided)
}

// Round runs one policy round and records its actions durably before returning them.
func (m *Manager) Round(now time.Time, obs []decide.Observation, reachable map[string]bool) ([]Decision, error) {
	return m.round(now, obs, reachable, detect.Fleet{}, nil)
}

func (m *Manager) round(now time.Time, obs []decide.Observation, reachable map[string]bool, fleet detect.Fleet, decided func()) ([]Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pol.ObserveFleet(fleet)
	before := m.pol.Unhealthy()
	acts := m.pol.Round(now, obs, reachable)
	after := m.pol.Unhealthy()
	// Encoded before the writes: nothing below changes the policy's memory.
	snap, snapErr := m.encodeSnapshot()
	if decided != nil {
		decided()
	}
	m.transitions(before, after)
	var out []Decision
	errs := []error{snapErr}
	for _, a := range acts {
		d := &Decision{Action: a, CreatedAt: now.UTC(), Actuator: m.act.Name()}
		switch {
		case a.Kind == decide.KindAlert || a.Kind == decide.KindCancel:
			d.Status = StatusRecorded
		case a.NeedsApproval:
			d.Status = StatusProposed
		default:
			d.Status = StatusPending
		}
		if a.Kind == decide.KindCancel {
			if t := m.open[a.Target]; t != nil {
				t.Status, t.Message = StatusCancelled, a.Reason
				errs = append(errs, m.audit(t, "cancelled", "", a.Reason), m.put(t))
				m.event(t, "decision_cancelled", fmt.Sprintf("decision %s withdrawn: %s", t.Action.ID, a.Reason))
				delete(m.open, a.Target)
			}
		}
		errs = append(errs, m.audit(d, "created", "", a.Reason), m.put(d))
		switch a.Kind {
		case decide.KindAlert:
			// The policy raises alerts only when its circuit breaker opens or closes.
			b := m.pol.Breaker()
			typ := EventBreakerClosed
			if b.Open {
				typ = EventBreakerOpen
			}
			m.log.Warn("circuit breaker", "decision", a.ID, "open", b.Open, "reason", a.Reason)
			m.breakerEvent(d, typ, b)
		case decide.KindMigrate, decide.KindRelease:
			if a.DryRun {
				m.event(d, "decision", fmt.Sprintf("dry-run: would %s %s (nothing is changed): %s", a.Kind, a.Node, a.Reason))
			} else {
				m.event(d, "decision", fmt.Sprintf("%s %s on %s (%s): %s", d.Status, a.Kind, a.Node, a.Mode, a.Reason))
			}
		}
		if d.open() {
			m.open[a.ID] = d
		}
		out = append(out, *d)
	}
	if snapErr == nil {
		errs = append(errs, m.writeSnapshot(snap))
	}
	if len(out) > 0 {
		m.Kick()
	}
	return out, errors.Join(errs...)
}

// Kick wakes the executor.
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// ErrNotFound is returned for an unknown decision id.
var ErrNotFound = errors.New("no such decision")

// ErrNotApprovable is returned when a decision does not wait for approval.
var ErrNotApprovable = errors.New("decision is not waiting for approval")

// Approve lets a proposed migration run, if the guardrails allow it now.
func (m *Manager) Approve(id, by string) (Decision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.open[id]
	if d == nil {
		if _, err := m.get(id); err != nil {
			return Decision{}, err
		}
		return Decision{}, fmt.Errorf("approving %s: %w", id, ErrNotApprovable)
	}
	if d.Status != StatusProposed {
		return *d, fmt.Errorf("approving %s (status %s): %w", id, d.Status, ErrNotApprovable)
	}
	now := m.now()
	before := m.pol.Unhealthy()
	a, err := m.pol.Approve(id, now)
	if err != nil {
		return *d, err
	}
	m.transitions(before, m.pol.Unhealthy())
	d.Action, d.Status, d.ApprovedAt, d.ApprovedBy = a, StatusPending, now.UTC(), by
	errs := []error{m.audit(d, "approved", "", "approved by "+orAnon(by)), m.put(d), m.saveSnapshot()}
	m.event(d, "decision_approved", fmt.Sprintf("decision %s approved by %s", id, orAnon(by)))
	m.Kick()
	return *d, errors.Join(errs...)
}

func orAnon(s string) string {
	if s == "" {
		return "an operator"
	}
	return s
}

func (m *Manager) get(id string) (Decision, error) {
	var r decisionRecord
	if err := m.st.GetJSON(prefixDecision+id, &r); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Decision{}, fmt.Errorf("decision %s: %w", id, ErrNotFound)
		}
		return Decision{}, err
	}
	return decisionFromRecord(r), store.CheckVersion(prefixDecision+id, r.V)
}

// Decision returns one decision with its audit log.
func (m *Manager) Decision(id string) (Decision, []AuditEntry, error) {
	d, err := m.get(id)
	if err != nil {
		return d, nil, err
	}
	var audit []AuditEntry
	err = m.st.ScanJSON(prefixAudit+id+"/", func(key string, raw []byte) error {
		e, err := decodeRecord(key, raw, auditVersion)
		if err != nil {
			return err
		}
		audit = append(audit, e)
		return nil
	})
	return d, audit, err
}

// Decisions returns up to limit decisions, newest first; node filters when not empty.
func (m *Manager) Decisions(limit int, node string) ([]Decision, error) {
	var all []Decision
	err := m.st.ScanJSON(prefixDecision, func(key string, raw []byte) error {
		r, err := decodeRecord(key, raw, decisionVersion)
		if err != nil {
			return err
		}
		d := decisionFromRecord(r)
		if node == "" || d.Action.Node == node {
			all = append(all, d)
		}
		return nil
	})
	sort.Slice(all, func(i, j int) bool { return all[i].Action.ID > all[j].Action.ID })
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all, err
}

// NodeState is the policy's view of one node.
func (m *Manager) NodeState(name string) (decide.NodeState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pol.Node(name)
}

// Breaker is the policy's circuit breaker.
func (m *Manager) Breaker() decide.BreakerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pol.Breaker()
}

// Mode is the policy's mode.
func (m *Manager) Mode() decide.Mode { return m.cfg.Policy.Mode }

// Run is the executor loop: it carries runnable decisions out and keeps the actuator's marks on
// the cluster in line with the policy until ctx ends. Call TakeOver first.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.ExecInterval)
	defer t.Stop()
	for {
		m.execMu.Lock()
		m.syncMarksIfDue(ctx)
		m.execMu.Unlock()
		if _, err := m.Execute(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("decision executor", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
		}
	}
}

// Execute makes one pass over the runnable decisions, oldest first, and returns how many steps
// it completed. A step that must wait leaves its decision blocked until its retry time.
func (m *Manager) Execute(ctx context.Context) (int, error) {
	m.execMu.Lock()
	defer m.execMu.Unlock()
	m.mu.Lock()
	now := m.now()
	var ids []string
	for id, d := range m.open {
		if d.runnable(now) {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	sort.Strings(ids)
	done := 0
	var errs []error
	for _, id := range ids {
		n, err := m.execute(ctx, id)
		done += n
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return done, errors.Join(errs...)
}

// execute carries one decision as far as it can go now.
func (m *Manager) execute(ctx context.Context, id string) (int, error) {
	m.mu.Lock()
	d := m.open[id]
	if d == nil || !d.runnable(m.now()) {
		m.mu.Unlock()
		return 0, nil
	}
	cp := *d
	cp.Steps = append([]StepRecord(nil), d.Steps...)
	m.mu.Unlock()
	d = &cp
	a := d.Action
	ctx, span := m.tracer.Start(ctx, "decision "+string(a.Kind), trace.WithAttributes(
		attribute.String("tmwarden.decision.id", a.ID), attribute.String("tmwarden.decision.kind", string(a.Kind)),
		attribute.String("k8s.node.name", a.Node), attribute.String("tmwarden.decision.mode", string(a.Mode)),
		attribute.Bool("tmwarden.decision.dry_run", a.DryRun), attribute.String("tmwarden.actuator", m.act.Name())))
	defer func() { span.SetAttributes(attribute.String("tmwarden.decision.status", d.Status)); span.End() }()

	if !d.Planned {
		steps, err := m.act.Plan(ctx, a)
		if ctx.Err() != nil {
			return 0, nil
		}
		if err != nil {
			if errors.Is(err, actuate.ErrNodeGone) {
				return 0, m.finish(d, StatusNodeGone, err.Error())
			}
			d.PlanAttempts++
			if d.PlanAttempts >= m.cfg.MaxPlanAttempts {
				return 0, m.finish(d, StatusFailed, fmt.Sprintf("planning failed %d times: %v", d.PlanAttempts, err))
			}
			d.Status, d.Message, d.NextAttempt = StatusBlocked, "planning: "+err.Error(), m.now().Add(m.cfg.Policy.RetryAfter)
			return 0, m.commit(d, m.audit(d, "plan_failed", "", err.Error()))
		}
		d.Planned, d.Status = true, StatusRunning
		for _, s := range steps {
			d.Steps = append(d.Steps, StepRecord{Step: s, Status: StepPending})
		}
		if err := m.commit(d, m.audit(d, "planned", "", planSummary(steps))); err != nil {
			return 0, err
		}
		m.event(d, "decision_started", fmt.Sprintf("%s on %s: %s", a.Kind, a.Node, planSummary(steps)))
	}

	if a.DryRun {
		for i := range d.Steps {
			d.Steps[i].Status, d.Steps[i].Message = StepSkipped, "dry-run: would "+d.Steps[i].Name
		}
		d.Message = "dry-run: planned " + planSummary(stepsOf(d.Steps)) + "; nothing changed"
		return 0, m.finish(d, StatusDryRun, "")
	}

	done := 0
	for i := range d.Steps {
		s := &d.Steps[i]
		if s.Status == StepDone || s.Status == StepSkipped {
			continue
		}
		// Write-ahead: the intent is durable before the actuator is called, so a crash during
		// the call is visible on restart and the step is redone under the same key.
		s.Status = StepIntent
		s.Attempts++
		if s.FirstAt.IsZero() {
			s.FirstAt = m.now().UTC()
		}
		d.Status = StatusRunning
		if err := m.commit(d, m.audit(d, "step_start", s.Name, fmt.Sprintf("attempt %d", s.Attempts))); err != nil {
			return done, err
		}
		sctx, cancel := context.WithTimeout(ctx, m.cfg.StepTimeout)
		sctx, sspan := m.tracer.Start(sctx, "actuator step "+s.Name, trace.WithAttributes(
			attribute.String("tmwarden.decision.id", a.ID), attribute.String("tmwarden.step.name", s.Name),
			attribute.String("tmwarden.step.kind", string(s.Kind)), attribute.String("tmwarden.step.target", s.Target),
			attribute.Int("tmwarden.step.attempt", s.Attempts)))
		msg, err := m.act.Do(sctx, a, s.Step, a.ID+"/"+s.Name)
		if err != nil {
			sspan.RecordError(err)
			var retry *actuate.RetryError
			if !errors.As(err, &retry) {
				sspan.SetStatus(codes.Error, err.Error())
			}
		}
		sspan.End()
		cancel()
		if ctx.Err() != nil {
			// Shutting down mid-step: record nothing; the intent makes the restart redo it.
			return done, nil
		}
		var retry *actuate.RetryError
		switch {
		case err == nil:
			s.Status, s.Message, s.DoneAt = StepDone, msg, m.now().UTC()
			if err := m.commit(d, m.audit(d, "step_done", s.Name, msg)); err != nil {
				return done, err
			}
			done++
		case errors.As(err, &retry) && m.now().Sub(s.FirstAt) >= m.cfg.BlockedTimeout:
			s.Status, s.Message = StepFailed, retry.Reason
			why := fmt.Sprintf("step %s still waiting after %s: %s", s.Name, m.cfg.BlockedTimeout, retry.Reason)
			if aerr := m.audit(d, "step_failed", s.Name, why); aerr != nil {
				return done, aerr
			}
			return done, m.finish(d, StatusFailed, why)
		case errors.As(err, &retry) && retry.Underway:
			// The step's action runs (an agent draining, a pod terminating): the decision is
			// running, and the wait is audited when it starts or says something new, not at
			// every poll.
			changed := s.Message != retry.Reason
			s.Status, s.Message = StepPending, retry.Reason
			d.Status, d.Message, d.NextAttempt = StatusRunning, retry.Reason, m.now().Add(retry.After)
			if !changed {
				return done, m.commit(d, nil)
			}
			return done, m.commit(d, m.audit(d, "step_waiting", s.Name, retry.Reason))
		case errors.As(err, &retry):
			s.Status, s.Message = StepPending, retry.Reason
			d.Status, d.Message, d.NextAttempt = StatusBlocked, retry.Reason, m.now().Add(retry.After)
			return done, m.commit(d, m.audit(d, "step_blocked", s.Name, retry.Reason))
		case errors.Is(err, actuate.ErrNodeGone):
			s.Status, s.Message = StepFailed, err.Error()
			if aerr := m.audit(d, "step_failed", s.Name, err.Error()); aerr != nil {
				return done, aerr
			}
			return done, m.finish(d, StatusNodeGone, err.Error())
		default:
			s.Status, s.Message = StepFailed, err.Error()
			if aerr := m.audit(d, "step_failed", s.Name, err.Error()); aerr != nil {
				return done, aerr
			}
			return done, m.finish(d, StatusFailed, err.Error())
		}
	}
	return done, m.finish(d, StatusSucceeded, "")
}

// commit stores d and makes it the in-memory copy.
func (m *Manager) commit(d *Decision, auditErr error) error {
	if auditErr != nil {
		return auditErr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.put(d); err != nil {
		return err
	}
	cp := *d
	cp.Steps = append([]StepRecord(nil), d.Steps...)
	m.open[d.Action.ID] = &cp
	return nil
}

// finish writes the decision's end first and the policy's new state second; load reconciles
// a crash between the two.
func (m *Manager) finish(d *Decision, status, errMsg string) error {
	d.Status, d.Error, d.NextAttempt = status, errMsg, time.Time{}
	if errMsg != "" {
		d.Message = errMsg
	}
	errs := []error{m.audit(d, "finished", "", status+" "+errMsg)}
	m.mu.Lock()
	errs = append(errs, m.put(d))
	delete(m.open, d.Action.ID)
	before, _ := m.pol.Node(d.Action.Node)
	m.pol.Finished(d.Action.ID, outcomeOf(status), errMsg, m.now())
	if after, ok := m.pol.Node(d.Action.Node); ok && before.State != "" {
		m.transitions(map[string]decide.State{d.Action.Node: before.State}, map[string]decide.State{d.Action.Node: after.State})
	}
	errs = append(errs, m.saveSnapshot())
	m.mu.Unlock()
	if status == StatusDryRun {
		m.event(d, "decision_done", fmt.Sprintf("%s dry-run: would have %s %s (%s); nothing was changed", d.Action.ID, pastTense(d.Action.Kind), d.Action.Node, planSummary(stepsOf(d.Steps))))
	} else {
		m.event(d, "decision_done", fmt.Sprintf("%s %s on %s: %s %s", d.Action.ID, d.Action.Kind, d.Action.Node, status, errMsg))
	}
	if m.finished != nil {
		m.finished(*d)
	}
	if status == StatusFailed {
		m.log.Error("decision failed", "decision", d.Action.ID, "node", d.Action.Node, "err", errMsg)
	} else {
		m.log.Info("decision finished", "decision", d.Action.ID, "node", d.Action.Node, "status", status)
	}
	return errors.Join(errs...)
}

func pastTense(k decide.Kind) string {
	switch k {
	case decide.KindMigrate:
		return "migrated"
	case decide.KindRelease:
		return "released"
	}
	return string(k)
}

func stepsOf(rs []StepRecord) []actuate.Step {
	out := make([]actuate.Step, len(rs))
	for i, r := range rs {
		out[i] = r.Step
	}
	return out
}

func planSummary(steps []actuate.Step) string {
	if len(steps) == 0 {
		return "no steps"
	}
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Name
	}
	return fmt.Sprintf("%d steps: %s", len(steps), strings.Join(names, ", "))
}

// transitions writes a health_changed event for every node whose state differs between before
// and after (a node new to the policy starts healthy), so the event log is the nodes' health
// timeline. before and after hold the nodes that were not healthy (Policy.Unhealthy); a node
// missing from one was healthy then, or not tracked. Callers hold m.mu.
func (m *Manager) transitions(before, after map[string]decide.State) {
	stateIn := func(states map[string]decide.State, n string) decide.State {
		if s, ok := states[n]; ok {
			return s
		}
		return decide.Healthy
	}
	names := make([]string, 0, len(after))
	for n, to := range after {
		if stateIn(before, n) != to {
			names = append(names, n)
		}
	}
	for n := range before {
		// Healthy again, unless the policy forgot the node meanwhile.
		if _, unhealthy := after[n]; !unhealthy {
			if _, tracked := m.pol.Node(n); tracked {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		from, to := stateIn(before, n), stateIn(after, n)
		ns, _ := m.pol.Node(n)
		msg := fmt.Sprintf("node %s: %s → %s (verdict %s, score %.2f", n, from, to, ns.Verdict, ns.Score)
		if ns.Cause != "" {
			msg += ", cause " + ns.Cause
		}
		msg += ")"
		if ns.Note != "" {
			msg += ": " + ns.Note
		}
		if _, err := m.st.AppendEvent(store.Event{Time: m.now().UTC(), Node: n, Type: "health_changed", Message: msg,
			Attrs: map[string]string{"from": string(from), "to": string(to), "verdict": ns.Verdict, "cause": ns.Cause}}); err != nil {
			m.log.Error("cannot append health event", "node", n, "err", err)
		}
		if m.transition != nil {
			m.transition(n, from, to)
		}
	}
}
