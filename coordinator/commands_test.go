package coordinator_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// drainAgent is an agent's end of the stream for drain commands, spoken by a bare gRPC client so
// the test decides when the answer comes. It counts the drain commands it receives by id.
type drainAgent struct {
	mu       sync.Mutex
	received map[string]int
	send     func(*tmwardenv1.AgentMessage) error
}

// connect opens a stream to addr as node and reads commands until the stream ends.
func (a *drainAgent) connect(t *testing.T, addr, node string) {
	t.Helper()
	s := rawStream(t, addr)
	if err := s.Send(hello(node, 1)); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("no welcome: %v %v", m, err)
	}
	var sendMu sync.Mutex
	a.mu.Lock()
	a.send = func(m *tmwardenv1.AgentMessage) error { sendMu.Lock(); defer sendMu.Unlock(); return s.Send(m) }
	a.mu.Unlock()
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if cmd := m.GetCommand(); cmd != nil && cmd.GetDrain() != nil {
				a.mu.Lock()
				a.received[cmd.Id]++
				a.mu.Unlock()
			}
		}
	}()
}

func (a *drainAgent) times(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.received[id]
}

// answer acknowledges id and reports it drained, as agent/stream.go does.
func (a *drainAgent) answer(t *testing.T, id, words string) {
	t.Helper()
	a.mu.Lock()
	send := a.send
	a.mu.Unlock()
	for _, m := range []*tmwardenv1.AgentMessage{
		{Msg: &tmwardenv1.AgentMessage_CommandAck{CommandAck: &tmwardenv1.CommandAck{CommandId: id, Accepted: true}}},
		{Msg: &tmwardenv1.AgentMessage_CommandProgress{CommandProgress: &tmwardenv1.CommandProgress{CommandId: id,
			State: tmwardenv1.CommandProgress_STATE_RUNNING, Message: words}}},
		{Msg: &tmwardenv1.AgentMessage_CommandProgress{CommandProgress: &tmwardenv1.CommandProgress{CommandId: id,
			State: tmwardenv1.CommandProgress_STATE_SUCCEEDED}}},
	} {
		if err := send(m); err != nil {
			t.Fatal(err)
		}
	}
}

func bareMetalConfig(cfg *coordinator.Config) {
	cfg.Actuator.Kind = "baremetal"
	cfg.Actuator.BareMetal.Poll = 50 * time.Millisecond
	cfg.Decisions.Policy.Mode = decide.Auto
	cfg.Decisions.Policy.ConfirmRounds = 1
	cfg.Decisions.ExecInterval = 50 * time.Millisecond
	// Detection stays out of the way: the test decides the migration itself.
	cfg.Detection.Interval = time.Hour
}

// migrate starts a migration of node through the coordinator's decision manager, with nine
// healthy peers so that no guardrail holds it, and returns its id.
func migrate(t *testing.T, c *coordinator.Coordinator, node string) string {
	t.Helper()
	reach := map[string]bool{node: true}
	for i := range 9 {
		reach[fmt.Sprintf("peer-%d", i)] = true
	}
	obs := []decide.Observation{{Node: node, Slow: true, Score: 4, Cause: "cpu_contention", Since: time.Now(), Jobs: []string{"job1"},
		TaskManagers: []string{"tm-1"}, Evidence: []detect.Evidence{{Kind: "host", Signal: "cpu_steal", Value: 0.4, PeerMedian: 0.01}}}}
	ds, err := c.Decisions().Round(time.Now(), obs, reach)
	if err != nil || len(ds) != 1 || ds[0].Action.Kind != decide.KindMigrate {
		t.Fatalf("round: %v %+v", err, ds)
	}
	return ds[0].Action.ID
}

// finishedTimes counts the decision's "finished" audit entries: a decision that completed
// exactly once has one.
func finishedTimes(t *testing.T, c *coordinator.Coordinator, id string) (string, int) {
	t.Helper()
	d, audit, err := c.Decisions().Decision(id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range audit {
		if e.Event == "finished" {
			n++
		}
	}
	return d.Status, n
}

// TestCommandRecordsSurviveARestart sends a drain, restarts the coordinator on the same store
// before the agent answers, and has the agent answer the restarted coordinator: the command's
// record carries over, the drain is sent once more under the same id (the agent never
// acknowledged it), and the decision completes exactly once.
func TestCommandRecordsSurviveARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c1 := startCoordinator(t, dir, "127.0.0.1:0", bareMetalConfig)
	agent := &drainAgent{received: map[string]int{}}
	agent.connect(t, c1.GRPCAddr(), "n1")
	id := migrate(t, c1.Coordinator, "n1")
	key := id + "/drain"
	waitFor(t, 20*time.Second, "the drain to reach the agent", func() bool { return agent.times(key) == 1 })
	rec, err := c1.Store().Command(key)
	if err != nil || rec.State != store.CommandSent || rec.Node != "n1" || rec.Kind != "drain" {
		t.Fatalf("record before the restart: %+v %v", rec, err)
	}
	c1.stop(t)

	c2 := startCoordinator(t, dir, "127.0.0.1:0", bareMetalConfig)
	defer c2.stop(t)
	agent.connect(t, c2.GRPCAddr(), "n1")
	waitFor(t, 20*time.Second, "the unacknowledged drain to be sent again", func() bool { return agent.times(key) == 2 })
	agent.answer(t, key, "drained: stopped tm-1")
	waitFor(t, 20*time.Second, "the decision to finish", func() bool {
		st, _ := finishedTimes(t, c2.Coordinator, id)
		return st == httpv1.DecisionSucceeded
	})
	// A repeated answer (the agent's drain handler reports an id it already ran again) changes nothing.
	agent.answer(t, key, "drained again")
	time.Sleep(300 * time.Millisecond)
	if st, n := finishedTimes(t, c2.Coordinator, id); st != httpv1.DecisionSucceeded || n != 1 {
		t.Fatalf("decision %s finished %d times", st, n)
	}
	cmds, err := c2.Commands(10, "n1")
	if err != nil || len(cmds) != 1 {
		t.Fatalf("commands %+v %v", cmds, err)
	}
	if c := cmds[0]; c.ID != key || c.State != httpv1.CommandDone || c.Sends != 2 || c.Message != "drained: stopped tm-1" {
		t.Fatalf("command as the API shows it: %+v", c)
	}
	if agent.times(key) != 2 {
		t.Fatalf("drain sent %d times, want 2 (once before the restart, once after)", agent.times(key))
	}
}
