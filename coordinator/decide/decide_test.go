package decide

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/detect"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func cfg(mut func(*Config)) Config {
	c, _ := DefaultConfig().Normalize()
	c.Mode = Auto
	c.ConfirmRounds = 1
	c.ClearRounds = 2
	c.RecoveryRounds = 2
	c.QuarantineMin = 3 * time.Minute
	c.ProbationMin = 3 * time.Minute
	c.MaxQuarantinedShare = 0.5
	if mut != nil {
		mut(&c)
	}
	return c
}

// cluster returns reachability for n nodes named n0..n(n-1).
func cluster(n int) map[string]bool {
	m := map[string]bool{}
	for i := range n {
		m[fmt.Sprintf("n%d", i)] = true
	}
	return m
}

func slow(node string, score float64, jobs ...string) Observation {
	return Observation{Node: node, Slow: true, Score: score, Cause: "cpu_contention", Since: t0, Jobs: jobs,
		Evidence: []detect.Evidence{{Kind: "host", Signal: "cpu_steal", Value: 0.4, PeerMedian: 0.01}}}
}

func suspect(node string) Observation {
	return Observation{Node: node, Suspect: true, Score: 1, Since: t0}
}

func kinds(as []Action) string {
	var s []string
	for _, a := range as {
		s = append(s, string(a.Kind)+":"+a.Node)
	}
	return strings.Join(s, ",")
}

func TestStateMachine(t *testing.T) {
	type step struct {
		obs    []Observation
		finish Outcome // applied to the round's migrate/release action, if any
		want   State   // n0's state after the step
		acts   string
	}
	cases := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"suspect then clears", cfg(nil), []step{
			{obs: []Observation{suspect("n0")}, want: Suspect},
			{want: Suspect},
			{want: Healthy},
		}},
		{"suspect escalates to slow and migrates", cfg(func(c *Config) { c.ConfirmRounds = 2 }), []step{
			{obs: []Observation{suspect("n0")}, want: Suspect},
			{obs: []Observation{slow("n0", 3)}, want: Slow},
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0"},
		}},
		{"full cycle back to healthy", cfg(nil), []step{
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0", finish: Succeeded},
			{want: Quarantined},
			{want: Quarantined}, // clean rounds reached but QuarantineMin not yet
			{want: Quarantined, acts: "release:n0", finish: Succeeded},
			{want: Probation},
			{want: Probation},
			{want: Healthy},
		}},
		{"slow again on probation", cfg(nil), []step{
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0", finish: Succeeded},
			{want: Quarantined},
			{want: Quarantined},
			{want: Quarantined, acts: "release:n0", finish: Succeeded},
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0"},
		}},
		{"release failure keeps quarantine and retries", cfg(func(c *Config) { c.RetryAfter = 90 * time.Second }), []step{
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0", finish: Succeeded},
			{want: Quarantined},
			{want: Quarantined},
			{want: Quarantined, acts: "release:n0", finish: Failed},
			{want: Quarantined},
			{want: Quarantined, acts: "release:n0", finish: Succeeded},
			{want: Probation},
		}},
		{"quarantined stays while still slow", cfg(nil), []step{
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0", finish: Succeeded},
			{obs: []Observation{slow("n0", 3)}, want: Quarantined},
			{obs: []Observation{slow("n0", 3)}, want: Quarantined},
			{obs: []Observation{slow("n0", 3)}, want: Quarantined},
			{want: Quarantined},
		}},
		{"failed migration retries after RetryAfter", cfg(func(c *Config) { c.RetryAfter = 150 * time.Second }), []step{
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0", finish: Failed},
			{obs: []Observation{slow("n0", 3)}, want: Slow},
			{obs: []Observation{slow("n0", 3)}, want: Slow},
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0"},
		}},
		{"dry-run would migrate once per slow spell and moves nothing", cfg(func(c *Config) { c.Mode = DryRun }), []step{
			{obs: []Observation{slow("n0", 3)}, want: Slow, acts: "migrate:n0", finish: Succeeded},
			{obs: []Observation{slow("n0", 3)}, want: Slow},
			{obs: []Observation{slow("n0", 3)}, want: Slow},
			{want: Slow}, {want: Healthy},
			{obs: []Observation{slow("n0", 3)}, want: Slow, acts: "migrate:n0"},
		}},
		{"node deleted mid-action is forgotten", cfg(nil), []step{
			{obs: []Observation{slow("n0", 3)}, want: Migrating, acts: "migrate:n0", finish: NodeGone},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.cfg)
			for i, s := range tc.steps {
				now := t0.Add(time.Duration(i) * time.Minute)
				acts := p.Round(now, s.obs, cluster(10))
				if got := kinds(acts); got != s.acts {
					t.Fatalf("step %d: actions %q, want %q", i, got, s.acts)
				}
				if ns, _ := p.Node("n0"); ns.State != s.want {
					t.Fatalf("step %d: state %s, want %s (note %q)", i, ns.State, s.want, ns.Note)
				}
				for _, a := range acts {
					if a.Kind == KindMigrate && tc.cfg.Mode == DryRun && !a.DryRun {
						t.Fatalf("step %d: dry-run action not marked dry-run", i)
					}
					if a.Kind == KindMigrate && (a.Reason == "" || len(a.Evidence) == 0) {
						t.Fatalf("step %d: migrate without reason or evidence: %+v", i, a)
					}
					if s.finish != "" && (a.Kind == KindMigrate || a.Kind == KindRelease) {
						p.Finished(a.ID, s.finish, "test", now)
					}
				}
				if ns, ok := p.Node("n0"); s.finish == NodeGone && ok {
					t.Fatalf("step %d: deleted node still tracked: %+v", i, ns)
				}
			}
		})
	}
}

func TestGuardrails(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		nodes  int
		prep   func(p *Policy) // runs before the round under test at t0+10m
		obs    []Observation
		reach  func(map[string]bool)
		acts   string
		holdOn string // node whose Note must name the guardrail
		note   string
	}{
		{name: "one action per round, highest score first", cfg: cfg(func(c *Config) { c.MaxConcurrentMigrations = 5 }), nodes: 20,
			obs: []Observation{slow("n1", 2), slow("n2", 5)}, acts: "migrate:n2"},
		{name: "concurrency cap", cfg: cfg(nil), nodes: 20,
			prep: func(p *Policy) { p.Round(t0, []Observation{slow("n1", 5)}, cluster(20)) },
			obs:  []Observation{slow("n1", 5), slow("n2", 4)}, acts: "", holdOn: "n2", note: "in flight"},
		{name: "quarantine share cap", cfg: cfg(func(c *Config) { c.MaxConcurrentMigrations = 5; c.MaxQuarantinedShare = 0.1 }), nodes: 10,
			prep: func(p *Policy) {
				a := p.Round(t0, []Observation{slow("n1", 5)}, cluster(10))
				p.Finished(a[0].ID, Succeeded, "", t0)
			},
			obs: []Observation{slow("n1", 5), slow("n2", 4)}, acts: "", holdOn: "n2", note: "migrating or quarantined (cap 1)"},
		{name: "job cooldown", cfg: cfg(func(c *Config) { c.MaxConcurrentMigrations = 5; c.JobCooldown = time.Hour }), nodes: 10,
			prep: func(p *Policy) {
				a := p.Round(t0, []Observation{slow("n1", 5, "jobA")}, cluster(10))
				p.Finished(a[0].ID, Succeeded, "", t0)
			},
			obs: []Observation{slow("n2", 4, "jobB", "jobA")}, acts: "", holdOn: "n2", note: "job jobA cooling down"},
		{name: "cooldown spares other jobs", cfg: cfg(func(c *Config) { c.MaxConcurrentMigrations = 5; c.JobCooldown = time.Hour }), nodes: 10,
			prep: func(p *Policy) {
				a := p.Round(t0, []Observation{slow("n1", 5, "jobA")}, cluster(10))
				p.Finished(a[0].ID, Succeeded, "", t0)
			},
			obs: []Observation{slow("n2", 4, "jobB")}, acts: "migrate:n2"},
		{name: "cooldown expires", cfg: cfg(func(c *Config) { c.MaxConcurrentMigrations = 5; c.JobCooldown = 5 * time.Minute }), nodes: 10,
			prep: func(p *Policy) {
				a := p.Round(t0, []Observation{slow("n1", 5, "jobA")}, cluster(10))
				p.Finished(a[0].ID, Succeeded, "", t0)
			},
			obs: []Observation{slow("n2", 4, "jobA")}, acts: "migrate:n2"},
		{name: "breaker on many bad nodes", cfg: cfg(nil), nodes: 10,
			obs:  []Observation{slow("n1", 5), slow("n2", 5), suspect("n3")},
			acts: "alert:", holdOn: "n1", note: "circuit breaker open"},
		{name: "breaker on vanished agents", cfg: cfg(nil), nodes: 10,
			prep:  func(p *Policy) { p.Round(t0, nil, cluster(10)) },
			obs:   []Observation{slow("n1", 5)},
			reach: func(m map[string]bool) { m["n5"], m["n6"], m["n7"] = false, false, false },
			acts:  "alert:", holdOn: "n1", note: "circuit breaker open"},
		{name: "unreachable at start is not vanishing", cfg: cfg(nil), nodes: 10,
			obs:   []Observation{slow("n1", 5)},
			reach: func(m map[string]bool) { m["n5"], m["n6"], m["n7"] = false, false, false },
			acts:  "migrate:n1"},
		{name: "breaker share scales with the cluster", cfg: cfg(func(c *Config) { c.BreakerBadShare = 0.2 }), nodes: 100,
			obs: []Observation{slow("n1", 5), slow("n2", 5), slow("n3", 4)}, acts: "migrate:n1"},
		{name: "approve mode proposes and waits", cfg: cfg(func(c *Config) { c.Mode = Approve }), nodes: 10,
			obs: []Observation{slow("n1", 5)}, acts: "migrate:n1", holdOn: "n1", note: "waiting for approval"},
		{name: "unreachable slow node is not migrated", cfg: cfg(nil), nodes: 10,
			prep:  func(p *Policy) { p.Round(t0, []Observation{slow("n1", 5)}, map[string]bool{"n1": false}) },
			obs:   nil,
			reach: func(m map[string]bool) { m["n1"] = false },
			acts:  ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.cfg)
			if tc.prep != nil {
				tc.prep(p)
			}
			r := cluster(tc.nodes)
			if tc.reach != nil {
				tc.reach(r)
			}
			acts := p.Round(t0.Add(10*time.Minute), tc.obs, r)
			if got := kinds(acts); got != tc.acts {
				t.Fatalf("actions %q, want %q", got, tc.acts)
			}
			if tc.holdOn != "" {
				ns, _ := p.Node(tc.holdOn)
				if !strings.Contains(ns.Note, tc.note) {
					t.Fatalf("%s note %q, want it to contain %q", tc.holdOn, ns.Note, tc.note)
				}
			}
		})
	}
}

func TestApproveFlow(t *testing.T) {
	c := cfg(func(c *Config) { c.Mode = Approve; c.ApprovalTTL = 5 * time.Minute })
	p := New(c)
	acts := p.Round(t0, []Observation{slow("n1", 5, "j")}, cluster(10))
	if len(acts) != 1 || !acts[0].NeedsApproval {
		t.Fatalf("want one proposal, got %+v", acts)
	}
	// A second round does not propose the same node again.
	if acts := p.Round(t0.Add(time.Minute), []Observation{slow("n1", 5, "j")}, cluster(10)); len(acts) != 0 {
		t.Fatalf("proposed twice: %s", kinds(acts))
	}
	a, err := p.Approve(acts[0].ID, t0.Add(time.Minute))
	if err != nil || a.NeedsApproval {
		t.Fatalf("approve: %v %+v", err, a)
	}
	if ns, _ := p.Node("n1"); ns.State != Migrating {
		t.Fatalf("state %s after approval", ns.State)
	}
	if _, err := p.Approve("nope", t0); err == nil {
		t.Fatal("approving an unknown id succeeded")
	}

	// An unapproved proposal expires and is withdrawn.
	p2 := New(c)
	first := p2.Round(t0, []Observation{slow("n1", 5)}, cluster(10))
	acts = p2.Round(t0.Add(6*time.Minute), []Observation{slow("n1", 5)}, cluster(10))
	if kinds(acts) != "cancel:n1" || acts[0].Target != first[0].ID {
		t.Fatalf("want a cancel of %s, got %+v", first[0].ID, acts)
	}
	// Approval is refused while the breaker is open.
	p3 := New(c)
	prop := p3.Round(t0, []Observation{slow("n1", 5)}, cluster(10))
	p3.Round(t0.Add(time.Minute), []Observation{slow("n1", 5), slow("n2", 5), slow("n3", 5)}, cluster(10))
	if _, err := p3.Approve(prop[0].ID, t0.Add(time.Minute)); err == nil || !strings.Contains(err.Error(), "circuit breaker") {
		t.Fatalf("approve with breaker open: %v", err)
	}
}

func TestBreakerClosesAfterHold(t *testing.T) {
	p := New(cfg(func(c *Config) { c.BreakerHold = 3 * time.Minute }))
	bad := []Observation{slow("n1", 5), slow("n2", 5), slow("n3", 5)}
	if got := kinds(p.Round(t0, bad, cluster(10))); got != "alert:" {
		t.Fatalf("got %q", got)
	}
	if got := kinds(p.Round(t0.Add(time.Minute), bad[:1], cluster(10))); got != "" {
		t.Fatalf("breaker let %q through while held", got)
	}
	got := kinds(p.Round(t0.Add(4*time.Minute), bad[:1], cluster(10)))
	if got != "alert:,migrate:n1" {
		t.Fatalf("after the hold: %q", got)
	}
}

func TestSnapshotRestoreAndAdopt(t *testing.T) {
	p := New(cfg(nil))
	acts := p.Round(t0, []Observation{slow("n1", 5, "j")}, cluster(10))
	snap := p.Snapshot()
	q := New(cfg(nil))
	q.Restore(snap)
	if ns, _ := q.Node("n1"); ns.State != Migrating {
		t.Fatalf("restored state %s", ns.State)
	}
	// Adopt on a policy that lost the action puts the node back in flight; twice is harmless.
	r := New(cfg(nil))
	r.Adopt(acts[0])
	r.Adopt(acts[0])
	if ns, _ := r.Node("n1"); ns.State != Migrating || ns.Action != acts[0].ID {
		t.Fatalf("adopted state %+v", ns)
	}
	r.Finished(acts[0].ID, Succeeded, "", t0)
	r.Finished(acts[0].ID, Failed, "replayed", t0)
	if ns, _ := r.Node("n1"); ns.State != Quarantined {
		t.Fatalf("replayed finish changed state: %s", ns.State)
	}
}

func TestFromRound(t *testing.T) {
	r := detect.Round{Verdicts: []detect.Verdict{
		{Node: "a", Status: detect.StatusSlow, Score: 4, Cause: detect.CauseDisk, Since: t0,
			Evidence: []detect.Evidence{{Kind: "subtask", JobID: "j2", TaskManager: "tm-1"}, {Kind: "subtask", JobID: "j1", TaskManager: "tm-1"}}},
		{Node: "b", TaskManager: "tm-9", Status: detect.StatusSlow, Cause: detect.CauseGC},
		{Node: "c", Status: detect.StatusUnreachable},
	}}
	// The jobs and TaskManagers come from the placement source, not from the evidence.
	residents := func(node string) ([]string, []string) {
		return map[string][]string{"a": {"j1", "j2", "j3"}}[node], map[string][]string{"a": {"tm-1", "tm-2"}}[node]
	}
	obs, reach := FromRound(r, residents)
	if len(obs) != 2 || !obs[0].Slow || obs[0].Cause != "disk" || strings.Join(obs[0].Jobs, ",") != "j1,j2,j3" || strings.Join(obs[0].TaskManagers, ",") != "tm-1,tm-2" {
		t.Fatalf("obs %+v", obs)
	}
	if obs[1].Slow {
		t.Fatal("a TaskManager-level verdict marked its node slow")
	}
	if reach["c"] || !reach["a"] {
		t.Fatalf("reach %v", reach)
	}
}

func TestNormalize(t *testing.T) {
	if _, err := (Config{Mode: "yolo"}).Normalize(); err == nil || !strings.Contains(err.Error(), "yolo") {
		t.Fatalf("bad mode: %v", err)
	}
	c, err := DefaultConfig().Normalize()
	if err != nil || c.Mode != DryRun || c.MaxConcurrentMigrations != 1 {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}

func TestBreakerStaggeredVanishingAndFleetCounts(t *testing.T) {
	p := New(cfg(func(c *Config) { c.BreakerVanishWindow = 3 * time.Minute }))
	r := cluster(10)
	p.Round(t0, nil, r)
	// Agents drop out one per round: together they are "at once".
	for i, n := range []string{"n5", "n6"} {
		r[n] = false
		if got := kinds(p.Round(t0.Add(time.Duration(i+1)*time.Minute), nil, r)); got != "" {
			t.Fatalf("after %s vanished: %q", n, got)
		}
	}
	r["n7"] = false
	if got := kinds(p.Round(t0.Add(3*time.Minute), []Observation{slow("n1", 5)}, r)); got != "alert:" {
		t.Fatalf("third vanished agent within the window: %q", got)
	}

	// Spread out beyond the window, vanishing does not trip it.
	q := New(cfg(func(c *Config) { c.BreakerVanishWindow = time.Minute }))
	r = cluster(10)
	q.Round(t0, nil, r)
	for i, n := range []string{"n5", "n6", "n7"} {
		r[n] = false
		if got := kinds(q.Round(t0.Add(time.Duration(i+1)*2*time.Minute), nil, r)); got != "" {
			t.Fatalf("slowly vanishing %s: %q", n, got)
		}
	}

	// Agents late with their reports hold a migration for that round only, with no alert.
	h := New(cfg(nil))
	h.ObserveFleet(detect.Fleet{Reporting: 10, Late: 4})
	if got := kinds(h.Round(t0, []Observation{slow("n1", 5)}, cluster(10))); got != "" {
		t.Fatalf("round held for late agents: %q", got)
	}
	if ns := h.Snapshot().Nodes["n1"]; !strings.Contains(ns.Note, "4 of 10 agents are late with their reports") {
		t.Fatalf("the held node should say why: %+v", ns)
	}
	if got := kinds(h.Round(t0.Add(time.Minute), []Observation{slow("n1", 5)}, cluster(10))); got != "migrate:n1" {
		t.Fatalf("round after the hold: %q", got)
	}

	// Detection's count of nodes regressed against their own baseline trips it too.
	e := New(cfg(nil))
	e.ObserveFleet(detect.Fleet{Reporting: 10, Regressed: 3})
	acts := e.Round(t0, []Observation{slow("n1", 5)}, cluster(10))
	if kinds(acts) != "alert:" || !strings.Contains(acts[0].Reason, "regressed") {
		t.Fatalf("regression trip: %+v", acts)
	}
}

func TestSeqOf(t *testing.T) {
	p := New(cfg(nil))
	a := p.Round(t0, []Observation{slow("n1", 5)}, cluster(10))[0]
	if SeqOf(a.ID) != 1 || SeqOf("garbage") != 0 {
		t.Fatalf("SeqOf(%q) = %d", a.ID, SeqOf(a.ID))
	}
	q := New(cfg(nil))
	q.AtLeastSeq(41)
	if b := q.Round(t0, []Observation{slow("n1", 5)}, cluster(10))[0]; SeqOf(b.ID) != 42 || b.ID == a.ID {
		t.Fatalf("id after AtLeastSeq: %s", b.ID)
	}
}

// TestDryRunCountsAgainstTheCaps: a dry run shows what auto mode would do, so a node that
// "would have been" migrated holds the quarantine share like a quarantined one.
func TestDryRunCountsAgainstTheCaps(t *testing.T) {
	p := New(cfg(func(c *Config) { c.Mode = DryRun; c.MaxConcurrentMigrations = 5; c.MaxQuarantinedShare = 0.1 }))
	acts := p.Round(t0, []Observation{slow("n1", 5)}, cluster(10))
	if kinds(acts) != "migrate:n1" || !acts[0].DryRun {
		t.Fatalf("first round: %+v", acts)
	}
	p.Finished(acts[0].ID, Succeeded, "", t0)
	ns, _ := p.Node("n1")
	if ns.State != Slow || ns.WouldMigrate != acts[0].ID || !strings.Contains(ns.Note, "would have migrated") {
		t.Fatalf("after the dry run n1 is %s, would_migrate %q, note %q", ns.State, ns.WouldMigrate, ns.Note)
	}
	acts = p.Round(t0.Add(time.Minute), []Observation{slow("n1", 5), slow("n2", 4)}, cluster(10))
	if kinds(acts) != "" {
		t.Fatalf("second round: %q, want nothing (share cap held by n1's dry run)", kinds(acts))
	}
	if ns, _ := p.Node("n2"); !strings.Contains(ns.Note, "migrating or quarantined") {
		t.Errorf("n2's note %q does not name the cap", ns.Note)
	}
}

// TestExplicitZeroGuardrails: a guardrail set to 0 means zero, not its default.
func TestExplicitZeroGuardrails(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string // kinds of the second round (a second slow node sharing job j)
	}{
		{"defaults: the cooldown holds the second job migration", nil, ""},
		{"job_cooldown 0: no cooldown", func(c *Config) { c.JobCooldown = 0; c.MaxConcurrentMigrations = 2 }, "migrate:n2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(cfg(func(c *Config) {
				c.MaxConcurrentMigrations = 2
				if tc.mut != nil {
					tc.mut(c)
				}
			}))
			if got := kinds(p.Round(t0, []Observation{slow("n1", 5, "j")}, cluster(10))); got != "migrate:n1" {
				t.Fatalf("first round: %q", got)
			}
			if got := kinds(p.Round(t0.Add(time.Minute), []Observation{slow("n2", 5, "j")}, cluster(10))); got != tc.want {
				t.Fatalf("second round: %q, want %q", got, tc.want)
			}
		})
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.MaxConcurrentMigrations = 0 },
		func(c *Config) { c.MaxQuarantinedShare = 0 },
	} {
		c := cfg(mut)
		if _, err := c.Normalize(); err != nil {
			t.Fatal(err)
		}
		p := New(c)
		if got := kinds(p.Round(t0, []Observation{slow("n1", 5)}, cluster(10))); got != "" {
			t.Errorf("cap 0 (%+v) let %q through", c, got)
		}
	}
}

// TestHostOnlyVerdictNamesItsJobs: a verdict on host signals alone names no job in its evidence;
// its migration still carries every job on the node (so the actuator checkpoints them before
// eviction) and puts each one in cooldown.
func TestHostOnlyVerdictNamesItsJobs(t *testing.T) {
	hostOnly := func(node string) detect.Verdict {
		return detect.Verdict{Node: node, Status: detect.StatusSlow, Score: 3, Cause: detect.CauseDisk, Since: t0,
			Evidence: []detect.Evidence{{Kind: "host", Signal: "disk_await_ms", Value: 80, PeerMedian: 2}}}
	}
	residents := func(node string) ([]string, []string) {
		return []string{"job-a", "job-b"}, []string{node + "-tm-0"}
	}
	p := New(cfg(func(c *Config) { c.MaxConcurrentMigrations = 5 }))
	obs, reach := FromRound(detect.Round{Verdicts: []detect.Verdict{hostOnly("n1")}}, residents)
	for n, up := range cluster(10) {
		reach[n] = up
	}
	acts := p.Round(t0, obs, reach)
	if kinds(acts) != "migrate:n1" || strings.Join(acts[0].Jobs, ",") != "job-a,job-b" || strings.Join(acts[0].TaskManagers, ",") != "n1-tm-0" {
		t.Fatalf("host-only migration: %+v", acts)
	}
	// Another node running job-b is held by the cooldown the first migration started.
	obs, reach = FromRound(detect.Round{Verdicts: []detect.Verdict{hostOnly("n2")}}, residents)
	for n, up := range cluster(10) {
		reach[n] = up
	}
	if got := kinds(p.Round(t0.Add(time.Minute), obs, reach)); got != "" {
		t.Fatalf("second migration touching the same jobs: %q", got)
	}
	if ns, _ := p.Node("n2"); !strings.Contains(ns.Note, "cooling down") {
		t.Fatalf("n2 should be held by the job cooldown: %+v", ns)
	}
}
