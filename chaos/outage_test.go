//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// TestCoordinatorOutageThousandAgents takes the coordinator away (SIGKILL) from 1000 running
// agents for CHAOS_OUTAGE (default 2m): the agents keep collecting into buffers that stay within
// their bound; when the coordinator returns, all 1000 reconnect at once and every node's
// buffered reports arrive.
func TestCoordinatorOutageThousandAgents(t *testing.T) {
	outage := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("CHAOS_OUTAGE")); err == nil && d > 0 {
		outage = d
	}
	const agents, buffer = 1000, 30
	interval := time.Second
	c := newCoordinator(t, "default_interval: 1s\nmissed_intervals: 3\n")
	c.start()
	names := nodeNames("agent-", agents)
	stub := func(_ string, r *tmwardenv1.Report) { r.Host = &tmwardenv1.HostSignals{NumCpus: 4, Load1: 1} }
	f := startFleet(t, c.grpcAddr, names, interval, buffer, stub)

	connected := func() (bool, string) {
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
		return n == agents, fmt.Sprintf("%d of %d connected", n, agents)
	}
	t0 := time.Now()
	waitFor(t, "all agents to connect", 3*time.Minute, connected)
	t.Logf("%d agents connected in %v (%s)", agents, time.Since(t0).Round(time.Millisecond), memStats())
	before := map[string]uint64{}
	ns, err := c.nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range ns {
		before[nd.Name] = nd.ReportsReceived
	}

	c.stop(syscall.SIGKILL)
	t.Logf("coordinator killed; down for %v", outage)
	maxPending := 0
	for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(5 * time.Second) {
		for _, a := range f.agents {
			st := a.Status()
			if st.Pending > buffer {
				t.Fatalf("agent %s holds %d reports, beyond its buffer of %d", st.NodeName, st.Pending, buffer)
			}
			maxPending = max(maxPending, st.Pending)
		}
	}
	atReturn := map[string]uint64{}
	var dropped uint64
	for name, a := range f.agents {
		st := a.Status()
		atReturn[name] = st.LastSequence
		dropped += st.Dropped
	}
	t.Logf("during the outage: at most %d reports buffered per agent (bound %d), %d dropped in all (%s)", maxPending, buffer, dropped, memStats())
	if outage > time.Duration(buffer+5)*interval && dropped == 0 {
		t.Errorf("an outage of %v at %v per report overflowed no buffer of %d: the bound was not exercised", outage, interval, buffer)
	}

	t1 := time.Now()
	c.start()
	waitFor(t, "all agents to reconnect", 3*time.Minute, connected)
	t.Logf("all %d agents reconnected %v after the coordinator returned", agents, time.Since(t1).Round(time.Millisecond))
	lastLog := time.Now()
	waitFor(t, "every node's reports to arrive", 3*time.Minute, func() (bool, string) {
		ns, err := c.nodes()
		if err != nil {
			return false, err.Error()
		}
		var behind []string
		for _, nd := range ns {
			if !nd.Connected || nd.LastSequence < atReturn[nd.Name] {
				behind = append(behind, fmt.Sprintf("%s (seq %d < %d)", nd.Name, nd.LastSequence, atReturn[nd.Name]))
			}
		}
		if len(ns) != agents {
			return false, fmt.Sprintf("%d nodes known", len(ns))
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			var received uint64
			for _, nd := range ns {
				received += nd.ReportsReceived - before[nd.Name]
			}
			t.Logf("%v after return: %d nodes behind, %d reports received since the outage", time.Since(t1).Round(time.Second), len(behind), received)
		}
		return len(behind) == 0, fmt.Sprintf("%d behind: %s", len(behind), joinMax(behind, 5))
	})
	t.Logf("every node's reports arrived %v after the coordinator returned (%s)", time.Since(t1).Round(time.Millisecond), memStats())
	ns, err = c.nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range ns {
		// The buffered reports are replayed, not only the newest: at least a buffer's worth each.
		if got := nd.ReportsReceived - before[nd.Name]; got < buffer {
			t.Errorf("node %s: %d reports arrived after the outage, want at least the %d buffered", nd.Name, got, buffer)
		}
	}
	c.stop(syscall.SIGTERM)
}
