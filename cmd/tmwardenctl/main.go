// Command tmwardenctl is the operator's command line: it reads the coordinator's API, runs the
// all-in-one demo and replays simulated scenarios.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tmwardenctl:", err)
		os.Exit(1)
	}
}

// globalOptions are the flags every API command shares.
type globalOptions struct {
	server string
	output string
	token  string
}

// client returns an API client for the chosen coordinator.
func (g *globalOptions) client() *httpv1.Client {
	c := httpv1.NewClient(g.server)
	c.Token = g.token
	return c
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "tmwardenctl",
		Short:         "Operate tmwarden: inspect nodes, run the demo, replay scenarios",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if g.output != "table" && g.output != "json" {
				return fmt.Errorf("-o %q: want table or json", g.output)
			}
			return nil
		},
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n") // as the daemons print it
	def := os.Getenv("TMWARDEN_SERVER")
	if def == "" {
		def = "http://127.0.0.1:9711"
	}
	root.PersistentFlags().StringVar(&g.server, "server", def, "coordinator HTTP address (env TMWARDEN_SERVER)")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("TMWARDEN_TOKEN"), "API bearer token for mutating requests (env TMWARDEN_TOKEN)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(newNodesCommand(g), newNodeCommand(g), newDecisionsCommand(g), newApproveCommand(g),
		newCacheCommand(g), newDemoCommand(g), newSimCommand(), newLabCommand(), newVersionCommand())
	return root
}
