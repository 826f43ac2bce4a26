//go:build chaos

package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
)

// webhook is the receiving end of the webhook actuator, built the way the payload's contract
// asks: it applies each idempotency key's effect once, however often the key is delivered.
type webhook struct {
	mu         sync.Mutex
	rng        *rand.Rand
	deliveries map[string]int
	effects    []effect
	inflight   int
	bad        []string
}

type effect struct {
	key, id, node string
	kind          decide.Kind
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var p actuate.WebhookPayload
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	w.mu.Lock()
	if key == "" || key != p.IdempotencyKey || key != p.Decision.ID+"/webhook" {
		w.bad = append(w.bad, fmt.Sprintf("header %q, payload %q, decision %s", key, p.IdempotencyKey, p.Decision.ID))
	}
	w.deliveries[key]++
	if w.deliveries[key] == 1 {
		// The effect happens on first sight of the key; the answer comes later, so a kill in
		// between leaves an applied effect whose call the coordinator never saw finish.
		w.effects = append(w.effects, effect{key: key, id: p.Decision.ID, node: p.Decision.Node, kind: p.Decision.Kind})
	}
	w.inflight++
	delay := time.Duration(w.rng.Int64N(int64(400 * time.Millisecond)))
	w.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
	}
	w.mu.Lock()
	w.inflight--
	w.mu.Unlock()
	rw.WriteHeader(http.StatusOK)
}

func (w *webhook) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inflight
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

const killConfig = `
default_interval: 200ms
missed_intervals: 5
detection:
  interval: 300ms
  window: 4
decisions:
  exec_interval: 50ms
  policy:
    mode: auto
    max_concurrent_migrations: 1
    max_quarantined_share: 0.5
    job_cooldown: 1ms
    confirm_rounds: 2
    clear_rounds: 2
    quarantine_min: 2s
    recovery_rounds: 2
    probation_min: 1s
    retry_after: 500ms
    breaker_hold: 3s
actuator:
  kind: webhook
  webhook:
    url: %s
    timeout: 5s
    retries: 2
    backoff: 50ms
`

func isOpen(status string) bool {
	switch status {
	case httpv1.DecisionProposed, httpv1.DecisionPending, httpv1.DecisionRunning, httpv1.DecisionBlocked:
		return true
	}
	return false
}

// TestKillDuringDecisions kills the coordinator with SIGKILL at random moments while a rotating
// straggler keeps it deciding migrations and releases, restarts it on the same data dir each
// time, and then checks that every decided action reached the webhook (none lost) and that no
// action's effect happened twice (no decision repeated, no key applied twice).
func TestKillDuringDecisions(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CHAOS_SEED"), 10, 64); err == nil {
		seed = s
	}
	kills := envInt("CHAOS_KILLS", 50)
	t.Logf("seed %d (CHAOS_SEED), %d kills (CHAOS_KILLS)", seed, kills)
	rng := rand.New(rand.NewPCG(seed, 9))
	hook := &webhook{rng: rand.New(rand.NewPCG(seed, 10)), deliveries: map[string]int{}}
	hs := httptest.NewServer(hook)
	defer hs.Close()

	names := nodeNames("node-", 10)
	s := newStraggler(names)
	c := newCoordinator(t, fmt.Sprintf(killConfig, hs.URL))
	c.start()
	f := startFleet(t, c.grpcAddr, names, 200*time.Millisecond, 720, s.fill)
	defer f.stopAll()

	// Each node in turn is the straggler for a few seconds, so decisions keep coming:
	// a migration when it turns slow, a release once it has been clean long enough.
	start := time.Now()
	rotate := 4 * time.Second
	slowAt := func(at time.Time) string { return names[int(at.Sub(start)/rotate)%len(names)] }
	stopRotate := make(chan struct{})
	rotated := make(chan struct{})
	go func() {
		defer close(rotated)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			s.setSlow(slowAt(time.Now()))
			select {
			case <-stopRotate:
				return
			case <-tk.C:
			}
		}
	}()

	var killedInFlight, killedOpen int
	// A third of the kills land at a uniformly random moment, a third just after a decision is
	// recorded (before or while its executor runs) and a third during the webhook call itself.
	openDecision := func() bool {
		l, err := c.decisions()
		if err != nil {
			return false
		}
		for _, d := range l.Decisions {
			if isOpen(d.Status) {
				return true
			}
		}
		return false
	}
	waitUntil := func(cond func() bool) {
		for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline) && !cond(); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := range kills {
		switch i % 3 {
		case 0:
			time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Second))))
		case 1:
			waitUntil(openDecision)
			time.Sleep(time.Duration(rng.Int64N(int64(150 * time.Millisecond))))
		case 2:
			waitUntil(func() bool { return hook.inFlight() > 0 })
			time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
		}
		if hook.inFlight() > 0 {
			killedInFlight++
		}
		if openDecision() {
			killedOpen++
		}
		c.stop(syscall.SIGKILL)
		time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
		c.start()
		if (i+1)%10 == 0 {
			t.Logf("%d kills so far (%v)", i+1, time.Since(start).Round(time.Second))
		}
	}
	close(stopRotate)
	<-rotated
	s.setSlow("")

	// Let the last decisions finish without further kills.
	var final httpv1.DecisionList
	waitFor(t, "every decision to finish", 2*time.Minute, func() (bool, string) {
		l, err := c.decisions()
		if err != nil {
			return false, err.Error()
		}
		for _, d := range l.Decisions {
			if isOpen(d.Status) {
				return false, d.ID + " " + d.Status
			}
		}
		final = l
		return hook.inFlight() == 0, "webhook call in flight"
	})
	c.stop(syscall.SIGTERM)

	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.bad) > 0 {
		t.Errorf("webhook calls with a wrong idempotency key: %v", hook.bad)
	}
	// No action lost: every migration and release the coordinator decided was delivered.
	decided := map[string]httpv1.Decision{}
	var actions []string
	for _, d := range final.Decisions {
		if d.Kind != string(decide.KindMigrate) && d.Kind != string(decide.KindRelease) {
			continue
		}
		decided[d.ID] = d
		actions = append(actions, d.ID)
		if d.Status != httpv1.DecisionSucceeded {
			t.Errorf("decision %s (%s %s) ended %s: %s %s", d.ID, d.Kind, d.Node, d.Status, d.Message, d.Error)
		}
		if hook.deliveries[d.ID+"/webhook"] == 0 {
			t.Errorf("decision %s (%s %s) is %s but never reached the webhook: action lost", d.ID, d.Kind, d.Node, d.Status)
		}
	}
	// None done twice: every applied effect belongs to exactly one known decision, and per node
	// migrations and releases alternate (a repeated migration would show two in a row).
	seen := map[string]bool{}
	lastKind := map[string]decide.Kind{}
	redelivered := 0
	for _, e := range hook.effects {
		if _, ok := decided[e.id]; !ok {
			t.Errorf("webhook applied %s for decision %s, which the coordinator does not know", e.key, e.id)
		}
		if seen[e.id] {
			t.Errorf("decision %s applied twice", e.id)
		}
		seen[e.id] = true
		if lastKind[e.node] == e.kind {
			t.Errorf("node %s: %s applied twice in a row (decision %s): an action was repeated", e.node, e.kind, e.id)
		}
		lastKind[e.node] = e.kind
		if hook.deliveries[e.key] > 1 {
			redelivered++
		}
	}
	sort.Strings(actions)
	migrations := 0
	for _, d := range decided {
		if d.Kind == string(decide.KindMigrate) {
			migrations++
		}
	}
	t.Logf("%d kills survived in %v: %d coordinator lives; %d actions decided (%d migrations), %d effects applied, %d keys delivered more than once (kill during the call), %d kills with a webhook call in flight, %d with a decision open",
		c.kills, time.Since(start).Round(time.Second), c.lives, len(decided), migrations, len(hook.effects), redelivered, killedInFlight, killedOpen)
	if migrations < 3 {
		t.Errorf("only %d migrations were decided: the kills did not land among decisions", migrations)
	}
}
