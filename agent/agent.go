// Package agent is the node daemon: it runs the collectors every interval, streams the reports
// to the coordinator over one long-lived gRPC stream, and executes the coordinator's commands.
// It also serves its own /healthz, /metrics and /debug/status.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/ebpf"
	"github.com/tmwarden/tmwarden/localstate"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Version is the agent's version, set at build time with -ldflags.
var Version = "dev"

// NamedCollector is a collector with the name it reports under.
type NamedCollector struct {
	Name      string
	Collector collector.Collector
}

// CommandHandler carries out one command from the coordinator. It reports progress through
// progress and returns when the command is done; an error marks the command failed.
type CommandHandler interface {
	Handle(ctx context.Context, cmd *tmwardenv1.Command, progress func(*tmwardenv1.CommandProgress)) error
}

// Option changes how an Agent is built.
type Option func(*Agent)

// WithCollectors replaces the collectors of the registry table (the demo's simulated nodes).
func WithCollectors(cs ...NamedCollector) Option {
	return func(a *Agent) { a.custom = cs; a.useCustom = true }
}

// WithTelemetry sets where the agent's own metrics go (default: a private Prometheus registry).
func WithTelemetry(p *telemetry.Provider) Option { return func(a *Agent) { a.tel = p } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(a *Agent) { a.log = l } }

// WithCommandHandler sets what runs the coordinator's commands (default: the drain handler,
// which runs the configured drain command and refuses everything else).
func WithCommandHandler(h CommandHandler) Option { return func(a *Agent) { a.commands = h } }

// WithDrainHandler sets what runs Drain commands only; prefetches still go to the state cache.
// The demo drains a simulated node by moving its tasks in the Flink stand-in.
func WithDrainHandler(h CommandHandler) Option { return func(a *Agent) { a.drain = h } }

// Agent is one node's daemon. Build it with New and start it with Run.
type Agent struct {
	cfg        Config
	log        *slog.Logger
	tel        *telemetry.Provider
	ownTel     bool
	instanceID string
	commands   CommandHandler
	drain      CommandHandler // WithDrainHandler; nil runs the configured drain command
	httpAddr   atomic.Pointer[string]

	gateway *localstate.Gateway // nil when the state cache is off

	custom     []NamedCollector
	useCustom  bool
	collectors []*runningCollector
	buf        *reportBuffer
	seq        uint64 // owned by the collect loop

	mu         sync.Mutex
	lastReport *tmwardenv1.Report
	statuses   []*tmwardenv1.CollectorStatus

	connected  atomic.Bool
	sessions   atomic.Uint64
	lastAckSeq atomic.Uint64
	m          agentMetrics
}

type runningCollector struct {
	name   string
	c      collector.Collector
	status *tmwardenv1.CollectorStatus // last status; the collect loop owns it, copies go out
	errors uint64
}

type agentMetrics struct {
	collected, sent, reconnects metric.Int64Counter
	collectDuration             metric.Float64Histogram
	collectCPU                  metric.Float64Counter
	collectSuccess              metric.Int64Gauge
}

// New builds an agent from cfg. It validates cfg and builds the enabled collectors; a collector
// that cannot work here is reported as failed or disabled, and the agent runs without it.
func New(cfg Config, opts ...Option) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid agent configuration: %w", err)
	}
	a := &Agent{cfg: cfg, log: slog.Default(), instanceID: newInstanceID(), buf: newReportBuffer(cfg.BufferSize)}
	for _, o := range opts {
		o(a)
	}
	a.log = a.log.With("node", cfg.NodeName)
	if a.tel == nil {
		p, err := telemetry.New("tmwarden-agent", Version, attribute.String("host.name", cfg.NodeName),
			attribute.String("tmwarden.node.name", cfg.NodeName))
		if err != nil {
			return nil, err
		}
		a.tel, a.ownTel = p, true
	}
	if err := a.initMetrics(); err != nil {
		return nil, err
	}
	if cfg.StateCache.Enabled {
		gw, err := localstate.New(cfg.StateCache, a.log.With("component", "state-cache"),
			localstate.WithMeter(a.tel.Meters.Meter("github.com/tmwarden/tmwarden/localstate")))
		if err != nil {
			return nil, fmt.Errorf("state cache: %w", err)
		}
		a.gateway = gw
	}
	if a.commands == nil {
		r := commandRouter{drain: a.drain}
		if r.drain == nil {
			r.drain = NewDrainHandler(cfg.Drain, a.log.With("component", "drain"))
		}
		if a.gateway != nil {
			r.prefetch = a.gateway.PrefetchHandler()
		}
		a.commands = r
	}
	if a.useCustom {
		for _, nc := range a.custom {
			a.collectors = append(a.collectors, &runningCollector{name: nc.Name, c: nc.Collector,
				status: &tmwardenv1.CollectorStatus{Name: nc.Name, State: tmwardenv1.CollectorStatus_STATE_OK}})
		}
	} else {
		// Loading the eBPF probes decodes the kernel's BTF: megabytes of short-lived garbage,
		// which at the default GOGC grows the heap to twice its size before the first
		// collection, and that start-up peak stays the agent's peak RSS for its whole life.
		// Collecting often while the collectors are built keeps the peak near the live heap;
		// the setting the process started with is back before the first round.
		restore := tightGC()
		a.buildCollectors()
		restore()
	}
	a.statuses = a.collectorStatuses()
	return a, nil
}

// startupGCPercent is the GC target while the collectors are built (see New).
const startupGCPercent = 10

// startupGC counts the agents building their collectors at once (the demo runs several in one
// process), so that the last one to finish restores the process's own GC target.
var startupGC struct {
	sync.Mutex
	building int
	prev     int
}

// tightGC sets the start-up GC target and returns the function that restores the previous one.
func tightGC() (restore func()) {
	startupGC.Lock()
	defer startupGC.Unlock()
	if startupGC.building == 0 {
		startupGC.prev = debug.SetGCPercent(startupGCPercent)
	}
	startupGC.building++
	return func() {
		startupGC.Lock()
		defer startupGC.Unlock()
		if startupGC.building--; startupGC.building == 0 {
			debug.SetGCPercent(startupGC.prev)
		}
	}
}

func (a *Agent) buildCollectors() {
	for _, reg := range collector.Registrations() {
		rc := &runningCollector{name: reg.Name, status: &tmwardenv1.CollectorStatus{Name: reg.Name}}
		if !a.cfg.Collectors.IsEnabled(reg) {
			rc.status.State = tmwardenv1.CollectorStatus_STATE_DISABLED
			rc.status.Reason = "disabled by configuration"
			a.collectors = append(a.collectors, rc)
			continue
		}
		c, err := reg.New(collector.Options{Config: a.cfg.Collectors, Logger: a.log.With("collector", reg.Name)})
		rc.c = c
		rc.status = collector.StatusOf(reg.Name, err)
		if c == nil {
			rc.status.State = tmwardenv1.CollectorStatus_STATE_FAILED
			if err == nil {
				rc.status.Reason = "factory returned no collector"
			}
		}
		if rc.status.State != tmwardenv1.CollectorStatus_STATE_OK {
			a.log.Warn("collector not fully available", "collector", reg.Name, "state", rc.status.State.String(), "reason", rc.status.Reason)
		}
		a.collectors = append(a.collectors, rc)
	}
	// The eBPF collectors have loaded their probes: the kernel BTF they shared is garbage now.
	ebpf.ReleaseKernelBTF()
}

func (a *Agent) initMetrics() error {
	m := a.tel.Meters.Meter("github.com/tmwarden/tmwarden/agent")
	var errs [6]error
	a.m.collected, errs[0] = m.Int64Counter("tmwarden.agent.reports.collected", metric.WithUnit("{report}"), metric.WithDescription("Reports built by the collect loop."))
	a.m.sent, errs[1] = m.Int64Counter("tmwarden.agent.reports.sent", metric.WithUnit("{report}"), metric.WithDescription("Reports written to the coordinator stream (resends included)."))
	a.m.reconnects, errs[2] = m.Int64Counter("tmwarden.agent.stream.sessions", metric.WithUnit("{session}"), metric.WithDescription("Stream sessions the coordinator welcomed."))
	a.m.collectDuration, errs[3] = m.Float64Histogram("tmwarden.collector.duration", metric.WithUnit("s"), metric.WithDescription("Time one collector took for one round."),
		metric.WithExplicitBucketBoundaries(telemetry.SecondsBuckets...))
	a.m.collectCPU, errs[5] = m.Float64Counter("tmwarden.collector.cpu_time", metric.WithUnit("s"),
		metric.WithDescription("Process CPU time (user+system) used while the collector ran. Collectors run one at a time, so this is the collector's cost plus whatever else the process did meanwhile (GC, serving /metrics, streaming)."))
	a.m.collectSuccess, errs[4] = m.Int64Gauge("tmwarden.collector.success", metric.WithDescription("1 when the collector's last round fully succeeded, else 0."))
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("creating agent metrics: %w", err)
	}
	// The node's signals themselves, under semantic-convention names, from the latest report.
	if err := telemetry.RegisterReportMetrics(m, func() *tmwardenv1.Report {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.lastReport
	}); err != nil {
		return fmt.Errorf("registering report metrics: %w", err)
	}
	_, err := m.Int64ObservableGauge("tmwarden.agent.buffer.reports", metric.WithUnit("{report}"),
		metric.WithDescription("Reports waiting for the coordinator's acknowledgement."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			n, _ := a.buf.stats()
			o.Observe(int64(n))
			return nil
		}))
	if err != nil {
		return err
	}
	_, err = m.Int64ObservableCounter("tmwarden.agent.reports.dropped", metric.WithUnit("{report}"),
		metric.WithDescription("Reports dropped because the buffer was full during a coordinator outage."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			_, d := a.buf.stats()
			o.Observe(int64(d))
			return nil
		}))
	if err != nil {
		return err
	}
	if err := a.registerCollectorState(m); err != nil {
		return err
	}
	_, err = m.Int64ObservableGauge("tmwarden.agent.connected", metric.WithDescription("1 while the coordinator stream is up."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if a.connected.Load() {
				o.Observe(1)
			} else {
				o.Observe(0)
			}
			return nil
		}))
	return err
}

// collectorStates are the values of tmwarden.collector.state's state attribute: the
// CollectorStatus states, lower case and without the STATE_ prefix, as the coordinator's API
// and tmwardenctl name them.
var collectorStates = []tmwardenv1.CollectorStatus_State{
	tmwardenv1.CollectorStatus_STATE_OK, tmwardenv1.CollectorStatus_STATE_DEGRADED,
	tmwardenv1.CollectorStatus_STATE_DISABLED, tmwardenv1.CollectorStatus_STATE_FAILED,
}

// registerCollectorState registers tmwarden.collector.state: for every collector of the table
// (disabled and failed-to-build ones too, which never run and so never record
// tmwarden.collector.success), one series per state, 1 for the state it is in and 0 for the
// others, as kube-state-metrics exports a pod's phase. Series that exist in every state keep
// `== 1` alerts and `changes()` meaningful across a transition instead of a series vanishing.
//
// The reason is deliberately not a label. It is free text naming pids, paths, addresses and
// wrapped errors, so as a label it would start a new series for every TaskManager restart and
// every distinct failure, without bound; and a fixed taxonomy of reason codes would say less
// than the text. The metric says which collector is in which state (cardinality: collectors ×
// 4), which is what an alert needs; the reason and its fix are one step away in the agent's
// /debug/status, the node's API record and `tmwardenctl node NAME`, and in the agent's log
// line "collector status changed".
func (a *Agent) registerCollectorState(m metric.Meter) error {
	_, err := m.Int64ObservableGauge("tmwarden.collector.state",
		metric.WithDescription("1 for the state the collector is in (ok, degraded, disabled, failed), 0 for the others; the reason is in /debug/status and the node's API record."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			a.mu.Lock()
			statuses := a.statuses
			a.mu.Unlock()
			for _, st := range statuses {
				for _, s := range collectorStates {
					v := int64(0)
					if st.State == s {
						v = 1
					}
					o.Observe(v, metric.WithAttributes(attribute.String("collector", st.Name),
						attribute.String("state", strings.ToLower(strings.TrimPrefix(s.String(), "STATE_")))))
				}
			}
			return nil
		}))
	if err != nil {
		return fmt.Errorf("registering tmwarden.collector.state: %w", err)
	}
	return nil
}

// Run collects and streams until ctx is cancelled, then closes the collectors. It returns an
// error only when the agent cannot start (its HTTP address is taken, say).
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent starting", "version", Version, "coordinator", a.cfg.Coordinator, "interval", a.cfg.Interval,
		"instance", a.instanceID, "collectors", a.collectorSummary())
	g, ctx := errgroup.WithContext(ctx)
	if a.cfg.HTTPAddr != "" {
		srv, err := a.listenHTTP(a.cfg.HTTPAddr)
		if err != nil {
			return err
		}
		g.Go(func() error { return serveUntil(ctx, srv) })
	}
	if a.gateway != nil {
		g.Go(func() error { return a.gateway.Run(ctx) })
	}
	g.Go(func() error { a.collectLoop(ctx); return nil })
	g.Go(func() error { a.streamLoop(ctx); return nil })
	err := g.Wait()
	a.closeCollectors()
	if a.ownTel {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = a.tel.Shutdown(sctx)
	}
	a.log.Info("agent stopped")
	return err
}

func (a *Agent) collectLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		a.collectOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// processCPU is the user+system CPU time the whole process has used so far; 0 if unknown.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// collectOnce builds one report and puts it in the send buffer.
func (a *Agent) collectOnce(ctx context.Context) {
	a.seq++
	r := &tmwardenv1.Report{Sequence: a.seq, CollectedAt: timestamppb.Now(), IntervalSeconds: a.cfg.Interval.Seconds()}
	for _, rc := range a.collectors {
		if rc.c == nil {
			continue
		}
		start, cpu0 := time.Now(), processCPU()
		err := a.runCollector(ctx, rc, r)
		d, cpu := time.Since(start), processCPU()-cpu0
		st := collector.StatusOf(rc.name, err)
		if err != nil && !collector.IsDegraded(err) {
			rc.errors++
		}
		if st.Reason != rc.status.Reason || st.State != rc.status.State {
			a.log.Warn("collector status changed", "collector", rc.name, "state", st.State.String(), "reason", st.Reason)
		}
		st.LastDurationSeconds = d.Seconds()
		st.ErrorsTotal = rc.errors
		rc.status = st
		attrs := metric.WithAttributes(attribute.String("collector", rc.name))
		a.m.collectDuration.Record(ctx, d.Seconds(), attrs)
		if cpu >= 0 {
			a.m.collectCPU.Add(ctx, cpu.Seconds(), attrs)
		}
		ok := int64(0)
		if err == nil {
			ok = 1
		}
		a.m.collectSuccess.Record(ctx, ok, attrs)
	}
	r.Collectors = a.collectorStatuses()
	if a.gateway != nil {
		r.Cache = a.gateway.Inventory()
	}
	_, r.DroppedReports = a.buf.stats()
	a.buf.push(r)
	a.m.collected.Add(ctx, 1)
	a.mu.Lock()
	a.lastReport, a.statuses = r, r.Collectors
	a.mu.Unlock()
}

// runCollector runs one collector with the interval as its deadline; a panic in a collector
// marks it failed for the round instead of taking the agent down.
func (a *Agent) runCollector(ctx context.Context, rc *runningCollector, r *tmwardenv1.Report) (err error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.Interval)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("collector panicked: %v", p)
			a.log.Error("collector panicked", "collector", rc.name, "panic", p)
		}
	}()
	return rc.c.Collect(cctx, r)
}

func (a *Agent) collectorStatuses() []*tmwardenv1.CollectorStatus {
	out := make([]*tmwardenv1.CollectorStatus, 0, len(a.collectors))
	for _, rc := range a.collectors {
		out = append(out, rc.status)
	}
	return out
}

func (a *Agent) collectorSummary() string {
	var parts []string
	for _, rc := range a.collectors {
		parts = append(parts, rc.name+"="+strings.ToLower(strings.TrimPrefix(rc.status.State.String(), "STATE_")))
	}
	return strings.Join(parts, ",")
}

func (a *Agent) closeCollectors() {
	for _, rc := range a.collectors {
		if c, ok := rc.c.(collector.Closer); ok {
			if err := c.Close(); err != nil {
				a.log.Warn("closing collector", "collector", rc.name, "err", err)
			}
		}
	}
}

// Status is what /debug/status and the demo show about the agent.
type Status struct {
	NodeName       string
	InstanceID     string
	Connected      bool
	Sessions       uint64
	Pending        int
	Dropped        uint64
	LastSequence   uint64
	LastAcked      uint64
	Collectors     []*tmwardenv1.CollectorStatus
	LastReport     *tmwardenv1.Report
	CoordinatorURL string
}

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() Status {
	pending, dropped := a.buf.stats()
	a.mu.Lock()
	defer a.mu.Unlock()
	var seq uint64
	if a.lastReport != nil {
		seq = a.lastReport.Sequence
	}
	return Status{NodeName: a.cfg.NodeName, InstanceID: a.instanceID, Connected: a.connected.Load(), Sessions: a.sessions.Load(),
		Pending: pending, Dropped: dropped, LastSequence: seq, LastAcked: a.lastAckSeq.Load(), Collectors: a.statuses,
		LastReport: a.lastReport, CoordinatorURL: a.cfg.Coordinator}
}

func newInstanceID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("pid%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}
