package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/sim/runner"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

// newSimCommand is `tmwardenctl sim`: replay scenario files in simulated time and score the
// detectors against their ground truth.
func newSimCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Replay simulated clusters and score slow-node detection",
	}
	var (
		file, dir, output string
		detectors         []string
		modelOnly         bool
	)
	run := &cobra.Command{
		Use:   "run (--scenario FILE | --all DIR)",
		Short: "Replay scenarios through the real coordinator and print the detectors' scores",
		Long: "Replays each scenario in simulated time: the simulator emits the reports real agents send,\n" +
			"a real coordinator ingests them (registry, store, model), runs detection and its decision\n" +
			"engine in dry-run with the executor each interval, and the two baselines are scored beside it.\n" +
			"Prints precision, recall, time to detect and false migrations (migrate decisions for nodes that\n" +
			"were not slow) per detector and scenario, and totals. Scenario files: docs/scenarios.md.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if (file == "") == (dir == "") {
				return errors.New("give exactly one of --scenario FILE or --all DIR")
			}
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			var scs []*scenario.Scenario
			if file != "" {
				sc, err := scenario.LoadFile(file)
				if err != nil {
					return err
				}
				scs = append(scs, sc)
			} else {
				var err error
				if scs, err = scenario.LoadDir(dir); err != nil {
					return err
				}
			}
			res, err := runner.RunAll(c.Context(), scs, runner.Options{Detectors: detectors, ThroughCoordinator: !modelOnly})
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			return res.WriteTable(c.OutOrStdout())
		},
	}
	run.Flags().StringVar(&file, "scenario", "", "scenario file to replay")
	run.Flags().StringVar(&dir, "all", "", "directory: replay every *.yaml scenario in it and print totals")
	run.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	run.Flags().StringSliceVar(&detectors, "detector", nil, "detectors to score (default: all registered)")
	run.Flags().BoolVar(&modelOnly, "model-only", false, "feed the model directly instead of a whole coordinator (faster; no decision engine)")
	cmd.AddCommand(run)
	return cmd
}
