package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func drainCmd(id string, dry bool, tms ...string) *tmwardenv1.Command {
	return &tmwardenv1.Command{Id: id, Reason: "slow node",
		Action: &tmwardenv1.Command_Drain{Drain: &tmwardenv1.DrainCommand{TaskManagerIds: tms, DryRun: dry}}}
}

func TestDrainHandler(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	cases := []struct {
		name    string
		cfg     DrainConfig
		cmd     *tmwardenv1.Command
		wantErr string
		wantMsg string
		ran     bool
	}{
		{name: "runs with the TaskManager ids in its environment",
			cfg: DrainConfig{Command: []string{"/bin/sh", "-c", `echo "$TMWARDEN_TASK_MANAGER_IDS $TMWARDEN_COMMAND_ID $EXTRA" | tee ` + marker},
				Env: map[string]string{"EXTRA": "x1"}},
			cmd: drainCmd("c1", false, "tm-1", "tm-2"), wantMsg: "drained: tm-1,tm-2 c1 x1", ran: true},
		{name: "failure carries exit status and output",
			cfg: DrainConfig{Command: []string{"/bin/sh", "-c", "echo cannot stop unit >&2; exit 3"}},
			cmd: drainCmd("c2", false, "tm-1"), wantErr: "exit status 3; output: cannot stop unit"},
		{name: "timeout kills the command",
			cfg: DrainConfig{Command: []string{"/bin/sh", "-c", "sleep 30"}, Timeout: 200 * time.Millisecond},
			cmd: drainCmd("c3", false), wantErr: "timed out"},
		{name: "dry-run asked by the coordinator",
			cfg: DrainConfig{Command: []string{"/bin/sh", "-c", "touch " + marker}},
			cmd: drainCmd("c4", true, "tm-1"), wantMsg: "dry-run: would run"},
		{name: "dry-run forced by configuration",
			cfg: DrainConfig{Command: []string{"/bin/sh", "-c", "touch " + marker}, DryRun: true},
			cmd: drainCmd("c5", false, "tm-1"), wantMsg: "dry-run: would run"},
		{name: "no command configured", cmd: drainCmd("c6", false), wantErr: "no drain command configured"},
		{name: "missing binary", cfg: DrainConfig{Command: []string{"/nonexistent/drain"}}, cmd: drainCmd("c7", false), wantErr: "no such file"},
		{name: "not a drain", cfg: DrainConfig{Command: []string{"/bin/true"}},
			cmd: &tmwardenv1.Command{Id: "c8", Action: &tmwardenv1.Command_Prefetch{Prefetch: &tmwardenv1.PrefetchCommand{}}}, wantErr: "unsupported command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(marker)
			h := NewDrainHandler(tc.cfg, nil)
			var msgs []string
			err := h.Handle(context.Background(), tc.cmd, func(p *tmwardenv1.CommandProgress) { msgs = append(msgs, p.Message) })
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if tc.wantMsg != "" && !strings.Contains(strings.Join(msgs, "\n"), tc.wantMsg) {
				t.Fatalf("progress %q, want %q", msgs, tc.wantMsg)
			}
			_, statErr := os.Stat(marker)
			if ran := statErr == nil; ran != tc.ran {
				t.Fatalf("command ran: %v, want %v", ran, tc.ran)
			}
		})
	}
}

func TestDrainHandlerRunsAnIDOnce(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	h := NewDrainHandler(DrainConfig{Command: []string{"/bin/sh", "-c", "echo x >> " + count + "; exit 1"}}, nil)
	progress := func(*tmwardenv1.CommandProgress) {}
	first := h.Handle(context.Background(), drainCmd("same", false), progress)
	second := h.Handle(context.Background(), drainCmd("same", false), progress)
	if first == nil || !errors.Is(second, first) && second.Error() != first.Error() {
		t.Fatalf("outcomes %v / %v", first, second)
	}
	b, _ := os.ReadFile(count)
	if strings.Count(string(b), "x") != 1 {
		t.Fatalf("command ran %d times for one id", strings.Count(string(b), "x"))
	}
}
