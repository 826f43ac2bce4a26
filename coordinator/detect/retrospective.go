package detect

import (
	"fmt"
	"sort"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/model"
)

// A partition cuts an agent off from the coordinator, not from its node: the agent keeps
// collecting, holds its reports back, and sends them all when the partition heals. A fault that
// began and ended inside the partition was never seen live; its reports arrive when it is over.
// The detector then judges them in retrospect, against what the fleet's hosts looked like when
// they were collected (fleetHost, one per round, the last forget_after of rounds kept), by the
// host rules a live node is held to without subtask evidence: a host anomaly SevereHostScore
// floors above the fleet held HostOnlyWindows, or DecisiveHostScore held StrongWindows; by the
// rule for loss on the way in, witnessed by MinPeers senders that reported live while the node
// was cut off (fleetHost.silentInbound) and held StrongWindows; by the rule for the node's own
// severe loss held StrongWindows; and by the rule for a JVM far out on GC time held
// StrongWindows. What it
// finds is a retrospective finding with its cause and time range: for the record, never a
// verdict, never acted on. The subtasks' figures of those windows are not judged: their peers'
// figures of the same windows are gone (the model keeps the newest only), and a per-window
// history of every vertex's costs would grow with the fleet's jobs.

// remember keeps the round's fleetHost, up to forget_after of rounds: as far back as a replayed
// report is judged.
func (p *Peer) remember(fh fleetHost) {
	keep := 1
	if p.interval > 0 {
		keep = max(1, int(p.cfg.ForgetAfter/p.interval))
	}
	if len(p.history) >= keep {
		n := copy(p.history, p.history[len(p.history)-keep+1:])
		p.history = p.history[:n]
	}
	p.history = append(p.history, fh)
}

// fleetAt is the round that first saw the fleet after at (a report collected at at would have
// been judged in it), if it is within an interval of at.
func (p *Peer) fleetAt(at time.Time) *fleetHost {
	i := sort.Search(len(p.history), func(i int) bool { return !p.history[i].at.Before(at) })
	if i == len(p.history) || p.history[i].at.Sub(at) > p.interval {
		return nil
	}
	return &p.history[i]
}

// retrospective judges the node's replayed reports it has not judged yet and keeps what it
// finds; it returns the node's retrospective finding while it is recent (ForgetAfter since it
// ended).
func (p *Peer) retrospective(e *nodeEval, n *model.Node, now time.Time) (Finding, bool) {
	judged := p.retroJudged[e.name]
	reps := n.Replayed()
	from := sort.Search(len(reps), func(i int) bool { return reps[i].At.After(judged) })
	if from < len(reps) {
		p.retroJudged[e.name] = reps[len(reps)-1].At
		if f, ok := p.judgeReplayed(e, reps[from:]); ok {
			p.retro[e.name] = f
		}
	}
	f, ok := p.retro[e.name]
	if ok && now.Sub(f.Until) > p.cfg.ForgetAfter {
		delete(p.retro, e.name)
		return Finding{}, false
	}
	return f, ok
}

// judgeReplayed applies the host rules to replayed reports, oldest first, and the rule for a
// JVM far out on GC time with nothing on the host that points elsewhere (a GC storm: the live
// rule makes its TaskManager slow held StrongWindows, see tmProblem). The finding spans the
// windows in which a run of anomalies had lasted long enough to make the node or one of its
// JVMs slow, from the run's start; its cause is the one most of their score points to (a JVM's
// score is its GC time above the fleet's median in GCExcessMs), its evidence the strongest
// window's. Before the JVM rule, a GC storm that began and ended inside a partition got no
// finding: no host signal shows one.
func (p *Peer) judgeReplayed(e *nodeEval, reps []model.ReplayedDigest) (Finding, bool) {
	var (
		severe, high, jvm    int
		inbound, loss        int
		runFrom, since, last time.Time
		best                 float64
		evidence             []Evidence
		jvmSlow              string
		named                *Culprit
		namedScore           float64
	)
	causes := map[Cause]float64{}
	scores := map[Cause]float64{}
	slow := false
	for _, d := range reps {
		fh := p.fleetAt(d.At)
		if fh == nil || !d.Valid {
			severe, high, jvm, inbound, loss = 0, 0, 0, 0, 0
			continue
		}
		w := &nodeEval{name: e.name, at: d.At, hostValid: true, runqMedian: fh.medians[model.SignalRunqMean]}
		if d.Neighbour != nil {
			w.neighbours = []model.CgroupDigest{*d.Neighbour}
		}
		w.hd.Valid, w.hd.CPUBusy = true, float64(d.CPUBusy)
		for i, v := range d.Signals {
			w.hd.Signals[i] = float64(v)
		}
		// What the peers that reported live retransmitted to the node while it was cut off:
		// its loss on the way in, which its own reports cannot show.
		in := fh.silentInbound[e.name]
		w.hd.Signals[model.SignalInboundRetrans] += in.rate
		w.inboundWitnesses = in.witnesses
		p.raiseHost(w, fh)
		if fh.lossyReceivers {
			// Live, a node's retransmits mostly to peers that lose packets on their way in
			// are those peers' loss, not its own (lossAtReceivers). Where a replayed report's
			// retransmits went is not kept, so in a window in which some node in the fleet lost
			// packets on the way in they are no evidence against this one. A sender cut off
			// beside a lossy receiver was found slow (network) for the receiver's loss
			// (generated gen-700011).
			w.raised &^= ownLossSignals
		}
		scoreHost(w, fh, scores)
		if severe == 0 && high == 0 && jvm == 0 && inbound == 0 && loss == 0 {
			runFrom = d.At
		}
		// The live rule for loss on the way in: several senders witnessing it are as many
		// independent witnesses, held StrongWindows.
		if w.inboundWitnesses >= p.cfg.MinPeers && w.raised.Has(model.SignalInboundRetrans) {
			inbound++
		} else {
			inbound = 0
		}
		// The live rule for a node's own severe loss (ownLoss), held StrongWindows: severe loss
		// is evidence on its own, since the subtasks' true processing rate is blind to the
		// network (its loss signals count only in windows without lossy receivers, above).
		if w.hostCause == CauseNetwork && w.lossScore > 0 && w.lossScore >= p.cfg.SevereHostScore {
			loss++
		} else {
			loss = 0
		}
		gc := float64(d.GCMsPerSec)
		// The JVM's GC time is its own fault only where the host shows nothing but the waits
		// its collector threads cause (memory pressure, disk or a neighbour point at the node).
		if fh.gcCounted && d.GCTaskManager != "" && p.gcOutlier(gc, fh.gcMedian) && gcExplainsHost(w.raised) {
			jvm++
		} else {
			jvm = 0
		}
		if len(w.host) > 0 && w.hostScore >= p.cfg.SevereHostScore {
			severe++
		} else {
			severe = 0
		}
		if len(w.host) > 0 && p.cfg.DecisiveHostScore > 0 && w.hostScore >= p.cfg.DecisiveHostScore {
			high++
		} else {
			high = 0
		}
		hostSlow := severe >= p.cfg.HostOnlyWindows || high >= p.cfg.StrongWindows || inbound >= p.cfg.StrongWindows || loss >= p.cfg.StrongWindows
		if !hostSlow && jvm < p.cfg.StrongWindows {
			continue
		}
		if !slow || runFrom.Before(since) {
			since = runFrom
		}
		slow, last = true, d.At
		if hostSlow {
			causes[w.hostCause] += w.hostScore
			if w.hostScore > best {
				best, evidence = w.hostScore, w.host
			}
			if w.hostCause == CauseCPU && w.hostScore > namedScore {
				// The neighbour of the window where the contention was strongest, as the live
				// verdict names the one of its window.
				if c := culprit(w); c != nil {
					named, namedScore = c, w.hostScore
				}
			}
		}
		if jvm >= p.cfg.StrongWindows {
			x := (gc - fh.gcMedian) / max(p.cfg.GCExcessMs, 1)
			causes[CauseGC] += x
			jvmSlow = d.GCTaskManager
			if x > best {
				best, evidence = x, []Evidence{{Kind: "taskmanager", TaskManager: d.GCTaskManager, Signal: "gc_time_ms_per_s", Value: gc, PeerMedian: fh.gcMedian, Since: d.At}}
			}
		}
	}
	if !slow {
		return Finding{}, false
	}
	cause := CauseUnknown
	for c, s := range causes {
		if s > causes[cause] || s == causes[cause] && c < cause {
			cause = c
		}
	}
	what, tm := string(cause), ""
	if cause == CauseGC {
		what, tm = fmt.Sprintf("%s of TaskManager %s", cause, jvmSlow), jvmSlow
	}
	if cause != CauseCPU {
		named = nil
	}
	return Finding{Node: e.name, TaskManager: tm, Kind: FindingRetrospective, Class: e.class, Cause: cause, Since: since, Until: last, Evidence: evidence, Culprit: named,
		Detail: fmt.Sprintf("slow (%s) from %s to %s, judged from reports held back by its agent while it could not reach the coordinator; over before they arrived, so nothing is done",
			what, since.Format(time.RFC3339), last.Format(time.RFC3339))}, true
}
