// Command tmwarden-agent is the node daemon: it profiles the machine, scrapes the local Flink
// TaskManagers and streams reports to the coordinator.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/daemon"
	"github.com/tmwarden/tmwarden/telemetry"
)

func main() {
	if n := maxProcs(os.Getenv); n > 0 {
		runtime.GOMAXPROCS(n)
	}
	// What the package inits touched is not used again (see agent.ReleaseStartupPages); the
	// logger does not exist yet, so the outcome is logged once the agent is built.
	initResident, initErr := agent.ReleaseStartupPages()
	daemon.Main(daemon.Spec[agent.Config]{
		Name:      "tmwarden-agent",
		Version:   agent.Version,
		Defaults:  agent.DefaultConfig,
		Bind:      agent.BindFlags,
		LogLevel:  func(c agent.Config) string { return c.LogLevel },
		Telemetry: func(c agent.Config) telemetry.Config { return c.Telemetry },
		Run: func(ctx context.Context, cfg agent.Config, log *slog.Logger, tel *telemetry.Provider) error {
			a, err := agent.New(cfg, agent.WithLogger(log), agent.WithTelemetry(tel))
			if err != nil {
				return err
			}
			// Loading the probes touched code and data that the rounds do not use either.
			builtResident, builtErr := agent.ReleaseStartupPages()
			if err := errors.Join(initErr, builtErr); err != nil {
				log.Warn("start-up pages of the executable not released; the agent runs with them resident", "err", err)
			} else {
				log.Debug("released the executable's start-up pages", "after_init_bytes", initResident, "after_build_bytes", builtResident)
			}
			return a.Run(ctx)
		},
	})
}

// maxProcs is the GOMAXPROCS the agent runs with: 1, as node_exporter runs by default
// (--runtime.gomaxprocs=1), unless the GOMAXPROCS variable sets it (0: leave the runtime's).
// The agent's work is a few milliseconds of CPU every interval, mostly waiting on reads; with
// a P per core, every goroutine it wakes (a collector, a scrape's read, a /metrics request)
// also wakes an idle P's thread to look for work, and those hand-offs and spinning threads
// were a large share of its CPU in make bench-node. The collectors still run concurrently,
// interleaved on one thread.
func maxProcs(getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" {
		return 0
	}
	return 1
}
