package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tmwarden/tmwarden/demo"
)

func newDemoCommand(*globalOptions) *cobra.Command {
	o := demo.Options{Render: printNodes, Out: os.Stdout}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a coordinator, a real agent on this machine and simulated nodes in one process",
		Long: `Runs the whole system in one process: a coordinator serving its API on the default ports
(so 'tmwardenctl nodes' works from a second terminal), a real agent profiling this machine, and
simulated nodes. A fault is injected along the way. Runs without root: collectors that need
privileges report themselves degraded, and the summary says why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Live = term.IsTerminal(int(os.Stdout.Fd()))
			sum, err := demo.Run(ctx, o)
			if sum != nil {
				sum.Print(os.Stdout, printNodes)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 0, "stop by itself after this long and print a summary (0: until Ctrl-C)")
	f.IntVar(&o.SimNodes, "nodes", 6, "simulated nodes besides this machine")
	f.DurationVar(&o.Interval, "interval", 2*time.Second, "report interval of every agent")
	f.DurationVar(&o.FaultAfter, "fault-after", 0, "inject the fault after this long (0: a third of --duration, or 15s)")
	f.StringVar(&o.GRPCAddr, "grpc-addr", "127.0.0.1:9710", "coordinator gRPC address")
	f.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:9711", "coordinator HTTP address (API, /metrics)")
	f.StringVar(&o.AgentHTTPAddr, "agent-http-addr", "127.0.0.1:9712", "this machine's agent HTTP address")
	f.StringVar(&o.DataDir, "data-dir", "", "keep the coordinator's store here (default: a temporary directory)")
	f.StringVar(&o.Scenario, "scenario", "", "take the simulated nodes from this cluster-simulator scenario (sim/scenarios/*.yaml) instead of the Flink stand-in; its schedule injects the faults")
	f.IntVar(&o.ScenarioSpeed, "scenario-speed", 1, "simulated ticks per --interval with --scenario")
	return cmd
}
