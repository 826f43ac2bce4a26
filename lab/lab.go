// Package lab is the real-fault lab: it puts real faults (a CPU hog in a neighbour cgroup, a CPU
// quota, a throttled disk, packet loss, a memory squeeze, a GC storm) on this machine, under a
// TaskManager stand-in that does real work, and records what the real agent and coordinator
// binaries made of each. `tmwardenctl lab` (and `make lab`) runs it; docs/lab.md says what a run
// proves and what it does not.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// Options configure a lab run.
type Options struct {
	// BinDir holds tmwarden-agent and tmwarden-coordinator; Self is the tmwardenctl binary that
	// runs the TaskManager stand-in (`tmwardenctl lab taskmanager`).
	BinDir, Self string
	// Prefix names the cgroups, network namespace, veths and nftables table the lab creates.
	Prefix string
	// Interval is every agent's report interval and the coordinator's round.
	Interval time.Duration
	// Peers is how many simulated nodes stand beside the real one.
	Peers int
	// Warmup lets the stand-in's 60 s meters fill; Calibrate records the quiet baseline.
	Warmup, Calibrate time.Duration
	// Quiet is the control with no fault (0 skips it).
	Quiet time.Duration
	// FaultFor is how long each fault stays at least; it stays until the decision it caused has
	// run, at most FaultMax. RecoverMax bounds the wait for healthy-through-probation.
	FaultFor, FaultMax, RecoverMax time.Duration
	// Faults selects faults by name (empty: all).
	Faults []string
	// SourceRate and WorkRounds size the stand-in's work.
	SourceRate float64
	WorkRounds int
	// Out receives progress and the table; Log the components' logs go to (a file).
	Out io.Writer
	Log *slog.Logger
	// WorkDir keeps configs, logs and state; empty makes a temporary one.
	WorkDir string
}

// DefaultOptions is `make lab`.
func DefaultOptions() Options {
	return Options{Prefix: "tmwlab", Interval: 5 * time.Second, Peers: 6, Warmup: 60 * time.Second, Calibrate: 60 * time.Second,
		Quiet: 5 * time.Minute, FaultFor: 25 * time.Second, FaultMax: 60 * time.Second, RecoverMax: 4 * time.Minute,
		SourceRate: 1500, WorkRounds: 120}
}

// Row is one line of the lab's result, the JSON written to LAB_JSON.
type Row struct {
	Fault    string  `json:"fault"`
	Detected bool    `json:"detected"`
	TTD      float64 `json:"ttd_s"`
	Node     string  `json:"node"`
	Cause    string  `json:"cause"`
	Culprit  string  `json:"culprit"`
	Decision string  `json:"decision"`
	// Recovered: the node went back to healthy (through probation when it was quarantined).
	Recovered bool `json:"recovered"`
	// FalseVerdicts are peers judged slow (or moved) while the fault was on; PeerSuspects
	// peers only marked suspect (watched, never acted on).
	FalseVerdicts  []string `json:"false_verdicts"`
	PeerSuspects   []string `json:"peer_suspects,omitempty"`
	SkippedReason  string   `json:"skipped_reason"`
	ExpectedCause  string   `json:"expected_cause"`
	ExpectedTarget string   `json:"expected_target"`
	// Seen is what the agent reported about the real node while the fault was on (the
	// strongest host signals and stragglers), for rows where detection fell short.
	Seen     string `json:"seen,omitempty"`
	Injected string `json:"injected"`
	Pass     bool   `json:"pass"`
	// from and to bound the row's window (the fault on, then the recovery).
	from, to time.Time
}

// Result is a whole run.
type Result struct {
	RealNode    string      `json:"real_node"`
	Interval    float64     `json:"interval_s"`
	Peers       []string    `json:"peers"`
	Calibration Calibration `json:"calibration"`
	Rows        []Row       `json:"rows"`
	Notes       []string    `json:"notes,omitempty"`
}

// Calibration is what the quiet baseline measured.
type Calibration struct {
	Reports int `json:"reports"`
	// TPR and BusyMs per vertex name, the stand-in's quiet true processing rate and busy time.
	TPR        map[string]float64 `json:"tpr"`
	BusyMs     map[string]float64 `json:"busy_ms"`
	TMCores    float64            `json:"tm_cpu_cores"`
	RunqMeanUS []float64          `json:"runq_mean_us"`
	OtherCPU   []float64          `json:"other_cpu_cores"`
}

// CheckRoot says why the lab cannot run here, or "".
func CheckRoot() string {
	if os.Geteuid() != 0 {
		return "the lab needs root: it creates cgroups, a network namespace and nftables rules, and the agent loads eBPF"
	}
	for _, c := range tmControllers {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c, "cgroup.procs")); err != nil {
			return fmt.Sprintf("cgroup v1 controller %s is not mounted at %s/%s (the lab's faults are v1 knobs)", c, cgroupRoot, c)
		}
	}
	for _, t := range []string{"ip", "nft", "stress-ng"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Sprintf("%s is not installed (make lab installs it: apt-get install iproute2 nftables stress-ng)", t)
		}
	}
	return ""
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Run runs the lab and returns its result.
func Run(ctx context.Context, o Options) (*Result, error) {
	if why := CheckRoot(); why != "" {
		return nil, errors.New(why)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	say := func(format string, a ...any) {
		fmt.Fprintf(o.Out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	work := o.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", o.Prefix+"-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	stateDir := filepath.Join(work, "tm-state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	m, err := setupMachine(ctx, o.Prefix, work)
	if err != nil {
		return nil, err
	}
	defer m.teardown(context.WithoutCancel(ctx))
	say("machine: cgroups %s and %s, netns %s (%s <-> %s), state on block device %s", m.tmCgroup, m.noisyCG, m.netns, m.hostIP, m.nsIP, m.blockDev)

	realNode, _ := os.Hostname()
	realNode = strings.ToLower(realNode)
	if realNode == "" {
		realNode = "lab-real"
	}
	peers := make([]string, o.Peers)
	for i := range peers {
		peers[i] = fmt.Sprintf("%s-peer-%d", o.Prefix, i+1)
	}
	simCfg := func(cap map[string]float64) flinksim.Config {
		cfg := flinksim.Config{Version: flinksim.Version20}
		for _, n := range append([]string{realNode}, peers...) {
			cfg.TaskManagers = append(cfg.TaskManagers, flinksim.TaskManagerSpec{Node: n, Slots: 2})
		}
		par := 2 * (len(peers) + 1)
		// Calibration is keyed by the name as scraped (sanitised by the reporter).
		c := func(name string) float64 { return max(cap[promscrape.SanitizeLabelValue(name)], 1) }
		cfg.Jobs = []flinksim.JobSpec{{Name: "lab-pipeline", Rate: o.SourceRate * float64(par), Vertices: []flinksim.VertexSpec{
			{Name: vertexNames[0], Parallelism: par, Capacity: c(vertexNames[0]), BytesPerRecord: recordBytes},
			{Name: vertexNames[1], Parallelism: par, Capacity: c(vertexNames[1]), BytesPerRecord: recordBytes},
			{Name: vertexNames[2], Parallelism: par, Capacity: c(vertexNames[2]), BytesPerRecord: recordBytes},
		}}}
		return cfg
	}
	// The ids are derived from the names, so a model built now names the job, its vertices and
	// the real TaskManager as the calibrated one started later will.
	ids, err := flinksim.New(simCfg(nil))
	if err != nil {
		return nil, err
	}
	tmInfo := ids.TaskManagersOn(realNode)[0]
	tmcfg := TaskManagerConfig{Cgroups: m.tmCgroupProcs(), ResourceID: tmInfo.ID, Host: tmInfo.Host, StateDir: stateDir,
		NetNS: "/var/run/netns/" + m.netns, ListenIP: m.nsIP, SourceRate: o.SourceRate, WorkRounds: o.WorkRounds,
		StateMiB: 48, SyncEvery: Duration(100 * time.Millisecond), MeterWindow: Duration(60 * time.Second), TimerWindow: Duration(5 * time.Second), FlinkVersion: flinksim.Version20}
	for _, vn := range vertexNames {
		vi := VertexIdentity{VertexName: vn}
		for _, p := range ids.Placements() {
			if p.VertexName == vn && p.Node == realNode {
				vi.JobID, vi.JobName, vi.VertexID, vi.ExecutionGraphID = p.JobID, p.JobName, p.VertexID, p.ExecutionGraphID
				vi.Indices = append(vi.Indices, p.SubtaskIndex)
			}
		}
		tmcfg.Vertices = append(tmcfg.Vertices, vi)
	}
	if tmcfg.MetricsAddr, err = freeAddr(); err != nil {
		return nil, err
	}

	// The JobManager REST address must be in the coordinator's config before the calibrated
	// model exists: a stable listener serves whatever model is current.
	var jm atomic.Pointer[http.Handler]
	jmLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	jmSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := jm.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, `{"errors":["JobManager is starting"]}`, http.StatusServiceUnavailable)
	})}
	go func() { _ = jmSrv.Serve(jmLn) }()
	defer jmSrv.Close()

	var procs procGroup
	defer procs.stop()
	tmConfPath := filepath.Join(work, "taskmanager.json")
	if err := writeJSON(tmConfPath, tmcfg); err != nil {
		return nil, err
	}
	port := tmcfg.MetricsAddr[strings.LastIndexByte(tmcfg.MetricsAddr, ':')+1:]
	// argv[0] ends in "java" and the main class follows, as on a TaskManager JVM's command
	// line: the agent's discovery only looks at JVMs.
	tmArgs := []string{"--config", tmConfPath, MainClass,
		"-Dtaskmanager.resource-id=" + tmInfo.ID, "-Dmetrics.reporter.prom.port=" + port}
	if err := procs.start(work, "taskmanager", o.Self, append(slices.Clone(standInCommand), tmArgs...)...); err != nil {
		return nil, err
	}
	procs.last().Args[0] = "tmwarden-lab-java"
	if err := procs.startLast(); err != nil {
		return nil, err
	}
	say("TaskManager stand-in %s: metrics on %s, subtasks %v of each vertex", tmInfo.ID, tmcfg.MetricsAddr, tmcfg.Vertices[0].Indices)

	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	agentHTTP, err := freeAddr()
	if err != nil {
		return nil, err
	}
	drainLog := filepath.Join(work, "drains.log")
	coordConf := fmt.Sprintf(`data_dir: %s
grpc_addr: %q
http_addr: %q
default_interval: %s
detection:
  interval: %s
decisions:
  policy:
    mode: auto
    job_cooldown: 1s
    confirm_rounds: 2
    clear_rounds: 3
    quarantine_min: 15s
    recovery_rounds: 3
    probation_min: 15s
    retry_after: 10s
    breaker_hold: 30s
actuator:
  kind: baremetal
  baremetal:
    command_timeout: 1m
    poll: 1s
flink:
  jobmanagers:
    - url: http://%s
  poll_interval: %s
`, filepath.Join(work, "coordinator"), grpcAddr, httpAddr, o.Interval, o.Interval, jmLn.Addr().String(), 2*o.Interval)
	agentConf := fmt.Sprintf(`coordinator: %q
node_name: %q
interval: %s
http_addr: %q
backoff_initial: 200ms
backoff_max: 2s
drain:
  command: [sh, -c, 'echo "$(date +%%s) $TMWARDEN_COMMAND_ID $TMWARDEN_TASK_MANAGER_IDS" >> %s']
  timeout: 30s
collectors:
  taskmanagers:
    extra_main_classes: [%s]
`, grpcAddr, realNode, o.Interval, agentHTTP, drainLog, MainClass)
	for name, body := range map[string]string{"coordinator.yaml": coordConf, "agent.yaml": agentConf} {
		if err := os.WriteFile(filepath.Join(work, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	if err := procs.start(work, "coordinator", filepath.Join(o.BinDir, "tmwarden-coordinator"), "--config", filepath.Join(work, "coordinator.yaml")); err != nil {
		return nil, err
	}
	if err := procs.startLast(); err != nil {
		return nil, err
	}
	if err := procs.start(work, "agent", filepath.Join(o.BinDir, "tmwarden-agent"), "--config", filepath.Join(work, "agent.yaml")); err != nil {
		return nil, err
	}
	if err := procs.startLast(); err != nil {
		return nil, err
	}
	api := httpv1.NewClient(httpAddr)
	say("coordinator (auto mode, bare-metal actuator) on %s, agent %s (eBPF) beside the stand-in; logs in %s", httpAddr, realNode, work)

	obs := &observer{api: api, real: realNode}
	if err := waitFor(ctx, 60*time.Second, func() bool {
		d, err := obs.detail(ctx)
		return err == nil && len(d.TaskManagerList) > 0 && len(d.TaskManagerList[0].Subtasks) > 0
	}); err != nil {
		return nil, fmt.Errorf("the agent never reported the stand-in's subtasks (see %s/agent.log): %w", work, err)
	}
	say("the agent reports the stand-in; warming its 60 s meters for %s", o.Warmup)
	if err := sleep(ctx, o.Warmup); err != nil {
		return nil, err
	}

	// Calibration: the real node's quiet reports.
	base := &baseline{}
	cal := Calibration{TPR: map[string]float64{}, BusyMs: map[string]float64{}}
	var seenSeq uint64
	cpu0, _ := m.tmCPUSeconds()
	t0 := time.Now()
	tprSum, busySum, n := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for time.Since(t0) < o.Calibrate {
		if err := sleep(ctx, o.Interval/2); err != nil {
			return nil, err
		}
		rep, err := obs.lastReport(ctx)
		if err != nil || rep.GetSequence() == seenSeq {
			continue
		}
		seenSeq = rep.GetSequence()
		base.reports = append(base.reports, rep)
		for _, tm := range rep.GetTaskManagers() {
			for _, st := range tm.GetSubtasks() {
				rate := st.GetRecordsInPerSecond()
				if st.GetIsSource() {
					rate = st.GetRecordsOutPerSecond()
				}
				if b := st.GetBusyMsPerSecond(); b > 0 {
					tprSum[st.GetVertexName()] += rate / (b / 1000)
					busySum[st.GetVertexName()] += b
					n[st.GetVertexName()]++
				}
			}
		}
	}
	cpu1, _ := m.tmCPUSeconds()
	cal.TMCores = (cpu1 - cpu0) / time.Since(t0).Seconds()
	cal.Reports = len(base.reports)
	for _, r := range base.reports {
		d := digest(r)
		cal.RunqMeanUS = append(cal.RunqMeanUS, round1(d.runq))
		cal.OtherCPU = append(cal.OtherCPU, round1(d.other))
	}
	for v := range n {
		cal.TPR[v] = round1(tprSum[v] / n[v])
		cal.BusyMs[v] = round1(busySum[v] / n[v])
	}
	if len(base.reports) < 3 || len(cal.TPR) < len(vertexNames) {
		return nil, fmt.Errorf("calibration saw %d reports and busy time for %d of %d vertices: the stand-in does too little work (raise --work-rounds)", len(base.reports), len(cal.TPR), len(vertexNames))
	}
	say("calibrated on %d quiet reports: TPR %v rec/s, busy %v ms/s, TaskManager %.2f cores, run-queue mean %v us, other CPU %v cores",
		cal.Reports, cal.TPR, cal.BusyMs, cal.TMCores, cal.RunqMeanUS, cal.OtherCPU)

	fcCtx, stopFC := context.WithCancel(ctx)
	defer stopFC()
	fc, err := flinksim.Start(fcCtx, simCfg(cal.TPR))
	if err != nil {
		return nil, err
	}
	defer fc.Close()
	h := fc.RESTHandler()
	jm.Store(&h)

	acfg := agent.DefaultConfig()
	acfg.Coordinator, acfg.Interval = grpcAddr, o.Interval
	acfg.BackoffInitial, acfg.BackoffMax = 200*time.Millisecond, 2*time.Second
	var peerWG sync.WaitGroup
	peerCtx, stopPeers := context.WithCancel(ctx)
	defer func() { stopPeers(); peerWG.Wait() }()
	if err := startPeers(peerCtx, &peerWG, fc, peers, base, "/"+m.tmCgroup, acfg, log.With("component", "peer")); err != nil {
		return nil, err
	}
	say("%d calibrated peers report; settling for %s", len(peers), 4*o.Interval)
	if err := sleep(ctx, 4*o.Interval); err != nil {
		return nil, err
	}

	res := &Result{RealNode: realNode, Interval: o.Interval.Seconds(), Peers: peers, Calibration: cal}
	if o.Quiet > 0 && selected(o.Faults, "quiet") {
		say("quiet control: %s without a fault", o.Quiet)
		row := Row{Fault: "quiet", ExpectedCause: "none", ExpectedTarget: "none", Injected: "nothing"}
		start := time.Now()
		row.from = start
		for time.Since(start) < o.Quiet {
			if err := sleep(ctx, time.Second); err != nil {
				return res, err
			}
			for _, nd := range obs.nodes(ctx) {
				notePeer(&row, nd)
			}
			if d, err := obs.detail(ctx); err == nil && d.Decision != nil && len(d.Decision.Evidence) > 0 && row.Seen == "" {
				row.Seen = evidenceSummary(d.Decision.Evidence)
			}
		}
		row.Recovered, row.to = true, time.Now()
		row.Pass = len(row.FalseVerdicts) == 0
		row.FalseVerdicts = nonNil(row.FalseVerdicts)
		res.Rows = append(res.Rows, row)
		say("quiet control: %d verdicts", len(row.FalseVerdicts))
	}

	fe := &faultEnv{m: m, tmMetrics: tmcfg.MetricsAddr, quietCores: cal.TMCores, cpus: max(1, runtime.NumCPU())}
	for _, f := range fe.faults() {
		if !selected(o.Faults, f.Name) {
			continue
		}
		row := runFault(ctx, o, obs, f, peers, drainLog, say)
		res.Rows = append(res.Rows, row)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	res.Notes = obs.unattributed(ctx, res.Rows)
	return res, nil
}

// unattributed lists the migrations decided outside every row's window: verdicts no fault of
// the lab's caused (another workload on the machine, or noise).
func (o *observer) unattributed(ctx context.Context, rows []Row) []string {
	l, err := o.api.Decisions(ctx, "", 500)
	if err != nil {
		return []string{"decisions unreadable: " + err.Error()}
	}
	var out []string
	for _, d := range l.Decisions {
		if d.Kind != "migrate" {
			continue
		}
		inside := slices.ContainsFunc(rows, func(r Row) bool {
			return r.Fault != "quiet" && !r.from.IsZero() && !d.CreatedAt.Before(r.from) && !d.CreatedAt.After(r.to)
		})
		if !inside {
			out = append(out, fmt.Sprintf("%s: migrate %s on %s outside any fault (cause %s, %s): %s",
				d.CreatedAt.Format("15:04:05"), d.Status, d.Node, orUnknown(d.Cause), evidenceSummary(d.Evidence), d.Reason))
		}
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// notePeer records a node that should be healthy and is not: slow or moved is a false
// verdict, suspect (watched, never acted on) is listed apart.
func notePeer(row *Row, nd httpv1.Node) {
	if nd.Health == "healthy" || nd.Health == "" {
		return
	}
	tag := nd.Name + ":" + nd.Health
	if nd.Cause != "" {
		tag += "(" + nd.Cause + ")"
	}
	list := &row.FalseVerdicts
	if nd.Health == "suspect" {
		list = &row.PeerSuspects
	}
	if !slices.Contains(*list, tag) {
		*list = append(*list, tag)
	}
}

var vertexNames = []string{"Source: lab-events", "Process: keyed-state", "Sink: fsync-sink"}

func selected(list []string, name string) bool {
	return len(list) == 0 || slices.Contains(list, name)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

// runFault injects one fault, watches the coordinator while it is on and until the real node is
// healthy again, and removes it.
func runFault(ctx context.Context, o Options, obs *observer, f Fault, peers []string, drainLog string, say func(string, ...any)) (row Row) {
	row = Row{Fault: f.Name, Node: "", ExpectedCause: f.Cause, ExpectedTarget: obs.real, Injected: f.Describe, FalseVerdicts: []string{}}
	if f.TaskManager {
		row.ExpectedTarget = "TaskManager on " + obs.real
	}
	// Start from a healthy node: a previous fault's probation must be over.
	if err := waitFor(ctx, o.RecoverMax, func() bool { return obs.health(ctx) == "healthy" }); err != nil {
		row.SkippedReason = "the node was not healthy before the fault: " + obs.health(ctx)
		return row
	}
	drains0 := countLines(drainLog)
	decisions0 := obs.decisionIDs(ctx)
	say("fault %s: %s", f.Name, f.Describe)
	remove, err := f.Inject(ctx)
	if err != nil {
		row.SkippedReason = "cannot inject here: " + err.Error()
		say("fault %s skipped: %s", f.Name, row.SkippedReason)
		return row
	}
	start := time.Now()
	row.from = start
	defer func() { row.to = time.Now() }()
	removed := false
	undo := func() {
		if !removed {
			removed = true
			if err := remove(); err != nil {
				say("removing %s: %v", f.Name, err)
			}
		}
	}
	defer undo()
	var seen []string
	var lastSeq uint64
	for {
		if sleep(ctx, time.Second) != nil {
			return row
		}
		el := time.Since(start)
		d, derr := obs.detail(ctx)
		if derr == nil {
			if d.LastSequence != lastSeq {
				lastSeq = d.LastSequence
				seen = append(seen, fmt.Sprintf("t+%.0fs %s", el.Seconds(), obs.seen(d)))
			}
			if row.Detected && row.Culprit == "" && f.Culprit != "" {
				// The culprit may be named a round after the node was first judged slow.
				if _, _, culprit := detected(d, f); culprit != "" {
					row.Culprit = culprit
					say("fault %s: culprit %q named after %.0fs", f.Name, culprit, el.Seconds())
				}
			}
			if !row.Detected {
				if ok, cause, culprit := detected(d, f); ok {
					row.Detected, row.TTD, row.Cause, row.Culprit = true, round1(el.Seconds()), cause, culprit
					row.Node = d.Name
					if f.TaskManager {
						row.Node = "TaskManager " + taskManagerOf(d) + " on " + d.Name
					}
					say("fault %s: detected after %.0fs: cause %q culprit %q, node state %s", f.Name, el.Seconds(), cause, culprit, d.Health)
				}
			}
		}
		for _, nd := range obs.nodes(ctx) {
			if slices.Contains(peers, nd.Name) {
				notePeer(&row, nd)
			}
		}
		decided := countLines(drainLog) > drains0
		if el >= o.FaultMax || el >= o.FaultFor && (decided || f.TaskManager || !row.Detected) {
			break
		}
	}
	undo()
	say("fault %s removed after %.0fs", f.Name, time.Since(start).Seconds())
	row.Decision = obs.decisionSummary(ctx, decisions0, countLines(drainLog)-drains0)
	// Recovery: back to healthy, through probation when it was quarantined.
	var states []string
	recoverStart := time.Now()
	var verdicts []string
	_ = waitFor(ctx, o.RecoverMax, func() bool {
		h := obs.health(ctx)
		if len(states) == 0 || states[len(states)-1] != h {
			states = append(states, h)
		}
		if d, err := obs.detail(ctx); err == nil && d.Decision != nil && d.Decision.Verdict != "" && d.Decision.Verdict != "healthy" {
			v := fmt.Sprintf("t+%.0fs %s/%s", time.Since(recoverStart).Seconds(), d.Decision.Verdict, d.Decision.Cause)
			if len(verdicts) < 12 && (len(verdicts) == 0 || !strings.HasSuffix(verdicts[len(verdicts)-1], d.Decision.Verdict+"/"+d.Decision.Cause)) {
				verdicts = append(verdicts, v)
			}
		}
		return h == "healthy"
	})
	wentAway := slices.ContainsFunc(states, func(s string) bool { return s == "quarantined" || s == "migrating" })
	row.Recovered = obs.health(ctx) == "healthy" && (!wentAway || slices.Contains(states, "probation"))
	if !row.Recovered && len(verdicts) > 0 {
		row.Decision += "; verdicts after removal: " + strings.Join(verdicts, ", ")
	}
	if !row.Recovered || wentAway {
		row.Decision += fmt.Sprintf("; states after removal: %s (%.0fs)", strings.Join(states, " -> "), time.Since(recoverStart).Seconds())
	}
	if !row.Detected {
		row.Seen = strings.Join(seen, " | ")
		if row.Seen == "" {
			row.Seen = "nothing outside the peers' range"
		}
	}
	row.Pass = row.Detected && row.TTD <= 3*o.Interval.Seconds()+1 && row.Cause == f.Cause &&
		(f.Culprit == "" || strings.Contains(row.Culprit, strings.TrimPrefix(f.Culprit, "/"))) && row.Recovered && len(row.FalseVerdicts) == 0
	return row
}

// detected says whether the coordinator blames the fault's target, and with what.
func detected(d httpv1.NodeDetail, f Fault) (bool, string, string) {
	if d.Decision == nil {
		return false, "", ""
	}
	if f.TaskManager {
		for _, e := range d.Decision.Evidence {
			if e.Kind == "taskmanager" && e.TaskManager != "" {
				return true, "gc", ""
			}
		}
		return false, "", ""
	}
	switch d.Health {
	case "slow", "migrating", "quarantined":
		return true, d.Decision.Cause, culpritOf(d)
	}
	return false, "", ""
}

func taskManagerOf(d httpv1.NodeDetail) string {
	if d.Decision != nil {
		for _, e := range d.Decision.Evidence {
			if e.Kind == "taskmanager" {
				return e.TaskManager
			}
		}
	}
	return ""
}

// culpritOf finds the culprit the coordinator named: the node's culprit (the neighbour cgroup,
// with its pod or unit), else any "culprit" key in the node's decision.
func culpritOf(d httpv1.NodeDetail) string {
	if c := d.Culprit; c != nil && c.Cgroup != "" {
		s := c.Cgroup
		if c.PodName != "" {
			s += " (pod " + c.PodNamespace + "/" + c.PodName + ")"
		} else if c.SystemdUnit != "" {
			s += " (" + c.SystemdUnit + ")"
		}
		return s
	}
	b, err := json.Marshal(d.Decision)
	if err != nil {
		return ""
	}
	var v any
	_ = json.Unmarshal(b, &v)
	var found []string
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			for k, val := range t {
				if strings.Contains(strings.ToLower(k), "culprit") {
					if s, ok := val.(string); ok && s != "" {
						found = append(found, s)
					} else if val != nil {
						bb, _ := json.Marshal(val)
						found = append(found, string(bb))
					}
				}
				walk(val)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	slices.Sort(found)
	return strings.Join(slices.Compact(found), ", ")
}

func evidenceSummary(ev []httpv1.Evidence) string {
	var parts []string
	for _, e := range ev {
		if e.Signal != "" {
			parts = append(parts, fmt.Sprintf("%s=%.3g (peers %.3g)", e.Signal, e.Value, e.PeerMedian))
		} else if e.Slowdown > 0 {
			parts = append(parts, fmt.Sprintf("%s[%d] %.2fx slower", e.VertexName, e.Subtask, e.Slowdown))
		}
		if len(parts) >= 4 {
			break
		}
	}
	return strings.Join(parts, ", ")
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// observer reads the coordinator's API.
type observer struct {
	api  *httpv1.Client
	real string
}

func (o *observer) detail(ctx context.Context) (httpv1.NodeDetail, error) {
	return o.api.Node(ctx, o.real)
}

func (o *observer) health(ctx context.Context) string {
	d, err := o.detail(ctx)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return d.Health
}

func (o *observer) nodes(ctx context.Context) []httpv1.Node {
	n, _ := o.api.Nodes(ctx)
	return n
}

func (o *observer) lastReport(ctx context.Context) (*tmwardenv1.Report, error) {
	d, err := o.detail(ctx)
	if err != nil {
		return nil, err
	}
	if len(d.LastReport) == 0 {
		return nil, errors.New("no report yet")
	}
	r := &tmwardenv1.Report{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(d.LastReport, r); err != nil {
		return nil, err
	}
	return r, nil
}

// seen summarises the real node's state for a row that fell short.
func (o *observer) seen(d httpv1.NodeDetail) string {
	s := d.Health
	if d.Decision != nil {
		if d.Decision.Cause != "" {
			s += "/" + d.Decision.Cause
		}
		if ev := evidenceSummary(d.Decision.Evidence); ev != "" {
			s += ": " + ev
		}
	}
	if d.Health == "healthy" {
		r := &tmwardenv1.Report{}
		if len(d.LastReport) > 0 && protojson.Unmarshal(d.LastReport, r) == nil {
			dg := digest(r)
			s += fmt.Sprintf(" (runq %.0fus, other cpu %.2f, iowait %.3f, psi cpu/io/mem %.2f/%.2f/%.2f, retrans %.1f/s, majflt %.0f/s",
				dg.runq, dg.other, r.GetHost().GetCpu().GetIowait(), r.GetHost().GetPressure().GetCpu().GetSomeShare(),
				r.GetHost().GetPressure().GetIo().GetSomeShare(), r.GetHost().GetPressure().GetMemory().GetSomeShare(),
				r.GetHost().GetTcp().GetRetransmitsPerSecond(), r.GetHost().GetMemory().GetMajorFaultsPerSecond())
			for _, tm := range r.GetTaskManagers() {
				s += fmt.Sprintf(", gc %.0fms/s", tm.GetJvm().GetGcTimeMsPerSecond())
				for _, st := range tm.GetSubtasks() {
					if b := st.GetBusyMsPerSecond(); b > 0 && !st.GetIsSource() {
						s += fmt.Sprintf(", %s[%d] tpr %.0f", strings.Fields(st.GetVertexName())[0], st.GetSubtaskIndex(), st.GetRecordsInPerSecond()/(b/1000))
					}
				}
			}
			s += ")"
		}
	}
	return s
}

type hostDigest struct{ runq, other float64 }

// digest is the two figures the lab prints from a report: mean run-queue latency over the
// per-cgroup histograms, and CPU used outside the TaskManagers' cgroups.
func digest(r *tmwardenv1.Report) hostDigest {
	var d hostDigest
	var cnt uint64
	var sum float64
	for _, h := range r.GetHistograms() {
		if h.GetKind() == tmwardenv1.LatencyHistogram_KIND_RUNQUEUE && h.GetTarget() != "/" {
			cnt += h.GetCount()
			sum += h.GetSumMicroseconds()
		}
	}
	if cnt > 0 {
		d.runq = sum / float64(cnt)
	}
	busy := (1 - r.GetHost().GetCpu().GetIdle() - r.GetHost().GetCpu().GetIowait()) * float64(r.GetHost().GetNumCpus())
	tm := 0.0
	cgs := map[string]bool{}
	for _, t := range r.GetTaskManagers() {
		cgs[t.GetCgroup()] = true
	}
	for _, c := range r.GetCgroups() {
		if cgs[c.GetPath()] {
			tm += c.GetCpuUsageCores()
		}
	}
	d.other = max(0, busy-tm)
	return d
}

func (o *observer) decisionIDs(ctx context.Context) map[string]bool {
	l, err := o.api.Decisions(ctx, o.real, 200)
	out := map[string]bool{}
	if err != nil {
		return out
	}
	for _, d := range l.Decisions {
		out[d.ID] = true
	}
	return out
}

func (o *observer) decisionSummary(ctx context.Context, before map[string]bool, drains int) string {
	l, err := o.api.Decisions(ctx, o.real, 200)
	if err != nil {
		return "unknown: " + err.Error()
	}
	var parts []string
	for _, d := range l.Decisions {
		if before[d.ID] {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", d.Kind, d.Status, d.Mode))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	s := strings.Join(slices.Compact(parts), ", ")
	if drains > 0 {
		s += fmt.Sprintf("; drain command ran %d time(s)", drains)
	}
	return s
}

// procGroup owns the lab's child processes and stops them (SIGTERM, then SIGKILL) at the end.
type procGroup struct {
	cmds  []*exec.Cmd
	files []*os.File
}

func (p *procGroup) start(dir, name string, argv0 string, args ...string) error {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(argv0, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmds = append(p.cmds, cmd)
	p.files = append(p.files, f)
	return nil
}

func (p *procGroup) last() *exec.Cmd { return p.cmds[len(p.cmds)-1] }

func (p *procGroup) startLast() error {
	c := p.last()
	if err := c.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.Path, err)
	}
	return nil
}

func (p *procGroup) stop() {
	for i := len(p.cmds) - 1; i >= 0; i-- {
		c := p.cmds[i]
		if c.Process == nil {
			continue
		}
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	for _, f := range p.files {
		f.Close()
	}
}
