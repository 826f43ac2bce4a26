package decisions

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// TestRecordsOfVersion1 reads a decision and the policy's memory as version 1 wrote them
// (testdata/*-v1.json, written while the store held decide.Action, detect.Evidence and
// actuate.Step as they were), checks every field came back, writes them through a Manager
// into a real store and reads them again, and re-encodes them to the same bytes.
func TestRecordsOfVersion1(t *testing.T) {
	raw, err := os.ReadFile("testdata/decision-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord("decision-v1.json", raw, decisionVersion)
	if err != nil {
		t.Fatal(err)
	}
	d := decisionFromRecord(r)
	a := d.Action
	if a.ID != "d-000042-migrate-node-2" || a.Kind != decide.KindMigrate || a.Node != "node-2" || a.Mode != decide.Auto ||
		len(a.Jobs) != 2 || a.TaskManagers[0] != "tm-node-2" || a.Cause != "cpu_contention" || a.Score != 3.33 || a.At.IsZero() {
		t.Errorf("action read back as %+v", a)
	}
	if len(a.Evidence) != 3 || a.Evidence[0].VertexName != "Enrich" || a.Evidence[0].Subtask != 3 || a.Evidence[0].PeerMedianTPR != 10000 ||
		a.Evidence[1].Signal != "cpu_steal" || a.Evidence[1].PeerMedian != 0.01 || a.Evidence[2].TaskManager != "tm-node-2" || a.Evidence[2].Since.IsZero() {
		t.Errorf("evidence read back as %+v", a.Evidence)
	}
	if d.Status != StatusSucceeded || d.Actuator != "kubernetes" || !d.Planned || d.PlanAttempts != 1 || d.ApprovedBy != "oncall" ||
		d.ApprovedAt.IsZero() || d.NextAttempt.IsZero() || d.AuditN != 7 || d.Message != "done" {
		t.Errorf("decision read back as %+v", d)
	}
	if len(d.Steps) != 2 || d.Steps[1].Target != "flink/tm-1/uid-1" || d.Steps[1].Attempts != 3 || d.Steps[1].Status != StepDone ||
		d.Steps[1].DoneAt.IsZero() || d.Steps[0].Kind != "taint" {
		t.Errorf("steps read back as %+v", d.Steps)
	}
	if out, _ := json.MarshalIndent(decisionToRecord(d), "", "  "); !bytes.Equal(append(out, '\n'), raw) {
		t.Errorf("decision re-encoded differently:\n%s\nwant\n%s", out, raw)
	}

	raw, err = os.ReadFile("testdata/policy-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var pr policyRecord
	if err := json.Unmarshal(raw, &pr); err != nil {
		t.Fatal(err)
	}
	snap := policyFromRecord(pr)
	ns := snap.Nodes["node-2"]
	if ns.State != decide.Quarantined || ns.Verdict != "slow" || len(ns.Evidence) != 3 || ns.Evidence[1].Value != 0.35 ||
		!ns.Reachable || ns.SlowRounds != 4 || ns.Note != "held" || ns.LostAt.IsZero() || ns.NotBefore.IsZero() {
		t.Errorf("node state read back as %+v", ns)
	}
	if o := snap.Open["d-000043-release-node-3"]; o.Kind != decide.KindRelease || o.Node != "node-3" {
		t.Errorf("open action read back as %+v", o)
	}
	if b := snap.Breaker; !b.Open || b.Counts.Known != 10 || b.Counts.Bad != 3 || b.LastTrip.IsZero() || snap.Seq != 43 || snap.Cooldown["a1b2c3"].IsZero() {
		t.Errorf("breaker, cooldown or seq read back as %+v %v %d", b, snap.Cooldown, snap.Seq)
	}
	// Version 1 had no version in the policy's record; everything else must encode as it was.
	out, _ := json.MarshalIndent(policyToRecord(snap, 0), "", "  ")
	if !bytes.Equal(append(out, '\n'), raw) {
		t.Errorf("policy re-encoded differently:\n%s\nwant\n%s", out, raw)
	}

	// Through a Manager and a real store: written as records, read back equal.
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutJSON(keyPolicy, pr, store.Durable); err != nil {
		t.Fatal(err)
	}
	m, err := New(st, testConfig(decide.Auto), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.put(&d); err != nil {
		t.Fatal(err)
	}
	back, err := m.get(d.Action.ID)
	if err != nil {
		t.Fatal(err)
	}
	d.V, back.UpdatedAt = store.RecordVersion, d.UpdatedAt
	if !reflect.DeepEqual(back, d) {
		t.Errorf("through the store:\n%+v\nwant\n%+v", back, d)
	}
	if got, _ := m.NodeState("node-2"); got.State != decide.Quarantined || len(got.Evidence) != 3 {
		t.Errorf("policy memory through the store: %+v", got)
	}
}

// TestRecordTypesMapEveryField fails when a type the store keeps a record of gains or loses a
// field: the record type and its mapping must change with it (and the record version when the
// stored shape changes).
func TestRecordTypesMapEveryField(t *testing.T) {
	for _, c := range []struct {
		live, rec any
		extra     int // fields only the record has
	}{
		{decide.Action{}, actionRecord{}, 0},
		{detect.Evidence{}, evidenceRecord{}, 0},
		{decide.NodeState{}, nodeStateRecord{}, 0},
		{decide.Snapshot{}, policyRecord{}, 1}, // V
		{decide.BreakerState{}, breakerRecord{}, 0},
		{decide.BreakerCounts{}, breakerRecord{}.Counts, 0},
		{Decision{}, decisionRecord{}, 0},
		{actuate.Step{}, stepRecord{}, 5}, // the StepRecord's own fields
		{StepRecord{}, stepRecord{}, 2},   // actuate.Step counts as one field there, three here
	} {
		lt, rt := reflect.TypeOf(c.live), reflect.TypeOf(c.rec)
		if lt.NumField()+c.extra != rt.NumField() {
			t.Errorf("%s has %d fields, its stored record %s %d (+%d of its own): map the new field in record.go",
				lt, lt.NumField(), rt, rt.NumField(), c.extra)
		}
	}
}
