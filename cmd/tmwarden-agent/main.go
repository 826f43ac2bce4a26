// Command tmwarden-agent is the node daemon: it profiles the machine, scrapes the local Flink
// TaskManagers and streams reports to the coordinator.
package main

import (
	"context"
	"log/slog"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/daemon"
	"github.com/tmwarden/tmwarden/telemetry"
)

func main() {
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
			return a.Run(ctx)
		},
	})
}
