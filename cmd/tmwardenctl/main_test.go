package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/telemetry"
)

// apiServer serves a real coordinator's API (over a real loopback socket) with two nodes.
func apiServer(t *testing.T) string {
	t.Helper()
	cfg := coordinator.DefaultConfig()
	cfg.DataDir = t.TempDir()
	c, err := coordinator.New(cfg, coordinator.WithTelemetry(telemetry.Noop()),
		coordinator.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, n := range []string{"node-1", "node-2"} {
		if _, err := c.Register(&tmwardenv1.Hello{NodeName: n, ProtocolVersion: 1, InstanceId: "i", AgentVersion: "v9",
			Collectors: []*tmwardenv1.CollectorStatus{{Name: "ebpf", State: tmwardenv1.CollectorStatus_STATE_DEGRADED, Reason: "no CAP_BPF"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Ingest("node-1", &tmwardenv1.Report{Sequence: 1, CollectedAt: timestamppb.Now(),
		Host:       &tmwardenv1.HostSignals{NumCpus: 8, Cpu: &tmwardenv1.CpuShares{Idle: 0.25, Steal: 0.3}},
		Collectors: []*tmwardenv1.CollectorStatus{{Name: "ebpf", State: tmwardenv1.CollectorStatus_STATE_DEGRADED, Reason: "no CAP_BPF"}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func runCtl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestNodesTableAndJSON(t *testing.T) {
	url := apiServer(t)
	out, err := runCtl(t, "--server", url, "nodes")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAME", "node-1", "node-2", "reachable", "unreachable", "30%", "ebpf:degraded"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	out, err = runCtl(t, "--server", url, "nodes", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var l httpv1.NodeList
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Nodes) != 2 || l.Nodes[0].Name != "node-1" {
		t.Fatalf("json: %v %+v", err, l)
	}
}

func TestNodeShowsCollectorReasonsAndEvents(t *testing.T) {
	url := apiServer(t)
	out, err := runCtl(t, "--server", url, "node", "node-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Name:", "node-1", "ebpf", "degraded", "no CAP_BPF", "node_registered", "steal 30%"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCtl(t, "--server", url, "node", "node-1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var d httpv1.NodeDetail
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Name != "node-1" || len(d.LastReport) == 0 {
		t.Fatalf("json: %v %+v", err, d)
	}
}

func TestErrorsAreClear(t *testing.T) {
	url := apiServer(t)
	if _, err := runCtl(t, "--server", url, "node", "nope"); err == nil || !strings.Contains(err.Error(), `no node named "nope"`) {
		t.Errorf("unknown node: %v", err)
	}
	if _, err := runCtl(t, "--server", url, "nodes", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "want table or json") {
		t.Errorf("bad -o: %v", err)
	}
	if _, err := runCtl(t, "--server", "127.0.0.1:1", "nodes"); err == nil || !strings.Contains(err.Error(), "coordinator at http://127.0.0.1:1") {
		t.Errorf("unreachable server: %v", err)
	}
}
