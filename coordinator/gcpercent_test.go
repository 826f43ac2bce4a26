package coordinator_test

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/tmwarden/tmwarden/coordinator"
)

// gc_percent is the garbage collector's target the coordinator runs with, unless GOGC is set,
// which wins as for any Go program.
func TestApplyGCPercent(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	t.Setenv("GOGC", "")
	cfg := coordinator.DefaultConfig()
	cfg.GCPercent = 37
	if p, from := coordinator.ApplyGCPercent(cfg, log); p != 37 || from != "gc_percent" {
		t.Errorf("ApplyGCPercent = %d from %s, want 37 from gc_percent", p, from)
	}
	if p := debug.SetGCPercent(100); p != 37 {
		t.Errorf("the runtime runs with %d, want gc_percent's 37", p)
	}

	// The runtime read GOGC when the process started; set now, it stands for the operator's
	// environment, whose setting is left in force.
	t.Setenv("GOGC", "80")
	if p, from := coordinator.ApplyGCPercent(cfg, log); p != 100 || from != "GOGC" {
		t.Errorf("with GOGC set, ApplyGCPercent = %d from %s, want the runtime's 100 from GOGC", p, from)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("with GOGC set, the runtime runs with %d, want 100 (left alone)", p)
	}
	if coordinator.DefaultConfig().GCPercent != coordinator.DefaultGCPercent {
		t.Errorf("the default configuration's gc_percent is %d, not DefaultGCPercent", coordinator.DefaultConfig().GCPercent)
	}
}
