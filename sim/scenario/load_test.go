package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	s, err := LoadFile(filepath.Join("testdata", "good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Interval.D() != 5*time.Second || *s.Noise != 0.04 || s.Cluster.CPUs != 16 || s.Cluster.TaskManagersPerNode != 2 {
		t.Errorf("defaults not applied: interval %s noise %g cluster %+v", s.Interval.D(), *s.Noise, s.Cluster)
	}
	j := s.Jobs[0]
	if j.Count != 1 || j.Input.Partitions != 8 || j.CheckpointInterval.D() != time.Minute || j.Operators[1].CostUS != 50 || *j.Operators[1].Selectivity != 1 {
		t.Errorf("job defaults not applied: %+v", j)
	}
	if got := j.Operators[2].Inputs; len(got) != 1 || got[0] != "agg" {
		t.Errorf("an operator without inputs reads the previous one, got %v", got)
	}
	want := []TruthEntry{
		{Node: "node-0001", TaskManager: "node-0001-tm-0", From: Duration(96 * time.Second), To: Duration(3 * time.Minute), Cause: "jvm", Onset: Duration(time.Minute)},
		{Node: "node-0003", From: Duration(5 * time.Minute), To: Duration(15 * time.Minute), Cause: "steal", Onset: Duration(5 * time.Minute)},
	}
	if len(s.Truth) != len(want) {
		t.Fatalf("truth %+v, want %+v", s.Truth, want)
	}
	for i := range want {
		if s.Truth[i] != want[i] {
			t.Errorf("truth[%d] = %+v, want %+v", i, s.Truth[i], want[i])
		}
	}
	if s.Negative {
		t.Error("a scenario with faults is not a negative control")
	}
	if n := len(s.Controls[0].Nodes); n != 3 {
		t.Errorf("fraction 0.3 of 10 nodes should pick 3, got %d", n)
	}
}

// TestLoadErrors checks that every malformed or contradictory fixture is rejected with the
// field and the line that are wrong.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"unknown-field.yaml", []string{"line 6", "cluster.cpu", "field cpu not found"}},
		{"bad-duration.yaml", []string{"line 3", "duration", `invalid duration "half an hour"`}},
		{"wrong-type.yaml", []string{"line 5", "cluster.nodes", "cannot unmarshal"}},
		{"syntax.yaml", []string{"line 6"}},
		{"unknown-node.yaml", []string{"line 16", "faults[0].nodes[1]", `unknown node "node-0010"`}},
		{"overlap.yaml", []string{"line 16", "faults[1]", "overlaps faults[0] of the same kind on node node-0003"}},
		{"gc-without-tm.yaml", []string{"line 15", "faults[0].task_manager"}},
		{"truth-mismatch.yaml", []string{"line 17", "ground_truth[0]", "does not match the fault schedule", "misses node-0003 from 5m0s to 15m0s"}},
		{"after-end.yaml", []string{"line 15", "faults[0].duration", "after the scenario ends"}},
		{"bad-severity.yaml", []string{"line 15", "faults[0].severity", "got 1.5"}},
		{"unknown-kind.yaml", []string{"line 15", "controls[0].kind", `"meteor_strike"`}},
		{"skew-not-keyed.yaml", []string{"line 15", "controls[0].operator", "not keyed"}},
		{"too-many-slots.yaml", []string{"line 6", "jobs", "need 100 slots but the cluster has 80"}},
		{"forward-parallelism.yaml", []string{"line 11", "jobs[0].operators[1].edge", "needs the same parallelism"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = Load(f, c.file)
			if err == nil {
				t.Fatal("loaded a bad scenario")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), c.file) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestPublicScenariosLoad(t *testing.T) {
	scs, err := LoadDir(filepath.Join("..", "scenarios"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) < 15 {
		t.Fatalf("want at least 15 public scenarios, have %d", len(scs))
	}
	faults, controls := map[string]bool{}, map[string]bool{}
	minNodes, maxNodes := 1<<30, 0
	for _, s := range scs {
		for _, f := range s.Faults {
			faults[f.Kind] = true
		}
		for _, c := range s.Controls {
			controls[c.Kind] = true
		}
		minNodes, maxNodes = min(minNodes, s.Cluster.Nodes), max(maxNodes, s.Cluster.Nodes)
	}
	for _, k := range FaultKinds {
		if !faults[k] {
			t.Errorf("no public scenario injects %s", k)
		}
	}
	for _, k := range ControlKinds {
		if !controls[k] {
			t.Errorf("no public scenario has the negative control %s", k)
		}
	}
	if minNodes > 10 || maxNodes < 2000 {
		t.Errorf("scenario sizes span %d..%d nodes, want 10..2000", minNodes, maxNodes)
	}
}
