package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

func newDecisionsCommand(g *globalOptions) *cobra.Command {
	var node string
	var limit int
	cmd := &cobra.Command{
		Use:   "decisions [ID]",
		Short: "List the coordinator's decisions (the audit log), or show one with its steps and evidence",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if len(args) == 1 {
				if g.output == "json" {
					raw, err := c.Raw(cmd.Context(), "/api/v1/decisions/"+args[0])
					if err != nil {
						return err
					}
					return writeRaw(cmd.OutOrStdout(), raw)
				}
				d, err := c.Decision(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				printDecision(cmd.OutOrStdout(), d)
				return nil
			}
			if g.output == "json" {
				raw, err := c.Raw(cmd.Context(), httpv1.DecisionsPath(node, limit))
				if err != nil {
					return err
				}
				return writeRaw(cmd.OutOrStdout(), raw)
			}
			l, err := c.Decisions(cmd.Context(), node, limit)
			if err != nil {
				return err
			}
			printDecisions(cmd.OutOrStdout(), l, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "only decisions about this node")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many decisions, newest first")
	return cmd
}

func newApproveCommand(g *globalOptions) *cobra.Command {
	var by string
	cmd := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a proposed migration (approve mode); refused when a guardrail blocks it now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.client().Approve(cmd.Context(), args[0], by)
			if err != nil {
				return err
			}
			if g.output == "json" {
				b, err := json.MarshalIndent(d, "", "  ")
				if err != nil {
					return err
				}
				return writeRaw(cmd.OutOrStdout(), b)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s: %s on %s is now %s\n", d.ID, d.Kind, d.Node, d.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&by, "by", defaultApprover(), "who approves (recorded in the audit log)")
	return cmd
}

func defaultApprover() string {
	if u := strings.TrimSpace(os.Getenv("USER")); u != "" {
		return u
	}
	return "tmwardenctl"
}

func printDecisions(w io.Writer, l httpv1.DecisionList, now time.Time) {
	fmt.Fprintf(w, "Mode: %s", l.Mode)
	switch b := l.Breaker; {
	case b.Open:
		fmt.Fprintf(w, "   CIRCUIT BREAKER OPEN since %s, migrations held: %s", b.Since.Local().Format(time.DateTime), b.Reason)
	case b.Held != "":
		fmt.Fprintf(w, "   migrations held this round: %s", b.Held)
	default:
		fmt.Fprintf(w, "   circuit breaker closed")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tNODE\tSTATUS\tAGE\tSTEPS\tREASON")
	for _, d := range l.Decisions {
		status := d.Status
		if d.DryRun && d.Status != httpv1.DecisionDryRun && d.Kind != "alert" && d.Kind != "cancel" {
			status += " (dry-run)"
		}
		t := d.CreatedAt
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, kindText(d), dash(d.Node), status, ago(&t, now), stepsBrief(d.Steps), oneLine(d.Reason, 80))
	}
	tw.Flush()
}

func printDecision(w io.Writer, d httpv1.Decision) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", d.ID)
	fmt.Fprintf(tw, "Action:\t%s on %s (mode %s, actuator %s)\n", kindText(d), dash(d.Node), d.Mode, dash(d.Actuator))
	fmt.Fprintf(tw, "Status:\t%s\n", d.Status)
	fmt.Fprintf(tw, "Reason:\t%s\n", d.Reason)
	if d.Cause != "" || d.Score != 0 {
		fmt.Fprintf(tw, "Verdict:\tscore %.2f, cause %s\n", d.Score, dash(d.Cause))
	}
	if len(d.Jobs) > 0 || len(d.TaskManagers) > 0 {
		fmt.Fprintf(tw, "Affects:\tjobs %s; TaskManagers %s\n", dash(strings.Join(d.Jobs, ", ")), dash(strings.Join(d.TaskManagers, ", ")))
	}
	if d.ApprovedAt != nil {
		fmt.Fprintf(tw, "Approved:\t%s by %s\n", d.ApprovedAt.Local().Format(time.DateTime), d.ApprovedBy)
	}
	if d.NextAttempt != nil {
		fmt.Fprintf(tw, "Next attempt:\t%s (%s)\n", d.NextAttempt.Local().Format(time.DateTime), d.Message)
	}
	if d.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", d.Error)
	}
	tw.Flush()
	if len(d.Evidence) > 0 {
		fmt.Fprintln(w, "\nEvidence:")
		for _, e := range d.Evidence {
			fmt.Fprintf(w, "  %s\n", evidenceLine(e))
		}
	}
	if len(d.Steps) > 0 {
		fmt.Fprintln(w, "\nSteps:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tSTATUS\tATTEMPTS\tMESSAGE")
		for _, s := range d.Steps {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", s.Name, s.Status, s.Attempts, oneLine(s.Message, 100))
		}
		tw.Flush()
	}
	if len(d.Audit) > 0 {
		fmt.Fprintln(w, "\nAudit log:")
		for _, a := range d.Audit {
			fmt.Fprintf(w, "  %s  %-13s %s %s\n", a.Time.Local().Format(time.DateTime), a.Event, a.Step, oneLine(a.Message, 100))
		}
	}
}

// evidenceLine renders one piece of evidence for people: which subtask, how much slower than
// its peers, or which host signal against the cluster's median, and since when.
func evidenceLine(e httpv1.Evidence) string {
	since := ""
	if !e.Since.IsZero() {
		since = " since " + e.Since.Local().Format(time.DateTime)
	}
	switch {
	case e.Kind == "subtask":
		name := e.VertexName
		if name == "" {
			name = e.VertexID
		}
		job := e.JobName
		if job == "" {
			job = e.JobID
		}
		return fmt.Sprintf("subtask %s[%d] of job %s: %.1fx slower than its peers (%.0f vs %.0f records per busy second)%s",
			name, e.Subtask, job, e.Slowdown, e.TPR, e.PeerMedianTPR, since)
	case e.Signal != "":
		who := e.Kind
		if e.TaskManager != "" {
			who += " " + e.TaskManager
		}
		return fmt.Sprintf("%s %s = %.3g (cluster median %.3g)%s", who, e.Signal, e.Value, e.PeerMedian, since)
	}
	return e.Kind + since
}

func stepsBrief(steps []httpv1.DecisionStep) string {
	if len(steps) == 0 {
		return "-"
	}
	done := 0
	for _, s := range steps {
		if s.Status == "done" || s.Status == "skipped" {
			done++
		}
	}
	return fmt.Sprintf("%d/%d", done, len(steps))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

// kindText says "would migrate" for a dry run: nothing was done, and the listing must not read
// as if it had been.
func kindText(d httpv1.Decision) string {
	if d.DryRun && (d.Kind == "migrate" || d.Kind == "release") {
		return "would " + d.Kind
	}
	return d.Kind
}
