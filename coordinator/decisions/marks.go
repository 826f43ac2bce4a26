package decisions

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// markResync is how often the marks are checked against the cluster when the policy's wish did
// not change: it repairs marks someone else removed or added, and retries what failed.
const markResync = 30 * time.Second

// marks is the level-triggered owner of the actuator's marks: what was last asked and when.
type marks struct {
	want     map[string]string
	syncedAt time.Time
	failures int
	lastErr  string
}

// TakeOver prepares this Manager to act, on a new leader's term or at a single coordinator's
// start: the nodes the cluster shows marked by an earlier leader that this policy does not hold
// as marked are adopted as quarantined (never migrated twice, released only through their
// recovery checks), then the cluster is reconciled to the policy. It is the same reconcile every
// round runs, for every actuator that marks (actuate.Marker): there is no actuator-specific
// take-over. It fails when the cluster cannot be read; the caller retries or steps down. In
// dry-run mode the marks are adopted but nothing is written.
//
// It first reloads the policy's memory and the open decisions from the store: with a shared
// store (store.backend etcd) the previous leader wrote decisions this replica never saw, and
// they resume from their last recorded step under the same idempotency keys.
func (m *Manager) TakeOver(ctx context.Context) error {
	m.execMu.Lock()
	defer m.execMu.Unlock()
	m.mu.Lock()
	m.pol, m.open = decide.New(m.cfg.Policy), map[string]*Decision{}
	err := m.load()
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("reloading the decisions from the store: %w", err)
	}
	mk, ok := m.act.(actuate.Marker)
	if !ok {
		return nil
	}
	marked, err := mk.Marked(ctx)
	if err != nil {
		return fmt.Errorf("reading the nodes %s marked: %w", m.act.Name(), err)
	}
	m.mu.Lock()
	want := m.pol.Marked()
	var adopted []string
	now := m.now()
	for _, n := range marked {
		if _, ok := want[n]; !ok && m.pol.MarkQuarantined(n, now) {
			adopted = append(adopted, n)
		}
	}
	var serr error
	if len(adopted) > 0 {
		serr = m.saveSnapshot()
	}
	m.mu.Unlock()
	if len(adopted) > 0 {
		m.nodeEvent("", "quarantine_adopted", fmt.Sprintf("adopted %d node(s) marked on the cluster as quarantined: %s", len(adopted), strings.Join(adopted, ", ")))
	}
	m.marks = marks{}
	if m.cfg.Policy.Mode == decide.DryRun {
		return serr
	}
	return errors.Join(serr, m.syncMarks(ctx, mk, true))
}

// syncMarksIfDue reconciles the marks when the policy's wish changed since the last success,
// after a failure's backoff, or every markResync. The caller holds execMu, so no step of a
// decision runs between reading the wish and writing it.
func (m *Manager) syncMarksIfDue(ctx context.Context) {
	mk, ok := m.act.(actuate.Marker)
	if !ok || m.cfg.Policy.Mode == decide.DryRun {
		return
	}
	if err := m.syncMarks(ctx, mk, false); err != nil && ctx.Err() == nil {
		m.log.Warn("reconciling marks on the cluster", "err", err, "failures", m.marks.failures)
	}
}

func (m *Manager) syncMarks(ctx context.Context, mk actuate.Marker, force bool) error {
	m.mu.Lock()
	want := m.pol.Marked()
	m.mu.Unlock()
	now := m.now()
	wait := markResync
	if m.marks.failures > 0 {
		wait = min(markResync, time.Second<<min(m.marks.failures, 5))
	}
	if !force && maps.Equal(want, m.marks.want) && now.Sub(m.marks.syncedAt) < wait {
		return nil
	}
	changed, err := mk.ReconcileMarks(ctx, want)
	m.marks.syncedAt = m.now()
	for _, c := range changed {
		node, _, _ := strings.Cut(c, ":")
		m.nodeEvent(node, "marks_reconciled", c)
	}
	if err != nil {
		m.marks.failures++
		if msg := err.Error(); msg != m.marks.lastErr {
			m.marks.lastErr = msg
			m.nodeEvent("", "marks_failed", "cannot bring the marks on the cluster in line with the policy: "+msg)
		}
		return err
	}
	m.marks.want, m.marks.failures, m.marks.lastErr = want, 0, ""
	return nil
}

func (m *Manager) nodeEvent(node, typ, msg string) {
	if _, err := m.st.AppendEvent(store.Event{Time: m.now().UTC(), Node: node, Type: typ, Message: msg}); err != nil {
		m.log.Error("cannot append event", "type", typ, "err", err)
	}
	m.log.Info(msg, "type", typ, "node", node)
}
