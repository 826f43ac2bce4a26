// Package demo runs tmwarden end to end in one process: a coordinator on the default ports, a
// real agent profiling this machine and simulated agents, with a fault injected along the way.
// `tmwardenctl demo` (and so `make demo`) is a thin wrapper around Run.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/decisions"
	"github.com/tmwarden/tmwarden/localstate"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Options configure a demo run.
type Options struct {
	// Duration ends the demo by itself; 0 runs until ctx is cancelled (Ctrl-C).
	Duration time.Duration
	// SimNodes is how many simulated nodes join the real one.
	SimNodes int
	// Interval is every agent's report interval.
	Interval time.Duration
	// FaultAfter is when the fault is injected; 0 picks a third of Duration (or 15 s).
	FaultAfter time.Duration
	// GRPCAddr and HTTPAddr are the coordinator's addresses; AgentHTTPAddr the real agent's.
	GRPCAddr, HTTPAddr, AgentHTTPAddr string
	// DataDir keeps the coordinator's store; empty uses a temporary directory removed at the end.
	DataDir string
	// Scenario, when set, takes the simulated nodes from this cluster-simulator scenario file
	// instead of the Flink stand-in; its own schedule injects the faults.
	Scenario string
	// ScenarioSpeed is how many simulated ticks pass per Interval (default 1).
	ScenarioSpeed int
	// Out receives the live table and the summary; Live redraws in place (a terminal).
	Out  io.Writer
	Live bool
	// Render draws the nodes table (tmwardenctl passes the same renderer as `tmwardenctl nodes`).
	Render func(io.Writer, []httpv1.Node, time.Time)
	// Mode is the decision mode (dry-run, approve, auto); empty keeps the default, dry-run.
	Mode string
	// APITokenFile, when set, makes the coordinator's API demand this bearer token for approvals.
	APITokenFile string
	// Started, when set, is called once every component runs, with a handle to the live demo
	// (tests drive the status page against it and cut agents off).
	Started func(Running)
	// Actuator is the coordinator's actuator kind; empty keeps the default (log). With
	// "baremetal" a simulated node drains the way Flink answers a drained TaskManager: its
	// subtasks restart on a TaskManager of another node (stateful moves the state warmer follows).
	Actuator string
	// StateCache, when set, runs a state cache on every simulated node in front of this
	// upstream, with a peer credential shared between them; the simulated TaskManagers write each
	// completed checkpoint through their node's cache, as Flink does when s3.endpoint points there.
	StateCache *localstate.UpstreamConfig
	// AgentMetrics gives every simulated agent its own telemetry and HTTP port (/metrics), as each
	// node's agent has in a deployment; Running.AgentHTTP lists them.
	AgentMetrics bool
}

// Running is a demo while it runs.
type Running struct {
	// HTTPAddr is the coordinator's API and status page address.
	HTTPAddr string
	// Nodes are the simulated nodes' names.
	Nodes []string
	// CutOff stops one simulated node's agent, as if its network had gone.
	CutOff func(node string)
	// AgentHTTP is each agent's HTTP address (metrics, health) by node name: the real one always,
	// the simulated ones with Options.AgentMetrics.
	AgentHTTP map[string]string
	// CoordinatorGRPC is the coordinator's gRPC address.
	CoordinatorGRPC string
}

// Summary is what the demo saw.
type Summary struct {
	Duration       time.Duration
	Nodes          []httpv1.Node
	Events         []httpv1.Event
	RealNode       string
	Degraded       []httpv1.Collector
	FaultsInjected []string
	// Mode is the decision mode the demo ran in; Decisions what the policy decided, newest first.
	Mode      string
	Decisions []httpv1.Decision
	LogFile   string
}

// Run runs the demo until opts.Duration passes or ctx is cancelled.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.SimNodes < 0 || opts.Interval <= 0 || opts.Render == nil || opts.Out == nil {
		return nil, errors.New("demo: need SimNodes >= 0, Interval > 0, Out and Render")
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		d, err := os.MkdirTemp("", "tmwarden-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dataDir = d
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	// Component logs would tear the live table apart, so they go to a file that outlives the run.
	logFile, err := os.CreateTemp("", "tmwarden-demo-*.log")
	if err != nil {
		return nil, err
	}
	logPath := logFile.Name()
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	faultAfter := opts.FaultAfter
	if faultAfter == 0 {
		faultAfter = 15 * time.Second
		if opts.Duration > 0 {
			faultAfter = opts.Duration / 3
		}
	}

	var cluster *simulatedCluster
	var scen *scenarioCluster
	if opts.Scenario != "" {
		sctx, stopScenario := context.WithCancel(ctx)
		defer stopScenario()
		if scen, err = startScenarioCluster(sctx, opts.Scenario, opts.Interval, opts.ScenarioSpeed); err != nil {
			return nil, err
		}
		cluster = &simulatedCluster{steal: map[string]float64{}} // no Flink stand-in in this mode
	} else if cluster, err = startSimulatedCluster(ctx, opts.SimNodes); err != nil {
		return nil, err
	}
	defer cluster.Close()

	ccfg := coordinator.DefaultConfig()
	ccfg.DataDir = filepath.Join(dataDir, "coordinator")
	ccfg.GRPCAddr, ccfg.HTTPAddr = opts.GRPCAddr, opts.HTTPAddr
	ccfg.DefaultInterval, ccfg.Detection.Interval = opts.Interval, opts.Interval
	if opts.Mode != "" {
		ccfg.Decisions.Policy.Mode = decide.Mode(opts.Mode)
	}
	ccfg.APITokenFile = opts.APITokenFile
	if opts.Actuator != "" {
		ccfg.Actuator.Kind = opts.Actuator
		ccfg.Actuator.BareMetal.Poll = opts.Interval
	}
	if u := cluster.RESTURL(); u != "" {
		ccfg.Flink.JobManagers = []coordinator.JobManagerConfig{{URL: u}}
		ccfg.Flink.PollInterval = 2 * opts.Interval
	}
	coord, err := coordinator.New(ccfg, coordinator.WithLogger(log.With("component", "coordinator")))
	if err != nil {
		return nil, err
	}
	if err := coord.Listen(); err != nil {
		coord.Close()
		return nil, fmt.Errorf("%w (is another tmwarden running? pass --grpc-addr/--http-addr)", err)
	}

	var wg sync.WaitGroup
	// The components outlive ctx's deadline by a moment, so the summary sees them still running.
	runCtx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	coordDone := make(chan error, 1)
	go func() { coordDone <- coord.Serve(runCtx) }()

	// The real agent: this machine, the collector table, its own HTTP port.
	acfg := agent.DefaultConfig()
	acfg.Coordinator, acfg.Interval, acfg.HTTPAddr = coord.GRPCAddr(), opts.Interval, opts.AgentHTTPAddr
	acfg.BackoffInitial, acfg.BackoffMax = 200*time.Millisecond, 2*time.Second
	real, err := agent.New(acfg, agent.WithLogger(log.With("component", "agent")))
	if err != nil {
		stopAll()
		<-coordDone
		return nil, err
	}
	realErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); realErr <- real.Run(runCtx) }()

	simCancel := map[string]context.CancelFunc{}
	agents := map[string]*agent.Agent{acfg.NodeName: real}
	withHTTP := map[string]*agent.Agent{}
	if acfg.HTTPAddr != "" {
		withHTTP[acfg.NodeName] = real
	}
	nodes := cluster.Nodes()
	if scen != nil {
		nodes = scen.Nodes()
	}
	for _, name := range nodes {
		scfg := acfg
		scfg.NodeName, scfg.HTTPAddr = name, ""
		agentOpts := []agent.Option{agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(log.With("component", "sim-agent"))}
		if opts.AgentMetrics {
			scfg.HTTPAddr = "127.0.0.1:0"
			agentOpts = agentOpts[1:] // its own telemetry, as a real agent has
		}
		if opts.StateCache != nil {
			scfg.StateCache = demoStateCache(*opts.StateCache, filepath.Join(dataDir, "state-cache", name))
		}
		if opts.Actuator == "baremetal" && scen == nil {
			agentOpts = append(agentOpts, agent.WithDrainHandler(&simulatedDrain{cluster: cluster, node: name}))
		}
		var cols []agent.NamedCollector
		if scen != nil {
			cols = scen.Collectors(name)
		} else if cols, err = cluster.Collectors(name, func(c string) collector.Options {
			return collector.Options{Logger: log.With("component", "sim-agent", "node", name, "collector", c)}
		}); err != nil {
			stopAll()
			return nil, err
		}
		sa, err := agent.New(scfg, append(agentOpts, agent.WithCollectors(cols...))...)
		if err != nil {
			stopAll()
			return nil, err
		}
		agents[name] = sa
		if opts.AgentMetrics {
			withHTTP[name] = sa
		}
		actx, cancel := context.WithCancel(runCtx)
		simCancel[name] = cancel
		wg.Add(1)
		go func() { defer wg.Done(); _ = sa.Run(actx) }()
	}

	sum := &Summary{RealNode: acfg.NodeName, LogFile: logPath}
	// Duration counts from here: starting the agents may take seconds on a loaded machine, and
	// the fault and the detection after it must still fit in.
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	if opts.StateCache != nil && scen == nil {
		wg.Add(1)
		go func() { defer wg.Done(); writeCheckpoints(runCtx, cluster, agents, opts.Interval, log) }()
	}
	start := time.Now()
	if opts.Started != nil {
		var mu sync.Mutex
		httpAddrs, err := agentHTTPAddrs(ctx, withHTTP)
		if err != nil {
			stopAll()
			wg.Wait()
			<-coordDone
			return nil, err
		}
		opts.Started(Running{HTTPAddr: coord.HTTPAddr(), CoordinatorGRPC: coord.GRPCAddr(), Nodes: nodes, AgentHTTP: httpAddrs, CutOff: func(node string) {
			mu.Lock()
			defer mu.Unlock()
			if cancel := simCancel[node]; cancel != nil {
				cancel()
			}
		}})
	}
	faultTimer := time.NewTimer(faultAfter)
	defer faultTimer.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	draw := func(status string) {
		if opts.Live {
			fmt.Fprint(opts.Out, "\x1b[H\x1b[2J")
		}
		fmt.Fprintf(opts.Out, "tmwarden demo — %s elapsed — coordinator grpc %s, api http://%s — %s\n\n",
			time.Since(start).Round(time.Second), coord.GRPCAddr(), coord.HTTPAddr(), status)
		opts.Render(opts.Out, coord.Nodes(), time.Now())
		fmt.Fprintln(opts.Out)
	}
	status := fmt.Sprintf("fault in %s", faultAfter)
	if scen != nil {
		faultTimer.Stop() // the scenario's schedule injects its own faults
		sum.FaultsInjected = scen.Faults(opts.Interval)
		status = "scenario " + opts.Scenario + ": " + strings.Join(sum.FaultsInjected, "; ")
	}
	var seen map[string]string // node -> what was last printed about it (not live)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-realErr:
			stopAll()
			wg.Wait()
			<-coordDone
			return nil, fmt.Errorf("real agent: %w", err)
		case <-faultTimer.C:
			if victim, err := cluster.InjectNoisyNeighbour(); err == nil {
				sum.FaultsInjected = append(sum.FaultsInjected, fmt.Sprintf("%s: noisy neighbour, CPU steal ~35%%, its TaskManager at 30%% speed", victim))
			}
			if lost := cluster.LastNode(); lost != "" {
				simCancel[lost]()
				sum.FaultsInjected = append(sum.FaultsInjected, fmt.Sprintf("%s: agent lost (expect unreachable after %d intervals)", lost, ccfg.MissedIntervals))
			}
			status = "faults injected: " + strings.Join(sum.FaultsInjected, "; ")
		case <-tick.C:
			if opts.Live {
				draw(status)
			} else {
				// Not a terminal (a log, CI): the table once, then only what changed.
				if seen == nil {
					draw(status)
					seen = map[string]string{}
				}
				printChanges(opts.Out, time.Since(start), coord.Nodes(), seen)
			}
		}
	}
	sum.Duration = time.Since(start).Round(time.Second)
	sum.Nodes = coord.Nodes()
	if d, ok := coord.NodeDetail(sum.RealNode); ok {
		for _, c := range d.Collectors {
			if c.State != "ok" {
				sum.Degraded = append(sum.Degraded, c)
			}
		}
	}
	sum.Events, _ = coord.Events(1000, "")
	sum.Mode = string(coord.Decisions().Mode())
	if ds, err := coord.Decisions().Decisions(100, ""); err == nil {
		for _, d := range ds {
			sum.Decisions = append(sum.Decisions, decisions.ToAPI(d, nil))
		}
	}
	stopAll()
	wg.Wait()
	if err := <-coordDone; err != nil {
		return sum, err
	}
	return sum, nil
}

// Print writes the summary.
func (s *Summary) Print(w io.Writer, render func(io.Writer, []httpv1.Node, time.Time)) {
	fmt.Fprintf(w, "tmwarden demo finished after %s.\n\n", s.Duration)
	render(w, s.Nodes, time.Now())
	fmt.Fprintln(w)
	if len(s.FaultsInjected) > 0 {
		fmt.Fprintln(w, "Faults injected:")
		for _, f := range s.FaultsInjected {
			fmt.Fprintln(w, "  -", f)
		}
	}
	fmt.Fprintf(w, "Collectors on this machine (%s) that are not fully available:\n", s.RealNode)
	if len(s.Degraded) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, c := range s.Degraded {
		fmt.Fprintf(w, "  - %s: %s: %s\n", c.Name, c.State, c.Reason)
	}
	counts := map[string]int{}
	for _, e := range s.Events {
		counts[e.Type]++
	}
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintln(w, "Events in the coordinator's log:")
	for _, t := range types {
		fmt.Fprintf(w, "  %-22s %d\n", t, counts[t])
	}
	for _, e := range s.Events {
		if e.Type == "node_unreachable" || e.Type == "decision" || e.Type == "breaker_open" {
			fmt.Fprintf(w, "  -> %s\n", e.Message)
		}
	}
	s.printDecisions(w)
	fmt.Fprintf(w, "Component logs: %s\n", s.LogFile)
	fmt.Fprintln(w, "While it runs: tmwardenctl nodes | node NAME | decisions, and the status page at the API address.")
}

// printDecisions says what the decision policy did, or in dry-run what it would have done:
// a dry run moves nothing, and the summary must not read as if it had.
func (s *Summary) printDecisions(w io.Writer) {
	var acts []httpv1.Decision
	for _, d := range s.Decisions {
		if d.Kind == "migrate" || d.Kind == "release" {
			acts = append(acts, d)
		}
	}
	if s.Mode == "dry-run" {
		fmt.Fprintln(w, "Decisions (mode dry-run: nothing was changed; this is what would have been done):")
	} else {
		fmt.Fprintf(w, "Decisions (mode %s):\n", s.Mode)
	}
	if len(acts) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for i := len(acts) - 1; i >= 0; i-- { // oldest first: the order things happened
		d := acts[i]
		steps := make([]string, len(d.Steps))
		for j, st := range d.Steps {
			steps[j] = st.Name
		}
		plan := ""
		if len(steps) > 0 {
			plan = " [" + strings.Join(steps, ", ") + "]"
		}
		if d.DryRun {
			fmt.Fprintf(w, "  - would %s %s%s: %s (%s)\n", d.Kind, d.Node, plan, d.Reason, d.ID)
		} else {
			fmt.Fprintf(w, "  - %s %s: %s%s: %s (%s)\n", d.Kind, d.Node, d.Status, plan, d.Reason, d.ID)
		}
	}
}

// printChanges writes one line per node whose reachability, health or cause changed since the
// last call, and remembers what it printed in seen.
func printChanges(w io.Writer, elapsed time.Duration, nodes []httpv1.Node, seen map[string]string) {
	for _, n := range nodes {
		now := n.State + ", " + n.Health
		if n.Cause != "" {
			now += " (" + n.Cause + ")"
		}
		if n.WouldMigrate != "" {
			now += ", dry-run: would migrate (" + n.WouldMigrate + ")"
		}
		if was, ok := seen[n.Name]; ok && was == now {
			continue
		} else if ok {
			fmt.Fprintf(w, "%6s  %-10s %s  (was %s)\n", elapsed.Round(time.Second), n.Name, now, was)
		}
		seen[n.Name] = now
	}
}
