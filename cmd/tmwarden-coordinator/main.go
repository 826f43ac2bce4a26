// Command tmwarden-coordinator is the control plane: it takes the agents' report streams, keeps
// the node registry in its embedded store and serves the HTTP API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/telemetry"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "tmwarden-coordinator:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := configfile.Load("tmwarden-coordinator", args, coordinator.DefaultConfig, coordinator.BindFlags)
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(os.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	c, err := coordinator.New(cfg, coordinator.WithLogger(log))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.Run(ctx)
}
