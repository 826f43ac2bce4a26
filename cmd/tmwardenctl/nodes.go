package main

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

func newNodesCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes the coordinator knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := g.client()
			if g.output == "json" {
				raw, err := c.Raw(cmd.Context(), "/api/v1/nodes")
				if err != nil {
					return err
				}
				return writeRaw(cmd.OutOrStdout(), raw)
			}
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			printNodes(cmd.OutOrStdout(), nodes, time.Now())
			return nil
		},
	}
}

func newNodeCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "node NAME",
		Short: "Show one node: state, collectors and probes, host signals, recent events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if g.output == "json" {
				raw, err := c.Raw(cmd.Context(), "/api/v1/nodes/"+args[0])
				if err != nil {
					return err
				}
				return writeRaw(cmd.OutOrStdout(), raw)
			}
			d, err := c.Node(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printNode(cmd.OutOrStdout(), d, time.Now())
			return nil
		},
	}
}

func writeRaw(w io.Writer, raw []byte) error {
	_, err := w.Write(append(raw, '\n'))
	return err
}

// printNodes writes the nodes table that `tmwardenctl nodes` and the demo show.
func printNodes(w io.Writer, nodes []httpv1.Node, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHEALTH\tCAUSE\tSTATE\tSTREAM\tLAST REPORT\tSEQ\tGAPS\tCPU\tSTEAL\tLOAD1\tMEM\tTMS\tSUBTASKS\tCOLLECTORS")
	for _, n := range nodes {
		stream := "down"
		if n.Connected {
			stream = "up"
		}
		cpu, steal, load, mem := "-", "-", "-", "-"
		if h := n.Host; h != nil {
			cpu, steal, load, mem = pct(h.CPUBusy), pct(h.CPUSteal), fmt.Sprintf("%.2f", h.Load1), pct(h.MemUsedRatio)
		}
		health := cmp.Or(n.Health, "-")
		if n.WouldMigrate != "" {
			health += " (dry-run: would migrate)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", n.Name, health, cmp.Or(n.Cause, "-"), n.State, stream, ago(n.LastReportAt, now),
			n.LastSequence, n.SequenceGaps, cpu, steal, load, mem, n.TaskManagers, n.Subtasks, collectorsBrief(n.Collectors))
	}
	tw.Flush()
}

func printNode(w io.Writer, d httpv1.NodeDetail, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	stream := "down"
	if d.Connected {
		stream = "up"
	}
	fmt.Fprintf(tw, "Name:\t%s\n", d.Name)
	fmt.Fprintf(tw, "State:\t%s (stream %s)\n", d.State, stream)
	fmt.Fprintf(tw, "Agent:\t%s, instance %s, host %s\n", d.AgentVersion, d.InstanceID, d.Hostname)
	fmt.Fprintf(tw, "Reports:\t%d received, last #%d %s, %d missing in sequence, %d dropped by the agent\n",
		d.ReportsReceived, d.LastSequence, ago(d.LastReportAt, now), d.SequenceGaps, d.DroppedByAgent)
	if h := d.Host; h != nil {
		fmt.Fprintf(tw, "Host:\t%d CPUs, busy %s, steal %s, iowait %s, load1 %.2f, memory used %s, TCP retransmits %.1f/s\n",
			h.NumCPUs, pct(h.CPUBusy), pct(h.CPUSteal), pct(h.CPUIOWait), h.Load1, pct(h.MemUsedRatio), h.TCPRetransmit)
	}
	fmt.Fprintf(tw, "Flink:\t%d TaskManagers, %d subtasks\n", d.TaskManagers, d.Subtasks)
	if ds := d.Decision; ds != nil {
		fmt.Fprintf(tw, "Health:\t%s since %s\n", ds.State, ds.Since.Local().Format(time.DateTime))
		if ds.Verdict != "" {
			fmt.Fprintf(tw, "Verdict:\t%s, score %.2f, cause %s\n", ds.Verdict, ds.Score, cmp.Or(ds.Cause, "-"))
		}
		if ds.OpenDecision != "" {
			fmt.Fprintf(tw, "Decision:\t%s (tmwardenctl decisions %s)\n", ds.OpenDecision, ds.OpenDecision)
		}
		if ds.WouldMigrate != "" {
			fmt.Fprintf(tw, "Dry run:\twould have migrated it (decision %s); nothing was changed\n", ds.WouldMigrate)
		}
		if ds.Note != "" {
			fmt.Fprintf(tw, "Note:\t%s\n", ds.Note)
		}
	}
	tw.Flush()
	if d.Decision != nil && len(d.Decision.Evidence) > 0 {
		fmt.Fprintln(w, "\nEvidence:")
		for _, e := range d.Decision.Evidence {
			fmt.Fprintln(w, "  -", evidenceLine(e))
		}
	}
	if len(d.TaskManagerList) > 0 {
		fmt.Fprintln(w, "\nTaskManagers and subtasks (TPR: records per busy second):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  TASKMANAGER\tJOB\tVERTEX\t#\tBUSY ms/s\tBACKPR ms/s\tIN/s\tOUT/s\tTPR")
		for _, tm := range d.TaskManagerList {
			if tm.ScrapeError != "" {
				fmt.Fprintf(tw, "  %s\tscrape failed: %s\n", tm.ResourceID, tm.ScrapeError)
			}
			for _, s := range tm.Subtasks {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", tm.ResourceID, cmp.Or(s.JobName, s.JobID), cmp.Or(s.VertexName, s.VertexID),
					s.Index, num(s.BusyMsPerSecond), num(s.BackPressuredMsPerSec), num(s.RecordsInPerSecond), num(s.RecordsOutPerSecond), num(s.TrueProcessingRate))
			}
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nCollectors and probes:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tSTATE\tREASON")
	for _, c := range d.Collectors {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Name, c.State, c.Reason)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRecent events:")
	for _, e := range d.Events {
		fmt.Fprintf(w, "  %s  %-20s %s\n", e.Time.Local().Format(time.DateTime), e.Type, e.Message)
	}
}

func collectorsBrief(cs []httpv1.Collector) string {
	var bad []string
	ok := 0
	for _, c := range cs {
		switch c.State {
		case "ok":
			ok++
		case "disabled":
		default:
			bad = append(bad, c.Name+":"+c.State)
		}
	}
	if len(bad) == 0 {
		return fmt.Sprintf("%d ok", ok)
	}
	return fmt.Sprintf("%d ok, %s", ok, strings.Join(bad, " "))
}

func num(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", *f)
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }

func ago(t *time.Time, now time.Time) string {
	if t == nil {
		return "never"
	}
	d := now.Sub(*t)
	if d < 0 {
		d = 0
	}
	return d.Round(100*time.Millisecond).String() + " ago"
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "tmwardenctl", version) },
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
