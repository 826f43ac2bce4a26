package detect

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/model"
)

// PeerConfig tunes tmwarden's peer-comparison detector.
type PeerConfig struct {
	// MinBusyMs: subtasks busier than this per second have a meaningful true processing rate.
	MinBusyMs float64 `yaml:"min_busy_ms"`
	// MinPeers is the fewest measurable subtasks of a vertex worth comparing.
	MinPeers int `yaml:"min_peers"`
	// Slowdown is how many times below its vertex's median TPR a subtask must be to straggle.
	Slowdown float64 `yaml:"slowdown"`
	// BackpressureExcessMs: a subtask backpressured this much more than its vertex's median is
	// blocked on its own output (a slow network path), not on a slow consumer.
	BackpressureExcessMs float64 `yaml:"backpressure_excess_ms"`
	// GCExcessMs: a JVM spending this much more time per second in GC than the cluster's
	// median TaskManager (and 4x the median) stalls its tasks noticeably. GC time is processing
	// time lost outright (every task of the JVM waits out its pauses), so a tenth of the JVM's
	// time is a slowdown whether or not its subtasks' rates cross the straggler margin.
	GCExcessMs float64 `yaml:"gc_excess_ms"`
	// SingleSlowdown: one straggler this much slower than its peers is app impact on its own.
	SingleSlowdown float64 `yaml:"single_slowdown"`
	// NodeShare is the share of a node's measurable subtasks that must straggle, and
	// MinVertices the distinct vertices they must span, for the node (not the data) to be slow.
	NodeShare   float64 `yaml:"node_share"`
	MinVertices int     `yaml:"min_vertices"`
	// StrongWindows consecutive windows of host evidence with app impact, or WeakWindows of
	// WeakOf windows with app evidence alone, make a node slow; ClearWindows clean ones clear it.
	StrongWindows int `yaml:"strong_windows"`
	WeakWindows   int `yaml:"weak_windows"`
	ClearWindows  int `yaml:"clear_windows"`
	// DecisiveHostScore: a window in which the node's host signals score at least this (floors
	// above the peer median, summed) while its subtasks straggle across MinVertices vertices is
	// decisive on its own: two independent witnesses agreeing stand in for a second window. Persistence
	// before acting stays with the decision layer's confirm_rounds. A JVM far out on GC time whose
	// subtasks straggle across vertices is decisive for its TaskManager the same way. 0 turns
	// single-window verdicts off.
	DecisiveHostScore float64 `yaml:"decisive_host_score"`
	// WeakOf is the span of windows WeakWindows are counted in.
	WeakOf int `yaml:"weak_of"`
	// A host anomaly SevereHostScore floors above the peer median, held HostOnlyWindows, makes
	// a node slow even when no subtask shows it (a dying disk under stateless tasks); one at
	// DecisiveHostScore or more does so held StrongWindows.
	SevereHostScore float64 `yaml:"severe_host_score"`
	HostOnlyWindows int     `yaml:"host_only_windows"`
	// ForgetAfter: a node silent this long no longer counts as vanished, it is gone.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// MaxEvidence bounds the subtask evidence kept per verdict (the strongest first).
	MaxEvidence int `yaml:"max_evidence"`
	// GCElevatedMs: a JVM spending this much more time per second in GC than the median
	// TaskManager (and twice the median) is the likelier cause of its own subtasks straggling
	// than the node: a node's trouble slows every JVM on it and shows on the host.
	GCElevatedMs float64 `yaml:"gc_elevated_ms"`
	// LearnWindows is how many windows a node's speed relative to its peers is averaged over
	// when it joins, before app evidence alone can make it slow: a machine that is equally
	// slower since it joined is a slower machine, not a slow node. Nodes of a class with
	// MinClassPeers learned members among the nodes their subtasks are compared with (sharing
	// vertices, directly or through other nodes) start from their class's speed instead.
	LearnWindows  int `yaml:"learn_windows"`
	MinClassPeers int `yaml:"min_class_peers"`
	// SpeedAlpha is how fast a node's learned speed follows clean windows afterwards (aging
	// hardware, a changed workload mix) — slowly, so a fault is never learned as normal.
	SpeedAlpha float64 `yaml:"speed_alpha"`
	// SlowerHardware: a node whose learned speed is this many times below its peers' is
	// reported as slower hardware (a class finding), never as a slow node.
	SlowerHardware float64 `yaml:"slower_hardware"`
	// HostStandOut: a host signal above its peer median by its floor and by this many of the
	// peers' standard deviations (robust: 1.4826 median absolute deviations) is raised even
	// where it stays under the signal's ratio to the median. The ratio assumes a signal's
	// spread grows with its level; a level every node shares (steal on all machines in a
	// cluster-wide slowdown) raises the bar without any spread, and a node losing more to it
	// than all its peers went unseen. 0: the ratio alone.
	HostStandOut float64 `yaml:"host_stand_out"`
}

// DefaultPeerConfig is tuned on the public scenarios in sim/scenarios.
func DefaultPeerConfig() PeerConfig {
	return PeerConfig{
		MinBusyMs: 50, MinPeers: 3, Slowdown: 1.3, BackpressureExcessMs: 250, SingleSlowdown: 1.5, GCExcessMs: 100,
		NodeShare: 0.4, MinVertices: 2,
		StrongWindows: 2, WeakWindows: 4, WeakOf: 5, ClearWindows: 3, DecisiveHostScore: 4,
		SevereHostScore: 2, HostOnlyWindows: 6,
		ForgetAfter: 10 * time.Minute, MaxEvidence: 8,
		GCElevatedMs: 50, LearnWindows: 6, MinClassPeers: 3, SpeedAlpha: 0.02, SlowerHardware: 1.15,
		HostStandOut: 6,
	}
}

// Validate names every option whose value the detector cannot work with (under the
// coordinator's `detection.peer:` section). An explicit zero is kept where it means something —
// no busy-time floor, no backpressure or GC margin, no single-window verdicts
// (decisive_host_score), any host anomaly severe, no subtask evidence, a learned speed that no
// longer follows — and refused where it does not.
func (c PeerConfig) Validate() error {
	var errs []error
	bad := func(key string, v any, want string) {
		errs = append(errs, fmt.Errorf("detection.peer.%s %v: %s", key, v, want))
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"min_busy_ms", c.MinBusyMs}, {"backpressure_excess_ms", c.BackpressureExcessMs}, {"gc_excess_ms", c.GCExcessMs},
		{"gc_elevated_ms", c.GCElevatedMs}, {"decisive_host_score", c.DecisiveHostScore}, {"severe_host_score", c.SevereHostScore},
		{"host_stand_out", c.HostStandOut}} {
		if f.v < 0 {
			bad(f.key, f.v, "must not be negative")
		}
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"slowdown", c.Slowdown}, {"single_slowdown", c.SingleSlowdown}, {"slower_hardware", c.SlowerHardware}} {
		if f.v <= 1 {
			bad(f.key, f.v, "must be above 1 (a ratio of rates)")
		}
	}
	if c.MinPeers < 2 {
		bad("min_peers", c.MinPeers, "must be at least 2 (a median of one is no comparison)")
	}
	if c.NodeShare <= 0 || c.NodeShare > 1 {
		bad("node_share", c.NodeShare, "must be in (0, 1]")
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"min_vertices", c.MinVertices}, {"strong_windows", c.StrongWindows}, {"weak_windows", c.WeakWindows}, {"clear_windows", c.ClearWindows},
		{"host_only_windows", c.HostOnlyWindows}, {"learn_windows", c.LearnWindows}, {"min_class_peers", c.MinClassPeers}} {
		if f.v < 1 {
			bad(f.key, f.v, "must be at least 1")
		}
	}
	if c.WeakOf < c.WeakWindows || c.WeakOf > 32 {
		bad("weak_of", c.WeakOf, fmt.Sprintf("must be between weak_windows (%d) and 32", c.WeakWindows))
	}
	if c.MaxEvidence < 0 {
		bad("max_evidence", c.MaxEvidence, "must not be negative")
	}
	if c.ForgetAfter <= 0 {
		bad("forget_after", c.ForgetAfter, "must be positive")
	}
	if c.SpeedAlpha < 0 || c.SpeedAlpha > 1 {
		bad("speed_alpha", c.SpeedAlpha, "must be in [0, 1]")
	}
	return errors.Join(errs...)
}

// resourceCause is the cause a host signal points to, by what it says the node is short of. The
// signals themselves, with their floors and ratios, are model.HostSignals.
var resourceCause = [...]Cause{
	model.ResourceCPU:      CauseCPU,
	model.ResourceCPUQuota: CauseThrottled,
	model.ResourceDisk:     CauseDisk,
	model.ResourceNetwork:  CauseNetwork,
	model.ResourceMemory:   CauseMemory,
}

// Peer is tmwarden's detector (DESIGN.md, data flow step 4).
type Peer struct {
	cfg    PeerConfig
	tracks map[target]*track
	runqEW map[string]float64
	// interval is the model's report interval, taken at each round.
	interval time.Duration
	// slowSince remembers since when each straggling subtask has been straggling.
	slowSince map[*model.Subtask]time.Time
	// speed is each node's learned processing speed relative to its peers.
	speed map[string]*nodeSpeed
	// rates and groups are the round's measurable rates, one group per vertex (groups holds each
	// group's end in rates); linked and linkEnds the nodes the rates link, group by group (see
	// linkNodes); vals is scratch for the fit. Kept to reuse their memory.
	rates    []rateObs
	groups   []int
	linked   []*nodeEval
	linkEnds []int
	vals     []float64
	// fresh is stragglers' gathering of the round's fresh subtasks, vertex after vertex
	// (freshEnds holds each vertex's end in it). Kept to reuse its memory.
	fresh     []freshSubtask
	freshEnds []int
	// ratioBuf backs every node's ratios in polish. Kept to reuse its memory.
	ratioBuf []float64
	// evalBuf holds the round's nodeEvals by node index, evals points into it (nil: the node
	// is not evaluated this round) and order lists the evaluated ones: kept from round to round,
	// so that a round at 10,000 nodes does not allocate 10,000 of each (see nodeEval.reset).
	evalBuf []nodeEval
	evals   []*nodeEval
	order   []*nodeEval
	// byIndex is stragglers' list of the evaluated nodes in index order, kept likewise.
	byIndex []*nodeEval
	// refClass is the fleet's most common hardware class (see referenceClass): where a group of
	// linked nodes has MinClassPeers of them, its speed 1 is their median (see polish).
	refClass string
	// yardstick is the speed, in refClass's frame, that slower hardware is judged against this
	// round (see hardwareYardstick); classSpeeds is its scratch, kept to reuse its memory.
	yardstick   float64
	classSpeeds map[string][]float64
	// history is what the fleet's hosts looked like in each of the last forget_after of rounds,
	// oldest first; retroJudged is each node's newest replayed report judged, retro its latest
	// retrospective finding (see retrospective.go).
	history     []fleetHost
	retroJudged map[string]time.Time
	retro       map[string]Finding
	// silent is the round's list of silent nodes (see inboundRetransmits), kept to reuse its
	// memory.
	silent []silentNode
}

// rateObs is one subtask's true processing rate this window, on node e.
type rateObs struct {
	e      *nodeEval
	logTPR float64
	frozen bool
}

// nodeSpeed is a node's speed relative to the vertex medians of its subtasks' peers, learned
// from the windows in which nothing was wrong with it.
type nodeSpeed struct {
	rel float64
	// est is the node's speed in the last window it was measured in, where polish starts.
	est   float64
	n     int
	since time.Time
	// joined is rel once its first LearnWindows were averaged: the node's speed when it joined.
	joined float64
	// frame is the frame rel was learned in: the reference class its group of linked nodes was
	// scaled by, or "" for its own median node (see polish and frameOf).
	frame string
}

type target struct{ node, tm string }

type track struct {
	// strong and host are runs of consecutive windows; weakHist has one bit per window, newest
	// lowest, so a weak signal that flickers still adds up.
	strong, host, clean int
	// hostHigh is the run of windows with a host anomaly at DecisiveHostScore or more.
	hostHigh           int
	weakHist           uint32
	status             Status
	since, firstStrike time.Time
	seen               time.Time
	last               Verdict
}

// NewPeer returns tmwarden's detector.
func NewPeer(cfg PeerConfig) *Peer {
	return &Peer{cfg: cfg, tracks: map[target]*track{}, runqEW: map[string]float64{}, slowSince: map[*model.Subtask]time.Time{}, speed: map[string]*nodeSpeed{},
		retroJudged: map[string]time.Time{}, retro: map[string]Finding{}}
}

// Name implements Detector.
func (p *Peer) Name() string { return "tmwarden" }

type tmEval struct {
	id                   string
	measured, stragglers int
	// vertices of the stragglers: one slow subtask alone is as likely its own data (a hot key).
	vertices              []model.VertexKey
	gc, gcMedian          float64
	gcOutlier, gcElevated bool
}

type nodeEval struct {
	name       string
	at         time.Time
	measured   int
	stragglers []Evidence
	blocked    []Evidence
	vertices   []model.VertexKey
	// blockedVertices are the vertices of blocked; they count only with network trouble.
	blockedVertices []model.VertexKey
	// slowVertices counts the distinct vertices of the node's stragglers (and, with network
	// trouble, of its blocked subtasks).
	slowVertices int
	tms          []*tmEval
	host         []Evidence
	// raised are the host signals of host: the ones the rules below ask about. abovePeers are
	// those above the peer median by at least their floor, whether or not they also pass the
	// ratio test that raising asks for.
	raised     model.SignalSet
	abovePeers model.SignalSet
	hostCause  Cause
	hostScore  float64
	hostValid  bool
	hd         model.HostDigest
	// work: the node runs subtasks, or a TaskManager whose metrics could not be read; a node
	// without Flink work cannot be a slow Flink node.
	work       bool
	neighbours []model.CgroupDigest
	runqMedian float64
	class      string
	retransTo  map[string]float64
	addresses  []string
	// inboundWitnesses counts the nodes that retransmitted to this one.
	inboundWitnesses int
	// retransToPeers is what this node retransmitted to other nodes' addresses: their inbound
	// loss, which shows at this sender but is not its own. retransOut is the same per receiver.
	retransToPeers float64
	retransOut     []retransmitsTo
	// lossScore is the score of the node's own retransmit anomalies (rate and ratio).
	lossScore float64
	// ratios are the node's subtasks' raw rates over their vertices' costs this window, as logs;
	// rel is the node's speed they give and expect the speed the node is compared at (learned,
	// or its class's). See polish.
	ratios   []float64
	rel      float64
	expect   float64
	learning bool
	// unfrozen counts the node's rates that polish fits its speed from (the length ratios
	// reaches), so polish sizes ratios once.
	unfrozen int
	// est is the node's speed as its rates are divided by to find the vertices' costs: its
	// speed this window once fitted, else where the fit starts (see polish).
	est float64
	// link leads to the root of the nodes whose speeds this window's rates compare with this
	// node's, and linked numbers their group (see linkNodes); scale is the log speed the fit
	// takes as 1 in that group (see polish).
	link   *nodeEval
	linked int
	scale  float64
	// byRefClass: the fit scaled the node's group by its members of refClass (see polish), so
	// its speed is in the frame the fleet's classes are compared in.
	byRefClass bool
}

// retransmitsTo is what a node retransmitted per second to another node's addresses: one
// evaluated this round (to), or a silent one (by name, see inboundRetransmits).
type retransmitsTo struct {
	to     *nodeEval
	silent string
	rate   float64
}

func (e *nodeEval) tm(id string) *tmEval {
	for _, t := range e.tms {
		if t.id == id {
			return t
		}
	}
	// The TaskManagers of the node's previous round stay behind e.tms' length (reset): reused.
	if n := len(e.tms); n < cap(e.tms) && e.tms[:n+1][n] != nil {
		t := e.tms[:n+1][n]
		*t = tmEval{id: id, vertices: t.vertices[:0]}
		e.tms = e.tms[:n+1]
		return t
	}
	t := &tmEval{id: id}
	e.tms = append(e.tms, t)
	return t
}

// reset makes e the start of a node's evaluation this round, keeping the memory of what it held
// the round before where nothing outside the round can still point at it: its TaskManagers,
// stragglers, blocked subtasks and their vertices, and its retransmits to others are the
// round's own, read by this package only. host goes into the round's Findings (Evidence), and
// those outlive the round: it starts empty.
func (e *nodeEval) reset(fresh nodeEval) {
	tms, stragglers, blocked, vertices, blockedVertices, retransOut := e.tms[:0], e.stragglers[:0], e.blocked[:0], e.vertices[:0], e.blockedVertices[:0], e.retransOut[:0]
	*e = fresh
	e.tms, e.stragglers, e.blocked, e.vertices, e.blockedVertices, e.retransOut = tms, stragglers, blocked, vertices, blockedVertices, retransOut
}

func (e *nodeEval) addVertex(k model.VertexKey) {
	if !slices.Contains(e.vertices, k) {
		e.vertices = append(e.vertices, k)
	}
}

// Evaluate implements Detector.
func (p *Peer) Evaluate(v model.View, now time.Time) Round {
	interval := v.Config().Interval
	p.interval = interval
	count := v.NodeCount()
	if len(p.evalBuf) < count {
		p.evalBuf = append(p.evalBuf, make([]nodeEval, count-len(p.evalBuf))...)
	}
	if cap(p.evals) < count {
		p.evals = make([]*nodeEval, count)
	}
	evals := p.evals[:count]
	clear(evals)
	order := p.order[:0]
	vanished, reporting, regressed, late := 0, 0, 0, 0
	silent := p.silent[:0]
	for _, name := range v.NodeNames() {
		n := v.Node(name)
		s, ok := n.Latest()
		since := now.Sub(n.LastSeen)
		if ok && since <= p.cfg.ForgetAfter && now.Sub(s.At) > 2*interval && len(s.Addresses) > 0 {
			// Cut off from the coordinator, not from its peers: what they retransmit to it is
			// its inbound loss while it cannot say so itself (see silentInbound).
			silent = append(silent, silentNode{name: name, addresses: s.Addresses})
		}
		if !ok || since > time.Duration(v.Config().StaleAfter)*interval {
			if since <= p.cfg.ForgetAfter {
				vanished++
			}
			continue
		}
		if since > interval+interval/10 {
			late++
		}
		if now.Sub(s.At) > 2*interval {
			// Reachable but only late reports (an agent replaying its buffer): no current view.
			continue
		}
		reporting++
		e := &p.evalBuf[n.Index]
		e.reset(nodeEval{name: name, at: s.At, hostValid: s.Host.Valid, hd: s.Host, neighbours: s.Neighbours, class: n.Class(), expect: 1,
			retransTo: s.RetransTo, addresses: s.Addresses})
		for _, tm := range s.TaskManagers {
			e.tm(tm.ResourceID).gc = tm.GCMsPerSec
			// A TaskManager whose metrics could not be read runs work nobody can see, not none:
			// its node's host is still evidence (the host-only rule).
			e.work = e.work || tm.Subtasks > 0 || tm.Unscraped
		}
		evals[n.Index] = e
		order = append(order, e)
		if runq := s.Host.Signals[model.SignalRunqMean]; s.Host.Valid && runq > 0 {
			ew, seen := p.runqEW[name]
			if !seen {
				ew = runq
			}
			if runq > 4*ew+300 {
				regressed++
			}
			p.runqEW[name] = ew + 0.02*(runq-ew)
		}
	}

	if len(p.runqEW) > len(v.NodeNames()) {
		// Nodes were pruned from the model: forget their baselines and verdicts.
		for name := range p.runqEW {
			if v.Node(name) == nil {
				delete(p.runqEW, name)
			}
		}
		for k := range p.tracks {
			if v.Node(k.node) == nil {
				delete(p.tracks, k)
			}
		}
		for name := range p.speed {
			if v.Node(name) == nil {
				delete(p.speed, name)
			}
		}
		for name := range p.retroJudged {
			if v.Node(name) == nil {
				delete(p.retroJudged, name)
				delete(p.retro, name)
			}
		}
	}
	p.order = order
	p.silent = silent
	fh := p.hostAnomalies(order, inboundRetransmits(order, silent), now)
	fh.gcMedian, fh.gcCounted = p.gcOutliers(order)
	p.remember(fh)
	p.stragglers(v, now, evals)

	r := Round{At: now}
	bad := 0
	for _, e := range order {
		if !e.work {
			// No Flink work on the node: whatever its host shows slows no Flink job here.
			if len(e.host) > 0 {
				r.Findings = append(r.Findings, Finding{Node: e.name, Kind: FindingHostOnly, Class: e.class, Cause: e.hostCause,
					Detail: "host anomaly on a node that runs no TaskManager subtasks", Since: e.at, Evidence: e.host})
			}
			p.forget(e.name)
			continue
		}
		appSlow, impact := p.appEvidence(e)
		if appSlow || len(e.host) > 0 {
			// The fleet count takes what looks bad, learned or not: the breaker only ever holds back.
			bad++
		}
		if appSlow && e.learning && len(e.host) == 0 {
			// Slower than its peers since it joined, with nothing on the host: until its own
			// speed is learned this cannot be told from a slower machine.
			appSlow = false
		}
		p.judge(e, appSlow, impact, &r)
		p.learnSpeed(e)
		if f, ok := p.retrospective(e, v.Node(e.name), now); ok {
			r.Findings = append(r.Findings, f)
		}
	}
	// Slower hardware is judged once every node's speed is learned for the round: with the
	// yardstick taken before, the round in which the fleet's speeds were first learned judged
	// every node against the most common class, as though no other class had been learned, and
	// the machines at the fleet's median were reported as slower hardware in it (generated
	// gen-82038: 17 of the cluster's own machines, for that one round).
	p.hardwareYardstick(order)
	for _, e := range order {
		if e.work {
			p.slowerHardware(e, &r)
		}
	}
	// Targets not evaluated this round (no fresh report) keep their state but are listed as
	// unreachable when the node is.
	for _, name := range v.NodeNames() {
		if evals[v.Node(name).Index] != nil {
			continue
		}
		if !v.Reachable(name, now) {
			if now.Sub(v.Node(name).LastSeen) <= p.cfg.ForgetAfter {
				r.Verdicts = append(r.Verdicts, Verdict{Node: name, Status: StatusUnreachable, Cause: CauseUnknown, Since: v.Node(name).LastSeen})
			}
			continue
		}
		for t, tr := range p.tracks {
			if t.node == name && tr.status != StatusHealthy {
				r.Verdicts = append(r.Verdicts, tr.last)
			}
		}
	}
	sortVerdicts(r.Verdicts)
	r.Fleet = Fleet{Reporting: reporting, Anomalous: bad, Regressed: regressed, Late: late, Unreachable: vanished}
	return r
}

// inboundRetransmits adds up, for every node, what the others retransmitted to its addresses:
// packets lost on their way in show only at the senders, each a little. What they retransmitted
// to the addresses of silent nodes (known, but with no current report: cut off from the
// coordinator) is their peers' too, not their own loss, and is returned per silent node: the
// only account of its inbound loss while it is cut off, to be judged with its held-back reports
// when they arrive (see judgeReplayed). Nil when nothing was retransmitted to a silent node.
func inboundRetransmits(order []*nodeEval, silent []silentNode) map[string]silentInbound {
	byAddr := map[string]*nodeEval{}
	for _, e := range order {
		for _, a := range e.addresses {
			byAddr[a] = e
		}
	}
	var silentAddr map[string]string
	for _, sn := range silent {
		for _, a := range sn.addresses {
			if _, live := byAddr[a]; !live {
				if silentAddr == nil {
					silentAddr = map[string]string{}
				}
				silentAddr[a] = sn.name
			}
		}
	}
	var inbound map[string]silentInbound
	for _, e := range order {
		for addr, rate := range e.retransTo {
			if to := byAddr[addr]; to != nil && to != e {
				to.hd.Signals[model.SignalInboundRetrans] += rate
				to.inboundWitnesses++
				e.retransToPeers += rate
				e.retransOut = append(e.retransOut, retransmitsTo{to: to, rate: rate})
			} else if name, ok := silentAddr[addr]; ok && to == nil {
				e.retransToPeers += rate
				e.retransOut = append(e.retransOut, retransmitsTo{silent: name, rate: rate})
				if inbound == nil {
					inbound = map[string]silentInbound{}
				}
				in := inbound[name]
				in.rate += rate
				in.witnesses++
				inbound[name] = in
			}
		}
	}
	return inbound
}

// silentNode is a node known to the model with no current report, and its addresses.
type silentNode struct {
	name      string
	addresses []string
}

// silentInbound is what a round's reporting nodes retransmitted to one silent node: the rate, and
// how many of them did.
type silentInbound struct {
	rate      float64
	witnesses int
}

// forget drops a node's targets (it no longer runs Flink work).
func (p *Peer) forget(node string) {
	for k := range p.tracks {
		if k.node == node {
			delete(p.tracks, k)
		}
	}
}

// nodeSpeeds sets the speed each node is compared at (expect): its own learned speed, else the
// learned speed of its hardware class among the nodes linked to it (see linkNodes), else none
// yet (learning).
//
// A speed is only comparable with the speeds of linked nodes. The fit (polish) sees a node's
// speed only against the costs of the vertices it runs, and those only against the other nodes
// running them; between groups of nodes that share no vertex nothing in the rates fixes one
// group's speeds against another's (a group of slower machines is as well a group running
// costlier vertices), and each group's speed 1 is its own median node. A class's speed learned
// in another group is in another frame: in generated gen-250029, the class's members in other
// jobs were learned at 0.89, then, their groups' levels drifting, at up to 1.08, while a member
// running two subtasks of a job of its own (too few to learn its own speed) was measured at
// 0.83 of its job peers throughout; held to the class's speed, its two subtasks straggled
// whenever noise pushed them, and it was judged slow and migrated three times. A node with no
// class member linked to it learns like a node of no class.
func (p *Peer) nodeSpeeds(order []*nodeEval) {
	type classFrame struct {
		class  string
		linked int
	}
	classSpeeds := map[classFrame][]float64{}
	for _, e := range order {
		if sp := p.speed[e.name]; sp != nil && sp.n >= p.cfg.LearnWindows && e.class != "" {
			k := classFrame{e.class, e.linked}
			classSpeeds[k] = append(classSpeeds[k], sp.rel)
		}
	}
	// A class's median once per round, not once per node still learning its own speed.
	classMedian := map[classFrame]float64{}
	for _, e := range order {
		sp := p.speed[e.name]
		k := classFrame{e.class, e.linked}
		switch {
		case sp != nil && sp.n >= p.cfg.LearnWindows:
			e.expect = sp.rel
		case e.class != "" && len(classSpeeds[k]) >= p.cfg.MinClassPeers:
			m, ok := classMedian[k]
			if !ok {
				m = median(classSpeeds[k])
				classMedian[k] = m
			}
			e.expect = m
		default:
			e.learning = true
		}
		if e.expect <= 0 {
			e.expect = 1
		}
	}
}

// linkNodes groups the nodes whose speeds the round's rates compare: two nodes running subtasks
// of one measured vertex are linked, and so is every chain of such links. It numbers the groups
// (nodeEval.linked) and lists their members together in p.linked, each group ending at its entry
// in p.linkEnds.
func (p *Peer) linkNodes(order []*nodeEval) {
	for _, e := range order {
		e.link, e.linked = e, -1
	}
	from := 0
	for _, to := range p.groups {
		g := p.rates[from:to]
		from = to
		root := g[0].e.linkRoot()
		for _, o := range g[1:] {
			if r := o.e.linkRoot(); r != root {
				r.link = root
			}
		}
	}
	groups := 0
	for _, e := range order {
		r := e.linkRoot()
		if r.linked < 0 {
			r.linked = groups
			groups++
		}
		e.linked = r.linked
	}
	// Members listed group by group (a counting sort).
	p.linkEnds = slices.Grow(p.linkEnds[:0], groups)[:groups]
	clear(p.linkEnds)
	for _, e := range order {
		p.linkEnds[e.linked]++
	}
	for i := 1; i < groups; i++ {
		p.linkEnds[i] += p.linkEnds[i-1]
	}
	p.linked = slices.Grow(p.linked[:0], len(order))[:len(order)]
	for i := len(order) - 1; i >= 0; i-- {
		e := order[i]
		p.linkEnds[e.linked]--
		p.linked[p.linkEnds[e.linked]] = e
	}
	for i := range groups - 1 {
		p.linkEnds[i] = p.linkEnds[i+1]
	}
	if groups > 0 {
		p.linkEnds[groups-1] = len(order)
	}
}

// referenceClass is the fleet's most common hardware class: counted over every node the model
// knows and has heard from within ForgetAfter, reporting this round or not. Counted over the
// nodes reporting this round, a partition that cut off enough of the most common class made
// another the reference for its duration: every group's speed 1 moved to that class, the nodes
// that stayed learned their speeds in the new frame (a clean window moves a learned speed by
// SpeedAlpha), and when the partition healed they were expected faster or slower than they
// are, their subtasks straggled on no fault, and a node was judged slow, cause unknown
// (generated gen-1002, three classes, 45 % of the fleet cut off for 8 minutes). Which machines
// a fleet has does not change when some of them cannot be heard for a while.
func (p *Peer) referenceClass(v model.View, now time.Time) string {
	classes := map[string]int{}
	ref := ""
	for _, name := range v.NodeNames() {
		n := v.Node(name)
		c := n.Class()
		if c == "" || now.Sub(n.FirstSeen) > p.cfg.ForgetAfter && now.Sub(n.LastSeen) > p.cfg.ForgetAfter {
			continue
		}
		classes[c]++
		if k, r := classes[c], classes[ref]; k > r || k == r && c < ref {
			ref = c
		}
	}
	return ref
}

// linkRoot is the root of the union-find tree of nodes e is linked to (see linkNodes).
func (e *nodeEval) linkRoot() *nodeEval {
	for e.link != nil && e.link != e {
		if e.link.link != nil {
			e.link = e.link.link
		}
		e = e.link
	}
	return e
}

// polishRounds bounds how many times polish takes the vertex and node effects in turn, and
// polishSettled is the largest change of any node's speed at which it stops. From nothing a fit
// of a cluster with mixed machines takes about a dozen rounds; started from the speeds of the
// window before, one or two. polishBand is how far (as a log ratio, 3x) a rate may be from its
// group's median and still count in the group's mean: wide enough for any two hardware
// generations, narrow enough that a stalled subtask or a hot key does not move its peers.
const (
	polishRounds  = 20
	polishSettled = 0.002
)

var polishBand = math.Log(3)

// polish finds each node's speed this window (rel) by a two-way fit of log rate = node speed +
// vertex cost, each effect in turn the mean of its rates (less the other effect) within
// polishBand of their median, each group of linked nodes (see linkNodes) scaled so that its
// median node of the fleet's most common class is 1 (its median node when it has fewer than
// MinClassPeers of that class). Comparing each
// rate with its vertex's raw median is not enough once machines differ: that median is the
// speed of whichever machines the vertex happens to run on, so a node of a slower class
// measured against a vertex placed mostly on its own class looked as fast as its peers, against
// another as slow as it is, and its one learned speed fitted neither — the TaskManager whose
// jobs ran on faster machines was then judged slow for the whole run. Medians alone (Tukey's
// median polish) stop at the same wrong answer when the majority of a vertex's and of a node's
// rates agree with it; means within a band reach the fit that every rate pulls on, and keep
// what a median has against one stalled subtask.
//
// The speed a node learns (rel) is taken from the fit's ratios with a narrower band than the
// fit's own: the mean of the node's ratios within log Slowdown of their median. A machine's
// speed slows every subtask on it alike, so its ratios agree to within noise; one slower than
// the node's others by a straggler's margin is slowed by something of its own — a hot key, a
// slow external system it writes to, its own JVM — which is no property of the machine. With
// the fit's speed, a node running a hot-key subtask or a sink that writes to a slow broker
// learned that as its speed and was reported as slower hardware (public ctl-data-skew-50,
// ctl-slow-external-30), and was then compared at that lower speed. The fit itself keeps the
// wide band: it needs every rate that links a group of nodes to the others (a narrow node band
// left placements joined by few nodes to drift apart, window after window, gen-120030).
//
// Between groups of nodes that share no vertex nothing in the rates fixes one group's speeds
// against another's, so each group is scaled on its own. With the fleet's median node alone
// fixing the scale, a group's level was wherever the window before had left it, moved by
// whichever group the fleet's median node fell in: a group of older machines running one job
// drifted from 0.94 to 1.2 in half an hour (generated gen-250029), one of alike machines from
// 0.99 to 0.90, reported as slower hardware (gen-31017). Machines of one class are alike (the
// class speed lent to new nodes assumes as much), so the fleet's most common class is the one
// yardstick every group can be held to: by its own median node, a group placed mostly on an
// older class showed that class at speed 1, and it was never reported as slower hardware.
//
// It returns how many rounds the fit took.
func (p *Peer) polish(order []*nodeEval) (rounds int) {
	for _, e := range order {
		e.est = math.Log(e.expect)
		if sp := p.speed[e.name]; sp != nil && sp.est > 0 {
			e.est = math.Log(sp.est)
		}
	}
	// Every node's ratios are carved from one buffer kept on the Peer, each to the length the
	// fit fills it to: one allocation at most a round, where appending grew each node's slice
	// a few times a round (some 60,000 allocations a round at 10,000 nodes).
	total := 0
	for _, e := range order {
		e.unfrozen = 0
	}
	for _, o := range p.rates {
		if !o.frozen {
			o.e.unfrozen++
			total++
		}
	}
	p.ratioBuf = slices.Grow(p.ratioBuf[:0], total)[:total]
	buf := p.ratioBuf
	for _, e := range order {
		e.ratios, buf = buf[:0:e.unfrozen], buf[e.unfrozen:]
	}
	for rounds < polishRounds {
		rounds++
		for _, e := range order {
			e.ratios = e.ratios[:0]
		}
		from := 0
		for _, to := range p.groups {
			g := p.rates[from:to]
			from = to
			p.vals = p.vals[:0]
			for _, o := range g {
				p.vals = append(p.vals, o.logTPR-o.e.est)
			}
			cost := bandMean(p.vals)
			for _, o := range g {
				if !o.frozen {
					o.e.ratios = append(o.e.ratios, o.logTPR-cost)
				}
			}
		}
		fitted := 0
		for _, e := range order {
			e.rel = 0
			if len(e.ratios) > 0 {
				e.rel = bandMean(e.ratios)
				fitted++
			}
		}
		if fitted == 0 {
			break
		}
		from = 0
		for _, to := range p.linkEnds {
			g := p.linked[from:to]
			from = to
			p.vals = p.vals[:0]
			for _, e := range g {
				if len(e.ratios) > 0 && e.class != "" && e.class == p.refClass {
					p.vals = append(p.vals, e.rel)
				}
			}
			byRef := len(p.vals) >= p.cfg.MinClassPeers
			if !byRef {
				p.vals = p.vals[:0]
				for _, e := range g {
					if len(e.ratios) > 0 {
						p.vals = append(p.vals, e.rel)
					}
				}
			}
			if len(p.vals) > 0 {
				scale := median(p.vals)
				for _, e := range g {
					e.scale, e.byRefClass = scale, byRef
				}
			}
		}
		moved := 0.0
		for _, e := range order {
			if len(e.ratios) > 0 {
				e.rel -= e.scale
				moved = max(moved, math.Abs(e.rel-e.est))
				e.est = e.rel
			}
		}
		if moved < polishSettled {
			break
		}
	}
	nodeBand := math.Log(p.cfg.Slowdown)
	for _, e := range order {
		e.est = math.Exp(e.est)
		e.rel = 0
		if len(e.ratios) > 0 {
			e.rel = math.Exp(bandMeanWithin(e.ratios, nodeBand) - e.scale)
		}
	}
	return rounds
}

// bandMean is the mean of the xs within polishBand of their median (xs is reordered).
func bandMean(xs []float64) float64 {
	return bandMeanWithin(xs, polishBand)
}

// bandMeanWithin is the mean of the xs within band of their median, or the median when none
// but it is (xs is reordered).
func bandMeanWithin(xs []float64, band float64) float64 {
	m := median(xs)
	sum, n := 0.0, 0
	for _, x := range xs {
		if math.Abs(x-m) <= band {
			sum += x
			n++
		}
	}
	if n == 0 {
		return m
	}
	return sum / float64(n)
}

// learnSpeed folds a clean window into the node's learned speed.
func (p *Peer) learnSpeed(e *nodeEval) {
	sp := p.speed[e.name]
	if sp == nil {
		sp = &nodeSpeed{since: e.at}
		p.speed[e.name] = sp
	}
	if len(e.ratios) >= p.cfg.MinPeers {
		sp.est = e.est
	}
	clean := len(e.host) == 0 && len(e.ratios) >= p.cfg.MinPeers
	if tr := p.tracks[target{node: e.name}]; tr != nil && tr.status != StatusHealthy {
		clean = false
	}
	for k, tr := range p.tracks {
		if k.node == e.name && k.tm != "" && tr.status != StatusHealthy {
			clean = false
		}
	}
	if clean {
		switch {
		case sp.n < p.cfg.LearnWindows:
			// The first windows are averaged equally; a class peer's speed seeds nothing, so a
			// node is never held to a class it does not behave like.
			sp.rel = (sp.rel*float64(sp.n) + e.rel) / float64(sp.n+1)
			sp.n++
			sp.frame = p.frameOf(e)
			if sp.n == p.cfg.LearnWindows {
				sp.joined = sp.rel
			}
		case p.frameOf(e) == sp.frame:
			// Only a window measured in the frame the speed was learned in moves it. A group
			// scaled by its own median node while too few of the reference class report (a
			// partition cut them off), or by another class once the reference changed, has its
			// speed 1 wherever that median or class falls; learned from,
			// the window moved the speeds of the nodes still reporting, a little each window,
			// and when the partition healed the nodes that had been cut off were slower than the
			// drifted median by a straggler's margin (generated gen-250004: 12 nodes, up to 10
			// cut off, 8 false migrations).
			sp.rel += p.cfg.SpeedAlpha * (e.rel - sp.rel)
		}
	}
}

// slowerHardware reports a node that is reliably slower than the fleet's usual machine (the
// yardstick), with nothing wrong on its host, as slower hardware.
func (p *Peer) slowerHardware(e *nodeEval, r *Round) {
	sp := p.speed[e.name]
	if sp == nil {
		return
	}
	// Slower hardware is slower since the node joined: a node learned at its peers' speed that
	// drifts below the cut later has not changed machines — the work placed on it has (subtasks
	// writing to a slow broker, a mix of heavier keys) — and is no class finding. Before, a
	// placement group hosting slow-sink subtasks drifted from its peers' speed to 0.867 against
	// the 0.870 cut (ctl-slow-external-30: 9 false slower-hardware findings).
	yard := 1.0
	if e.byRefClass {
		yard = p.yardstick
	}
	if sp.n >= p.cfg.LearnWindows && sp.rel > 0 && sp.rel*p.cfg.SlowerHardware < yard && sp.joined*p.cfg.SlowerHardware < yard && len(e.host) == 0 {
		r.Findings = append(r.Findings, Finding{Node: e.name, Kind: FindingSlowerHardware, Class: e.class, Speed: round3(sp.rel / yard),
			Detail: fmt.Sprintf("processes %.2fx slower than its peers since %s with no host signal: a slower machine, not a slow node",
				yard/sp.rel, sp.since.Format(time.RFC3339)), Since: sp.since})
	}
}

// frameOf names the frame the fit measured e's speed in this round: the reference class its
// group was scaled by, or "" where the group was scaled by its own median node.
func (p *Peer) frameOf(e *nodeEval) string {
	if e.byRefClass {
		return p.refClass
	}
	return ""
}

// hardwareYardstick sets the speed slower hardware is judged against (p.yardstick), in the
// frame of the fleet's most common class (refClass, speed 1 in every group of linked nodes
// scaled by it): that class (1), unless the class of the fleet's median machine is SlowerHardware
// faster or slower than it, each class at the median of its members' learned speeds, among
// classes with MinClassPeers learned members in such groups; the median machine's class is then
// the yardstick. A slower machine is slower than the fleet's median machine (as the benchmark
// scores it: sim/runner's slowerHardware).
//
// The most common class alone mistook an older class for the fleet's usual machine wherever
// that class was the largest single one: in generated gen-740023 (seed 740000, three classes)
// 33 nodes 1.56x slower outnumber the 29 of the cluster's own machines, and none of the 46
// slower-class nodes was reported. The yardstick moved only up, so older classes that are
// together most of the fleet, each smaller than the largest class of newer machines, were all
// reported as slower hardware, and where the largest class was a newer one, so were the
// machines at the fleet's median (generated gen-82038: 17 of the cluster's own machines, its
// median, reported 1.29x slower than the 18 newer ones). Where most of a fleet's machines are of
// an older generation, those are its usual machines. Classes within
// SlowerHardware of each other are alike for this question: where the median machine is of a
// class less than that faster than the most common one, the yardstick stays 1, as before. Moving
// it by less flagged the edge of a class just above the cut whenever partitioned nodes made
// another class the most common for a while, and the learned speeds were still in the old
// frame (generated gen-160002, gen-410037: 13 and 6 false findings). Only the finding reads the
// yardstick: no detection rule does, and no finding is acted on.
func (p *Peer) hardwareYardstick(order []*nodeEval) {
	p.yardstick = 1
	if p.refClass == "" {
		return
	}
	if p.classSpeeds == nil {
		p.classSpeeds = map[string][]float64{}
	}
	for c, xs := range p.classSpeeds {
		p.classSpeeds[c] = xs[:0]
	}
	for _, e := range order {
		if sp := p.speed[e.name]; sp != nil && sp.n >= p.cfg.LearnWindows && e.class != "" && e.byRefClass {
			p.classSpeeds[e.class] = append(p.classSpeeds[e.class], sp.rel)
		}
	}
	type classSpeed struct {
		class string
		speed float64
		n     int
	}
	var classes []classSpeed
	members, ref := 0, 0.0
	for c, xs := range p.classSpeeds {
		if len(xs) == 0 {
			delete(p.classSpeeds, c)
			continue
		}
		if len(xs) >= p.cfg.MinClassPeers {
			m := median(xs)
			if c == p.refClass {
				ref = m
			}
			classes = append(classes, classSpeed{c, m, len(xs)})
			members += len(xs)
		}
	}
	if ref <= 0 {
		return
	}
	slices.SortFunc(classes, func(a, b classSpeed) int { return cmp.Compare(a.speed, b.speed) })
	// The median machine: the class holding the lower middle member, so that a fleet split
	// evenly between two classes keeps the slower one's yardstick (no finding on a tie).
	seen := 0
	for _, c := range classes {
		seen += c.n
		if 2*seen >= members {
			if c.speed >= p.cfg.SlowerHardware*ref || c.speed*p.cfg.SlowerHardware <= ref {
				p.yardstick = c.speed
			}
			return
		}
	}
}

func round3(x float64) float64 { return float64(int(x*1000+0.5)) / 1000 }

// hostAnomalies compares every row of model.HostSignals across the nodes with a valid host
// digest: a node is anomalous on a signal when it is above the median by the row's floor and
// ratio. It then names each anomalous node's host cause, and returns what the fleet's hosts
// looked like this round.
func (p *Peer) hostAnomalies(order []*nodeEval, silentIn map[string]silentInbound, now time.Time) fleetHost {
	vals := make([]float64, 0, len(order))
	fh := p.fleetHost(order, vals)
	fh.at = now
	fh.silentInbound = silentIn
	for _, e := range order {
		e.runqMedian = fh.medians[model.SignalRunqMean]
		p.raiseHost(e, &fh)
		fh.lossyReceivers = fh.lossyReceivers || e.raised.Has(model.SignalInboundRetrans)
	}
	// A silent node's inbound loss is raised as a reporting node's would be.
	var silentLossy map[string]bool
	for name, in := range silentIn {
		w := nodeEval{hostValid: true}
		w.hd.Signals[model.SignalInboundRetrans] = in.rate
		p.raiseHost(&w, &fh)
		if w.raised.Has(model.SignalInboundRetrans) {
			if silentLossy == nil {
				silentLossy = map[string]bool{}
			}
			silentLossy[name] = true
			fh.lossyReceivers = true
		}
	}
	for _, e := range order {
		if e.raised&ownLossSignals != 0 && lossAtReceivers(e, silentLossy) {
			// Most of what this node retransmits goes to peers that lose packets on their way
			// in, as several senders witness: that loss is the receivers', scored there. Counted
			// here too, every node that sends to a lossy receiver looked like it lost packets
			// itself, and with its subtasks blocked on the slow receiver it was judged slow.
			e.raised &^= ownLossSignals
		}
	}
	scores := map[Cause]float64{}
	for _, e := range order {
		scoreHost(e, &fh, scores)
	}
	return fh
}

// fleetHost is what the fleet's hosts looked like in one round: each signal's median over the
// nodes with a valid host digest, and the level at which a node stands out of them
// (HostStandOut); counted marks the signals with enough nodes (3) to compare at all. gcMedian
// is the median TaskManager's GC time, when gcCounted (3 JVMs or more).
type fleetHost struct {
	at        time.Time
	counted   model.SignalSet
	medians   [model.NumSignals]float64
	standOut  [model.NumSignals]float64
	gcMedian  float64
	gcCounted bool
	// silentInbound is what the round's reporting nodes retransmitted to each silent node
	// (see inboundRetransmits); nil when nothing. lossyReceivers: some node, reporting or
	// silent, lost packets on their way in (its inbound retransmits raised), so its senders'
	// retransmits were partly its loss.
	silentInbound  map[string]silentInbound
	lossyReceivers bool
}

// fleetHost takes the round's fleetHost from the nodes in order (vals is scratch); at is left
// to the caller.
func (p *Peer) fleetHost(order []*nodeEval, vals []float64) fleetHost {
	var fh fleetHost
	for i := range model.HostSignals {
		sig := model.Signal(i)
		vals = vals[:0]
		for _, e := range order {
			if e.hostValid {
				vals = append(vals, e.hd.Signals[sig])
			}
		}
		if len(vals) < 3 {
			continue
		}
		fh.counted = fh.counted.With(sig)
		med := median(vals)
		fh.medians[sig] = med
		fh.standOut[sig] = math.Inf(1)
		if p.cfg.HostStandOut > 0 {
			for i, v := range vals {
				vals[i] = math.Abs(v - med)
			}
			fh.standOut[sig] = med + p.cfg.HostStandOut*madToStdDev*median(vals)
		}
	}
	return fh
}

// raiseHost marks the node's host signals above the fleet's medians by their floors
// (abovePeers), and those that are also their ratio above or stand out (raised).
func (p *Peer) raiseHost(e *nodeEval, fh *fleetHost) {
	if !e.hostValid {
		return
	}
	for i := range model.HostSignals {
		sig, row := model.Signal(i), &model.HostSignals[i]
		if !fh.counted.Has(sig) {
			continue
		}
		med := fh.medians[sig]
		if x := e.hd.Signals[sig]; x > med+row.Floor {
			e.abovePeers = e.abovePeers.With(sig)
			if x > row.Ratio*med || x > fh.standOut[sig] {
				e.raised = e.raised.With(sig)
			}
		}
	}
}

// scoreHost keeps the node's raised signals that its own load does not explain as its host
// evidence, scores them (floors above the fleet's medians, summed) and names the host cause
// (scores is scratch).
func scoreHost(e *nodeEval, fh *fleetHost, scores map[Cause]float64) {
	medians := &fh.medians
	e.raised = selfLoadExplained(e.raised, e.abovePeers&cpuWaits != 0, e.hd.CPUBusy+e.hd.Signals[model.SignalSteal] >= saturatedCPU)
	if e.raised == 0 {
		return
	}
	clear(scores)
	for i := range model.HostSignals {
		sig, row := model.Signal(i), &model.HostSignals[i]
		if !e.raised.Has(sig) {
			continue
		}
		v, med := e.hd.Signals[sig], medians[sig]
		e.host = append(e.host, Evidence{Kind: "host", Signal: row.Name, Value: v, PeerMedian: med, Since: e.at})
		x := (v - med) / row.Floor
		scores[resourceCause[row.Resource]] += x
		e.hostScore += x
		if ownLossSignals.Has(sig) {
			e.lossScore += x
		}
	}
	// A quota and a neighbour both take CPU from the TaskManagers: one family of causes,
	// told apart below.
	scores[CauseCPU] += scores[CauseThrottled]
	best := CauseUnknown
	for _, c := range []Cause{CauseCPU, CauseDisk, CauseNetwork, CauseMemory} {
		if scores[c] > scores[best] {
			best = c
		}
	}
	if best == CauseNetwork && cpuStarved(e.raised) {
		// The TaskManagers' threads wait for a CPU that something else takes: the same
		// starvation delays the kernel's packet processing and acknowledgements, and TCP
		// retransmits (timeouts, tail-loss probes). Loss cannot make threads wait for a CPU,
		// so the CPU is the cause and the retransmits its symptom.
		best = CauseCPU
	}
	e.hostCause = best
	if best == CauseCPU {
		switch {
		case e.raised.Has(model.SignalSteal):
			// Steal is the hypervisor's own account of CPU taken: it explains the run
			// queue and pressure that come with it, which no neighbour on the node does.
			e.hostCause = CauseSteal
		case e.raised.Has(model.SignalTMThrottled):
			// A throttled TaskManager got all the CPU its quota allows: the quota, not a
			// neighbour, is its limit (one starved by a neighbour never reaches its quota).
			// What others use of the CPU it leaves is not contention.
			e.hostCause = CauseThrottled
		}
	}
}

// lossAtReceivers says whether at least half of what e retransmits goes to peers whose inbound
// retransmits are raised (silentLossy: silent ones whose are): their loss on the way in, not
// e's own.
func lossAtReceivers(e *nodeEval, silentLossy map[string]bool) bool {
	lost := 0.0
	for _, r := range e.retransOut {
		if r.to != nil && r.to.raised.Has(model.SignalInboundRetrans) || r.silent != "" && silentLossy[r.silent] {
			lost += r.rate
		}
	}
	return lost > 0 && lost >= 0.5*e.hd.Signals[model.SignalRetransRate]
}

// madToStdDev turns a median absolute deviation into the standard deviation it stands for
// (normally distributed values).
const madToStdDev = 1.4826

// saturatedCPU is the share of the node's CPU time, busy or stolen, above which it has no idle
// CPU to speak of: whatever one tenant gains, another loses.
const saturatedCPU = 0.95

// cpuWaits are the signals of threads waiting for a CPU; cpuTakers those that say who took it.
// ownLossSignals are the node's own retransmits (not what others retransmitted to it);
// networkSignals all that point to the network.
var (
	cpuWaits       = model.SignalsOf(model.SignalRunqMean, model.SignalTMRunqMean, model.SignalPSICPU)
	cpuTakers      = model.SignalsOf(model.SignalSteal, model.SignalOtherCPU, model.SignalBusiestNeighbourCPU, model.SignalTMThrottled)
	ownLossSignals = model.SignalsOf(model.SignalRetransRate, model.SignalRetransRatio)
	networkSignals = model.SignalsFor(model.ResourceNetwork)
)

// selfLoadExplained drops run-queue and CPU-pressure anomalies that nothing taking CPU (steal,
// CPU used outside the TaskManagers, one busy neighbour, the TaskManagers' own quota) explains:
// a node busy with its own subtasks queues threads too, and that is load, not a neighbour taking
// the machine. A busy neighbour, or CPU used outside the TaskManagers at all, that makes no
// thread wait is no contention either, unless the node has no idle CPU left (saturated): then
// what others use comes out of the TaskManagers' share, however long the run queue already was
// across a busy fleet. (CPU used beside idle CPU was host evidence on its own: a node whose
// hot-key subtasks lagged was judged slow, cpu_contention, for a pod using a core or two of 32.)
//
// Whether threads wait is waitsAbovePeers: a wait signal above the peer median by its floor,
// not necessarily by the ratio that makes it evidence on its own. The question here is only
// whether what others use is felt at all; when the whole fleet already waits (steal on every
// machine in a cluster-wide slowdown), a ratio over that shared wait cannot be reached, and a
// neighbour taking a third of a node's cores was dropped as harmless while its subtasks were
// 1.5x slower (generated gen-52010: cause unknown, no culprit, slow 21 s late).
func selfLoadExplained(raised model.SignalSet, waitsAbovePeers, saturated bool) model.SignalSet {
	takers := raised&cpuTakers != 0
	if !takers {
		raised &^= cpuWaits
	}
	if !waitsAbovePeers && !saturated {
		raised &^= model.SignalsOf(model.SignalBusiestNeighbourCPU, model.SignalOtherCPU)
	}
	return raised
}

// cpuStarved says whether the TaskManagers' threads wait for a CPU that something other than
// their own load takes.
func cpuStarved(raised model.SignalSet) bool {
	return raised&cpuWaits != 0 && raised&cpuTakers != 0
}

// gcOutliers compares every TaskManager's GC time with all TaskManagers in the cluster, and
// returns their median (ok: there were enough to compare).
func (p *Peer) gcOutliers(order []*nodeEval) (med float64, ok bool) {
	var gcs []float64
	for _, e := range order {
		for _, t := range e.tms {
			gcs = append(gcs, t.gc)
		}
	}
	if len(gcs) < 3 {
		return 0, false
	}
	med = median(gcs)
	for _, e := range order {
		for _, t := range e.tms {
			t.gcMedian = med
			t.gcOutlier = p.gcOutlier(t.gc, med)
			t.gcElevated = t.gc > med+p.cfg.GCElevatedMs && t.gc > 2*med
		}
	}
	return med, true
}

// gcOutlier says whether a JVM spending gc ms per second in GC, against the fleet's median
// TaskManager's med, is far out (GCExcessMs above it, and 4x it).
func (p *Peer) gcOutlier(gc, med float64) bool {
	return gc > med+p.cfg.GCExcessMs && gc > 4*med
}

// stragglers compares each subtask's true processing rate and backpressure with its vertex peers.
func (p *Peer) stragglers(v model.View, now time.Time, evals []*nodeEval) {
	var tprs, bps []float64
	since := v.FreshSince(now)
	straggling := map[*model.Subtask]bool{}
	defer func() {
		for st := range p.slowSince {
			// Forget subtasks that recovered, and those with no fresh report this round.
			if !straggling[st] {
				delete(p.slowSince, st)
			}
		}
	}()
	order := p.byIndex[:0]
	for _, e := range evals {
		if e != nil {
			order = append(order, e)
		}
	}
	p.byIndex = order
	// First pass: each node's speed this window, against its subtasks' vertex medians. It also
	// gathers what the second pass reads of every fresh subtask (p.fresh).
	vertices := v.Vertices()
	p.rates, p.groups = p.rates[:0], p.groups[:0]
	p.fresh, p.freshEnds = p.fresh[:0], p.freshEnds[:0]
	for _, vx := range vertices {
		from := len(p.rates)
		for _, st := range vx.Subtasks {
			if st.At.Before(since) || evals[st.NodeIndex] == nil {
				continue
			}
			t, ok := st.Metrics.TPR(p.cfg.MinBusyMs)
			f := freshSubtask{st: st, e: evals[st.NodeIndex], taskManager: st.TaskManager, tpr: t, bp: st.Metrics.BackpressuredMs,
				tprOK: ok, frozen: v.Frozen(st)}
			p.fresh = append(p.fresh, f)
			if ok {
				// Frozen figures are compared like any others, but the node's speed is learned
				// only from figures that still move (model.Config.FrozenAfter).
				p.rates = append(p.rates, rateObs{e: f.e, logTPR: math.Log(t), frozen: f.frozen})
			}
		}
		p.freshEnds = append(p.freshEnds, len(p.fresh))
		if len(p.rates)-from < p.cfg.MinPeers {
			p.rates = p.rates[:from]
			continue
		}
		p.groups = append(p.groups, len(p.rates))
	}
	p.refClass = p.referenceClass(v, now)
	p.linkNodes(order)
	p.nodeSpeeds(order)
	p.polish(order)
	// Second pass: every rate divided by its node's expected speed, so a subtask is compared
	// with its peers as if all ran on alike machines.
	from := 0
	for i, vx := range vertices {
		fresh := p.fresh[from:p.freshEnds[i]]
		from = p.freshEnds[i]
		tprs, bps = tprs[:0], bps[:0]
		for _, f := range fresh {
			bps = append(bps, f.bp)
			if f.tprOK {
				tprs = append(tprs, f.tpr/f.e.expect)
			}
		}
		if len(tprs) < p.cfg.MinPeers {
			continue
		}
		medTPR := median(tprs)
		medBP := median(bps)
		for _, f := range fresh {
			if f.frozen {
				// Figures that have not moved for FrozenAfter say nothing about now (the
				// TaskManager's metrics went stale): they still count in their vertex's median,
				// but cannot make their own node look slow against peers whose load moved on.
				continue
			}
			e, raw, ok := f.e, f.tpr, f.tprOK
			t := raw / e.expect
			blocked := f.bp > medBP+p.cfg.BackpressureExcessMs
			if !ok && !blocked {
				continue
			}
			e.measured++
			tm := e.tm(f.taskManager)
			tm.measured++
			slow := ok && t*p.cfg.Slowdown < medTPR
			if !slow && !blocked {
				continue
			}
			st := f.st
			ev := Evidence{Kind: "subtask", JobID: vx.Key.JobID, JobName: vx.JobName, VertexID: vx.Key.VertexID,
				VertexName: vx.Name, Subtask: st.Index, TaskManager: st.TaskManager, TPR: raw, PeerMedianTPR: medTPR * e.expect, Since: st.At}
			if first, seen := p.slowSince[st]; seen {
				ev.Since = first
			} else {
				p.slowSince[st] = st.At
			}
			straggling[st] = true
			switch {
			case slow:
				ev.Slowdown = medTPR / t
				e.stragglers = append(e.stragglers, ev)
				tm.stragglers++
				if !slices.Contains(tm.vertices, vx.Key) {
					tm.vertices = append(tm.vertices, vx.Key)
				}
				e.addVertex(vx.Key)
			case blocked:
				// Blocked on its own output while its peers are not: a slow network path, or
				// only more load behind one hot receiver; appEvidence decides which.
				ev.Signal, ev.Value, ev.PeerMedian = "backpressured_ms_per_s", f.bp, medBP
				e.blocked = append(e.blocked, ev)
				if !slices.Contains(e.blockedVertices, vx.Key) {
					e.blockedVertices = append(e.blockedVertices, vx.Key)
				}
			}
		}
	}
}

// freshSubtask is what stragglers reads of one subtask reported fresh on a node judged this
// round, gathered in its first walk over the model's subtasks: the second pass reads these in
// a row instead of each subtask's entry again (at 10,000 nodes, 200,000 entries scattered over
// the heap, a cache miss each, twice more per round).
type freshSubtask struct {
	st          *model.Subtask
	e           *nodeEval
	taskManager string
	tpr, bp     float64 // tpr is the raw true processing rate when tprOK, else 0
	tprOK       bool
	frozen      bool
}

// appEvidence says whether the node's subtasks, across vertices, are slower than their peers
// (appSlow), and whether any of them is (impact).
func (p *Peer) appEvidence(e *nodeEval) (appSlow, impact bool) {
	k := len(e.stragglers)
	vertices := len(e.vertices)
	if e.networkTrouble() {
		k += len(e.blocked)
		for _, vk := range e.blockedVertices {
			if !slices.Contains(e.vertices, vk) {
				vertices++
			}
		}
	} else {
		e.blocked = nil
	}
	e.slowVertices = vertices
	// One mildly odd subtask is noise or its own data; impact means at least two, all there
	// are, or one clearly slower than its peers.
	impact = k >= 2 || (k > 0 && k == e.measured)
	for _, ev := range e.stragglers {
		impact = impact || ev.Slowdown >= p.cfg.SingleSlowdown
	}
	if e.measured == 0 {
		return false, impact
	}
	share := float64(k) / float64(e.measured)
	return share >= p.cfg.NodeShare && vertices >= p.cfg.MinVertices, impact
}

// ownLoss says whether the node loses its own packets severely: the true processing rate is
// blind to the network (waiting for it is idle or backpressured time, never busy time), and a
// receiver's loss leaves its own subtasks idle while its senders elsewhere block, so severe loss
// is evidence on its own, like app impact. Retransmits mostly to other nodes' addresses are
// their inbound loss (scored there), and loss that CPU starvation explains is the CPU's.
func (e *nodeEval) ownLoss(severe float64) bool {
	return e.hostCause == CauseNetwork && e.lossScore > 0 && e.lossScore >= severe && e.retransToPeers < 0.5*e.hd.Signals[model.SignalRetransRate]
}

// networkTrouble says whether the node retransmits far more than its peers.
func (e *nodeEval) networkTrouble() bool {
	return e.raised&networkSignals != 0
}

// tmProblem finds a single TaskManager whose subtasks straggle while the node's others do not,
// or whose JVM spends far more time in GC than its peers with the host itself quiet.
func (p *Peer) tmProblem(e *nodeEval, impact bool) *tmEval {
	if !gcExplainsHost(e.raised) {
		// Disk, network, memory or a neighbour's CPU: the node is the problem, even if the
		// subtasks of one TaskManager happen to show it first.
		return nil
	}
	var gcBad []*tmEval
	for _, t := range e.tms {
		if t.gcOutlier {
			gcBad = append(gcBad, t)
		}
	}
	if !impact {
		// A JVM spending a large share of its time in GC stalls its tasks even when they are
		// too idle for their rates to show it.
		if len(gcBad) == 1 {
			return gcBad[0]
		}
		return nil
	}
	var bad, good []*tmEval
	for _, t := range e.tms {
		if t.measured == 0 {
			continue
		}
		share := float64(t.stragglers) / float64(t.measured)
		switch {
		case share >= 0.5 && (t.gcElevated || len(t.vertices) >= p.cfg.MinVertices):
			bad = append(bad, t)
		case share <= 0.2:
			good = append(good, t)
		}
	}
	if len(bad) == 1 && len(good) > 0 {
		if e.learning && !bad[0].gcElevated && len(e.host) == 0 {
			// Until the node's speed is learned, one TaskManager's subtasks lagging with nothing
			// on its JVM or the host cannot be told from where they landed (hardware, data):
			// the same rule as for the node.
			return nil
		}
		return bad[0]
	}
	// The one bad JVM is also far out on GC time, and nothing on the host points elsewhere (its
	// GC threads load the CPUs, so CPU signals may rise with it, but steal or disk, memory and
	// network trouble point at the node): the JVM explains its stragglers. This holds with one
	// TaskManager on the node, and when the others are merely not clean — a slower machine or
	// noise leaves a few of their subtasks behind, which is no second bad TaskManager.
	if len(bad) == 1 && bad[0].gcElevated {
		return bad[0]
	}
	// One JVM far out on GC time (an outlier, not merely elevated) that holds most of the node's
	// stragglers: it explains them even when fewer than half of its own subtasks straggle this
	// window — pauses stall tasks unevenly, and a window's rate catches some of them and not
	// others. Without this, a node with one TaskManager was blamed for its JVM in the windows
	// where the pauses missed most subtasks.
	if len(gcBad) == 1 {
		total := 0
		for _, t := range e.tms {
			total += t.stragglers
		}
		if 2*gcBad[0].stragglers > total {
			return gcBad[0]
		}
	}
	return nil
}

// gcBeyondTakenCPU says whether JVM t, on a node whose CPU is taken, spends more time in GC than
// the taken CPU explains. Taken CPU slows the collectors of every JVM on the node alike, so with
// node-mates their GC time is the measure: t has a fault of its own when none of them is even
// elevated (aloneOnItsNode). The only JVM on a node has no mate; its subtasks measure the same
// stretch — taken CPU stretches everything the JVM does alike, collections included, by the
// node's expected speed over its speed this window — and a JVM collecting longer than its
// peers' median GC time stretched by that factor, by the outlier margin (GCExcessMs), collects
// more, not more slowly. The factor is measured with the JVM's own pauses in it, which only
// raises the bar. Generated gen-64018: a neighbour took node-0007's CPU (subtasks 2.6x slower,
// GC time 11 ms/s against the fleet's 8), then the GC storm of its only JVM (400 ms/s) was never
// judged.
func (p *Peer) gcBeyondTakenCPU(e *nodeEval, t *tmEval) bool {
	if len(e.tms) > 1 {
		return aloneOnItsNode(e, t)
	}
	if e.rel <= 0 || e.expect <= 0 {
		// No rate measured this window: nothing says how much the CPU is stretched.
		return false
	}
	stretch := max(1, e.expect/e.rel)
	return t.gc > t.gcMedian*stretch+p.cfg.GCExcessMs
}

// aloneOnItsNode says whether t is the only JVM on its node with raised GC time, and has
// node-mates to be compared with.
func aloneOnItsNode(e *nodeEval, t *tmEval) bool {
	mates := 0
	for _, o := range e.tms {
		if o == t {
			continue
		}
		if o.gcElevated {
			return false
		}
		mates++
	}
	return mates > 0
}

// gcExplainsHost says whether a JVM's GC could be all the host shows: its GC threads load the
// CPUs, so threads wait for them, but nothing else rises with it.
func gcExplainsHost(raised model.SignalSet) bool {
	return raised&^cpuWaits == 0
}

// outcome is what one window says about a target.
type outcome struct {
	// strong: host evidence and app impact agree; weak: the node's subtasks are slow across
	// vertices, or host evidence comes with some app impact; host: a severe host anomaly alone;
	// decisive: node-wide stragglers with a clear host anomaly; hostHigh: a host anomaly at the
	// decisive score, app evidence or not.
	strong, weak, host, decisive, hostHigh bool
}

func (p *Peer) judge(e *nodeEval, appSlow, impact bool, r *Round) {
	nodeKey := target{node: e.name}
	tmBad := p.tmProblem(e, impact)
	if tmBad != nil {
		// One JVM's trouble: judged as that TaskManager, and the node itself stays clean.
		// The JVM's own GC time and its subtasks across vertices are two witnesses.
		// A JVM far out on GC time loses that time from every task it runs: measured impact.
		o := outcome{weak: true, strong: tmBad.gcOutlier,
			decisive: p.cfg.DecisiveHostScore > 0 && tmBad.gcOutlier && len(tmBad.vertices) >= p.cfg.MinVertices}
		p.step(target{node: e.name, tm: tmBad.id}, e, o, r, tmBad)
		p.step(nodeKey, e, outcome{}, r, nil)
		return
	}
	o := outcome{
		// Loss on the way in, reported by several senders, is as many independent witnesses.
		strong: (appSlow || impact) && len(e.host) > 0 || e.inboundWitnesses >= p.cfg.MinPeers && e.raised.Has(model.SignalInboundRetrans) ||
			e.ownLoss(p.cfg.SevereHostScore),
		weak: appSlow || (len(e.host) > 0 && impact),
		host: len(e.host) > 0 && e.hostScore >= p.cfg.SevereHostScore,
		// A host anomaly this far out held for StrongWindows needs no app witness: its two
		// windows are two witnesses in time, and the subtasks may well be blind to it — the
		// true processing rate does not see a disk that only the state backend's flushes and
		// checkpoints touch, nor CPU taken from subtasks that idle between records. Six windows
		// (HostOnlyWindows) stay for anomalies between SevereHostScore and this, where one
		// burst (a backup, a log rotation) is as likely. Before, a disk at 100 ms await against
		// its peers' 0.4 was slow only after 30 s (generated sets' TTD p95 of 25-30 s).
		hostHigh: len(e.host) > 0 && p.cfg.DecisiveHostScore > 0 && e.hostScore >= p.cfg.DecisiveHostScore,
		decisive: len(e.host) > 0 && p.cfg.DecisiveHostScore > 0 && e.hostScore >= p.cfg.DecisiveHostScore &&
			(appSlow || impact && e.slowVertices >= p.cfg.MinVertices),
	}
	p.step(nodeKey, e, o, r, nil)
	stepped := map[string]bool{}
	if e.hostCause == CauseNetwork || e.hostCause == CauseDisk || e.hostCause == CauseCPU || e.hostCause == CauseSteal {
		// A JVM far out on GC time on a node with network or disk trouble has a second,
		// independent fault: neither makes a JVM collect garbage (memory pressure may, so that
		// stays the node's). A CPU taken by a neighbour or the hypervisor slows the GC threads
		// of every JVM on the node alike, so under it only a JVM that stands out from its
		// node-mates (none of them even elevated) has a fault of its own; before, a GC storm
		// in one of two JVMs on a contended node was never judged (generated gen-64018,
		// gen-52010); the only JVM on the node has one when it collects for longer than the
		// taken CPU stretches collection (see gcBeyondTakenCPU). A TaskManager's own quota
		// (throttled) stays the node's: it slows that one JVM's collector alone.
		for _, t := range e.tms {
			if t.gcOutlier && (e.hostCause == CauseNetwork || e.hostCause == CauseDisk || p.gcBeyondTakenCPU(e, t)) {
				stepped[t.id] = true
				p.step(target{node: e.name, tm: t.id}, e, outcome{weak: true, strong: true,
					decisive: p.cfg.DecisiveHostScore > 0 && len(t.vertices) >= p.cfg.MinVertices}, r, t)
			}
		}
	}
	for t, tr := range p.tracks {
		if t.node == e.name && t.tm != "" && !stepped[t.tm] && tr.status != StatusHealthy {
			p.step(t, e, outcome{}, r, nil)
		}
	}
}

func (p *Peer) step(k target, e *nodeEval, o outcome, r *Round, tm *tmEval) {
	any := o.strong || o.weak || o.host
	tr := p.tracks[k]
	if tr == nil {
		if !any && (k.tm != "" || len(e.host) == 0) {
			return
		}
		tr = &track{status: StatusHealthy}
		p.tracks[k] = tr
	}
	if gap := e.at.Sub(tr.seen); !tr.seen.IsZero() && gap > time.Duration(p.cfg.ClearWindows)*p.interval {
		// The target was out of sight (a partition, an agent restart): what made it slow
		// before is stale, so it starts over from this window.
		*tr = track{status: StatusHealthy}
	}
	if e.at.After(tr.seen) {
		tr.seen = e.at
		tr.weakHist <<= 1
		if o.weak || o.strong {
			tr.weakHist |= 1
		}
		if any {
			if tr.strong == 0 && tr.host == 0 && tr.clean > 0 || tr.firstStrike.IsZero() {
				tr.firstStrike = e.at
			}
			tr.clean = 0
		} else {
			tr.clean++
			if tr.clean >= p.cfg.ClearWindows {
				tr.firstStrike = time.Time{}
			}
		}
		tr.strong = count(o.strong, tr.strong)
		tr.host = count(o.host, tr.host)
		tr.hostHigh = count(o.hostHigh, tr.hostHigh)
	}
	weak := bits.OnesCount32(tr.weakHist & (1<<p.cfg.WeakOf - 1))
	switch {
	case tr.status == StatusSlow && tr.clean < p.cfg.ClearWindows:
	case o.decisive || tr.strong >= p.cfg.StrongWindows || weak >= p.cfg.WeakWindows || tr.host >= p.cfg.HostOnlyWindows ||
		tr.hostHigh >= p.cfg.StrongWindows:
		if tr.status != StatusSlow {
			tr.since = tr.firstStrike
		}
		tr.status = StatusSlow
	case any || len(e.host) > 0:
		if tr.status != StatusSuspect {
			tr.since = e.at
		}
		tr.status = StatusSuspect
	default:
		tr.status = StatusHealthy
	}
	if tr.status == StatusHealthy {
		if tr.weakHist&(1<<p.cfg.WeakOf-1) == 0 {
			delete(p.tracks, k)
		}
		return
	}
	vd := Verdict{Node: k.node, TaskManager: k.tm, Status: tr.status, Since: tr.since}
	if tr.clean > 0 && tr.status == StatusSlow {
		// Clearing: keep the evidence that made it slow.
		vd = tr.last
		vd.Status = tr.status
	} else {
		p.fillEvidence(&vd, e, tm)
	}
	tr.last = vd
	r.Verdicts = append(r.Verdicts, vd)
}

func count(hit bool, run int) int {
	if hit {
		return run + 1
	}
	return 0
}

func (p *Peer) fillEvidence(vd *Verdict, e *nodeEval, tm *tmEval) {
	subs := make([]Evidence, 0, len(e.stragglers)+len(e.blocked))
	for _, ev := range e.stragglers {
		if tm == nil || ev.TaskManager == tm.id {
			subs = append(subs, ev)
		}
	}
	for _, ev := range e.blocked {
		if tm == nil || ev.TaskManager == tm.id {
			subs = append(subs, ev)
		}
	}
	slices.SortStableFunc(subs, func(a, b Evidence) int {
		switch {
		case a.Slowdown > b.Slowdown:
			return -1
		case a.Slowdown < b.Slowdown:
			return 1
		}
		return 0
	})
	measured := e.measured
	if tm != nil {
		measured = tm.measured
	}
	if measured > 0 {
		vd.Score = float64(len(subs)) / float64(measured)
	}
	if len(subs) > p.cfg.MaxEvidence {
		subs = subs[:p.cfg.MaxEvidence]
	}
	vd.Evidence = append(vd.Evidence, subs...)
	switch {
	case tm != nil:
		vd.Cause = CauseUnknown
		if tm.gcElevated {
			vd.Cause = CauseGC
			vd.Evidence = append(vd.Evidence, Evidence{Kind: "taskmanager", TaskManager: tm.id, Signal: "gc_time_ms_per_s", Value: tm.gc, PeerMedian: tm.gcMedian, Since: e.at})
		}
	case len(e.host) > 0:
		vd.Cause = e.hostCause
		vd.Evidence = append(vd.Evidence, e.host...)
		vd.Score += min(1, e.hostScore/10)
		if vd.Cause == CauseCPU {
			vd.Culprit = culprit(e)
		}
	case len(e.blocked) > len(e.stragglers):
		vd.Cause = CauseNetwork
	default:
		vd.Cause = CauseUnknown
	}
}

// culprit names the neighbour cgroup that used the most CPU on a node whose TaskManagers
// wait for CPU, when it took a clear part of the CPU used outside them: the busiest cgroup
// among several small ones is no culprit.
func culprit(e *nodeEval) *Culprit {
	if len(e.neighbours) == 0 {
		return nil
	}
	top := e.neighbours[0]
	other := e.hd.Signals[model.SignalOtherCPU]
	if top.CPUCores < model.NeighbourKeptCores || (other > 0 && top.CPUCores < 0.3*other) {
		return nil
	}
	return &Culprit{Cgroup: top.Path, PodName: top.PodName, PodNamespace: top.PodNamespace, PodUID: top.PodUID,
		ContainerID: top.ContainerID, SystemdUnit: top.SystemdUnit, CPUCores: top.CPUCores, OtherCPUCores: other,
		TaskManagerRunqMeanUS: e.hd.Signals[model.SignalRunqMean], RunqPeerMedianUS: e.runqMedian}
}
