// Package daemon is the shared main of tmwarden's long-running binaries: configuration from a
// YAML file and flags, a structured logger, and a context cancelled by SIGINT or SIGTERM.
// Each cmd/ main is then one call with its config type and its run function.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"go.opentelemetry.io/otel/attribute"

	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Spec describes one binary.
type Spec[C any] struct {
	Name     string
	Version  string
	Defaults func() C
	Bind     func(*flag.FlagSet, *C)
	LogLevel func(C) string
	// Telemetry picks the binary's telemetry section; the provider built from it is handed to
	// Run and flushed when Run returns.
	Telemetry func(C) telemetry.Config
	// Run runs until ctx is cancelled (the process got SIGINT or SIGTERM).
	Run func(ctx context.Context, cfg C, log *slog.Logger, tel *telemetry.Provider) error
}

// Main runs the binary with os.Args and exits: 0 on a clean stop or -help, 1 on an error.
func Main[C any](s Spec[C]) {
	err := run(s, os.Args[1:])
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
		os.Exit(1)
	}
}

func run[C any](s Spec[C], args []string) error {
	// --version answers before the configuration is read: it must work without one.
	for _, a := range args {
		if a == "--version" || a == "-version" {
			fmt.Println(s.Name, s.Version)
			return nil
		}
		if a == "--" {
			break
		}
	}
	cfg, err := configfile.Load(s.Name, args, s.Defaults, s.Bind)
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(os.Stderr, s.LogLevel(cfg))
	if err != nil {
		return err
	}
	// A container's memory limit is a wall the Go runtime does not see: without a soft limit
	// the heap grows past it between collections and the kernel kills the process (the
	// coordinator's ingest buffers do that at fleet scale under the chart's 1Gi). The soft limit
	// is 90% of the cgroup's memory limit, leaving room for memory the runtime does not manage;
	// GOMEMLIMIT, when set (the systemd unit sets it), wins, and AUTOMEMLIMIT changes the ratio
	// or turns this off. automemlimit reads cgroup v1 and v2 and nests correctly.
	if _, err := memlimit.Set(memlimit.WithLogger(log)); err != nil {
		log.Warn("no soft memory limit from the cgroup", "err", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	host, _ := os.Hostname()
	tel, err := telemetry.Setup(ctx, s.Telemetry(cfg), s.Name, s.Version, attribute.String("host.name", host))
	if err != nil {
		return err
	}
	defer func() {
		// Flush what is still buffered for OTLP, within a bound: shutdown must not hang.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(fctx); err != nil {
			log.Warn("flushing telemetry", "err", err)
		}
	}()
	return s.Run(ctx, cfg, log, tel)
}
