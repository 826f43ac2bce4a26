// Package decide is the migration policy: a per-node state machine fed by detection verdicts,
// guarded by modes, caps, cooldowns and a circuit breaker, that returns the actions to take.
// It does no I/O and reads no clock of its own, so every rule is a table-driven test; the
// durable side (coordinator/decisions) persists its Snapshot and carries the actions out.
package decide

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/detect"
)

// State is a node's place in the migration life cycle.
type State string

const (
	Healthy     State = "healthy"
	Suspect     State = "suspect"
	Slow        State = "slow"
	Migrating   State = "migrating"
	Quarantined State = "quarantined"
	Probation   State = "probation"
)

// Mode says how far the policy may go on its own.
type Mode string

const (
	// DryRun records what would be done ("would migrate") and never moves a node into
	// migrating or quarantined: the node stays slow with the dry-run decision named on it, and
	// no actuator runs.
	DryRun Mode = "dry-run"
	// Approve proposes migrations; an operator approves each one before it runs.
	Approve Mode = "approve"
	// Auto carries migrations out without asking.
	Auto Mode = "auto"
)

// Kind is what an action does.
type Kind string

const (
	// KindMigrate cordons the node and moves its TaskManagers away.
	KindMigrate Kind = "migrate"
	// KindRelease ends a quarantine: the node takes work again, on probation.
	KindRelease Kind = "release"
	// KindAlert raises an alert instead of acting (circuit breaker open).
	KindAlert Kind = "alert"
	// KindCancel withdraws a migration still waiting for approval.
	KindCancel Kind = "cancel"
)

// Observation is one node's detection outcome for a round.
type Observation struct {
	Node    string
	Slow    bool
	Suspect bool
	Score   float64
	Cause   string
	// Evidence is what detection saw; it travels with every decision.
	Evidence []detect.Evidence
	Since    time.Time
	// Jobs and TaskManagers are the Flink jobs and TaskManager ids running on the node, from
	// the placement source (Residents).
	Jobs         []string
	TaskManagers []string
}

// Config holds the policy's knobs; zero fields take DefaultConfig's values through Normalize.
type Config struct {
	// Mode is dry-run, approve or auto. Default dry-run.
	Mode Mode `yaml:"mode" json:"mode"`
	// MaxConcurrentMigrations caps nodes in state migrating (plus approved ones); 0 stops
	// every migration. Default 1.
	MaxConcurrentMigrations int `yaml:"max_concurrent_migrations" json:"max_concurrent_migrations"`
	// MaxQuarantinedShare caps the share of known nodes that are migrating or quarantined;
	// any share above 0 allows at least one node, 0 allows none. Default 0.1.
	MaxQuarantinedShare float64 `yaml:"max_quarantined_share" json:"max_quarantined_share"`
	// JobCooldown is the least time between two migrations touching the same job; 0 means
	// none. Default 10m.
	JobCooldown time.Duration `yaml:"job_cooldown" json:"job_cooldown"`
	// ConfirmRounds is how many consecutive slow rounds a node needs before it is migrated
	// (detection already demands persistence; this is the policy's own margin). Default 2.
	ConfirmRounds int `yaml:"confirm_rounds" json:"confirm_rounds"`
	// ClearRounds is how many healthy rounds take a suspect or slow node back to healthy. Default 3.
	ClearRounds int `yaml:"clear_rounds" json:"clear_rounds"`
	// QuarantineMin is the least time a node stays quarantined. Default 10m.
	QuarantineMin time.Duration `yaml:"quarantine_min" json:"quarantine_min"`
	// RecoveryRounds is how many consecutive clean rounds a quarantined node needs before it is
	// released, and a node on probation before it is trusted again. Default 6.
	RecoveryRounds int `yaml:"recovery_rounds" json:"recovery_rounds"`
	// ProbationMin is the least time on probation. Default 10m.
	ProbationMin time.Duration `yaml:"probation_min" json:"probation_min"`
	// ApprovalTTL withdraws an unapproved migration after this long. Default 30m.
	ApprovalTTL time.Duration `yaml:"approval_ttl" json:"approval_ttl"`
	// RetryAfter is the wait before a failed release or migration is proposed again. Default 2m.
	RetryAfter time.Duration `yaml:"retry_after" json:"retry_after"`
	// BreakerMinNodes, BreakerBadShare and BreakerVanishShare open the circuit breaker when at
	// least max(1, BreakerMinNodes, share × known nodes) nodes look bad (suspect, slow or
	// anomalous this round) or vanish (reachable, then unreachable within
	// BreakerVanishWindow). As many agents merely late with their reports hold migrations for
	// one round without opening it. Defaults 3, 0.15, 0.2 (0.15: the stricter of the two
	// breakers tmwarden had before they became one, so no migration is allowed that both
	// did not allow).
	BreakerMinNodes    int     `yaml:"breaker_min_nodes" json:"breaker_min_nodes"`
	BreakerBadShare    float64 `yaml:"breaker_bad_share" json:"breaker_bad_share"`
	BreakerVanishShare float64 `yaml:"breaker_vanish_share" json:"breaker_vanish_share"`
	// BreakerRegressShare opens the breaker when that share of reporting nodes (at least
	// BreakerMinNodes) run far above their own baseline at once: a cluster-wide regression
	// that peer comparison cannot see. Default 0.3.
	BreakerRegressShare float64 `yaml:"breaker_regress_share" json:"breaker_regress_share"`
	// BreakerHold keeps the breaker open this long after the last round that tripped it. Default 5m.
	BreakerHold time.Duration `yaml:"breaker_hold" json:"breaker_hold"`
	// BreakerVanishWindow is how close together agents must vanish to count as "at once";
	// reachability marks them one by one as their silences pass the limit. Default 2m.
	BreakerVanishWindow time.Duration `yaml:"breaker_vanish_window" json:"breaker_vanish_window"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Mode:                    DryRun,
		MaxConcurrentMigrations: 1,
		MaxQuarantinedShare:     0.1,
		JobCooldown:             10 * time.Minute,
		ConfirmRounds:           2,
		ClearRounds:             3,
		QuarantineMin:           10 * time.Minute,
		RecoveryRounds:          6,
		ProbationMin:            10 * time.Minute,
		ApprovalTTL:             30 * time.Minute,
		RetryAfter:              2 * time.Minute,
		BreakerMinNodes:         3,
		BreakerBadShare:         0.15,
		BreakerVanishShare:      0.2,
		BreakerRegressShare:     0.3,
		BreakerHold:             5 * time.Minute,
		BreakerVanishWindow:     2 * time.Minute,
	}
}

// Normalize checks c and returns it with an empty mode set to dry-run. Every other default
// comes from DefaultConfig by omission (the YAML is decoded onto it), so an explicit 0 means
// zero where zero has a meaning (no cooldown, no migrations at all, no minimum quarantine) and is
// refused where it has none.
func (c Config) Normalize() (Config, error) {
	if c.Mode == "" {
		c.Mode = DryRun
	}
	var errs []error
	switch c.Mode {
	case DryRun, Approve, Auto:
	default:
		errs = append(errs, fmt.Errorf("mode %q: want dry-run, approve or auto", c.Mode))
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"max_concurrent_migrations", c.MaxConcurrentMigrations}, {"recovery_rounds", c.RecoveryRounds}, {"breaker_min_nodes", c.BreakerMinNodes}} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must not be negative", n.key, n.v))
		}
	}
	// A verdict is a round: a node needs at least one slow round to be migrated and one clean
	// round to clear, so 0 would silently mean 1.
	if c.ConfirmRounds < 1 {
		errs = append(errs, fmt.Errorf("confirm_rounds %d: must be at least 1 (the slow round itself)", c.ConfirmRounds))
	}
	if c.ClearRounds < 1 {
		errs = append(errs, fmt.Errorf("clear_rounds %d: must be at least 1", c.ClearRounds))
	}
	if c.ApprovalTTL <= 0 {
		errs = append(errs, fmt.Errorf("approval_ttl %v: must be positive (a proposal must live long enough to be approved)", c.ApprovalTTL))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"job_cooldown", c.JobCooldown}, {"quarantine_min", c.QuarantineMin}, {"probation_min", c.ProbationMin},
		{"retry_after", c.RetryAfter}, {"breaker_hold", c.BreakerHold}, {"breaker_vanish_window", c.BreakerVanishWindow}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", d.key, d.v))
		}
	}
	if c.MaxQuarantinedShare < 0 || c.MaxQuarantinedShare > 1 {
		errs = append(errs, fmt.Errorf("max_quarantined_share %v: want 0..1", c.MaxQuarantinedShare))
	}
	if c.BreakerBadShare < 0 || c.BreakerBadShare > 1 || c.BreakerVanishShare < 0 || c.BreakerVanishShare > 1 || c.BreakerRegressShare < 0 || c.BreakerRegressShare > 1 {
		errs = append(errs, fmt.Errorf("breaker shares %v/%v/%v (bad/vanish/regress): want 0..1", c.BreakerBadShare, c.BreakerVanishShare, c.BreakerRegressShare))
	}
	return c, errors.Join(errs...)
}

// Action is one thing the policy wants done. Its ID is stable: the executor uses it as the
// idempotency key of everything it does for the action.
type Action struct {
	ID            string            `json:"id"`
	Kind          Kind              `json:"kind"`
	Node          string            `json:"node,omitempty"`
	Mode          Mode              `json:"mode"`
	DryRun        bool              `json:"dry_run"`
	NeedsApproval bool              `json:"needs_approval"`
	Jobs          []string          `json:"jobs,omitempty"`
	TaskManagers  []string          `json:"task_managers,omitempty"`
	Reason        string            `json:"reason"`
	Score         float64           `json:"score,omitempty"`
	Cause         string            `json:"cause,omitempty"`
	Evidence      []detect.Evidence `json:"evidence,omitempty"`
	At            time.Time         `json:"at"`
	// Target is the action a cancel withdraws.
	Target string `json:"target,omitempty"`
}

// NodeState is what the policy remembers about one node.
type NodeState struct {
	Node  string    `json:"node"`
	State State     `json:"state"`
	Since time.Time `json:"since"`
	// The last verdict.
	Verdict      string            `json:"verdict"`
	Score        float64           `json:"score"`
	Cause        string            `json:"cause,omitempty"`
	Evidence     []detect.Evidence `json:"evidence,omitempty"`
	VerdictSince time.Time         `json:"verdict_since,omitempty"`
	Jobs         []string          `json:"jobs,omitempty"`
	TaskManagers []string          `json:"task_managers,omitempty"`
	Reachable    bool              `json:"reachable"`
	// LostAt is when the node's agent was last seen to vanish.
	LostAt time.Time `json:"lost_at,omitempty"`
	// SlowRounds and CleanRounds are consecutive-round streaks.
	SlowRounds  int `json:"slow_rounds"`
	CleanRounds int `json:"clean_rounds"`
	// Action is the open action on this node (migration in flight, awaiting approval, release).
	Action string `json:"action,omitempty"`
	// NotBefore holds off the next action after a failure.
	NotBefore time.Time `json:"not_before,omitempty"`
	// Note is the last reason the policy held back.
	Note string `json:"note,omitempty"`
	// WouldMigrate is the dry-run decision that would have migrated this node during its
	// current slow spell; one per spell, cleared when the node is healthy again. Guardrails
	// count such nodes as quarantined, so a dry run shows what auto mode would have done.
	WouldMigrate string `json:"would_migrate,omitempty"`
}

// Snapshot is the policy's whole memory, persisted after every round.
type Snapshot struct {
	Nodes map[string]NodeState `json:"nodes"`
	// Open maps open action ids to their actions.
	Open map[string]Action `json:"open"`
	// Cooldown maps a job to the time its cooldown ends.
	Cooldown map[string]time.Time `json:"cooldown"`
	Breaker  BreakerState         `json:"breaker"`
	Seq      uint64               `json:"seq"`
}

// Policy is the state machine. It is not safe for concurrent use; decisions.Manager guards it.
type Policy struct {
	cfg Config
	s   Snapshot
	// fleet is detection's count for the next Round (ObserveFleet).
	fleet detect.Fleet
}

// New returns a policy with an empty memory; cfg must be Normalized.
func New(cfg Config) *Policy {
	return &Policy{cfg: cfg, s: emptySnapshot()}
}

func emptySnapshot() Snapshot {
	return Snapshot{Nodes: map[string]NodeState{}, Open: map[string]Action{}, Cooldown: map[string]time.Time{}}
}

// Config returns the policy's configuration.
func (p *Policy) Config() Config { return p.cfg }

// Snapshot returns a deep enough copy of the policy's memory to persist.
func (p *Policy) Snapshot() Snapshot { return p.SnapshotKeeping(nil) }

// SnapshotKeeping is Snapshot with only the nodes keep keeps (nil: every node); the nodes left
// out are not copied. keep takes each state by value: a pointer to the loop's copy, passed to a
// function the compiler cannot see into, moved every node's copy to the heap, 10,000 of them a
// round at 10,000 nodes, while the round held ingest.
func (p *Policy) SnapshotKeeping(keep func(NodeState) bool) Snapshot {
	out := emptySnapshot()
	for k, v := range p.s.Nodes {
		if keep == nil || keep(v) {
			out.Nodes[k] = v
		}
	}
	for k, v := range p.s.Open {
		out.Open[k] = v
	}
	for k, v := range p.s.Cooldown {
		out.Cooldown[k] = v
	}
	out.Breaker, out.Seq = p.s.Breaker, p.s.Seq
	return out
}

// Restore replaces the policy's memory with s.
func (p *Policy) Restore(s Snapshot) {
	if s.Nodes == nil {
		s.Nodes = map[string]NodeState{}
	}
	if s.Open == nil {
		s.Open = map[string]Action{}
	}
	if s.Cooldown == nil {
		s.Cooldown = map[string]time.Time{}
	}
	p.s = s
}

// Node returns one node's state.
func (p *Policy) Node(name string) (NodeState, bool) {
	n, ok := p.s.Nodes[name]
	return n, ok
}

// Unhealthy returns the state of every tracked node that is not healthy (the decision manager
// compares them before and after a round to report health transitions). At fleet scale nearly
// every node is healthy: a map of all of them, twice a round, was most of the round's
// decisions' allocation at 10,000 nodes.
func (p *Policy) Unhealthy() map[string]State {
	out := map[string]State{}
	for k, v := range p.s.Nodes {
		if v.State != Healthy {
			out[k] = v.State
		}
	}
	return out
}

// Breaker returns the circuit breaker's state.
func (p *Policy) Breaker() BreakerState { return p.s.Breaker }

// Residents says which Flink jobs and TaskManagers run on a node; the coordinator's topology
// (coordinator/topology) is the one placement source that answers it.
type Residents func(node string) (jobs, taskManagers []string)

// FromRound turns a detection round into observations: one per node (TaskManager-level
// verdicts are folded into their node's evidence but do not mark the node). Each observation's
// jobs and TaskManagers come from residents (nil leaves them empty), never from the evidence,
// so a verdict on host signals alone still names every job its migration touches.
func FromRound(r detect.Round, residents Residents) (obs []Observation, reachable map[string]bool) {
	reachable = map[string]bool{}
	byNode := map[string]*Observation{}
	for _, v := range r.Verdicts {
		if v.Status == detect.StatusUnreachable {
			reachable[v.Node] = false
			continue
		}
		reachable[v.Node] = true
		o := byNode[v.Node]
		if o == nil {
			o = &Observation{Node: v.Node}
			byNode[v.Node] = o
		}
		if v.TaskManager == "" {
			o.Slow = v.Status == detect.StatusSlow
			o.Suspect = v.Status == detect.StatusSuspect
			o.Score, o.Cause, o.Since = v.Score, string(v.Cause), v.Since
		}
		o.Evidence = append(o.Evidence, v.Evidence...)
	}
	for _, o := range byNode {
		if residents != nil {
			o.Jobs, o.TaskManagers = residents(o.Node)
		}
		obs = append(obs, *o)
	}
	sort.Slice(obs, func(i, j int) bool { return obs[i].Node < obs[j].Node })
	return obs, reachable
}

// Round advances the state machine by one evaluation round. observations holds the nodes
// detection judged (a node absent from it and reachable is healthy); reachable lists every node
// the coordinator knows with whether its agent reports. It returns at most one cluster-changing
// action (migrate or release) chosen by priority, plus any alert and cancel records.
func (p *Policy) Round(now time.Time, observations []Observation, reachable map[string]bool) []Action {
	var out []Action
	obs := make(map[string]Observation, len(observations))
	names := make([]string, 0, len(reachable)+len(observations))
	for n := range reachable {
		names = append(names, n)
	}
	for _, o := range observations {
		if _, dup := obs[o.Node]; !dup {
			if _, ok := reachable[o.Node]; !ok {
				names = append(names, o.Node)
			}
		}
		obs[o.Node] = o
	}
	sort.Strings(names)
	known, bad, vanished := 0, 0, 0
	for _, name := range names {
		up, listed := reachable[name]
		if !listed {
			up = true // judged by detection this round, so it reports
		}
		known++
		ns, seen := p.s.Nodes[name]
		if !seen {
			ns = NodeState{Node: name, State: Healthy, Since: now, Verdict: "healthy", Reachable: true}
		}
		if seen && ns.Reachable && !up {
			ns.LostAt = now
		}
		if !up && !ns.LostAt.IsZero() && now.Sub(ns.LostAt) < p.cfg.BreakerVanishWindow {
			vanished++
		}
		ns.Reachable = up
		if up {
			o := obs[name]
			if o.Slow || o.Suspect {
				bad++
			}
			p.observe(&ns, o, now)
		}
		p.s.Nodes[name] = ns
	}

	// The circuit breaker: many nodes bad or gone at once is a spike, a partition or our own
	// fault, not a set of slow machines.
	out = append(out, p.breakerRound(now, known, bad, vanished)...)

	out = append(out, p.expireApprovals(now)...)
	if a, ok := p.pick(now, known); ok {
		out = append(out, a)
	}
	return out
}

// observe moves one reachable node through the states its verdict allows on its own; the
// transitions that need an action (slow → migrating, quarantined → probation) happen in pick.
func (p *Policy) observe(ns *NodeState, o Observation, now time.Time) {
	verdict := "healthy"
	switch {
	case o.Slow:
		verdict = "slow"
	case o.Suspect:
		verdict = "suspect"
	}
	ns.Verdict, ns.Score, ns.Cause, ns.Evidence = verdict, o.Score, o.Cause, o.Evidence
	if verdict == "healthy" {
		ns.VerdictSince = time.Time{}
		ns.SlowRounds = 0
		ns.CleanRounds++
	} else {
		ns.VerdictSince = o.Since
		ns.CleanRounds = 0
		if o.Slow {
			ns.SlowRounds++
		} else {
			ns.SlowRounds = 0
		}
	}
	if len(o.Jobs) > 0 || ns.State == Healthy || ns.State == Suspect || ns.State == Slow {
		ns.Jobs, ns.TaskManagers = o.Jobs, o.TaskManagers
	}
	set := func(s State) {
		if ns.State != s {
			ns.State, ns.Since = s, now
		}
		if s == Healthy {
			ns.WouldMigrate = ""
		}
	}
	switch ns.State {
	case Healthy, Suspect, Slow:
		switch {
		case o.Slow:
			set(Slow)
		case o.Suspect:
			if ns.State == Healthy {
				set(Suspect)
			}
		case ns.CleanRounds >= p.cfg.ClearRounds:
			set(Healthy)
		}
	case Probation:
		switch {
		case o.Slow:
			// It failed its probation: back to slow, the normal path will move it again.
			set(Slow)
			ns.Note = "slow again on probation"
		case ns.CleanRounds >= p.cfg.RecoveryRounds && now.Sub(ns.Since) >= p.cfg.ProbationMin:
			set(Healthy)
			ns.Note = fmt.Sprintf("passed probation: %d clean rounds", ns.CleanRounds)
		}
	}
}

// pick chooses the round's one cluster-changing action: a migration of the slowest eligible
// node first (score, then longest slow), else the release of the longest-quarantined node.
func (p *Policy) pick(now time.Time, known int) (Action, bool) {
	var cands []NodeState
	var releases []NodeState
	inFlight, quarantined := 0, 0
	for _, ns := range p.s.Nodes {
		switch ns.State {
		case Migrating:
			inFlight++
			quarantined++
		case Quarantined:
			quarantined++
			if ns.Action == "" && ns.Reachable && ns.CleanRounds >= p.cfg.RecoveryRounds &&
				now.Sub(ns.Since) >= p.cfg.QuarantineMin && !now.Before(ns.NotBefore) {
				releases = append(releases, ns)
			}
		case Slow:
			if ns.WouldMigrate != "" {
				// A dry run "quarantined" it: count it so the caps act as they would for real.
				quarantined++
				continue
			}
			if ns.Action != "" {
				if a, ok := p.s.Open[ns.Action]; ok && a.NeedsApproval {
					// Waiting for an operator; counts toward nothing until approved.
					continue
				}
			}
			if ns.Reachable && ns.SlowRounds >= p.cfg.ConfirmRounds && ns.Action == "" {
				cands = append(cands, ns)
			}
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		return a.Node < b.Node
	})
	sort.Slice(releases, func(i, j int) bool {
		if !releases[i].Since.Equal(releases[j].Since) {
			return releases[i].Since.Before(releases[j].Since)
		}
		return releases[i].Node < releases[j].Node
	})
	maxQ := p.maxQuarantined(known)
	for _, ns := range cands {
		hold := ""
		switch {
		case p.s.Breaker.Open:
			hold = "circuit breaker open: " + p.s.Breaker.Reason
		case p.s.Breaker.Held != "":
			hold = p.s.Breaker.Held
		case now.Before(ns.NotBefore):
			hold = "retrying after " + ns.NotBefore.UTC().Format(time.RFC3339)
		case inFlight >= p.cfg.MaxConcurrentMigrations:
			hold = fmt.Sprintf("%d migration(s) in flight (cap %d)", inFlight, p.cfg.MaxConcurrentMigrations)
		case quarantined+1 > maxQ:
			hold = fmt.Sprintf("%d of %d nodes already migrating or quarantined (cap %d)", quarantined, known, maxQ)
		default:
			if j := p.coolingJob(ns.Jobs, now); j != "" {
				hold = fmt.Sprintf("job %s cooling down until %s", j, p.s.Cooldown[j].UTC().Format(time.RFC3339))
			}
		}
		if hold != "" {
			p.note(ns.Node, hold)
			continue
		}
		return p.migrate(ns, now), true
	}
	if len(releases) > 0 && !p.s.Breaker.Open {
		ns := releases[0]
		a := p.action(KindRelease, ns.Node, now, Action{
			Reason: fmt.Sprintf("quarantined %s and clean for %d rounds: release on probation", now.Sub(ns.Since).Round(time.Second), ns.CleanRounds),
		})
		ns.Action, ns.Note = a.ID, ""
		p.s.Nodes[ns.Node] = ns
		p.s.Open[a.ID] = a
		return a, true
	}
	return Action{}, false
}

// maxQuarantined is how many of known nodes may be migrating or quarantined at once: the
// configured share, but at least one unless the share is an explicit 0.
func (p *Policy) maxQuarantined(known int) int {
	if p.cfg.MaxQuarantinedShare == 0 {
		return 0
	}
	return max(1, int(math.Floor(p.cfg.MaxQuarantinedShare*float64(known))))
}

func (p *Policy) note(node, why string) {
	ns := p.s.Nodes[node]
	ns.Note = why
	p.s.Nodes[node] = ns
}

func (p *Policy) coolingJob(jobs []string, now time.Time) string {
	for _, j := range jobs {
		if until, ok := p.s.Cooldown[j]; ok && now.Before(until) {
			return j
		}
	}
	return ""
}

func (p *Policy) migrate(ns NodeState, now time.Time) Action {
	a := p.action(KindMigrate, ns.Node, now, Action{
		// Cloned: the decision keeps the evidence as it stood when it was taken, whatever later
		// rounds do to the node's.
		Jobs: slices.Clone(ns.Jobs), TaskManagers: slices.Clone(ns.TaskManagers), Score: ns.Score, Cause: ns.Cause, Evidence: slices.Clone(ns.Evidence),
		Reason: fmt.Sprintf("slow for %d rounds (score %.2f, cause %s): move its TaskManagers away", ns.SlowRounds, ns.Score, orUnknown(ns.Cause)),
	})
	a.NeedsApproval = p.cfg.Mode == Approve
	ns.Action, ns.Note = a.ID, ""
	switch {
	case a.DryRun:
		// Nothing moves: the node stays slow and carries the decision that would have moved it.
		ns.Note = "dry-run: would migrate (" + a.ID + "); nothing is changed"
	case a.NeedsApproval:
		ns.Note = "migration proposed; waiting for approval"
	default:
		p.startMigration(&ns, a, now)
	}
	p.s.Nodes[ns.Node] = ns
	p.s.Open[a.ID] = a
	return a
}

func (p *Policy) startMigration(ns *NodeState, a Action, now time.Time) {
	ns.State, ns.Since = Migrating, now
	for _, j := range a.Jobs {
		p.s.Cooldown[j] = now.Add(p.cfg.JobCooldown)
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func (p *Policy) action(k Kind, node string, now time.Time, a Action) Action {
	p.s.Seq++
	a.Kind, a.Node, a.At, a.Mode = k, node, now, p.cfg.Mode
	a.DryRun = p.cfg.Mode == DryRun
	id := fmt.Sprintf("%s-%06d-%s", now.UTC().Format("20060102T150405"), p.s.Seq, k)
	if node != "" {
		id += "-" + node
	}
	a.ID = strings.ToLower(id)
	return a
}

func (p *Policy) expireApprovals(now time.Time) []Action {
	var out []Action
	ids := make([]string, 0, len(p.s.Open))
	for id := range p.s.Open {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		a := p.s.Open[id]
		if !a.NeedsApproval {
			continue
		}
		ns := p.s.Nodes[a.Node]
		why := ""
		switch {
		case now.Sub(a.At) >= p.cfg.ApprovalTTL:
			why = fmt.Sprintf("not approved within %s", p.cfg.ApprovalTTL)
		case ns.State != Slow:
			why = "node is " + string(ns.State) + " now"
		}
		if why == "" {
			continue
		}
		delete(p.s.Open, id)
		ns.Action = ""
		// Do not ask again at once: an operator who let it lapse has seen it.
		ns.NotBefore = now.Add(p.cfg.RetryAfter)
		p.s.Nodes[a.Node] = ns
		out = append(out, p.action(KindCancel, a.Node, now, Action{Target: id, Reason: "withdrawn: " + why}))
	}
	return out
}

// ErrUnknownAction is returned for an action id the policy does not hold open.
var ErrUnknownAction = errors.New("no such open action")

// ErrBlocked is returned when an approval would break a guardrail right now.
var ErrBlocked = errors.New("blocked by a guardrail")

// Approve lets a proposed migration run if the guardrails still allow it.
func (p *Policy) Approve(id string, now time.Time) (Action, error) {
	a, ok := p.s.Open[id]
	if !ok || a.Kind != KindMigrate {
		return Action{}, fmt.Errorf("approving %s: %w", id, ErrUnknownAction)
	}
	if !a.NeedsApproval {
		return a, nil
	}
	ns := p.s.Nodes[a.Node]
	inFlight, quarantined, known := 0, 0, len(p.s.Nodes)
	for _, n := range p.s.Nodes {
		if n.State == Migrating {
			inFlight++
		}
		if n.State == Migrating || n.State == Quarantined {
			quarantined++
		}
	}
	maxQ := p.maxQuarantined(known)
	switch {
	case p.s.Breaker.Open:
		return a, fmt.Errorf("approving %s: circuit breaker open (%s): %w", id, p.s.Breaker.Reason, ErrBlocked)
	case inFlight >= p.cfg.MaxConcurrentMigrations:
		return a, fmt.Errorf("approving %s: %d migration(s) in flight (cap %d): %w", id, inFlight, p.cfg.MaxConcurrentMigrations, ErrBlocked)
	case quarantined+1 > maxQ:
		return a, fmt.Errorf("approving %s: %d nodes migrating or quarantined (cap %d): %w", id, quarantined, maxQ, ErrBlocked)
	}
	if j := p.coolingJob(a.Jobs, now); j != "" {
		return a, fmt.Errorf("approving %s: job %s is cooling down: %w", id, j, ErrBlocked)
	}
	a.NeedsApproval = false
	p.s.Open[id] = a
	ns.Note = ""
	p.startMigration(&ns, a, now)
	p.s.Nodes[a.Node] = ns
	return a, nil
}

// Outcome is how an action ended.
type Outcome string

const (
	Succeeded Outcome = "succeeded"
	Failed    Outcome = "failed"
	// NodeGone: the node was deleted while the action ran; the policy forgets it.
	NodeGone Outcome = "node_gone"
)

// Finished applies an action's end. It is idempotent: finishing an action that is not open
// does nothing, so a restarted coordinator may replay it.
func (p *Policy) Finished(id string, o Outcome, msg string, now time.Time) {
	a, ok := p.s.Open[id]
	if !ok {
		return
	}
	delete(p.s.Open, id)
	ns, ok := p.s.Nodes[a.Node]
	if !ok {
		return
	}
	ns.Action = ""
	if o == NodeGone {
		delete(p.s.Nodes, a.Node)
		return
	}
	switch {
	case a.Kind == KindMigrate && a.DryRun:
		if o == Succeeded {
			ns.WouldMigrate = a.ID
			ns.Note = "dry-run: would have migrated (" + a.ID + "); nothing was changed"
		} else {
			ns.NotBefore = now.Add(p.cfg.RetryAfter)
			ns.Note = "dry-run: planning the migration failed: " + msg
		}
	case a.Kind == KindMigrate:
		if o == Succeeded {
			ns.State, ns.Since, ns.CleanRounds = Quarantined, now, 0
			ns.Note = "migrated; quarantined"
		} else {
			ns.State, ns.Since = Slow, now
			ns.NotBefore = now.Add(p.cfg.RetryAfter)
			ns.Note = "migration failed: " + msg
		}
	case a.Kind == KindRelease:
		if o == Succeeded {
			ns.State, ns.Since, ns.CleanRounds = Probation, now, 0
			ns.Note = "released; on probation"
		} else {
			ns.NotBefore = now.Add(p.cfg.RetryAfter)
			ns.Note = "release failed: " + msg
		}
	}
	p.s.Nodes[a.Node] = ns
}

// Adopt makes the policy aware of an open action it lost (written to the decision log but not
// to the last snapshot before a crash). It is idempotent.
func (p *Policy) Adopt(a Action) {
	if _, ok := p.s.Open[a.ID]; ok {
		return
	}
	p.s.Open[a.ID] = a
	ns, ok := p.s.Nodes[a.Node]
	if !ok {
		ns = NodeState{Node: a.Node, State: Slow, Since: a.At, Reachable: true}
	}
	ns.Action = a.ID
	if a.Kind == KindMigrate && !a.NeedsApproval && !a.DryRun {
		p.startMigration(&ns, a, a.At)
	}
	p.s.Nodes[a.Node] = ns
}

// SeqOf returns the sequence number inside an action id (0 if it has none).
func SeqOf(id string) uint64 {
	parts := strings.SplitN(id, "-", 3)
	if len(parts) < 2 {
		return 0
	}
	var n uint64
	if _, err := fmt.Sscanf(parts[1], "%d", &n); err != nil {
		return 0
	}
	return n
}

// Seq is the sequence number of the last action id handed out.
func (p *Policy) Seq() uint64 { return p.s.Seq }

// AtLeastSeq makes the next action ids count on from n, so ids written before a crash that the
// last snapshot missed are never handed out twice.
func (p *Policy) AtLeastSeq(n uint64) {
	if n > p.s.Seq {
		p.s.Seq = n
	}
}

// Open returns the open actions, oldest first.
func (p *Policy) Open() []Action {
	out := make([]Action, 0, len(p.s.Open))
	for _, a := range p.s.Open {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// MarkQuarantined adopts a node found quarantined outside the policy's memory (a previous
// leader tainted it and this replica's store does not know): unless an action is open on it or
// it is already migrating or quarantined, it becomes quarantined from now, so it is neither
// migrated again nor trusted before its recovery checks. It reports whether anything changed.
func (p *Policy) MarkQuarantined(node string, now time.Time) bool {
	ns, ok := p.s.Nodes[node]
	if ok && (ns.Action != "" || ns.State == Migrating || ns.State == Quarantined) {
		return false
	}
	if !ok {
		ns = NodeState{Node: node, Reachable: true}
	}
	ns.State, ns.Since, ns.CleanRounds, ns.SlowRounds = Quarantined, now, 0, 0
	ns.Note = "found tainted by a previous leader: adopted as quarantined"
	p.s.Nodes[node] = ns
	return true
}
