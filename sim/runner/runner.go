// Package runner replays scenarios through the coordinator's model and detectors in simulated
// time and scores every detector against the scenario's ground truth. Its Result marshals to the
// JSON of `tmwardenctl sim run -o json` and prints as the text table of `-o table`.
package runner

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/topology"
	"github.com/tmwarden/tmwarden/sim"
	"github.com/tmwarden/tmwarden/sim/scenario"
	"golang.org/x/sync/errgroup"
)

// GraceIntervals is how long after a fault ends a detector may still hold its slow verdict
// (clearing takes a few clean windows) without that counting as a false verdict.
const GraceIntervals = 6

// DetectorScore is one detector's figures on one scenario, or over all of them in Totals.
type DetectorScore struct {
	Name       string  `json:"name"`
	Precision  float64 `json:"precision"`
	Recall     float64 `json:"recall"`
	TTDMedianS float64 `json:"ttd_median_s"`
	TTDP95S    float64 `json:"ttd_p95_s"`
	// TTDObservableMedianS and TTDObservableP95S count each detection from when the fault
	// became observable to the coordinator instead of from its start: the later of its start
	// and the end of a gap in the node's live reports (a partition, an agent down) that the
	// fault began in, when the first report of the fault arrived. The raw figures above stay:
	// a fault inside a partition is late for the platform team whatever the detector does.
	TTDObservableMedianS float64 `json:"ttd_observable_median_s"`
	TTDObservableP95S    float64 `json:"ttd_observable_p95_s"`
	FalseMigrations      int     `json:"false_migrations"`
	// CauseAccuracy is the share of detected faults whose first slow verdict (or, for a fault
	// no report of reached the coordinator while it lasted, first retrospective finding) named
	// the true cause (cpu, steal, disk, network, memory, jvm); Confusion counts true cause ->
	// named. Not applicable (null, "n/a" in the table) when nothing was detected.
	CauseAccuracy *float64                  `json:"cause_accuracy"`
	Confusion     map[string]map[string]int `json:"cause_confusion,omitempty"`
	// CulpritAccuracy is the share of neighbour faults (CPU taken by a cgroup on the node)
	// whose verdict named that cgroup; not applicable (null) when there were none.
	CulpritAccuracy *float64 `json:"culprit_accuracy"`
	NeighbourFaults int      `json:"neighbour_faults"`
	// ClassFindings is how many nodes were reported as slower hardware; SlowerClassNodes how
	// many nodes the scenario puts in a class slower than the fleet's median machine (see
	// slowerHardware), ClassFound how many of them were reported, and ClassFalse how many
	// reported nodes are not slower hardware.
	ClassFindings    int `json:"class_findings"`
	SlowerClassNodes int `json:"slower_class_nodes"`
	ClassFound       int `json:"class_found"`
	ClassFalse       int `json:"class_false"`
	// RetroFaults are the faults that began and ended while their node's reports could not
	// reach the coordinator (inside one gap in its live reports, see liveReports): no live
	// verdict can catch them, and only a retrospective finding (judged from the reports
	// replayed after the gap) can detect them. RetroFound is how many of them a retrospective
	// finding covered (on their target, see retroCovers), RetroFindings how many retrospective
	// findings there were, and RetroFalse how many of those covered no fault of their target.
	// They count in recall, precision and the time to detect as score describes; never as a
	// migration, since a retrospective finding is never acted on.
	RetroFaults   int `json:"retrospective_faults"`
	RetroFound    int `json:"retrospective_found"`
	RetroFindings int `json:"retrospective_findings"`
	RetroFalse    int `json:"retrospective_false"`
	// RetroCauseAccuracy is the share of the found retrospective faults whose covering finding
	// named their cause (as CauseAccuracy does for live verdicts); not applicable (null) when
	// none were found.
	RetroCauseAccuracy *float64 `json:"retrospective_cause_accuracy"`

	// Counts behind the ratios, kept so totals pool episodes rather than average ratios.
	TruePositives   int       `json:"-"`
	FalsePositives  int       `json:"-"`
	Truths          int       `json:"-"`
	Detected        int       `json:"-"`
	TTDs            []float64 `json:"-"`
	TTDsObservable  []float64 `json:"-"`
	CauseRight      int       `json:"-"`
	CulpritRight    int       `json:"-"`
	NeighbourFound  int       `json:"-"`
	RetroCauseRight int       `json:"-"`
}

// ScenarioResult is one scenario's scores.
type ScenarioResult struct {
	Name      string          `json:"name"`
	Nodes     int             `json:"nodes"`
	DurationS float64         `json:"duration_s"`
	Detectors []DetectorScore `json:"detectors"`

	Negative bool `json:"-"`
}

// Totals pools every scenario.
type Totals struct {
	Detectors []DetectorScore `json:"detectors"`
}

// Result is the outcome of scoring one or more scenarios.
type Result struct {
	Scenarios []ScenarioResult `json:"scenarios"`
	Totals    Totals           `json:"totals"`
}

// Options selects detectors; empty means every registered detector.
type Options struct {
	Detectors []string
	// Observe, if set, sees every evaluation round (for the demo and for debugging).
	Observe func(detector string, round detect.Round)
	// ThroughCoordinator replays the reports through a real coordinator (ingest, store, model,
	// detection, dry-run decisions and their executor) instead of the model alone. The
	// coordinator's detector is then scored from its rounds, and its false migrations are the
	// migrate decisions its decision engine took for nodes that were not slow.
	ThroughCoordinator bool
}

type targetKey struct{ node, tm string }

type episode struct {
	target     targetKey
	start, end time.Time
	// migrated: the decision policy's circuit breaker was closed (and held nothing) at some
	// point while the verdict was held, so a decision engine would have acted on it.
	migrated bool
	// cause is what the verdict said when it first became slow, and later the causes it named
	// from then on, in order (see causeAt); culprits every cgroup a verdict of the episode named.
	cause    detect.Cause
	later    []namedCause
	culprits map[string]bool
}

// namedCause is a cause a verdict named from at on.
type namedCause struct {
	at    time.Time
	cause detect.Cause
}

// causeAt is the cause the episode's verdict named at t: its first, or the last it changed to
// by t. A fault that begins while its target is already slow for another is answered by what
// the verdict said once it had judged a report of it, not by what it said of the other fault.
func (e *episode) causeAt(t time.Time) detect.Cause {
	c := e.cause
	for _, l := range e.later {
		if l.at.After(t) {
			break
		}
		c = l.cause
	}
	return c
}

type tracker struct {
	d detect.Detector
	// breaker is a dry-run decision policy fed the detector's rounds, read only for its
	// circuit breaker: the one the coordinator runs, with its default configuration.
	breaker  *decide.Policy
	open     map[targetKey]*episode
	episodes []*episode
	// classNodes are the nodes reported as slower hardware at any time.
	classNodes map[string]bool
	// retro are the distinct retrospective findings (by node, TaskManager and start).
	retro map[retroKey]*retroFinding
}

type retroKey struct {
	node, tm string
	since    time.Time
}

// retroFinding is one retrospective finding and the round that first reported it: its time
// to detect is taken there.
type retroFinding struct {
	f    detect.Finding
	seen time.Time
}

// retroFindings lists the tracker's retrospective findings in a stable order.
func (t *tracker) retroFindings() []retroFinding {
	out := make([]retroFinding, 0, len(t.retro))
	for _, rf := range t.retro {
		out = append(out, *rf)
	}
	slices.SortFunc(out, func(a, b retroFinding) int {
		return cmp.Or(cmp.Compare(a.f.Node, b.f.Node), cmp.Compare(a.f.TaskManager, b.f.TaskManager), a.f.Since.Compare(b.f.Since))
	})
	return out
}

// Run replays one scenario and scores the detectors.
func Run(ctx context.Context, sc *scenario.Scenario, opts Options) (ScenarioResult, error) {
	s, err := sim.New(sc)
	if err != nil {
		return ScenarioResult{}, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	names := opts.Detectors
	if len(names) == 0 {
		for _, r := range detect.Registry {
			names = append(names, r.Name)
		}
	}
	var trackers []*tracker
	for _, n := range names {
		d := detect.New(n)
		if d == nil {
			return ScenarioResult{}, fmt.Errorf("unknown detector %q", n)
		}
		trackers = append(trackers, &tracker{d: d, breaker: decide.New(decide.DefaultConfig()), open: map[targetKey]*episode{}, classNodes: map[string]bool{}, retro: map[retroKey]*retroFinding{}})
	}
	cfg := model.DefaultConfig()
	cfg.Interval = sc.Interval.D()
	m := model.New(cfg, topology.New(topology.Options{}))
	for i, name := range s.Nodes() {
		labels, cpuModel, cpus, mem := s.NodeInfo(i)
		m.Describe(name, sim.Epoch, model.NodeInfo{Labels: labels, CPUModel: cpuModel, NumCPUs: cpus, MemoryBytes: mem})
	}
	live := newLiveReports(sc.Interval.D())
	deliver := func(node string, at time.Time, r *tmwardenv1.Report) {
		live.delivered(node, at, r)
		m.Observe(node, at, r)
	}
	var cr *coordinatorRun
	if opts.ThroughCoordinator {
		if cr, err = newCoordinatorRun(sc, s); err != nil {
			return ScenarioResult{}, fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
		defer cr.close()
		deliver = func(node string, at time.Time, r *tmwardenv1.Report) {
			live.delivered(node, at, r)
			m.Observe(node, at, r)
			cr.deliver(node, at, r)
		}
	}
	for s.Step(deliver) {
		if s.Tick()%64 == 0 {
			if err := ctx.Err(); err != nil {
				return ScenarioResult{}, fmt.Errorf("scenario %s: %w", sc.Name, err)
			}
		}
		now := s.Now()
		view := m.View()
		for _, t := range trackers {
			var round detect.Round
			if cr != nil && t.d.Name() == coordinatorDetector {
				if round, err = cr.tick(ctx, now); err != nil {
					view.Release()
					return ScenarioResult{}, fmt.Errorf("scenario %s: coordinator round: %w", sc.Name, err)
				}
			} else {
				round = t.d.Evaluate(view, now)
			}
			if opts.Observe != nil {
				opts.Observe(t.d.Name(), round)
			}
			t.record(round, view, now)
		}
		view.Release()
	}
	end := s.Now()
	machines := map[string]float64{}
	for i, n := range s.Nodes() {
		machines[n] = s.MachineSpeed(i)
	}
	slower := slowerHardware(machines)
	res := ScenarioResult{Name: sc.Name, Nodes: sc.Cluster.Nodes, DurationS: sc.Duration.D().Seconds(), Negative: sc.Negative}
	for _, t := range trackers {
		for _, e := range t.open {
			e.end = end
		}
		ds := score(t.d.Name(), t.episodes, t.retroFindings(), sc, live)
		scoreClasses(&ds, t.classNodes, slower)
		if cr != nil && t.d.Name() == coordinatorDetector {
			ds.FalseMigrations = cr.falseMigrations
		}
		res.Detectors = append(res.Detectors, ds)
	}
	if cr != nil {
		if err := cr.close(); err != nil {
			return res, fmt.Errorf("scenario %s: %w", sc.Name, err)
		}
	}
	return res, nil
}

// slowerHardware lists the nodes whose machines are slower hardware: SlowerHardware or more
// slower than the fleet's median machine (the lower middle of every node's machine speed, so
// that a fleet split evenly between two speeds has no slower half). Each node's machine speed is
// its own (its class's speed times its spread, speed_jitter), as a detector learns it. Slower
// than the median machine is what makes a machine slower than the fleet's: against the
// cluster's own machines, a fleet mostly of an older generation had most of its machines counted
// as slower hardware, one mostly of a newer generation none, and a machine at the low end of a
// wide spread (noisy-hetero-300: 0.85 to 1.15) was not counted at all.
func slowerHardware(machines map[string]float64) map[string]bool {
	if len(machines) == 0 {
		return nil
	}
	speeds := slices.Sorted(maps.Values(machines))
	median := speeds[(len(speeds)-1)/2]
	slower := map[string]bool{}
	for n, v := range machines {
		if v*SlowerHardware < median {
			slower[n] = true
		}
	}
	return slower
}

// scoreClasses scores the nodes a detector reported as slower hardware (found) against the
// scenario's slower hardware: how many of those it found, and how many it reported that are not.
func scoreClasses(ds *DetectorScore, found, slower map[string]bool) {
	ds.ClassFindings = len(found)
	ds.SlowerClassNodes = len(slower)
	for n := range found {
		if slower[n] {
			ds.ClassFound++
		} else {
			ds.ClassFalse++
		}
	}
}

// coordinatorDetector is the detector the coordinator runs by default.
const coordinatorDetector = "tmwarden"

func (t *tracker) record(r detect.Round, v model.View, now time.Time) {
	obs, reach := decide.FromRound(r, nil)
	for _, n := range v.NodeNames() {
		if _, judged := reach[n]; !judged {
			reach[n] = v.Reachable(n, now)
		}
	}
	t.breaker.ObserveFleet(r.Fleet)
	t.breaker.Round(now, obs, reach)
	b := t.breaker.Breaker()
	slow := map[targetKey]bool{}
	for _, f := range r.Findings {
		switch f.Kind {
		case detect.FindingSlowerHardware:
			t.classNodes[f.Node] = true
		case detect.FindingRetrospective:
			k := retroKey{f.Node, f.TaskManager, f.Since}
			if rf := t.retro[k]; rf != nil {
				rf.f = f
			} else {
				t.retro[k] = &retroFinding{f: f, seen: now}
			}
		}
	}
	for _, v := range r.Verdicts {
		if v.Status != detect.StatusSlow {
			continue
		}
		k := targetKey{v.Node, v.TaskManager}
		slow[k] = true
		e := t.open[k]
		if e == nil {
			e = &episode{target: k, start: now, cause: v.Cause, culprits: map[string]bool{}}
			t.open[k] = e
			t.episodes = append(t.episodes, e)
		} else if e.causeAt(now) != v.Cause {
			e.later = append(e.later, namedCause{now, v.Cause})
		}
		if v.Culprit != nil {
			e.culprits[v.Culprit.Cgroup] = true
		}
		if !b.Open && b.Held == "" {
			e.migrated = true
		}
	}
	for k, e := range t.open {
		if !slow[k] {
			e.end = now
			delete(t.open, k)
		}
	}
}

// liveReports records, per node, the gaps in its live reports: spans in which the reports it
// collected reached the coordinator late (an agent cut off, resending its buffer when the
// partition heals) or never (an agent down). Only reports delivered when collected are live.
type liveReports struct {
	interval time.Duration
	last     map[string]time.Time
	gaps     map[string][]deliveryGap
}

// deliveryGap: the node's live reports stopped after from and resumed at to.
type deliveryGap struct{ from, to time.Time }

func newLiveReports(interval time.Duration) *liveReports {
	return &liveReports{interval: interval, last: map[string]time.Time{}, gaps: map[string][]deliveryGap{}}
}

func (l *liveReports) delivered(node string, at time.Time, r *tmwardenv1.Report) {
	if ts := r.GetCollectedAt(); ts != nil && !ts.AsTime().Equal(at) {
		return
	}
	last, ok := l.last[node]
	if !ok {
		last = sim.Epoch
	}
	if at.Sub(last) > l.interval+l.interval/2 {
		l.gaps[node] = append(l.gaps[node], deliveryGap{from: last, to: at})
	}
	l.last[node] = at
}

// observableAt is when a fault starting at from on node became observable to the coordinator:
// from, unless the node's first report after from was not live; then the live report that ended
// that gap, which is when the reports collected during it arrived, if they did at all.
func (l *liveReports) observableAt(node string, from time.Time) time.Time {
	if l == nil {
		return from
	}
	for _, g := range l.gaps[node] {
		if !from.Before(g.from) && from.Before(g.to.Add(-l.interval)) {
			return g.to
		}
	}
	return from
}

// unobserved says whether from..to on node lies inside one gap of its live reports: no report
// of it reached the coordinator while it lasted.
func (l *liveReports) unobserved(node string, from, to time.Time) bool {
	if l == nil {
		return false
	}
	for _, g := range l.gaps[node] {
		if !from.Before(g.from) && to.Before(g.to) {
			return true
		}
	}
	return false
}

// score scores a detector's episodes (live slow verdicts) and retrospective findings against
// the scenario's truth.
//
// A fault some report of which reached the coordinator while it lasted (observable live) is
// detected only by a live verdict: a finding made after the fact does not stop a job from
// lagging, so it does not make up for a verdict that a live detector could have given. A fault
// that began and ended inside one gap of its node's live reports (a partition: the agent held
// its reports back and resent them when it healed) could not be seen by any live detector. It
// is detected when a retrospective finding judged from the resent reports covers it on its
// target (see retroCovers), and it stays a miss when none does: it counts in recall either way.
// Its time to detect runs to the round that first reported the finding: from the fault's start
// in the raw figure, and from when the resent reports arrived (the live report that ended the
// gap) in the observable one; its cause is the finding's. Retrospective findings count in
// precision as claims do: one covering a fault of its target is true, any other false. None
// is ever a migration, since none is acted on. An agent that was down loses its buffer, so a
// fault wholly inside its outage is unobservable and stays a miss.
func score(name string, eps []*episode, found []retroFinding, sc *scenario.Scenario, live *liveReports) DetectorScore {
	grace := time.Duration(GraceIntervals) * sc.Interval.D()
	ds := DetectorScore{Name: name, Truths: len(sc.Truth)}
	first := make([]time.Time, len(sc.Truth))
	firstCause := make([]detect.Cause, len(sc.Truth))
	for _, e := range eps {
		matched := false
		for i, tr := range sc.Truth {
			if tr.Node != e.target.node || tr.TaskManager != e.target.tm {
				continue
			}
			from, to := sim.Epoch.Add(tr.From.D()), sim.Epoch.Add(tr.To.D()).Add(grace)
			onset := from
			if tr.Onset > 0 && tr.Onset < tr.From {
				onset = sim.Epoch.Add(tr.Onset.D())
			}
			if e.start.After(to) || e.end.Before(onset) {
				continue
			}
			matched = true
			if e.start.Before(onset) && e.end.Before(from) {
				// Held from before this fault began and cleared before it made the target slow:
				// the end of a verdict on an earlier fault (clearing in its grace), not an early
				// one on this fault's ramp. It detects nothing here, and its cause is not this
				// fault's answer.
				continue
			}
			at, answer := e.start, e.start
			if at.Before(from) {
				// Slow before the fault made its target slow (early on its ramp, or slow for
				// another fault): detected at from, and answered by the first round that
				// judged a report of it.
				at, answer = from, from.Add(sc.Interval.D())
			}
			if first[i].IsZero() || at.Before(first[i]) {
				first[i] = at
				firstCause[i] = e.causeAt(answer)
			}
		}
		if matched {
			ds.TruePositives++
		} else {
			ds.FalsePositives++
			if e.migrated {
				ds.FalseMigrations++
			}
		}
	}
	unobserved := make([]bool, len(sc.Truth))
	for i, tr := range sc.Truth {
		unobserved[i] = live.unobserved(tr.Node, sim.Epoch.Add(tr.From.D()), sim.Epoch.Add(tr.To.D()))
	}
	ds.RetroFindings = len(found)
	for _, rf := range found {
		matched := false
		for i, tr := range sc.Truth {
			if !retroCovers(rf.f, tr, grace) {
				continue
			}
			matched = true
			if !unobserved[i] {
				continue
			}
			at := rf.seen
			if from := sim.Epoch.Add(tr.From.D()); at.Before(from) {
				at = from
			}
			if first[i].IsZero() || at.Before(first[i]) {
				first[i] = at
				firstCause[i] = rf.f.Cause
			}
		}
		if matched {
			ds.TruePositives++
		} else {
			ds.FalsePositives++
			ds.RetroFalse++
		}
	}
	for i, tr := range sc.Truth {
		if unobserved[i] {
			ds.RetroFaults++
			hit, right := false, false
			for _, rf := range found {
				if retroCovers(rf.f, tr, grace) {
					hit = true
					right = right || causeRight(sc, tr, rf.f.Cause, func(o scenario.TruthEntry) bool { return retroCovers(rf.f, o, grace) })
				}
			}
			if hit {
				ds.RetroFound++
			}
			if right {
				ds.RetroCauseRight++
			}
		}
		if tr.Culprit != "" {
			ds.NeighbourFaults++
		}
		if first[i].IsZero() {
			continue
		}
		ds.Detected++
		if tr.Culprit != "" {
			ds.NeighbourFound++
			// A neighbour fault no report of which arrived while it lasted can have its culprit
			// named only by the retrospective finding that covers it: naming the culprit is for
			// the record, like the finding, and that is the only record of it there can be.
			if culpritNamed(eps, tr) || unobserved[i] && slices.ContainsFunc(found, func(rf retroFinding) bool {
				return rf.f.Culprit != nil && rf.f.Culprit.Cgroup == tr.Culprit && retroCovers(rf.f, tr, grace)
			}) {
				ds.CulpritRight++
			}
		}
		from := sim.Epoch.Add(tr.From.D())
		ds.TTDs = append(ds.TTDs, first[i].Sub(from).Seconds())
		ds.TTDsObservable = append(ds.TTDsObservable, max(0, first[i].Sub(live.observableAt(tr.Node, from)).Seconds()))
		named := TruthCause(firstCause[i])
		// Two faults on one target at once: naming either is right.
		if causeRight(sc, tr, firstCause[i], func(o scenario.TruthEntry) bool { return o.Onset < tr.To && tr.Onset < o.To }) {
			ds.CauseRight++
		}
		if ds.Confusion == nil {
			ds.Confusion = map[string]map[string]int{}
		}
		if ds.Confusion[tr.Cause] == nil {
			ds.Confusion[tr.Cause] = map[string]int{}
		}
		ds.Confusion[tr.Cause][named]++
	}
	ds.finish()
	return ds
}

// causeRight says whether c names the cause of tr, or of another fault of tr's target that
// also holds (two faults on one target at once: naming either is right).
func causeRight(sc *scenario.Scenario, tr scenario.TruthEntry, c detect.Cause, also func(scenario.TruthEntry) bool) bool {
	named := TruthCause(c)
	return slices.ContainsFunc(sc.Truth, func(o scenario.TruthEntry) bool {
		return o.Node == tr.Node && o.TaskManager == tr.TaskManager && o.Cause == named && also(o)
	})
}

// retroCovers says whether retrospective finding f covers fault tr: it is on tr's target (its
// node, and for a JVM's fault that JVM: a finding that blames the node for one JVM's GC storm,
// or one JVM for the node's fault, is wrong, as a verdict would be) and overlaps tr's window,
// extended by the grace as verdicts' are.
func retroCovers(f detect.Finding, tr scenario.TruthEntry, grace time.Duration) bool {
	from, to := sim.Epoch.Add(tr.Onset.D()), sim.Epoch.Add(tr.To.D()).Add(grace)
	if tr.Onset <= 0 || tr.Onset > tr.From {
		from = sim.Epoch.Add(tr.From.D())
	}
	return f.Node == tr.Node && f.TaskManager == tr.TaskManager && !f.Since.After(to) && !f.Until.Before(from)
}

// ratio is num/den rounded, or nil (not applicable) when den is 0.
func ratio(num, den int) *float64 {
	if den == 0 {
		return nil
	}
	r := round4(float64(num) / float64(den))
	return &r
}

// finish computes the ratios from the counts. With nothing flagged precision is 1; with nothing
// to find recall is 1; with nothing found the detection times are 0. The accuracies are not
// applicable (nil) when nothing was there to be right about: a 1 there said that a detector
// that found nothing named every cause.
func (ds *DetectorScore) finish() {
	ds.Precision, ds.Recall = 1, 1
	ds.CauseAccuracy = ratio(ds.CauseRight, ds.Detected)
	ds.CulpritAccuracy = ratio(ds.CulpritRight, ds.NeighbourFaults)
	ds.RetroCauseAccuracy = ratio(ds.RetroCauseRight, ds.RetroFound)
	if n := ds.TruePositives + ds.FalsePositives; n > 0 {
		ds.Precision = round4(float64(ds.TruePositives) / float64(n))
	}
	if ds.Truths > 0 {
		ds.Recall = round4(float64(ds.Detected) / float64(ds.Truths))
	}
	ds.TTDMedianS, ds.TTDP95S = medianAndP95(ds.TTDs)
	ds.TTDObservableMedianS, ds.TTDObservableP95S = medianAndP95(ds.TTDsObservable)
}

// medianAndP95 of xs, both 0 when there are none.
func medianAndP95(xs []float64) (p50, p95 float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	t := slices.Clone(xs)
	slices.Sort(t)
	return round4(quantile(t, 0.5)), round4(quantile(t, 0.95))
}

// SlowerHardware is how much slower than the cluster's machines a class must be for its nodes
// to count as slower hardware a detector should report (the detector's own default).
var SlowerHardware = detect.DefaultPeerConfig().SlowerHardware

// TruthCause maps a detector's cause onto the ground truth's words.
func TruthCause(c detect.Cause) string {
	switch c {
	case detect.CauseCPU, detect.CauseThrottled:
		return "cpu"
	case detect.CauseSteal:
		return "steal"
	case detect.CauseDisk:
		return "disk"
	case detect.CauseNetwork:
		return "network"
	case detect.CauseMemory:
		return "memory"
	case detect.CauseGC:
		return "jvm"
	}
	return "unknown"
}

// culpritNamed reports whether an episode on the truth's target, while the fault lasted,
// named the culprit: a verdict may name it a round after it first said slow, or a node slow
// for another fault first may be slow for this one too.
func culpritNamed(eps []*episode, tr scenario.TruthEntry) bool {
	for _, e := range eps {
		if e.target.node == tr.Node && e.target.tm == tr.TaskManager && e.culprits[tr.Culprit] &&
			!e.start.After(sim.Epoch.Add(tr.To.D())) && !e.end.Before(sim.Epoch.Add(tr.Onset.D())) {
			return true
		}
	}
	return false
}

// quantile interpolates linearly between closest ranks of sorted xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 1 {
		return xs[0]
	}
	pos := q * float64(len(xs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(xs)-1)
	return xs[lo] + (pos-float64(lo))*(xs[hi]-xs[lo])
}

func round4(x float64) float64 { return math.Round(x*10000) / 10000 }

// RunAll scores every scenario and pools the totals, with the scenarios in the order given.
// Replays are independent and each runs on one goroutine, so RunAll runs up to GOMAXPROCS of
// them at once, the largest first (node-ticks: nodes times duration over interval) so that the
// longest replay does not start last and run alone. Options.Observe, if set, is then called from
// several goroutines. The first error cancels the replays still running.
func RunAll(ctx context.Context, scs []*scenario.Scenario, opts Options) (Result, error) {
	order := make([]int, len(scs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(nodeTicks(scs[b]), nodeTicks(scs[a])) })
	res := Result{Scenarios: make([]ScenarioResult, len(scs))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, i := range order {
		g.Go(func() error {
			r, err := Run(gctx, scs[i], opts)
			res.Scenarios[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Result{}, err
	}
	res.Totals = totals(res.Scenarios)
	return res, nil
}

// nodeTicks is a replay's size: how many node reports it simulates.
func nodeTicks(sc *scenario.Scenario) int64 {
	iv := max(sc.Interval.D(), time.Millisecond)
	return int64(sc.Cluster.Nodes) * int64(sc.Duration.D()/iv)
}

func totals(rs []ScenarioResult) Totals {
	var t Totals
	idx := map[string]int{}
	for _, r := range rs {
		for _, d := range r.Detectors {
			i, ok := idx[d.Name]
			if !ok {
				i = len(t.Detectors)
				idx[d.Name] = i
				t.Detectors = append(t.Detectors, DetectorScore{Name: d.Name})
			}
			a := &t.Detectors[i]
			a.TruePositives += d.TruePositives
			a.FalsePositives += d.FalsePositives
			a.Truths += d.Truths
			a.Detected += d.Detected
			a.FalseMigrations += d.FalseMigrations
			a.TTDs = append(a.TTDs, d.TTDs...)
			a.TTDsObservable = append(a.TTDsObservable, d.TTDsObservable...)
			a.CauseRight += d.CauseRight
			a.CulpritRight += d.CulpritRight
			a.NeighbourFound += d.NeighbourFound
			a.NeighbourFaults += d.NeighbourFaults
			a.ClassFindings += d.ClassFindings
			a.SlowerClassNodes += d.SlowerClassNodes
			a.ClassFound += d.ClassFound
			a.ClassFalse += d.ClassFalse
			a.RetroFaults += d.RetroFaults
			a.RetroFound += d.RetroFound
			a.RetroFindings += d.RetroFindings
			a.RetroFalse += d.RetroFalse
			a.RetroCauseRight += d.RetroCauseRight
			for tc, row := range d.Confusion {
				if a.Confusion == nil {
					a.Confusion = map[string]map[string]int{}
				}
				if a.Confusion[tc] == nil {
					a.Confusion[tc] = map[string]int{}
				}
				for named, n := range row {
					a.Confusion[tc][named] += n
				}
			}
		}
	}
	for i := range t.Detectors {
		t.Detectors[i].finish()
	}
	return t
}

// WriteTable prints the result as an aligned text table with the totals last.
func (r Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tnodes\tduration\tdetector\tprecision\trecall\tttd p50 (s)\tttd p95 (s)\tobservable p50\tobservable p95\tfalse migrations\tcause acc\tculprit acc\tclass findings\tretrospective\t")
	row := func(name, nodes, dur string, d DetectorScore) {
		// Nothing detected means no detection time, not a zero one (the JSON says 0).
		p50, p95, o50, o95 := "-", "-", "-", "-"
		if d.Detected > 0 {
			p50, p95 = fmt.Sprintf("%.0f", d.TTDMedianS), fmt.Sprintf("%.0f", d.TTDP95S)
			o50, o95 = fmt.Sprintf("%.0f", d.TTDObservableMedianS), fmt.Sprintf("%.0f", d.TTDObservableP95S)
		}
		cls := fmt.Sprint(d.ClassFindings)
		if d.SlowerClassNodes > 0 {
			cls = fmt.Sprintf("%d (%d/%d)", d.ClassFindings, d.ClassFound, d.SlowerClassNodes)
		}
		if d.ClassFalse > 0 {
			cls += fmt.Sprintf(" %d false", d.ClassFalse)
		}
		// Found of the faults that began and ended unobserved, and the findings that covered none.
		retro := fmt.Sprintf("%d/%d", d.RetroFound, d.RetroFaults)
		if d.RetroFound > 0 {
			// Of the found, how many named the cause.
			retro += fmt.Sprintf(" cause %d/%d", d.RetroCauseRight, d.RetroFound)
		}
		if d.RetroFalse > 0 {
			retro += fmt.Sprintf(" (%d false)", d.RetroFalse)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", name, nodes, dur, d.Name, d.Precision, d.Recall, p50, p95, o50, o95, d.FalseMigrations,
			fmtRatio(d.CauseAccuracy), fmtRatio(d.CulpritAccuracy), cls, retro)
	}
	for _, s := range r.Scenarios {
		for i, d := range s.Detectors {
			if i == 0 {
				row(s.Name, fmt.Sprint(s.Nodes), (time.Duration(s.DurationS) * time.Second).String(), d)
			} else {
				row("", "", "", d)
			}
		}
	}
	for i, d := range r.Totals.Detectors {
		if i == 0 {
			row("TOTAL", "", "", d)
		} else {
			row("", "", "", d)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.writeConfusion(w)
}

// fmtRatio prints a ratio to three places, or n/a when it is not applicable.
func fmtRatio(r *float64) string {
	if r == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", *r)
}

// writeConfusion prints each detector's pooled cause confusion table: true cause by row,
// named cause by column.
func (r Result) writeConfusion(w io.Writer) error {
	named := append(slices.Clone(scenario.Causes), "unknown")
	for _, d := range r.Totals.Detectors {
		fmt.Fprintf(w, "\ncause confusion, %s (rows: true cause, columns: named)\n", d.Name)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, c := range named {
			fmt.Fprintf(tw, "%s\t", c)
		}
		fmt.Fprintln(tw)
		for _, tc := range scenario.Causes {
			fmt.Fprintf(tw, "%s\t", tc)
			for _, c := range named {
				fmt.Fprintf(tw, "%d\t", d.Confusion[tc][c])
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}
