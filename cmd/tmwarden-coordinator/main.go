// Command tmwarden-coordinator is the control plane: it takes the agents' report streams, keeps
// the node registry in its embedded store and serves the HTTP API.
package main

import (
	"context"
	"log/slog"

	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/daemon"
)

func main() {
	daemon.Main(daemon.Spec[coordinator.Config]{
		Name:     "tmwarden-coordinator",
		Defaults: coordinator.DefaultConfig,
		Bind:     coordinator.BindFlags,
		LogLevel: func(c coordinator.Config) string { return c.LogLevel },
		Run: func(ctx context.Context, cfg coordinator.Config, log *slog.Logger) error {
			c, err := coordinator.New(cfg, coordinator.WithLogger(log))
			if err != nil {
				return err
			}
			return c.Run(ctx)
		},
	})
}
