package detect

import (
	"time"

	"github.com/tmwarden/tmwarden/coordinator/model"
)

// FlinkSlowTask is Flink's batch speculative-execution rule (FLIP-168) applied to streaming:
// a subtask whose execution time per input record exceeds multiplier × its vertex's median for
// k consecutive windows is slow, and marks its node. It has no notion of host signals, of
// aggregation across vertices or of a circuit breaker; it is scored as a baseline.
type FlinkSlowTask struct {
	multiplier float64
	k          int
	// streaks per vertex, by subtask index (pointer keys hash fast).
	streak map[*model.Vertex][]streak
}

type streak struct {
	n     int
	since time.Time
	last  time.Time
	seen  time.Time
}

// NewFlinkSlowTask returns the baseline with the given multiplier (Flink: 1.5) and window count.
func NewFlinkSlowTask(multiplier float64, k int) *FlinkSlowTask {
	return &FlinkSlowTask{multiplier: multiplier, k: k, streak: map[*model.Vertex][]streak{}}
}

// Name implements Detector.
func (f *FlinkSlowTask) Name() string { return "flink-slow-task" }

// Evaluate implements Detector.
func (f *FlinkSlowTask) Evaluate(v model.View, now time.Time) Round {
	byNode := map[string]*Verdict{}
	var costs, each []float64
	since := v.FreshSince(now)
	for _, vx := range v.Vertices() {
		costs, each = costs[:0], each[:0]
		for _, st := range vx.Subtasks {
			c, ok := perRecord(st, since)
			if !ok {
				c = -1
			} else {
				costs = append(costs, c)
			}
			each = append(each, c)
		}
		if len(costs) < 2 {
			continue
		}
		med := median(costs)
		ss := f.streak[vx]
		if top := vx.Subtasks[len(vx.Subtasks)-1].Index; len(ss) <= top {
			ss = append(ss, make([]streak, top+1-len(ss))...)
			f.streak[vx] = ss
		}
		for i, st := range vx.Subtasks {
			c := each[i]
			if c < 0 || st.Index < 0 {
				continue
			}
			s := &ss[st.Index]
			if !st.At.After(s.seen) {
				// No new window since the last round: neither extend nor break the streak.
			} else if c > f.multiplier*med {
				if s.n == 0 {
					s.since = st.At
				}
				s.n++
				s.seen = st.At
			} else {
				s.n = 0
				s.seen = st.At
			}
			if s.n < f.k {
				continue
			}
			vd := byNode[st.Node]
			if vd == nil {
				vd = &Verdict{Node: st.Node, Status: StatusSlow, Cause: CauseUnknown, Since: s.since}
				byNode[st.Node] = vd
			}
			if s.since.Before(vd.Since) {
				vd.Since = s.since
			}
			vd.Score = max(vd.Score, c/med)
			vd.Evidence = append(vd.Evidence, Evidence{Kind: "subtask", JobID: vx.Key.JobID, JobName: vx.JobName,
				VertexID: vx.Key.VertexID, VertexName: vx.Name, Subtask: st.Index, TaskManager: st.TaskManager,
				TPR: 1000 / c, PeerMedianTPR: 1000 / med, Slowdown: c / med, Since: s.since})
		}
	}
	if len(f.streak) > len(v.Vertices()) {
		// Vertices were pruned from the model: forget their streaks.
		live := map[*model.Vertex]bool{}
		for _, vx := range v.Vertices() {
			live[vx] = true
		}
		for vx := range f.streak {
			if !live[vx] {
				delete(f.streak, vx)
			}
		}
	}
	r := Round{At: now}
	for _, vd := range byNode {
		r.Verdicts = append(r.Verdicts, *vd)
	}
	sortVerdicts(r.Verdicts)
	return r
}

// perRecord is busy milliseconds per input record, FLIP-168's input-weighted execution time.
func perRecord(st *model.Subtask, since time.Time) (float64, bool) {
	if st.At.Before(since) || st.Metrics.RecordsIn <= 0 || st.Metrics.BusyMs <= 1 {
		return 0, false
	}
	return st.Metrics.BusyMs / st.Metrics.RecordsIn, true
}

// HostThresholds are the fixed limits of the host-only baseline.
type HostThresholds struct {
	Steal      float64
	IOWait     float64
	RunqMeanUS float64
	Windows    int
}

// DefaultHostThresholds are common alerting-rule values.
func DefaultHostThresholds() HostThresholds {
	return HostThresholds{Steal: 0.10, IOWait: 0.10, RunqMeanUS: 1000, Windows: 2}
}

// HostThreshold is the host-only baseline: a node whose steal, iowait or mean run-queue latency
// is over a fixed limit for Windows consecutive reports is slow. No peer comparison.
type HostThreshold struct {
	t      HostThresholds
	streak map[string]*streak
}

// NewHostThreshold returns the host-only baseline.
func NewHostThreshold(t HostThresholds) *HostThreshold {
	return &HostThreshold{t: t, streak: map[string]*streak{}}
}

// Name implements Detector.
func (h *HostThreshold) Name() string { return "host-threshold" }

// Evaluate implements Detector.
func (h *HostThreshold) Evaluate(v model.View, now time.Time) Round {
	r := Round{At: now}
	for _, name := range v.NodeNames() {
		n := v.Node(name)
		s, ok := n.Latest()
		if !ok || now.Sub(s.At) > 2*v.Config().Interval || !s.Host.Valid {
			continue
		}
		st := h.streak[name]
		if st == nil {
			st = &streak{}
			h.streak[name] = st
		}
		var ev []Evidence
		cause := CauseUnknown
		if x := s.Host.Signals[model.SignalSteal]; x > h.t.Steal {
			ev = append(ev, Evidence{Kind: "host", Signal: model.SignalSteal.String(), Value: x, PeerMedian: h.t.Steal})
			cause = CauseCPU
		}
		if x := s.Host.Signals[model.SignalRunqMean]; x > h.t.RunqMeanUS {
			ev = append(ev, Evidence{Kind: "host", Signal: model.SignalRunqMean.String(), Value: x, PeerMedian: h.t.RunqMeanUS})
			cause = CauseCPU
		}
		if x := s.Host.Signals[model.SignalIOWait]; x > h.t.IOWait {
			ev = append(ev, Evidence{Kind: "host", Signal: model.SignalIOWait.String(), Value: x, PeerMedian: h.t.IOWait})
			if cause == CauseUnknown {
				cause = CauseDisk
			}
		}
		if s.At.After(st.seen) {
			st.seen = s.At
			if len(ev) > 0 {
				if st.n == 0 {
					st.since = s.At
				}
				st.n++
			} else {
				st.n = 0
			}
		}
		if st.n >= h.t.Windows && len(ev) > 0 {
			for i := range ev {
				ev[i].Since = st.since
			}
			r.Verdicts = append(r.Verdicts, Verdict{Node: name, Status: StatusSlow, Score: float64(len(ev)), Cause: cause, Since: st.since, Evidence: ev})
		}
	}
	return r
}
