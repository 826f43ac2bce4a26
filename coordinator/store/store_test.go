package store

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// OpenFixture opens a copy of a committed store directory, so the test can write to it.
func openFixture(t *testing.T, name string) *Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", name))); err != nil {
		t.Fatal(err)
	}
	st, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestReadsRecordsOfThePreviousVersion reads node records and events that the coordinator
// wrote before records had versions and while events were stored as the API's type.
func TestReadsRecordsOfThePreviousVersion(t *testing.T) {
	st := openFixture(t, "v0-pebble")
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	nodes, err := st.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	want := NodeRecord{Name: "n1", AgentVersion: "0.9.0", InstanceID: "i-1", Hostname: "host-n1", BootID: "b-1",
		Labels: map[string]string{"zone": "a"}, Capabilities: []string{"drain"}, GatewayEndpoint: "10.0.0.1:9100", IntervalSeconds: 10,
		FirstSeen: t0, LastSeen: t0, LastReportAt: t0, LastSequence: 42, ReportsReceived: 42, SequenceGaps: 1, DroppedByAgent: 2, Reachable: true}
	if len(nodes) != 1 || !reflect.DeepEqual(nodes[0], want) {
		t.Fatalf("nodes = %+v\nwant %+v", nodes, want)
	}
	if b, err := st.LastReport("n1"); err != nil || len(b) != 2 {
		t.Fatalf("last report %x, %v", b, err)
	}
	evs, err := st.LatestEvents(100, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 3 {
		t.Fatalf("%d events, want at least 3", len(evs))
	}
	first := Event{ID: 1, Time: t0, Node: "n1", Type: "node_registered", Message: "node n1 registered (agent 0.9.0)",
		Attrs: map[string]string{"agent_version": "0.9.0", "instance": "i-1"}}
	if !reflect.DeepEqual(evs[0], first) {
		t.Fatalf("first event %+v\nwant %+v", evs[0], first)
	}
	// The log goes on where the old one stopped, and a new event carries the version.
	ev, err := st.AppendEvent(Event{Time: t0, Type: "leader_elected", Message: "m"})
	if err != nil || ev.ID != evs[len(evs)-1].ID+1 || ev.V != RecordVersion {
		t.Fatalf("appended %+v, %v", ev, err)
	}
}

// TestRefusesRecordsOfANewerVersion: a record from a newer coordinator is an error that says
// so, not a record read with fields silently missing.
func TestRefusesRecordsOfANewerVersion(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutJSON(prefixNode+"n9", map[string]any{"v": RecordVersion + 1, "name": "n9"}, Durable); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Nodes(); !errors.Is(err, ErrNewerRecord) {
		t.Fatalf("Nodes: %v, want ErrNewerRecord", err)
	}
	if err := st.PutJSON(string(eventKey(7)), map[string]any{"v": RecordVersion + 1, "id": 7}, Durable); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LatestEvents(10, ""); !errors.Is(err, ErrNewerRecord) {
		t.Fatalf("LatestEvents: %v, want ErrNewerRecord", err)
	}
}
