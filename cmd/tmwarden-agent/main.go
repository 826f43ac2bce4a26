// Command tmwarden-agent is the node daemon: it profiles the machine, scrapes the local Flink
// TaskManagers and streams reports to the coordinator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/telemetry"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "tmwarden-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := configfile.Load("tmwarden-agent", args, agent.DefaultConfig, agent.BindFlags)
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(os.Stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	a, err := agent.New(cfg, agent.WithLogger(log))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}
