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

// CommandRecords reads the durable record of a command, where the coordinator writes what the
// agent answered; *store.Store is one. It returns an error wrapping store.ErrNotFound for a
// command never sent.
type CommandRecords interface {
	Command(id string) (store.CommandRecord, error)
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
// the step's idempotency key, and the agent runs its configured drain command. What the agent
// answered is read from the command's durable record, so a restarted or newly elected
// coordinator sees an answer that came to its predecessor.
type BareMetal struct {
	send    CommandSender
	records CommandRecords
	cfg     BareMetalConfig
	log     *slog.Logger

	mu sync.Mutex
	// sentHere are the commands this process put on a stream: one never acknowledged that a
	// previous process sent is sent once more, since it may have died in that process's queue.
	sentHere map[string]bool
	now      func() time.Time
}

// NewBareMetal returns the bare-metal actuator.
func NewBareMetal(send CommandSender, records CommandRecords, cfg BareMetalConfig, log *slog.Logger) (*BareMetal, error) {
	if send == nil || records == nil {
		return nil, errors.New("bare-metal actuator needs the coordinator's command stream and command records")
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
	return &BareMetal{send: send, records: records, cfg: cfg, log: log, sentHere: map[string]bool{}, now: time.Now}, nil
}

func (*BareMetal) Name() string { return "baremetal" }

func (*BareMetal) Plan(_ context.Context, a decide.Action) ([]Step, error) {
	if a.Kind != decide.KindMigrate {
		// Nothing to undo: the TaskManager's supervisor brings it back when the node takes work.
		return []Step{{Name: "release", Kind: "noop"}}, nil
	}
	return []Step{{Name: "drain", Kind: "drain"}}, nil
}

// Do sends the drain and reports RetryError until the command's record holds the agent's final
// answer. The command is sent when it has no record, or when a previous process sent it and the
// agent never acknowledged it; the agent's drain handler ignores an id it has already run. The
// timeout runs from the first send, across restarts.
func (b *BareMetal) Do(ctx context.Context, a decide.Action, s Step, key string) (string, error) {
	if s.Kind == "noop" {
		return "nothing to undo on bare metal", nil
	}
	rec, err := b.records.Command(key)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("reading the record of command %s: %w", key, err)
	}
	now := b.now()
	switch {
	case known && rec.State == store.CommandDone:
		b.forget(key)
		return "agent drained the node: " + rec.Message, nil
	case known && rec.State == store.CommandFailed:
		b.forget(key)
		return "", fmt.Errorf("drain on %s failed: %s", a.Node, rec.Message)
	case known && now.Sub(rec.SentAt) > b.cfg.CommandTimeout:
		b.forget(key)
		return "", fmt.Errorf("drain on %s: no answer from the agent within %s (last state %s)", a.Node, b.cfg.CommandTimeout, rec.State)
	}
	b.mu.Lock()
	here := b.sentHere[key]
	b.mu.Unlock()
	if !known || (rec.State == store.CommandSent && !here) {
		first := now
		if known {
			first = rec.SentAt
		}
		cmd := &tmwardenv1.Command{Id: key, Reason: a.Reason, Deadline: timestamppb.New(first.Add(b.cfg.CommandTimeout)),
			Action: &tmwardenv1.Command_Drain{Drain: &tmwardenv1.DrainCommand{TaskManagerIds: a.TaskManagers, DryRun: a.DryRun}}}
		if err := b.send.SendCommand(ctx, a.Node, cmd); err != nil {
			return "", &RetryError{After: b.cfg.Poll * 5, Reason: fmt.Sprintf("cannot reach the agent on %s: %v", a.Node, err)}
		}
		b.mu.Lock()
		b.sentHere[key] = true
		b.mu.Unlock()
		b.log.Info("drain command sent", "node", a.Node, "command", key, "task_managers", a.TaskManagers, "again", known)
	}
	return "", &RetryError{After: b.cfg.Poll, Reason: "waiting for the agent on " + a.Node + " to drain", Underway: true}
}

func (b *BareMetal) forget(key string) {
	b.mu.Lock()
	delete(b.sentHere, key)
	b.mu.Unlock()
}
