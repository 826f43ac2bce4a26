package actuate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// CommandSender queues a command on a node's agent stream; *coordinator.Coordinator is one.
type CommandSender interface {
	SendCommand(ctx context.Context, node string, cmd *tmwardenv1.Command) error
}

// CommandResult is how an agent answered a command.
type CommandResult struct {
	Done    bool
	OK      bool
	Message string
}

// CommandResults looks up an agent's answer to a command.
type CommandResults interface {
	CommandResult(ctx context.Context, node, commandID string) (CommandResult, error)
}

// BareMetalConfig configures the bare-metal actuator.
type BareMetalConfig struct {
	// CommandTimeout fails a drain the agent has not finished this long after it was sent. Default 10m.
	CommandTimeout time.Duration `yaml:"command_timeout" json:"command_timeout"`
	// Poll is the wait between looks at the agent's answer. Default 2s.
	Poll time.Duration `yaml:"poll" json:"poll"`
}

// DefaultBareMetalConfig returns the documented defaults.
func DefaultBareMetalConfig() BareMetalConfig {
	return BareMetalConfig{CommandTimeout: 10 * time.Minute, Poll: 2 * time.Second}
}

// BareMetal drains a node through its agent: the coordinator sends a DrainCommand whose id is
// the step's idempotency key, and the agent runs its configured drain command.
type BareMetal struct {
	send    CommandSender
	results CommandResults
	cfg     BareMetalConfig
	log     *slog.Logger

	mu   sync.Mutex
	sent map[string]time.Time
	now  func() time.Time
}

// NewBareMetal returns the bare-metal actuator.
func NewBareMetal(send CommandSender, results CommandResults, cfg BareMetalConfig, log *slog.Logger) (*BareMetal, error) {
	if send == nil || results == nil {
		return nil, errors.New("bare-metal actuator needs the coordinator's command stream and event log")
	}
	d := DefaultBareMetalConfig()
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = d.CommandTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = d.Poll
	}
	if log == nil {
		log = slog.Default()
	}
	return &BareMetal{send: send, results: results, cfg: cfg, log: log, sent: map[string]time.Time{}, now: time.Now}, nil
}

func (*BareMetal) Name() string { return "baremetal" }

func (*BareMetal) Plan(_ context.Context, a decide.Action) ([]Step, error) {
	if a.Kind != decide.KindMigrate {
		// Nothing to undo: the TaskManager's supervisor brings it back when the node takes work.
		return []Step{{Name: "release", Kind: "noop"}}, nil
	}
	return []Step{{Name: "drain", Kind: "drain"}}, nil
}

// Do sends the drain once per process and reports RetryError until the agent answers. After a
// coordinator restart the command is sent again with the same id unless the agent's answer is
// already in the event log; the agent's drain handler ignores an id it has already run.
func (b *BareMetal) Do(ctx context.Context, a decide.Action, s Step, key string) (string, error) {
	if s.Kind == "noop" {
		return "nothing to undo on bare metal", nil
	}
	res, err := b.results.CommandResult(ctx, a.Node, key)
	if err != nil {
		return "", fmt.Errorf("reading the agent's answer to %s: %w", key, err)
	}
	if res.Done {
		b.forget(key)
		if !res.OK {
			return "", fmt.Errorf("drain on %s failed: %s", a.Node, res.Message)
		}
		return "agent drained the node: " + res.Message, nil
	}
	b.mu.Lock()
	first, sent := b.sent[key]
	b.mu.Unlock()
	now := b.now()
	if sent && now.Sub(first) > b.cfg.CommandTimeout {
		b.forget(key)
		return "", fmt.Errorf("drain on %s: no answer from the agent within %s", a.Node, b.cfg.CommandTimeout)
	}
	if !sent {
		cmd := &tmwardenv1.Command{Id: key, Reason: a.Reason, Deadline: timestamppb.New(now.Add(b.cfg.CommandTimeout)),
			Action: &tmwardenv1.Command_Drain{Drain: &tmwardenv1.DrainCommand{TaskManagerIds: a.TaskManagers, DryRun: a.DryRun}}}
		if err := b.send.SendCommand(ctx, a.Node, cmd); err != nil {
			return "", &RetryError{After: b.cfg.Poll * 5, Reason: fmt.Sprintf("cannot reach the agent on %s: %v", a.Node, err)}
		}
		b.mu.Lock()
		b.sent[key] = now
		b.mu.Unlock()
		b.log.Info("drain command sent", "node", a.Node, "command", key, "task_managers", a.TaskManagers)
	}
	return "", &RetryError{After: b.cfg.Poll, Reason: "waiting for the agent on " + a.Node + " to drain"}
}

func (b *BareMetal) forget(key string) {
	b.mu.Lock()
	delete(b.sent, key)
	b.mu.Unlock()
}

// EventLogResults reads agents' answers from the coordinator's event log, where ingest records
// command_ack and command_done events.
type EventLogResults struct {
	Store *store.Store
	// Window is how many of the node's newest events are searched. Default 500.
	Window int
}

// CommandResult finds the agent's final answer to commandID, if it came.
func (r EventLogResults) CommandResult(_ context.Context, node, commandID string) (CommandResult, error) {
	w := r.Window
	if w <= 0 {
		w = 500
	}
	evs, err := r.Store.LatestEvents(w, node)
	if err != nil {
		return CommandResult{}, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.Attrs["command"] != commandID {
			continue
		}
		switch e.Type {
		case "command_done":
			return CommandResult{Done: true, OK: e.Attrs["state"] == tmwardenv1.CommandProgress_STATE_SUCCEEDED.String(), Message: e.Message}, nil
		case "command_ack":
			if e.Attrs["accepted"] == "false" {
				return CommandResult{Done: true, Message: "agent refused the command: " + e.Attrs["error"]}, nil
			}
		}
	}
	return CommandResult{}, nil
}
