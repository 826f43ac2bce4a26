package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

const prefixCommand = "command/"

// CommandState is where a command sent to an agent stands. Sent, Acknowledged and Progress are
// open; Done and Failed are final and never change again.
type CommandState string

const (
	CommandSent         CommandState = "sent"         // queued on the agent's stream
	CommandAcknowledged CommandState = "acknowledged" // the agent accepted it
	CommandProgress     CommandState = "progress"     // the agent reported progress
	CommandDone         CommandState = "done"         // the agent finished it
	CommandFailed       CommandState = "failed"       // the agent refused it or it failed
)

// Final says whether the state is an end state.
func (s CommandState) Final() bool { return s == CommandDone || s == CommandFailed }

// CommandRecord is the durable record of one command, keyed by its id: what was asked, of whom,
// and what the agent has answered so far. Actuators, the state warmer and the API read it; the
// coordinator's stream handler writes the agent's answers into it.
type CommandRecord struct {
	// V is the record version (RecordVersion when written).
	V      int          `json:"v,omitempty"`
	ID     string       `json:"id"`
	Node   string       `json:"node"`
	Kind   string       `json:"kind"` // drain, prefetch
	Reason string       `json:"reason,omitempty"`
	State  CommandState `json:"state"`
	// Message is the agent's latest words about the command (a refusal, a progress line, the
	// error it failed with); a final answer without words keeps the last progress line.
	Message    string    `json:"message,omitempty"`
	DoneBytes  uint64    `json:"done_bytes,omitempty"`
	TotalBytes uint64    `json:"total_bytes,omitempty"`
	Sends      int       `json:"sends"` // times it was put on a stream (again after a restart or failover)
	SentAt     time.Time `json:"sent_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	Deadline   time.Time `json:"deadline,omitempty"`
}

// Command returns the record of command id; ErrNotFound when none was written.
func (s *Store) Command(id string) (CommandRecord, error) {
	var rec CommandRecord
	if err := s.GetJSON(prefixCommand+id, &rec); err != nil {
		return rec, err
	}
	return rec, CheckVersion(prefixCommand+id, rec.V)
}

// UpdateCommand applies change to command id's record (a zero record with ID set when there is
// none yet) and stores the result durably, atomically against other updates. change returns
// false to leave the record as it was.
func (s *Store) UpdateCommand(id string, change func(rec *CommandRecord) bool) (CommandRecord, error) {
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	rec, err := s.Command(id)
	switch {
	case errors.Is(err, ErrNotFound):
		rec = CommandRecord{ID: id}
	case err != nil:
		return rec, err
	}
	if !change(&rec) {
		return rec, nil
	}
	rec.V = RecordVersion
	if err := s.PutJSON(prefixCommand+id, rec, Durable); err != nil {
		return rec, fmt.Errorf("storing command %s: %w", id, err)
	}
	return rec, nil
}

// Commands returns the records of one node's commands (every node's when node is empty), the
// most recently updated first, at most limit (all when limit <= 0).
func (s *Store) Commands(node string, limit int) ([]CommandRecord, error) {
	var out []CommandRecord
	err := s.scan(prefixCommand, func(k, v []byte) error {
		var rec CommandRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decoding %s: %w", k, err)
		}
		if err := CheckVersion(string(k), rec.V); err != nil {
			return err
		}
		if node == "" || rec.Node == node {
			out = append(out, rec)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].UpdatedAt.After(out[j].UpdatedAt) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// Sent records that the command was put on the agent's stream once more. A record the agent
// has already answered keeps its state: an answer can overtake this write.
func (r *CommandRecord) Sent(node, kind, reason string, deadline, at time.Time) bool {
	if r.State.Final() {
		return false
	}
	if r.State == "" {
		r.State, r.SentAt = CommandSent, at
	}
	if r.Kind == "" { // new, or created by an answer that overtook this write
		r.Node, r.Kind, r.Reason, r.Deadline = node, kind, reason, deadline
	}
	r.Sends++
	r.UpdatedAt = at
	return true
}

// Answer applies one of the agent's answers: Acknowledged, Progress, Done or Failed, with its
// words. It returns false for an answer that changes nothing: anything after a final state (a
// repeated or late message), or an acknowledgement after progress.
func (r *CommandRecord) Answer(state CommandState, msg string, doneBytes, totalBytes uint64, at time.Time) bool {
	if r.State.Final() || (state == CommandAcknowledged && r.State != "" && r.State != CommandSent) {
		return false
	}
	r.State, r.UpdatedAt = state, at
	if msg != "" {
		r.Message = msg
	}
	if doneBytes > 0 || totalBytes > 0 {
		r.DoneBytes, r.TotalBytes = doneBytes, totalBytes
	}
	return true
}
