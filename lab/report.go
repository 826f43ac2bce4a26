package lab

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// PrintTable writes the result as the lab's table, one row per fault, then what fell short.
func (r *Result) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "\nReal node %s among %d calibrated peers, report interval %.0fs (detection must come within 3 intervals).\n\n",
		r.RealNode, len(r.Peers), r.Interval)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tDETECTED\tTTD\tTARGET\tCAUSE (want)\tCULPRIT\tDECISION\tRECOVERED\tFALSE VERDICTS\tPASS")
	for _, row := range r.Rows {
		if row.SkippedReason != "" {
			fmt.Fprintf(tw, "%s\tskipped: %s\t\t\t\t\t\t\t\t-\n", row.Fault, row.SkippedReason)
			continue
		}
		ttd := "-"
		if row.Detected {
			ttd = fmt.Sprintf("%.0fs", row.TTD)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s (%s)\t%s\t%s\t%v\t%s\t%v\n", row.Fault, row.Detected, ttd, orDash(row.Node),
			orDash(row.Cause), row.ExpectedCause, orDash(row.Culprit), orDash(row.Decision), row.Recovered,
			orDash(strings.Join(row.FalseVerdicts, " ")), row.Pass)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
	for _, row := range r.Rows {
		if len(row.PeerSuspects) > 0 {
			fmt.Fprintf(w, "\n%s — nodes marked suspect (watched, not acted on): %s\n", row.Fault, strings.Join(row.PeerSuspects, " "))
		}
		if row.Seen != "" {
			fmt.Fprintf(w, "\n%s — what the coordinator saw on %s: %s\n", row.Fault, r.RealNode, row.Seen)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
