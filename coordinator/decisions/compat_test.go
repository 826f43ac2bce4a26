package decisions

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// TestReadsDecisionsOfThePreviousVersion reads decisions and audit entries a coordinator wrote
// before records had versions, while audit entries were stored as the API's type
// (coordinator/store/testdata/v0-pebble), and shows them through the API mapping.
func TestReadsDecisionsOfThePreviousVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	if err := os.CopyFS(dir, os.DirFS("../store/testdata/v0-pebble")); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := New(st, testConfig(decide.Approve), nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := m.Decisions(0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d decisions, want 1: %+v", len(ds), ds)
	}
	done := ds[0]
	if done.Status != StatusSucceeded || done.Action.Kind != decide.KindMigrate || done.Actuator != "log" ||
		len(done.Steps) != 1 || done.Steps[0].Status != StepDone || done.Action.Jobs[0] != "job1" {
		t.Fatalf("n1's decision read back as %+v", done)
	}
	d, audit, err := m.Decision(done.Action.ID)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, e := range audit {
		if e.Time.IsZero() || e.Event == "" {
			t.Fatalf("audit entry read back blank: %+v", e)
		}
		events = append(events, e.Event)
	}
	want := []string{"created", "planned", "step_start", "step_done", "finished"}
	if len(events) != len(want) {
		t.Fatalf("audit events %v, want %v", events, want)
	}
	for i := range want {
		if events[i] != want[i] {
			t.Fatalf("audit events %v, want %v", events, want)
		}
	}
	doc := ToAPI(d, audit)
	if doc.Status != httpv1.DecisionSucceeded || len(doc.Audit) != 5 || doc.Audit[3].Step != "log" ||
		doc.Audit[3].Message != "logged; nothing changed (log-only actuator)" || doc.Steps[0].DoneAt == nil {
		t.Fatalf("API document %+v", doc)
	}
	// The policy's snapshot came back too: n1 is quarantined after its migration.
	if ns, _ := m.NodeState("n1"); ns.State != decide.Quarantined {
		t.Fatalf("n1 is %s after reading the old snapshot, want quarantined", ns.State)
	}
}
