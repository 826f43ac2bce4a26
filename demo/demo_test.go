package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

func render(w io.Writer, nodes []httpv1.Node, _ time.Time) {
	for _, n := range nodes {
		fmt.Fprintf(w, "%s %s\n", n.Name, n.State)
	}
}

// TestDemoShowsTheInjectedFault runs the whole demo on ephemeral ports: the real agent on this
// machine and four simulated ones; after the fault, the lost agent's node must be unreachable.
func TestDemoShowsTheInjectedFault(t *testing.T) {
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{
		Duration: 10 * time.Second, FaultAfter: 2 * time.Second, SimNodes: 4, Interval: 250 * time.Millisecond,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AgentHTTPAddr: "127.0.0.1:0", Out: &out, Render: render,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Nodes) != 5 {
		t.Fatalf("summary has %d nodes, want 5 (this machine and 4 simulated)", len(sum.Nodes))
	}
	states := map[string]string{}
	for _, n := range sum.Nodes {
		states[n.Name] = n.State
	}
	if states["node-4"] != httpv1.StateUnreachable {
		t.Errorf("lost agent's node is %q, want unreachable", states["node-4"])
	}
	if states[sum.RealNode] != httpv1.StateReachable {
		t.Errorf("this machine's node %q is %q, want reachable", sum.RealNode, states[sum.RealNode])
	}
	if len(sum.FaultsInjected) != 2 {
		t.Errorf("faults injected: %v", sum.FaultsInjected)
	}
	var printed bytes.Buffer
	sum.Print(&printed, render)
	for _, want := range []string{"Faults injected", "node_unreachable", "not fully available"} {
		if !strings.Contains(printed.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, printed.String())
		}
	}
}
