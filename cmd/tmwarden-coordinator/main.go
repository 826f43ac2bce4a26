// Command tmwarden-coordinator is the control plane: it takes the agents' report streams, keeps
// the node registry in its embedded store, detects slow nodes, decides and carries out
// migrations, and serves the HTTP API and status page.
package main

import (
	"context"
	"log/slog"

	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/daemon"
	"github.com/tmwarden/tmwarden/telemetry"
)

func main() {
	daemon.Main(daemon.Spec[coordinator.Config]{
		Name:      "tmwarden-coordinator",
		Version:   coordinator.Version,
		Defaults:  coordinator.DefaultConfig,
		Bind:      coordinator.BindFlags,
		LogLevel:  func(c coordinator.Config) string { return c.LogLevel },
		Telemetry: func(c coordinator.Config) telemetry.Config { return c.Telemetry },
		Run: func(ctx context.Context, cfg coordinator.Config, log *slog.Logger, tel *telemetry.Provider) error {
			coordinator.ApplyGCPercent(cfg, log)
			c, err := coordinator.New(cfg, coordinator.WithLogger(log), coordinator.WithTelemetry(tel))
			if err != nil {
				return err
			}
			return c.Run(ctx)
		},
	})
}
