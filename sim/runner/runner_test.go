package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/sim"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

func publicScenarios(t testing.TB, maxNodes int) []*scenario.Scenario {
	t.Helper()
	all, err := scenario.LoadDir(filepath.Join("..", "scenarios"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*scenario.Scenario
	for _, s := range all {
		if s.Cluster.Nodes <= maxNodes {
			out = append(out, s)
		}
	}
	return out
}

func byName(ds []DetectorScore) map[string]DetectorScore {
	m := map[string]DetectorScore{}
	for _, d := range ds {
		m[d.Name] = d
	}
	return m
}

// assertGoal checks issue 6's detection goal on a result.
func assertGoal(t *testing.T, res Result, interval time.Duration) {
	t.Helper()
	for _, s := range res.Scenarios {
		tw := byName(s.Detectors)["tmwarden"]
		if s.Negative && tw.FalseMigrations != 0 {
			t.Errorf("%s is a negative control, tmwarden migrated %d times", s.Name, tw.FalseMigrations)
		}
	}
	tot := byName(res.Totals.Detectors)
	tw := tot["tmwarden"]
	if tw.Precision < 0.99 || tw.Recall < 0.95 {
		t.Errorf("tmwarden precision %.3f recall %.3f, want >= 0.99 and >= 0.95", tw.Precision, tw.Recall)
	}
	// Held from when each fault became observable: a fault that began while its node's agent
	// was cut off cannot be seen before its reports arrive (see DetectorScore).
	if tw.TTDObservableMedianS > 3*interval.Seconds() || tw.TTDObservableP95S > 6*interval.Seconds() {
		t.Errorf("tmwarden time to detect from observable p50 %.0fs p95 %.0fs (from the fault's start %.0fs, %.0fs), want <= 3 and 6 intervals",
			tw.TTDObservableMedianS, tw.TTDObservableP95S, tw.TTDMedianS, tw.TTDP95S)
	}
	for _, b := range []string{"flink-slow-task", "host-threshold"} {
		d := tot[b]
		if tw.Precision < d.Precision || tw.Recall < d.Recall || tw.FalseMigrations > d.FalseMigrations {
			t.Errorf("tmwarden (p %.3f r %.3f fm %d) is not at least as good as %s (p %.3f r %.3f fm %d)",
				tw.Precision, tw.Recall, tw.FalseMigrations, b, d.Precision, d.Recall, d.FalseMigrations)
		}
	}
}

// TestSmallScenarios replays the public scenarios of up to 50 nodes and holds tmwarden to the
// detection goal on them.
func TestSmallScenarios(t *testing.T) {
	scs := publicScenarios(t, 50)
	if len(scs) < 5 {
		t.Fatalf("want at least 5 small scenarios, have %d", len(scs))
	}
	res, err := RunAll(context.Background(), scs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertGoal(t, res, 5*time.Second)
	if t.Failed() {
		var b []byte
		b, _ = json.MarshalIndent(res, "", "  ")
		t.Log(string(b))
	}
}

func TestScoreEpisodes(t *testing.T) {
	sc := &scenario.Scenario{Interval: scenario.Duration(5 * time.Second), Truth: []scenario.TruthEntry{
		{Node: "a", From: scenario.Duration(time.Minute), To: scenario.Duration(3 * time.Minute)},
		{Node: "b", TaskManager: "b-tm-0", From: scenario.Duration(time.Minute), To: scenario.Duration(2 * time.Minute)},
		{Node: "c", From: scenario.Duration(time.Minute), To: scenario.Duration(2 * time.Minute)},
		// a ramped fault: degrading from 4m, slow from 5m
		{Node: "d", Onset: scenario.Duration(4 * time.Minute), From: scenario.Duration(5 * time.Minute), To: scenario.Duration(6 * time.Minute)},
	}}
	at := func(d time.Duration) time.Time { return sim.Epoch.Add(d) }
	eps := []*episode{
		// true, 10s after the fault started
		{target: targetKey{"a", ""}, start: at(70 * time.Second), end: at(200 * time.Second), migrated: true},
		// the node of a TaskManager fault: a false migration
		{target: targetKey{"b", ""}, start: at(75 * time.Second), end: at(90 * time.Second), migrated: true},
		// the TaskManager itself: true, 20s
		{target: targetKey{"b", "b-tm-0"}, start: at(80 * time.Second), end: at(100 * time.Second)},
		// after the grace period: false, but the breaker held it
		{target: targetKey{"a", ""}, start: at(3*time.Minute + 31*time.Second), end: at(4 * time.Minute)},
		// within the grace period after the fault: still true
		{target: targetKey{"a", ""}, start: at(3*time.Minute + 20*time.Second), end: at(3*time.Minute + 25*time.Second)},
		// flagged while degrading, before it counts as slow: early, not false; ttd 0
		{target: targetKey{"d", ""}, start: at(4*time.Minute + 30*time.Second), end: at(5*time.Minute + 10*time.Second)},
		// before the fault began at all: false
		{target: targetKey{"d", ""}, start: at(3 * time.Minute), end: at(3*time.Minute + 50*time.Second)},
	}
	ds := score("x", eps, nil, sc, nil)
	if ds.TruePositives != 4 || ds.FalsePositives != 3 || ds.FalseMigrations != 1 {
		t.Fatalf("tp %d fp %d fm %d, want 4 3 1", ds.TruePositives, ds.FalsePositives, ds.FalseMigrations)
	}
	if ds.Precision != 0.5714 || ds.Recall != 0.75 {
		t.Fatalf("precision %g recall %g", ds.Precision, ds.Recall)
	}
	// detections: a 10s, b-tm 20s, d 0s
	if ds.TTDMedianS != 10 || ds.TTDP95S != 19 {
		t.Fatalf("ttd p50 %g p95 %g, want 10 and 19", ds.TTDMedianS, ds.TTDP95S)
	}
}

// TestScoreBackToBackFaults: a verdict on a node's earlier fault that clears while a second
// fault ramps up on it, before that one makes the node slow, is neither the second fault's
// detection nor its cause (generated gen-52010: a slow disk to 16m, a neighbour ramping from
// 16m, slow from 16m44s; the disk verdict cleared at 16m15s and the neighbour was named at
// 16m40s, yet the disk verdict was scored as naming the neighbour fault's cause).
func TestScoreBackToBackFaults(t *testing.T) {
	at := func(d time.Duration) time.Time { return sim.Epoch.Add(d) }
	sc := &scenario.Scenario{Interval: scenario.Duration(5 * time.Second), Truth: []scenario.TruthEntry{
		{Node: "a", Onset: scenario.Duration(4 * time.Minute), From: scenario.Duration(4 * time.Minute), To: scenario.Duration(16 * time.Minute), Cause: "disk"},
		{Node: "a", Onset: scenario.Duration(16 * time.Minute), From: scenario.Duration(16*time.Minute + 44*time.Second), To: scenario.Duration(25 * time.Minute), Cause: "cpu"},
		{Node: "b", Onset: scenario.Duration(4 * time.Minute), From: scenario.Duration(4 * time.Minute), To: scenario.Duration(16 * time.Minute), Cause: "disk"},
		{Node: "b", Onset: scenario.Duration(16 * time.Minute), From: scenario.Duration(16*time.Minute + 44*time.Second), To: scenario.Duration(25 * time.Minute), Cause: "cpu"},
	}}
	eps := []*episode{
		{target: targetKey{"a", ""}, start: at(4*time.Minute + 5*time.Second), end: at(16*time.Minute + 15*time.Second), cause: detect.CauseDisk},
		{target: targetKey{"a", ""}, start: at(16*time.Minute + 40*time.Second), end: at(25 * time.Minute), cause: detect.CauseCPU},
		// b: the disk verdict clears and nothing names the neighbour: the second fault is missed
		{target: targetKey{"b", ""}, start: at(4*time.Minute + 5*time.Second), end: at(16*time.Minute + 15*time.Second), cause: detect.CauseDisk},
	}
	ds := score("x", eps, nil, sc, nil)
	if ds.Detected != 3 || ds.CauseRight != 3 {
		t.Fatalf("detected %d with the right cause %d, want 3 and 3 (confusion %v)", ds.Detected, ds.CauseRight, ds.Confusion)
	}
	if ds.TruePositives != 3 || ds.FalsePositives != 0 {
		t.Fatalf("tp %d fp %d, want 3 0", ds.TruePositives, ds.FalsePositives)
	}
}

// TestScoreCauseOfASecondFault: a fault that begins while its node is already slow for another
// is answered by the cause the verdict named once it began, not by what it said of the first
// fault (public two-faults-one-node-30: a neighbour from 12m on a node slow for its disk since
// 8m showed as cpu named disk in the confusion table, right only by the either-cause rule).
func TestScoreCauseOfASecondFault(t *testing.T) {
	at := func(d time.Duration) time.Time { return sim.Epoch.Add(d) }
	d := func(m time.Duration) scenario.Duration { return scenario.Duration(m) }
	sc := &scenario.Scenario{Interval: scenario.Duration(5 * time.Second), Truth: []scenario.TruthEntry{
		{Node: "a", Onset: d(8 * time.Minute), From: d(8 * time.Minute), To: d(20 * time.Minute), Cause: "disk"},
		{Node: "a", Onset: d(12 * time.Minute), From: d(12 * time.Minute), To: d(18 * time.Minute), Cause: "cpu", Culprit: "/noisy"},
	}}
	eps := []*episode{{target: targetKey{"a", ""}, start: at(8*time.Minute + 10*time.Second), end: at(20 * time.Minute), cause: detect.CauseDisk,
		later: []namedCause{{at(12*time.Minute + 5*time.Second), detect.CauseCPU}}, culprits: map[string]bool{"/noisy": true}}}
	ds := score("x", eps, nil, sc, nil)
	if ds.Confusion["disk"]["disk"] != 1 || ds.Confusion["cpu"]["cpu"] != 1 || ds.CauseRight != 2 {
		t.Fatalf("confusion %v, cause right %d; want disk named disk and cpu named cpu, 2 right", ds.Confusion, ds.CauseRight)
	}
}

// TestScoreFromWhenObservable: a fault that began while its node's reports were not arriving
// live is timed from the live report that ended the gap as well as from its start; one that
// began before the gap, or in its last interval (its first report was live), only from its start.
// Precision and recall do not change.
func TestScoreFromWhenObservable(t *testing.T) {
	const interval = 5 * time.Second
	at := func(d time.Duration) time.Time { return sim.Epoch.Add(d) }
	live := newLiveReports(interval)
	report := func(node string, collected, delivered time.Duration) {
		live.delivered(node, at(delivered), &tmwardenv1.Report{CollectedAt: timestamppb.New(at(collected))})
	}
	for tick := interval; tick <= 20*time.Minute; tick += interval {
		for _, node := range []string{"cut", "cut-late", "cut-after", "lost"} {
			// cut, cut-late: partitioned from 5m to 10m (buffered, resent at 10m05s);
			// cut-after from 8m to 12m; lost: agent down 5m to 6m, nothing resent.
			switch {
			case node != "cut-after" && node != "lost" && tick > 5*time.Minute && tick <= 10*time.Minute:
				continue
			case node == "cut-after" && tick > 8*time.Minute && tick <= 12*time.Minute:
				continue
			case node == "lost" && tick > 5*time.Minute && tick <= 6*time.Minute:
				continue
			case node != "lost" && (tick == 10*time.Minute+interval || tick == 12*time.Minute+interval):
				for c := tick - 4*time.Minute; c < tick; c += interval {
					report(node, c, tick)
				}
			}
			report(node, tick, tick)
		}
	}
	sc := &scenario.Scenario{Interval: scenario.Duration(interval), Truth: []scenario.TruthEntry{
		{Node: "cut", From: scenario.Duration(6 * time.Minute), To: scenario.Duration(11 * time.Minute)},
		{Node: "cut-late", From: scenario.Duration(10*time.Minute + 2*time.Second), To: scenario.Duration(11 * time.Minute)},
		{Node: "cut-after", From: scenario.Duration(7 * time.Minute), To: scenario.Duration(13 * time.Minute)},
		{Node: "lost", From: scenario.Duration(5*time.Minute + 30*time.Second), To: scenario.Duration(7 * time.Minute)},
	}}
	eps := []*episode{
		// found 10 s after the resent reports arrived: 255 s raw, 10 s from observable
		{target: targetKey{"cut", ""}, start: at(10*time.Minute + 15*time.Second), end: at(10*time.Minute + 30*time.Second)},
		// began 2 s after the last report the partition held back: its first one was live
		{target: targetKey{"cut-late", ""}, start: at(10*time.Minute + 10*time.Second), end: at(11 * time.Minute)},
		// the partition came after it began: 20 s either way
		{target: targetKey{"cut-after", ""}, start: at(7*time.Minute + 20*time.Second), end: at(13 * time.Minute)},
		// the agent came back at 6m05s: 65 s raw, 5 s from observable
		{target: targetKey{"lost", ""}, start: at(6*time.Minute + 10*time.Second), end: at(7 * time.Minute)},
	}
	ds := score("x", eps, nil, sc, live)
	want := []float64{255, 8, 20, 40}
	wantObs := []float64{10, 8, 20, 5}
	if !slices.Equal(ds.TTDs, want) || !slices.Equal(ds.TTDsObservable, wantObs) {
		t.Fatalf("ttd %v from observable %v, want %v and %v", ds.TTDs, ds.TTDsObservable, want, wantObs)
	}
	if ds.Precision != 1 || ds.Recall != 1 {
		t.Fatalf("precision %g recall %g, want 1 and 1", ds.Precision, ds.Recall)
	}
}

func TestJSONShape(t *testing.T) {
	scs := publicScenarios(t, 10)[:1]
	res, err := RunAll(context.Background(), scs, Options{Detectors: []string{"tmwarden"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	keys := func(m any) []string {
		var k []string
		for x := range m.(map[string]any) {
			k = append(k, x)
		}
		sort.Strings(k)
		return k
	}
	if got := keys(raw); !reflect.DeepEqual(got, []string{"scenarios", "totals"}) {
		t.Fatalf("top-level keys %v", got)
	}
	s0 := raw["scenarios"].([]any)[0]
	if got := keys(s0); !reflect.DeepEqual(got, []string{"detectors", "duration_s", "name", "nodes"}) {
		t.Fatalf("scenario keys %v", got)
	}
	d := []string{"cause_accuracy", "class_false", "class_findings", "class_found", "culprit_accuracy", "false_migrations", "name", "neighbour_faults",
		"precision", "recall", "retrospective_cause_accuracy", "retrospective_false", "retrospective_faults", "retrospective_findings", "retrospective_found", "slower_class_nodes", "ttd_median_s", "ttd_observable_median_s", "ttd_observable_p95_s", "ttd_p95_s"}
	// The confusion table is there only when something was detected.
	noConfusion := func(k []string) []string {
		return slices.DeleteFunc(k, func(s string) bool { return s == "cause_confusion" })
	}
	if got := noConfusion(keys(s0.(map[string]any)["detectors"].([]any)[0])); !reflect.DeepEqual(got, d) {
		t.Fatalf("detector keys %v", got)
	}
	if got := noConfusion(keys(raw["totals"].(map[string]any)["detectors"].([]any)[0])); !reflect.DeepEqual(got, d) {
		t.Fatalf("totals keys %v", got)
	}
}

func TestRunIsDeterministic(t *testing.T) {
	scs := publicScenarios(t, 20)
	a, err := RunAll(context.Background(), scs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RunAll(context.Background(), scs, Options{})
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("two runs of the same scenarios scored differently:\n%s\n%s", ja, jb)
	}
}

func TestUnknownDetector(t *testing.T) {
	if _, err := RunAll(context.Background(), publicScenarios(t, 10)[:1], Options{Detectors: []string{"nope"}}); err == nil {
		t.Fatal("want an error for an unknown detector")
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := RunAll(ctx, publicScenarios(t, 10)[:1], Options{}); err == nil {
		t.Fatal("a cancelled run should stop with the context's error")
	}
}

// TestScoreRetrospective: a fault that began and ended inside a gap in its node's live reports
// is detected by a retrospective finding on its target that overlaps it, timed from the fault's
// start and from when the held-back reports arrived, with the finding's cause; one that outlasted
// the gap must be detected live, whatever a retrospective finding says of it; a finding that
// blames the node for one JVM's fault covers nothing; a finding that covers no fault is a false
// positive; and none is a migration.
func TestScoreRetrospective(t *testing.T) {
	const interval = 5 * time.Second
	at := func(d time.Duration) time.Time { return sim.Epoch.Add(d) }
	live := newLiveReports(interval)
	for tick := interval; tick <= 20*time.Minute; tick += interval {
		for _, node := range []string{"a", "b", "c", "d"} {
			// every node cut off from 5m to 10m, its reports resent at 10m05s
			if tick > 5*time.Minute && tick <= 10*time.Minute {
				continue
			}
			if tick == 10*time.Minute+interval {
				for c := 5*time.Minute + interval; c < tick; c += interval {
					live.delivered(node, at(tick), &tmwardenv1.Report{CollectedAt: timestamppb.New(at(c))})
				}
			}
			live.delivered(node, at(tick), &tmwardenv1.Report{CollectedAt: timestamppb.New(at(tick))})
		}
	}
	d := func(m time.Duration) scenario.Duration { return scenario.Duration(m) }
	sc := &scenario.Scenario{Interval: scenario.Duration(interval), Truth: []scenario.TruthEntry{
		{Node: "a", Onset: d(6 * time.Minute), From: d(6 * time.Minute), To: d(8 * time.Minute), Cause: "disk"},
		{Node: "b", Onset: d(6 * time.Minute), From: d(6 * time.Minute), To: d(8 * time.Minute), Cause: "steal"},
		// outlasts the gap: observable live from 10m05s
		{Node: "c", Onset: d(7 * time.Minute), From: d(7 * time.Minute), To: d(15 * time.Minute), Cause: "cpu"},
		{Node: "d", TaskManager: "d-tm-0", Onset: d(6 * time.Minute), From: d(6 * time.Minute), To: d(8 * time.Minute), Cause: "jvm"},
	}}
	retro := func(node, tm string, cause detect.Cause, since, until, seen time.Duration) retroFinding {
		return retroFinding{f: detect.Finding{Node: node, TaskManager: tm, Kind: detect.FindingRetrospective, Cause: cause, Since: at(since), Until: at(until)}, seen: at(seen)}
	}
	reported := 10*time.Minute + 2*interval
	found := []retroFinding{
		retro("a", "", detect.CauseDisk, 6*time.Minute+interval, 7*time.Minute, reported),
		// covers no fault of c: false
		retro("c", "", detect.CauseCPU, 2*time.Minute, 3*time.Minute, reported),
		// c's fault was observable once the gap ended: a finding is true, but no detection
		retro("c", "", detect.CauseCPU, 7*time.Minute, 10*time.Minute, reported),
		// the node blamed for its JVM's GC storm: false, and no detection
		retro("d", "", detect.CauseMemory, 6*time.Minute, 8*time.Minute, reported),
	}
	ds := score("x", nil, found, sc, live)
	if ds.RetroFaults != 3 || ds.RetroFound != 1 || ds.RetroFindings != 4 || ds.RetroFalse != 2 {
		t.Fatalf("retrospective: found %d of %d, %d findings, %d false; want 1 of 3, 4 findings, 2 false", ds.RetroFound, ds.RetroFaults, ds.RetroFindings, ds.RetroFalse)
	}
	if ds.Detected != 1 || ds.Recall != 0.25 || ds.TruePositives != 2 || ds.FalsePositives != 2 || ds.FalseMigrations != 0 {
		t.Fatalf("detected %d (recall %v), tp %d fp %d fm %d; want 1 (0.25), 2 2 0", ds.Detected, ds.Recall, ds.TruePositives, ds.FalsePositives, ds.FalseMigrations)
	}
	// Found 10 s after the resent reports arrived at 10m05s: 250 s from its start.
	if !slices.Equal(ds.TTDs, []float64{250}) || !slices.Equal(ds.TTDsObservable, []float64{5}) {
		t.Fatalf("ttd %v from observable %v, want [250] and [5]", ds.TTDs, ds.TTDsObservable)
	}
	if ds.CauseAccuracy == nil || *ds.CauseAccuracy != 1 || ds.RetroCauseAccuracy == nil || *ds.RetroCauseAccuracy != 1 {
		t.Errorf("cause accuracy %v, retrospective %v with node a's disk fault named disk, want 1 and 1", fmtRatio(ds.CauseAccuracy), fmtRatio(ds.RetroCauseAccuracy))
	}
	// Node b's steal found, but named as a neighbour's CPU: found, and its cause wrong; d's GC
	// storm found by a finding naming its JVM.
	found = append(found, retro("b", "", detect.CauseCPU, 6*time.Minute, 7*time.Minute, reported),
		retro("d", "d-tm-0", detect.CauseGC, 6*time.Minute, 8*time.Minute, reported))
	ds = score("x", nil, found, sc, live)
	if ds.RetroFound != 3 || ds.RetroCauseRight != 2 || ds.Detected != 3 || ds.CauseRight != 2 || ds.Confusion["steal"]["cpu"] != 1 {
		t.Errorf("retrospective: found %d, cause right %d, detected %d with the cause %d (confusion %v); want 3, 2, 3, 2 with steal named cpu",
			ds.RetroFound, ds.RetroCauseRight, ds.Detected, ds.CauseRight, ds.Confusion)
	}
	if tot := totals([]ScenarioResult{{Detectors: []DetectorScore{ds}}, {Detectors: []DetectorScore{ds}}}); fmtRatio(tot.Detectors[0].RetroCauseAccuracy) != "0.667" {
		t.Errorf("pooled retrospective cause accuracy %v, want 0.667", fmtRatio(tot.Detectors[0].RetroCauseAccuracy))
	}
	// A neighbour fault on node b inside the gap: no verdict could name its culprit; a finding
	// covering it that names the cgroup counts as naming it, one naming another does not.
	sc.Truth = append(sc.Truth, scenario.TruthEntry{Node: "b", Onset: d(6 * time.Minute), From: d(6 * time.Minute), To: d(8 * time.Minute), Cause: "cpu", Culprit: "/noisy"})
	ds = score("x", nil, found, sc, live)
	if ds.NeighbourFaults != 1 || ds.CulpritRight != 0 || fmtRatio(ds.CulpritAccuracy) != "0.000" {
		t.Errorf("culprit named %d of %d (accuracy %v) with no finding naming it; want 0 of 1", ds.CulpritRight, ds.NeighbourFaults, fmtRatio(ds.CulpritAccuracy))
	}
	found[len(found)-2].f.Culprit = &detect.Culprit{Cgroup: "/noisy"}
	ds = score("x", nil, found, sc, live)
	if ds.CulpritRight != 1 || fmtRatio(ds.CulpritAccuracy) != "1.000" {
		t.Errorf("culprit named %d of %d (accuracy %v) by a retrospective finding; want 1 of 1", ds.CulpritRight, ds.NeighbourFaults, fmtRatio(ds.CulpritAccuracy))
	}
}

// TestScoreNotApplicable: an accuracy with nothing to be right about is not applicable, not 1
// (a detector that found nothing named no cause, right or wrong), in the JSON and the table.
func TestScoreNotApplicable(t *testing.T) {
	sc := &scenario.Scenario{Interval: scenario.Duration(5 * time.Second), Truth: []scenario.TruthEntry{
		{Node: "a", From: scenario.Duration(time.Minute), To: scenario.Duration(3 * time.Minute), Cause: "disk"},
	}}
	ds := score("x", nil, nil, sc, nil)
	if ds.CauseAccuracy != nil || ds.CulpritAccuracy != nil || ds.RetroCauseAccuracy != nil {
		t.Fatalf("cause %v culprit %v retrospective cause %v with nothing detected, no neighbour fault and nothing found in retrospect; want n/a each",
			fmtRatio(ds.CauseAccuracy), fmtRatio(ds.CulpritAccuracy), fmtRatio(ds.RetroCauseAccuracy))
	}
	b, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cause_accuracy", "culprit_accuracy", "retrospective_cause_accuracy"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("JSON %s = %v (present %v), want null", k, v, ok)
		}
	}
	var out strings.Builder
	if err := (Result{Totals: Totals{Detectors: []DetectorScore{ds}}}).WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "n/a") != 2 {
		t.Errorf("table does not print the accuracies as n/a:\n%s", out.String())
	}
}

// TestSlowerHardwareIsAgainstTheMedianMachine: slower hardware is slower than the fleet's median
// machine, not than the cluster's own machines: a fleet mostly of an older generation has no
// slower hardware, one mostly of a newer generation has its older machines (the cluster's own)
// as slower hardware, a fleet split evenly has no slower half, and a machine at the low end of a
// wide spread is slower hardware whatever its class. A class finding on a node that is not slower
// hardware is false.
func TestSlowerHardwareIsAgainstTheMedianMachine(t *testing.T) {
	nodes := make([]string, 20)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%02d", i)
	}
	fleet := func(speed float64, count int) map[string]float64 {
		m := map[string]float64{}
		for i, n := range nodes {
			m[n] = 1
			if i >= 20-count {
				m[n] = speed
			}
		}
		return m
	}
	spread := fleet(1, 0)
	spread["n00"], spread["n01"] = 0.85, 0.9
	for _, tc := range []struct {
		name   string
		sc     map[string]float64
		slower int
	}{
		{"mostly older", fleet(0.8, 15), 0},
		{"mostly newer", fleet(1.3, 15), 5},
		{"a few older", fleet(0.7, 5), 5},
		{"split evenly", fleet(0.7, 10), 0},
		// one machine of no class 1.18x slower than the others: slower hardware
		{"spread", spread, 1},
	} {
		got := slowerHardware(tc.sc)
		if len(got) != tc.slower {
			t.Errorf("%s: %d nodes of slower hardware %v, want %d", tc.name, len(got), got, tc.slower)
		}
	}
	var ds DetectorScore
	scoreClasses(&ds, map[string]bool{"n00": true, "n19": true}, slowerHardware(fleet(1.3, 15)))
	if ds.ClassFindings != 2 || ds.ClassFound != 1 || ds.ClassFalse != 1 || ds.SlowerClassNodes != 5 {
		t.Errorf("class findings %d, found %d of %d, false %d; want 2, 1 of 5, 1", ds.ClassFindings, ds.ClassFound, ds.SlowerClassNodes, ds.ClassFalse)
	}
}
