//go:build chaos

package chaos

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
)

const partitionConfig = `
default_interval: 200ms
missed_intervals: 3
detection:
  interval: 300ms
  window: 4
decisions:
  exec_interval: 50ms
  policy:
    mode: auto
    max_quarantined_share: 0.5
    job_cooldown: 1ms
    confirm_rounds: 2
actuator:
  kind: log
`

// TestAgentsCutOffNoMigration cuts most agents off from the coordinator at once while one of the
// nodes still reporting turns into a straggler: the circuit breaker must open and no migration
// may be decided, because a coordinator that lost sight of its fleet cannot tell a slow node
// from a broken network.
func TestAgentsCutOffNoMigration(t *testing.T) {
	names := nodeNames("node-", 12)
	s := newStraggler(names)
	c := newCoordinator(t, partitionConfig)
	c.start()
	f := startFleet(t, c.grpcAddr, names, 200*time.Millisecond, 100, s.fill)
	waitFor(t, "all agents to connect", time.Minute, func() (bool, string) {
		ns, err := c.nodes()
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, nd := range ns {
			if nd.Connected {
				n++
			}
		}
		return n == len(names), fmt.Sprintf("%d connected", n)
	})
	time.Sleep(3 * time.Second) // a few healthy detection rounds

	f.cut(names[2:])
	s.setSlow(names[0])
	cutAt := time.Now()
	var breakerAt time.Duration
	for time.Since(cutAt) < 15*time.Second {
		l, err := c.decisions()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range l.Decisions {
			if d.Kind == string(decide.KindMigrate) {
				t.Fatalf("migration %s of %s decided %v after the fleet was cut off (breaker open %v): %s",
					d.ID, d.Node, time.Since(cutAt).Round(time.Millisecond), l.Breaker.Open, d.Reason)
			}
		}
		if l.Breaker.Open && breakerAt == 0 {
			breakerAt = time.Since(cutAt)
			t.Logf("breaker open %v after the cut: %s", breakerAt.Round(time.Millisecond), l.Breaker.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The breaker, not blindness, is what held the migration back: detection still saw the
	// straggler among the nodes that report.
	ns, err := c.nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range ns {
		if nd.Name == names[0] {
			t.Logf("straggler %s: health %q, cause %q", nd.Name, nd.Health, nd.Cause)
			if nd.Health != string(decide.Slow) && nd.Health != string(decide.Suspect) {
				t.Errorf("straggler %s is %q: detection never flagged it, so the test shows nothing about the breaker", nd.Name, nd.Health)
			}
		}
	}
	if breakerAt == 0 {
		t.Fatal("the circuit breaker never opened after 10 of 12 agents were cut off")
	}
	var evs httpv1.EventList
	if err := c.getJSON("/api/v1/events?limit=1000", &evs); err != nil {
		t.Fatal(err)
	}
	opened := false
	for _, e := range evs.Events {
		opened = opened || e.Type == "breaker_open"
	}
	if !opened {
		t.Error("no breaker_open event in the event log")
	}
	c.stop(syscall.SIGTERM)
}
