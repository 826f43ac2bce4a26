// Package store is the coordinator's durable store: node records, last reports, an append-only
// event log and the records other parts (decisions, audit, command records) keep under their own
// key prefixes. Its record types are its own and versioned, apart from the HTTP API's types, so
// the API can change without blanking what an older coordinator wrote.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Key prefixes. Keys sort within a prefix; event ids are big-endian so they sort numerically.
const (
	prefixNode   = "node/"
	prefixReport = "report/"
	prefixEvent  = "event/"
)

// ErrNotFound is returned when a key is absent.
var ErrNotFound = errors.New("not found")

// Store is safe for concurrent use.
type Store struct {
	db kv

	eventMu   sync.Mutex
	nextEvent uint64
	cmdMu     sync.Mutex // serialises command record updates
}

// Open opens (or creates) the embedded pebble store in dir.
func Open(dir string) (*Store, error) {
	db, err := openPebble(dir)
	if err != nil {
		return nil, err
	}
	return newStore(db)
}

// OpenConfig opens the backend cfg names: pebble in dataDir, or etcd.
func OpenConfig(cfg Config, dataDir string) (*Store, error) {
	switch cfg.Backend {
	case "", BackendPebble:
		return Open(dataDir)
	case BackendEtcd:
		db, err := openEtcd(cfg.Etcd)
		if err != nil {
			return nil, err
		}
		return newStore(db)
	}
	return nil, fmt.Errorf("store backend %q: want %s or %s", cfg.Backend, BackendPebble, BackendEtcd)
}

func newStore(db kv) (*Store, error) {
	s := &Store{db: db, nextEvent: 1}
	if err := s.loadEventCursor(); err != nil {
		db.close()
		return nil, err
	}
	return s, nil
}

// Close flushes and closes the store; later calls fail with ErrClosed.
func (s *Store) Close() error { return s.db.close() }

// loadEventCursor sets the next event id after the last one stored (by any replica).
func (s *Store) loadEventCursor() error {
	return s.db.scan(prefixEvent, nil, true, func(k, _ []byte) (bool, error) {
		if len(k) != len(prefixEvent)+8 {
			return false, fmt.Errorf("event log: malformed key %q", k)
		}
		s.nextEvent = binary.BigEndian.Uint64(k[len(prefixEvent):]) + 1
		return false, nil
	})
}

// RecordVersion is the version of every record shape this package and its users write. A
// record without a version was written before records carried one; its shape is version 1's.
// Raise it when a stored field changes meaning or name, and teach the decoder the old shape.
const RecordVersion = 1

// ErrNewerRecord says a record was written by a newer coordinator than this one: reading it
// with an older shape would silently drop what the older code does not know.
var ErrNewerRecord = errors.New("record written by a newer coordinator version")

// CheckVersion returns an error naming what when v is newer than RecordVersion.
func CheckVersion(what string, v int) error {
	if v > RecordVersion {
		return fmt.Errorf("%s has record version %d, this coordinator reads up to %d: %w", what, v, RecordVersion, ErrNewerRecord)
	}
	return nil
}

// NodeRecord is what the coordinator remembers about a node across restarts.
type NodeRecord struct {
	// V is the record version (RecordVersion when written; 0 in records older than versions).
	V            int               `json:"v,omitempty"`
	Name         string            `json:"name"`
	AgentVersion string            `json:"agent_version"`
	InstanceID   string            `json:"instance_id"`
	Hostname     string            `json:"hostname"`
	BootID       string            `json:"boot_id"`
	Labels       map[string]string `json:"labels,omitempty"`
	Capabilities []string          `json:"capabilities,omitempty"`
	// GatewayEndpoint is where peers fetch the node's cached state ("" without a state cache).
	GatewayEndpoint string    `json:"gateway_endpoint,omitempty"`
	IntervalSeconds float64   `json:"interval_seconds"`
	FirstSeen       time.Time `json:"first_seen"`
	LastSeen        time.Time `json:"last_seen"`
	LastReportAt    time.Time `json:"last_report_at"`
	// LastSequence is the highest report sequence stored for InstanceID.
	LastSequence    uint64 `json:"last_sequence"`
	ReportsReceived uint64 `json:"reports_received"`
	// SequenceGaps counts sequence numbers that never arrived (dropped by the agent's buffer).
	SequenceGaps   uint64 `json:"sequence_gaps"`
	DroppedByAgent uint64 `json:"dropped_by_agent"`
	Reachable      bool   `json:"reachable"`
}

// Sync says whether a write must reach the disk before it returns. Node updates on the report
// path use NoSync: pebble's WAL still has them, so a killed process loses nothing, and a power
// loss costs at most the last reports, which the agents resend from their buffers.
type Sync bool

const (
	// Durable waits for fsync.
	Durable Sync = true
	// Buffered returns after the WAL write.
	Buffered Sync = false
)

// PutNode stores a node record and, if report is not nil, its last report (marshalled protobuf).
func (s *Store) PutNode(rec NodeRecord, report []byte, sync Sync) error {
	rec.V = RecordVersion
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding node %s: %w", rec.Name, err)
	}
	pairs := [][]byte{[]byte(prefixNode + rec.Name), v}
	if report != nil {
		pairs = append(pairs, []byte(prefixReport+rec.Name), report)
	}
	if err := s.db.set(sync, pairs...); err != nil {
		return fmt.Errorf("storing node %s: %w", rec.Name, err)
	}
	return nil
}

// Nodes returns every node record, sorted by name.
func (s *Store) Nodes() ([]NodeRecord, error) {
	var out []NodeRecord
	err := s.scan(prefixNode, func(k, v []byte) error {
		var rec NodeRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decoding %s: %w", k, err)
		}
		if err := CheckVersion(string(k), rec.V); err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

// LastReport returns a node's last stored report (marshalled protobuf).
func (s *Store) LastReport(node string) ([]byte, error) {
	return s.get(prefixReport + node)
}

// Event is one entry of the append-only event log. It is the stored shape; the HTTP API maps
// it to its own type (coordinator/http.go), so the two can change apart.
type Event struct {
	// V is the record version (RecordVersion when written; 0 in records older than versions).
	V       int               `json:"v,omitempty"`
	ID      uint64            `json:"id"`
	Time    time.Time         `json:"time"`
	Node    string            `json:"node,omitempty"`
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

func decodeEvent(k, v []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(v, &ev); err != nil {
		return ev, fmt.Errorf("decoding event %x: %w", k, err)
	}
	return ev, CheckVersion(fmt.Sprintf("event %x", k), ev.V)
}

// AppendEvent gives ev the next id and writes it durably. Ids are unique even when replicas
// share the backend: an id another replica took first moves this one's cursor past it.
func (s *Store) AppendEvent(ev Event) (Event, error) {
	ev, durable, err := s.appendEvent(ev)
	if err != nil {
		return ev, err
	}
	// Wait for the disk outside eventMu: appends from many streams (a fleet connecting at once)
	// then share one fsync instead of queueing for one each.
	if err := durable(); err != nil {
		return ev, fmt.Errorf("appending event %d: %w", ev.ID, err)
	}
	return ev, nil
}

func (s *Store) appendEvent(ev Event) (Event, func() error, error) {
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	for range 100 {
		ev.ID, ev.V = s.nextEvent, RecordVersion
		v, err := json.Marshal(ev)
		if err != nil {
			return ev, nil, fmt.Errorf("encoding event: %w", err)
		}
		created, durable, err := s.db.create(eventKey(ev.ID), v)
		if err != nil {
			return ev, nil, fmt.Errorf("appending event: %w", err)
		}
		if created {
			s.nextEvent++
			return ev, durable, nil
		}
		if err := s.loadEventCursor(); err != nil {
			return ev, nil, err
		}
	}
	return ev, nil, errors.New("appending event: no free id after 100 tries")
}

// Events returns up to limit events with id > after, oldest first; node filters when not empty.
func (s *Store) Events(after uint64, limit int, node string) ([]Event, error) {
	var out []Event
	err := s.db.scan(prefixEvent, eventKey(after+1), false, func(k, v []byte) (bool, error) {
		ev, err := decodeEvent(k, v)
		if err != nil {
			return false, err
		}
		if node == "" || ev.Node == node {
			out = append(out, ev)
		}
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// LatestEvents returns the newest limit events (optionally of one node), oldest first.
func (s *Store) LatestEvents(limit int, node string) ([]Event, error) {
	var rev []Event
	err := s.db.scan(prefixEvent, nil, true, func(k, v []byte) (bool, error) {
		ev, err := decodeEvent(k, v)
		if err != nil {
			return false, err
		}
		if node == "" || ev.Node == node {
			rev = append(rev, ev)
		}
		return len(rev) < limit, nil
	})
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return rev, nil
}

// PutJSON stores v as JSON under key; for the parts that keep their own records.
func (s *Store) PutJSON(key string, v any, sync Sync) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	return s.db.set(sync, []byte(key), b)
}

// GetJSON decodes the JSON under key into v; ErrNotFound when absent.
func (s *Store) GetJSON(key string, v any) error {
	b, err := s.get(key)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ScanJSON calls fn with every key under prefix and its raw JSON, in key order.
func (s *Store) ScanJSON(prefix string, fn func(key string, raw []byte) error) error {
	return s.scan(prefix, func(k, v []byte) error { return fn(string(k), v) })
}

func (s *Store) get(key string) ([]byte, error) { return s.db.get(key) }

func (s *Store) scan(prefix string, fn func(k, v []byte) error) error {
	return s.db.scan(prefix, nil, false, func(k, v []byte) (bool, error) { return true, fn(k, v) })
}

func eventKey(id uint64) []byte {
	k := make([]byte, len(prefixEvent)+8)
	copy(k, prefixEvent)
	binary.BigEndian.PutUint64(k[len(prefixEvent):], id)
	return k
}

// prefixUpper is the smallest key after every key with prefix p (p ends in '/', so bump it).
func prefixUpper(p string) []byte {
	u := []byte(p)
	u[len(u)-1]++
	return u
}
