package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/lab"
)

func newLabCommand() *cobra.Command {
	o := lab.DefaultOptions()
	var faults []string
	var jsonPath string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Put real faults on this machine and record what the real agent and coordinator make of them (root)",
		Long: `Runs the real-fault lab (docs/lab.md): a TaskManager stand-in doing real work in its own
cgroups and network namespace, the tmwarden-agent and tmwarden-coordinator binaries beside it
(auto mode, bare-metal drain), simulated peers calibrated on this machine's quiet baseline, then
a quiet control and six real faults one at a time. Prints a table; LAB_JSON (or --json) names a
file for the rows as JSON. Needs root, cgroup v1 controllers, iproute2, nftables and stress-ng.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			o.Self = self
			if o.BinDir == "" {
				o.BinDir = filepath.Dir(self)
			}
			o.Faults, o.Out = faults, os.Stdout
			if o.WorkDir != "" {
				if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
					return err
				}
			}
			res, err := lab.Run(ctx, o)
			if res != nil {
				res.PrintTable(os.Stdout)
				if jsonPath == "" {
					jsonPath = os.Getenv("LAB_JSON")
				}
				if jsonPath != "" {
					b, _ := json.MarshalIndent(res.Rows, "", "  ")
					if werr := os.WriteFile(jsonPath, append(b, '\n'), 0o644); werr != nil {
						return werr
					}
					fmt.Printf("\nrows written to %s\n", jsonPath)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BinDir, "bin-dir", "", "directory of tmwarden-agent and tmwarden-coordinator (default: beside tmwardenctl)")
	f.StringVar(&o.Prefix, "prefix", o.Prefix, "name prefix of the cgroups, network namespace, veths and nftables table the lab creates")
	f.DurationVar(&o.Interval, "interval", o.Interval, "report interval of every agent and the coordinator's round")
	f.IntVar(&o.Peers, "peers", o.Peers, "simulated peers beside the real node")
	f.DurationVar(&o.Warmup, "warmup", o.Warmup, "time for the stand-in's 60 s rate meters to fill")
	f.DurationVar(&o.Calibrate, "calibrate", o.Calibrate, "quiet baseline recorded for the peers")
	f.DurationVar(&o.Quiet, "quiet", o.Quiet, "quiet control without a fault (0 skips it)")
	f.DurationVar(&o.FaultFor, "fault-for", o.FaultFor, "least time each fault stays on")
	f.DurationVar(&o.FaultMax, "fault-max", o.FaultMax, "most time each fault stays on while waiting for the decision it causes")
	f.DurationVar(&o.RecoverMax, "recover-max", o.RecoverMax, "longest wait for the node to be healthy again after a fault")
	f.StringSliceVar(&faults, "faults", nil, "run only these (quiet, cpu-neighbour, cpu-quota, disk-throttle, network-loss, memory-squeeze, gc-storm)")
	f.Float64Var(&o.SourceRate, "source-rate", o.SourceRate, "records per second offered to each source subtask of the stand-in")
	f.IntVar(&o.WorkRounds, "work-rounds", o.WorkRounds, "CPU work per record in the stand-in's processing vertex")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep configs, logs and state here (default: a temporary directory, removed)")
	f.StringVar(&jsonPath, "json", "", "write the rows as JSON here (default: $LAB_JSON)")
	cmd.AddCommand(&cobra.Command{
		Use:                "taskmanager --config FILE",
		Short:              "The lab's TaskManager stand-in (started by the lab)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := lab.ParseTaskManagerArgs(args)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return lab.RunTaskManager(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		},
	})
	return cmd
}
