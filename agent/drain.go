package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// DrainConfig is how this node moves its TaskManagers away when the coordinator asks
// (bare metal; on Kubernetes the coordinator evicts pods itself).
type DrainConfig struct {
	// Command is the drain command and its arguments, run without a shell, for example
	// ["systemctl", "stop", "flink-taskmanager@*"]. Empty refuses drain commands. Default empty.
	// It gets TMWARDEN_TASK_MANAGER_IDS (comma-separated), TMWARDEN_COMMAND_ID,
	// TMWARDEN_REASON and TMWARDEN_DRY_RUN (0 or 1) in its environment.
	Command []string `yaml:"command"`
	// Timeout kills the command after this long. Default 5m.
	Timeout time.Duration `yaml:"timeout"`
	// DryRun reports what would run without running it, whatever the coordinator asks. Default false.
	DryRun bool `yaml:"dry_run"`
	// Env adds variables to the command's environment. Default none.
	Env map[string]string `yaml:"env"`
}

// DefaultDrainConfig returns the documented defaults.
func DefaultDrainConfig() DrainConfig { return DrainConfig{Timeout: 5 * time.Minute} }

// maxDrainOutput bounds the command output kept for the report.
const maxDrainOutput = 4096

// DrainHandler runs the configured drain command for DrainCommands. It implements
// CommandHandler; other commands are refused so the lead can put it behind a dispatcher.
type DrainHandler struct {
	cfg DrainConfig
	log *slog.Logger

	mu   sync.Mutex
	done map[string]error // command ids already run: a coordinator resending after a restart gets the first outcome
}

// ErrUnsupportedCommand is returned for a command the handler does not carry out.
var ErrUnsupportedCommand = errors.New("unsupported command")

// NewDrainHandler returns a handler for cfg.
func NewDrainHandler(cfg DrainConfig, log *slog.Logger) *DrainHandler {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultDrainConfig().Timeout
	}
	if log == nil {
		log = slog.Default()
	}
	return &DrainHandler{cfg: cfg, log: log, done: map[string]error{}}
}

// Handle runs one drain.
func (h *DrainHandler) Handle(ctx context.Context, cmd *tmwardenv1.Command, progress func(*tmwardenv1.CommandProgress)) error {
	d := cmd.GetDrain()
	if d == nil {
		return fmt.Errorf("command %s: %w (this handler only drains)", cmd.GetId(), ErrUnsupportedCommand)
	}
	h.mu.Lock()
	prev, seen := h.done[cmd.GetId()]
	h.mu.Unlock()
	if seen && cmd.GetId() != "" {
		h.log.Info("drain command already run; reporting its outcome again", "command", cmd.GetId())
		return prev
	}
	err := h.run(ctx, cmd, d, progress)
	if ctx.Err() == nil && cmd.GetId() != "" {
		h.mu.Lock()
		h.done[cmd.GetId()] = err
		h.mu.Unlock()
	}
	return err
}

func (h *DrainHandler) run(ctx context.Context, cmd *tmwardenv1.Command, d *tmwardenv1.DrainCommand, progress func(*tmwardenv1.CommandProgress)) error {
	if len(h.cfg.Command) == 0 || h.cfg.Command[0] == "" {
		return errors.New("no drain command configured (drain.command in the agent's configuration)")
	}
	dry := h.cfg.DryRun || d.GetDryRun()
	tms := strings.Join(d.GetTaskManagerIds(), ",")
	if dry {
		msg := fmt.Sprintf("dry-run: would run %q for TaskManagers [%s]", h.cfg.Command, tms)
		h.log.Info(msg, "command", cmd.GetId())
		progress(&tmwardenv1.CommandProgress{State: tmwardenv1.CommandProgress_STATE_RUNNING, Message: msg})
		return nil
	}
	timeout := h.cfg.Timeout
	if dl := cmd.GetDeadline(); dl != nil {
		if left := time.Until(dl.AsTime()); left > 0 && left < timeout {
			timeout = left
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(ctx, h.cfg.Command[0], h.cfg.Command[1:]...)
	c.Env = append(os.Environ(),
		"TMWARDEN_TASK_MANAGER_IDS="+tms,
		"TMWARDEN_COMMAND_ID="+cmd.GetId(),
		"TMWARDEN_REASON="+cmd.GetReason(),
		"TMWARDEN_DRY_RUN=0")
	for k, v := range h.cfg.Env {
		c.Env = append(c.Env, k+"="+v)
	}
	var out tailBuffer
	c.Stdout, c.Stderr = &out, &out
	c.WaitDelay = 2 * time.Second // a child holding the pipes open must not outlive the timeout by much
	progress(&tmwardenv1.CommandProgress{State: tmwardenv1.CommandProgress_STATE_RUNNING, Message: fmt.Sprintf("running %q", h.cfg.Command)})
	h.log.Info("running drain command", "command", cmd.GetId(), "argv", h.cfg.Command, "task_managers", tms)
	err := c.Run()
	text := strings.TrimSpace(out.String())
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("drain command %q timed out after %s; output: %s", h.cfg.Command, timeout, text)
	case err != nil:
		return fmt.Errorf("drain command %q: %w; output: %s", h.cfg.Command, err, text)
	}
	progress(&tmwardenv1.CommandProgress{State: tmwardenv1.CommandProgress_STATE_RUNNING, Message: "drained: " + text})
	return nil
}

// tailBuffer keeps the last maxDrainOutput bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - maxDrainOutput; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
