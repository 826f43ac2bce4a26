package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/decisions"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// decisionsServer serves a real decisions.Manager (approve mode, one proposal) on loopback.
func decisionsServer(t *testing.T) (url, id string) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := decisions.DefaultConfig()
	cfg.Policy.Mode, cfg.Policy.ConfirmRounds = decide.Approve, 1
	m, err := decisions.New(st, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	reach := map[string]bool{}
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "node-1"} {
		reach[n] = true
	}
	ds, err := m.Round(time.Now(), []decide.Observation{{Node: "node-1", Slow: true, Score: 3.2, Cause: "cpu_contention", Jobs: []string{"job1"},
		Evidence: []detect.Evidence{{Kind: "subtask", JobName: "orders", VertexName: "enrich", Subtask: 4, TPR: 120, PeerMedianTPR: 480, Slowdown: 4}}}}, reach)
	if err != nil || len(ds) != 1 {
		t.Fatal(err, ds)
	}
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, ds[0].Action.ID
}

// runSub runs one of this file's subcommands under a bare root (main.go registers them).
func runSub(t *testing.T, mk func(*globalOptions) *cobra.Command, args ...string) (string, error) {
	t.Helper()
	g := &globalOptions{}
	root := &cobra.Command{Use: "tmwardenctl", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&g.server, "server", "", "")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "")
	root.AddCommand(mk(g))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestDecisionsAndApproveCommands(t *testing.T) {
	url, id := decisionsServer(t)
	out, err := runSub(t, newDecisionsCommand, "--server", url, "decisions")
	if err != nil || !strings.Contains(out, "Mode: approve") || !strings.Contains(out, id) || !strings.Contains(out, "proposed") {
		t.Fatalf("table: %v\n%s", err, out)
	}
	out, err = runSub(t, newDecisionsCommand, "--server", url, "decisions", id)
	if err != nil || !strings.Contains(out, "subtask enrich[4] of job orders: 4.0x slower than its peers") {
		t.Fatalf("detail: %v\n%s", err, out)
	}
	out, err = runSub(t, newDecisionsCommand, "--server", url, "-o", "json", "decisions", "--node", "node-1")
	var l httpv1.DecisionList
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Decisions) != 1 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	out, err = runSub(t, newApproveCommand, "--server", url, "approve", id, "--by", "alice")
	if err != nil || !strings.Contains(out, "is now pending") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	if _, err := runSub(t, newApproveCommand, "--server", url, "approve", id); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("second approve: %v", err)
	}
	if _, err := runSub(t, newApproveCommand, "--server", url, "approve", "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown id: %v", err)
	}
}
