package daemon

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tmwarden/tmwarden/telemetry"
)

type cfg struct {
	Level string `yaml:"log_level"`
	Name  string `yaml:"name"`
}

func spec(ran *cfg) Spec[cfg] {
	return Spec[cfg]{
		Name:      "x",
		Defaults:  func() cfg { return cfg{Level: "info"} },
		Bind:      func(fs *flag.FlagSet, c *cfg) { fs.StringVar(&c.Name, "name", c.Name, "") },
		LogLevel:  func(c cfg) string { return c.Level },
		Telemetry: func(cfg) telemetry.Config { return telemetry.Config{} },
		Run:       func(_ context.Context, c cfg, _ *slog.Logger, _ *telemetry.Provider) error { *ran = c; return nil },
	}
}

func TestRunGetsFileAndFlags(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("name: file\nlog_level: debug\n"), 0o600)
	var got cfg
	if err := run(spec(&got), []string{"--config", p, "--name", "flag"}); err != nil {
		t.Fatal(err)
	}
	if got.Name != "flag" || got.Level != "debug" {
		t.Errorf("got %+v", got)
	}
}

func TestGarbledConfigAndBadLevelAreRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("name: [oops\n"), 0o600)
	var got cfg
	if err := run(spec(&got), []string{"--config", p}); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("garbled file: %v", err)
	}
	os.WriteFile(p, []byte("log_level: loud\n"), 0o600)
	if err := run(spec(&got), []string{"--config", p}); err == nil || !strings.Contains(err.Error(), `log level "loud"`) {
		t.Errorf("bad level: %v", err)
	}
}

// TestSIGTERMCancelsRun sends this process SIGTERM: Run's context ends and Main's run returns
// cleanly instead of the process dying.
func TestSIGTERMCancelsRun(t *testing.T) {
	s := spec(new(cfg))
	started := make(chan struct{})
	s.Run = func(ctx context.Context, _ cfg, _ *slog.Logger, _ *telemetry.Provider) error {
		close(started)
		<-ctx.Done()
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- run(s, nil) }()
	<-started
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
}

func TestVersionNeedsNoConfig(t *testing.T) {
	var got cfg
	got.Name = "untouched"
	if err := run(spec(&got), []string{"--config", "/nonexistent/c.yaml", "--version"}); err != nil {
		t.Fatalf("--version with a missing config file: %v", err)
	}
	if got.Name != "untouched" {
		t.Error("--version ran the daemon")
	}
}
