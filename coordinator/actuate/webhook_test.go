package actuate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

type hook struct {
	mu       sync.Mutex
	bodies   []WebhookPayload
	keys     []string
	auth     []string
	statuses []int // answered in order, then 200
	delay    time.Duration
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p WebhookPayload
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.bodies = append(h.bodies, p)
	h.keys = append(h.keys, r.Header.Get("Idempotency-Key"))
	h.auth = append(h.auth, r.Header.Get("Authorization"))
	code := http.StatusOK
	if len(h.statuses) > 0 {
		code, h.statuses = h.statuses[0], h.statuses[1:]
	}
	delay := h.delay
	h.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(code)
}

func webhookAction() decide.Action {
	return decide.Action{ID: "dec-1", Kind: decide.KindMigrate, Node: "n1", Reason: "slow", Score: 3.5, Cause: "disk",
		Evidence: []detect.Evidence{{Kind: "host", Signal: "disk_latency_p99", Value: 0.2, PeerMedian: 0.01}}}
}

func TestWebhook(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int
		delay    time.Duration
		wantErr  string
		wantHits int
	}{
		{name: "ok", wantHits: 1},
		{name: "retries 5xx then succeeds", statuses: []int{503, 500}, wantHits: 3},
		{name: "gives up after retries", statuses: []int{500, 500, 500}, wantErr: "HTTP 500", wantHits: 3},
		{name: "4xx is not retried", statuses: []int{400}, wantErr: "HTTP 400 (not retried)", wantHits: 1},
		{name: "timeout is retried", delay: 300 * time.Millisecond, wantErr: "deadline exceeded", wantHits: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &hook{statuses: tc.statuses, delay: tc.delay}
			srv := httptest.NewServer(h)
			defer srv.Close()
			w, err := NewWebhook(WebhookConfig{URL: srv.URL + "/hook", Timeout: 100 * time.Millisecond, Retries: 2,
				Backoff: 10 * time.Millisecond, Headers: map[string]string{"Authorization": "Bearer t"}}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			a := webhookAction()
			steps, _ := w.Plan(context.Background(), a)
			_, err = w.Do(context.Background(), a, steps[0], "dec-1/webhook")
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.bodies) != tc.wantHits {
				t.Fatalf("%d requests, want %d", len(h.bodies), tc.wantHits)
			}
			for i, b := range h.bodies {
				if h.keys[i] != "dec-1/webhook" || b.IdempotencyKey != "dec-1/webhook" || h.auth[i] != "Bearer t" {
					t.Fatalf("request %d: key %q/%q auth %q", i, h.keys[i], b.IdempotencyKey, h.auth[i])
				}
				if b.Decision.Node != "n1" || len(b.Decision.Evidence) != 1 || b.Decision.Evidence[0].Signal != "disk_latency_p99" {
					t.Fatalf("payload lacks the decision or its evidence: %+v", b.Decision)
				}
			}
		})
	}
	if _, err := NewWebhook(WebhookConfig{URL: "ftp://x"}, nil, nil); err == nil {
		t.Fatal("bad URL accepted")
	}
}

// sender stands in for the coordinator's SendCommand: it records the command in the store the
// way the coordinator does, and keeps what it sent.
type sender struct {
	st   *store.Store
	mu   sync.Mutex
	sent []*tmwardenv1.Command
	err  error
}

func (s *sender) SendCommand(_ context.Context, node string, c *tmwardenv1.Command) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.sent = append(s.sent, c)
	_, err := s.st.UpdateCommand(c.Id, func(r *store.CommandRecord) bool {
		return r.Sent(node, "drain", c.Reason, c.Deadline.AsTime(), time.Now())
	})
	return err
}

func answer(t *testing.T, st *store.Store, id string, state store.CommandState, msg string) {
	t.Helper()
	if _, err := st.UpdateCommand(id, func(r *store.CommandRecord) bool {
		r.Node = "n1"
		return r.Answer(state, msg, 0, 0, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBareMetal drives the drain through a real store's command records, where the
// coordinator's stream handler writes the agent's answers.
func TestBareMetal(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &sender{st: st}
	b, err := NewBareMetal(s, st, BareMetalConfig{Poll: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := decide.Action{ID: "d1", Kind: decide.KindMigrate, Node: "n1", TaskManagers: []string{"tm-1", "tm-2"}, Reason: "slow"}
	steps, _ := b.Plan(context.Background(), a)
	key := "d1/" + steps[0].Name
	var re *RetryError
	for range 2 {
		if _, err := b.Do(context.Background(), a, steps[0], key); !errors.As(err, &re) {
			t.Fatalf("before the answer: want RetryError, got %v", err)
		}
	}
	if len(s.sent) != 1 || s.sent[0].Id != key || strings.Join(s.sent[0].GetDrain().TaskManagerIds, ",") != "tm-1,tm-2" {
		t.Fatalf("sent %v", s.sent)
	}
	answer(t, st, key, store.CommandAcknowledged, "")
	answer(t, st, key, store.CommandProgress, "drained: stopped 2 units")
	if _, err := b.Do(context.Background(), a, steps[0], key); !errors.As(err, &re) {
		t.Fatalf("while draining: want RetryError, got %v", err)
	}
	answer(t, st, key, store.CommandDone, "")
	if msg, err := b.Do(context.Background(), a, steps[0], key); err != nil || !strings.Contains(msg, "stopped 2 units") {
		t.Fatalf("after success: %q %v", msg, err)
	}
	// A late or repeated answer does not reopen a finished command.
	answer(t, st, key, store.CommandFailed, "late")
	if rec, _ := st.Command(key); rec.State != store.CommandDone || rec.Sends != 1 {
		t.Fatalf("record after a late answer: %+v", rec)
	}

	// A refused command fails the step; an unreachable agent is retried.
	a.ID = "d2"
	answer(t, st, "d2/drain", store.CommandFailed, "agent refused the command: no handler")
	if _, err := b.Do(context.Background(), a, steps[0], "d2/drain"); err == nil || !strings.Contains(err.Error(), "no handler") {
		t.Fatalf("refused: %v", err)
	}
	s.err = errors.New("not connected")
	if _, err := b.Do(context.Background(), a, steps[0], "d3/drain"); !errors.As(err, &re) || !strings.Contains(re.Reason, "cannot reach") {
		t.Fatalf("unreachable: %v", err)
	}
	s.err = nil

	// After a restart (a new actuator on the same store) a command the agent never
	// acknowledged is sent once more; one it acknowledged is not.
	s.sent = nil
	for _, id := range []string{"d4", "d5"} {
		a.ID = id
		if _, err := b.Do(context.Background(), a, steps[0], id+"/drain"); !errors.As(err, &re) {
			t.Fatal(err)
		}
	}
	answer(t, st, "d5/drain", store.CommandAcknowledged, "")
	b2, _ := NewBareMetal(s, st, BareMetalConfig{Poll: time.Millisecond}, nil)
	for range 3 {
		for _, id := range []string{"d4", "d5"} {
			a.ID = id
			if _, err := b2.Do(context.Background(), a, steps[0], id+"/drain"); !errors.As(err, &re) {
				t.Fatal(err)
			}
		}
	}
	var ids []string
	for _, c := range s.sent {
		ids = append(ids, c.Id)
	}
	if strings.Join(ids, ",") != "d4/drain,d5/drain,d4/drain" {
		t.Fatalf("sent %v, want d4 and d5 before the restart and d4 once after", ids)
	}
	if rec, _ := st.Command("d4/drain"); rec.Sends != 2 || rec.State != store.CommandSent {
		t.Fatalf("d4's record %+v", rec)
	}
}
