package decide

import (
	"fmt"
	"math"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/detect"
)

// BreakerState is tmwarden's one circuit breaker. The policy owns it; the decision log's alert
// records, the breaker_open / breaker_closed events, the tmwarden.circuit_breaker.open gauge,
// GET /api/v1/decisions and `tmwardenctl decisions` all read this state and nothing else.
type BreakerState struct {
	Open     bool      `json:"open"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since,omitempty"`
	LastTrip time.Time `json:"last_trip,omitempty"`
	// Held, when set, says why no migration starts this round although the breaker is closed:
	// many agents are late with their reports, which is how a partition looks before they are
	// unreachable. Unlike Open it lasts one round and raises no alert.
	Held string `json:"held,omitempty"`
	// Counts is what the breaker judged in the last round.
	Counts BreakerCounts `json:"counts"`
}

// BreakerCounts are the fleet counts one round's breaker judgement rests on.
type BreakerCounts struct {
	// Known is every node the policy knows, reporting or not.
	Known int `json:"known_nodes"`
	// Bad is the nodes that look bad at once: judged suspect or slow, or showing an anomaly this
	// round before any persistence (detection's count), whichever is more.
	Bad int `json:"bad_nodes"`
	// Vanished is the agents that became unreachable within BreakerVanishWindow.
	Vanished int `json:"vanished_nodes"`
	// Regressed is the reporting nodes far above their own baseline (detection's count), of
	// Reporting.
	Regressed int `json:"regressed_nodes"`
	Reporting int `json:"reporting_nodes"`
	// Late is the agents overdue with their report but not yet unreachable (detection's count).
	Late int `json:"late_nodes"`
}

// ObserveFleet hands the policy detection's fleet counts for the next Round; the circuit
// breaker judges them together with the verdicts. Without a call the counts are zero and the
// breaker judges verdicts and reachability alone.
func (p *Policy) ObserveFleet(f detect.Fleet) { p.fleet = f }

// breakerLimit is how many of n nodes make share for the breaker: at least BreakerMinNodes and
// at least one, so an empty or calm cluster never trips it.
func (p *Policy) breakerLimit(share float64, n int) int {
	return max(1, p.cfg.BreakerMinNodes, int(math.Ceil(share*float64(n))))
}

// breakerRound judges one round's counts, moves the breaker and returns the alert records of
// its transitions. bad and vanished are the policy's own counts from verdicts and reachability.
func (p *Policy) breakerRound(now time.Time, known, bad, vanished int) []Action {
	f := p.fleet
	p.fleet = detect.Fleet{}
	c := BreakerCounts{Known: known, Bad: max(bad, f.Anomalous), Vanished: vanished,
		Regressed: f.Regressed, Reporting: f.Reporting, Late: f.Late}
	trip := ""
	switch {
	case c.Bad >= p.breakerLimit(p.cfg.BreakerBadShare, known):
		trip = fmt.Sprintf("%d of %d nodes look bad at once (limit %d)", c.Bad, known, p.breakerLimit(p.cfg.BreakerBadShare, known))
	case vanished >= p.breakerLimit(p.cfg.BreakerVanishShare, known):
		trip = fmt.Sprintf("%d of %d agents vanished within %s (limit %d)", vanished, known, p.cfg.BreakerVanishWindow, p.breakerLimit(p.cfg.BreakerVanishShare, known))
	case c.Reporting > 0 && c.Regressed >= p.breakerLimit(p.cfg.BreakerRegressShare, c.Reporting):
		trip = fmt.Sprintf("%d of %d nodes regressed against their own baseline at once (limit %d)", c.Regressed, c.Reporting, p.breakerLimit(p.cfg.BreakerRegressShare, c.Reporting))
	}
	var out []Action
	b := &p.s.Breaker
	b.Counts, b.Held = c, ""
	if trip != "" {
		b.LastTrip = now
		if !b.Open {
			b.Open, b.Since, b.Reason = true, now, trip
			out = append(out, p.action(KindAlert, "", now, Action{Reason: "circuit breaker open: " + trip + "; migrations held until it closes"}))
		}
	} else if b.Open && now.Sub(b.LastTrip) >= p.cfg.BreakerHold {
		out = append(out, p.action(KindAlert, "", now, Action{Reason: fmt.Sprintf("circuit breaker closed after %s calm (opened: %s): migrations allowed again", p.cfg.BreakerHold, b.Reason)}))
		*b = BreakerState{Counts: c}
	}
	if !b.Open && c.Late >= p.breakerLimit(p.cfg.BreakerVanishShare, known) {
		// A report is due every interval. Agents cut off a moment ago are only late, not yet
		// unreachable, and a slow verdict confirmed in that gap would be a migration decided
		// blind; one round later they have either reported or vanished.
		b.Held = fmt.Sprintf("%d of %d agents are late with their reports (limit %d)", c.Late, known, p.breakerLimit(p.cfg.BreakerVanishShare, known))
	}
	return out
}
