// Command tmwarden-agent is the node daemon: it profiles the machine, scrapes the local Flink
// TaskManagers and streams reports to the coordinator.
package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/daemon"
	"github.com/tmwarden/tmwarden/telemetry"
)

func main() {
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
