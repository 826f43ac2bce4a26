// Package coordinator is tmwarden's control plane: it takes the agents' report streams, keeps the
// registry of nodes in its durable store, and serves the HTTP API. Detection, decisions and
// actuators read the registry through the report observers and act through the agents' streams.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"k8s.io/client-go/kubernetes"

	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/leader"
	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/coordinator/topology"
	"github.com/tmwarden/tmwarden/mtls"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Version is the coordinator's version, set at build time with -ldflags.
var Version = "dev"

// ReportObserver is told about every report the coordinator stores, in sequence order per node.
// It runs on the ingest path, so it must be quick and must not keep r beyond the call unless it
// treats it as read-only.
type ReportObserver func(node string, at time.Time, r *tmwardenv1.Report)

// Option changes how a Coordinator is built.
type Option func(*Coordinator)

// WithClock replaces time.Now (the simulator runs the coordinator in simulated time).
func WithClock(now func() time.Time) Option { return func(c *Coordinator) { c.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Coordinator) { c.log = l } }

// WithTelemetry sets where the coordinator's own metrics go (default: a private Prometheus registry).
func WithTelemetry(p *telemetry.Provider) Option { return func(c *Coordinator) { c.tel = p } }

// WithKubernetes sets the Kubernetes client of the leader election and the Kubernetes actuator
// (default: built from the kubeconfig or the in-cluster service account when needed).
func WithKubernetes(kube kubernetes.Interface) Option { return func(c *Coordinator) { c.kube = kube } }

// WithReportObserver adds an observer of stored reports.
func WithReportObserver(o ReportObserver) Option {
	return func(c *Coordinator) { c.observers = append(c.observers, o) }
}

// Coordinator is safe for concurrent use. Build it with New, bind with Listen, run with Serve.
type Coordinator struct {
	tmwardenv1.UnimplementedAgentServiceServer

	cfg       Config
	apiToken  string
	log       *slog.Logger
	now       func() time.Time
	tel       *telemetry.Provider
	ownTel    bool
	st        *store.Store
	observers []ReportObserver
	started   time.Time
	// persistEvery is reportPersistEvery; a benchmark sets 0 to measure a write per report.
	persistEvery time.Duration

	mu       sync.RWMutex
	nodes    map[string]*nodeState
	sessions map[string]*session

	topo    *topology.Topology
	poller  *jobManagerPoller
	eval    *evaluator
	elector *leader.Elector      // nil: a single replica, always acting
	kube    kubernetes.Interface // set with the elector

	grpcLn, httpLn net.Listener
	pprofLn        net.Listener
	ready          atomic.Bool
	acting         atomic.Bool // take-over done: evaluating and executing
	actMu          sync.Mutex
	actErr         string // why this replica cannot act, while it cannot
	sessionSeq     atomic.Uint64
	// roundPause holds the streams' new reports while an evaluation round runs.
	roundPause pause
	// observeQ applies stored reports to the observers one at a time (Ingest).
	observeQ observeQueue
	m        coordMetrics
}

type nodeState struct {
	// writeMu orders the node's store writes, which happen outside mu so that readers of the
	// record (the evaluation round, the API) never wait for the disk. Take it before mu.
	writeMu sync.Mutex
	mu      sync.Mutex
	rec     store.NodeRecord
	// last is the node's last report in its wire form, decoded only when the API shows it: a
	// decoded 20-subtask report is some 8 KB of small objects, its encoding about 1.5 KB, and
	// the coordinator keeps one per node (lastReport decodes it; lastSum is what lists show).
	last    []byte
	lastSum reportSummary
	// collectors are the statuses from the last report or Hello.
	collectors []*tmwardenv1.CollectorStatus
	// reportPersisted is when last was last written to the store.
	reportPersisted time.Time
	// dirty says rec holds counters the store does not have yet (Ingest writes them at a
	// bounded rate); flushRecord writes them.
	dirty bool
	// loaded says rec was read from the store and no report arrived since: its counters may be
	// behind what the coordinator before received.
	loaded bool
	// unsure are the reports missing between a loaded record and the first report after it.
	unsure unsureRange
}

// unsureRange is a run of report sequence numbers that either arrived at the coordinator before
// (its record was written later) or were dropped by the agent. They count as received until the
// agent's drop count, above base, says dropped, up to missing of them.
type unsureRange struct {
	missing, base, dropped uint64
	open                   bool
}

type coordMetrics struct {
	reports  metric.Int64Counter
	sessions metric.Int64UpDownCounter
	limits   metric.Int64Counter
	refused  metric.Int64Counter
}

var (
	attrStored    = metric.WithAttributes(attribute.String("outcome", "stored"))
	attrDuplicate = metric.WithAttributes(attribute.String("outcome", "duplicate"))
	attrRejected  = metric.WithAttributes(attribute.String("outcome", "rejected"))
	attrRateLimit = metric.WithAttributes(attribute.String("limit", "agent_report_rate"))
	attrBadHello  = metric.WithAttributes(attribute.String("reason", "invalid_hello"))
	attrIdentity  = metric.WithAttributes(attribute.String("reason", "identity"))
)

// New opens the store under cfg.DataDir and loads the nodes it knows.
func New(cfg Config, opts ...Option) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid coordinator configuration: %w", err)
	}
	c := &Coordinator{cfg: cfg, log: slog.Default(), now: time.Now, persistEvery: reportPersistEvery, nodes: map[string]*nodeState{}, sessions: map[string]*session{}}
	for _, o := range opts {
		o(c)
	}
	if c.tel == nil {
		p, err := telemetry.New("tmwarden-coordinator", Version)
		if err != nil {
			return nil, err
		}
		c.tel, c.ownTel = p, true
	}
	if err := c.initMetrics(); err != nil {
		return nil, err
	}
	if cfg.APITokenFile != "" {
		b, err := os.ReadFile(cfg.APITokenFile)
		if err != nil {
			return nil, fmt.Errorf("api_token_file: %w", err)
		}
		if c.apiToken = strings.TrimSpace(string(b)); c.apiToken == "" {
			return nil, fmt.Errorf("api_token_file %s is empty", cfg.APITokenFile)
		}
	}
	st, err := store.OpenConfig(cfg.Store, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	c.st = st
	recs, err := c.loadNodes()
	if err != nil {
		st.Close()
		return nil, err
	}
	c.topo = topology.New(topology.Options{StaleAfter: cfg.Flink.StaleAfter})
	if c.poller, err = newJobManagerPoller(c, cfg.Flink); err != nil {
		st.Close()
		return nil, err
	}
	if err := c.newEvaluator(); err != nil {
		st.Close()
		return nil, err
	}
	if le := cfg.Leader.WithEnv(); le.Enabled() {
		if c.kube == nil {
			c.kube, err = actuate.KubeClient(le.Kubeconfig, cfg.Actuator.Kubernetes.QPS, cfg.Actuator.Kubernetes.Burst)
		}
		if err == nil {
			c.elector, err = leader.New(le, c.kube, c.log.With("component", "leader"))
		}
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("leader election: %w", err)
		}
	}
	// The coordinator's own observer comes first, the ones given as options after it. The model
	// hands every report to the topology, the one placement source, before it digests it.
	c.observers = append([]ReportObserver{c.eval.model.Observe}, c.observers...)
	c.started = c.now()
	c.log.Info("coordinator store open", "data_dir", cfg.DataDir, "nodes", len(recs))
	return c, nil
}

// loadNodes adds the store's node records this coordinator does not hold yet, with their last
// reports, and returns every stored record.
func (c *Coordinator) loadNodes() ([]store.NodeRecord, error) {
	recs, err := c.st.Nodes()
	if err != nil {
		return nil, fmt.Errorf("loading nodes: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rec := range recs {
		if c.nodes[rec.Name] != nil {
			continue
		}
		ns := &nodeState{rec: rec, loaded: true}
		if b, err := c.st.LastReport(rec.Name); err == nil {
			r := &tmwardenv1.Report{}
			if err := proto.Unmarshal(b, r); err == nil {
				ns.last, ns.lastSum, ns.collectors = b, summarize(r), r.Collectors
			}
		}
		c.nodes[rec.Name] = ns
	}
	return recs, nil
}

func (c *Coordinator) initMetrics() error {
	m := c.tel.Meters.Meter("github.com/tmwarden/tmwarden/coordinator")
	var err1, err2, err3, err4, err5 error
	c.m.refused, err5 = m.Int64Counter("tmwarden.coordinator.streams.refused", metric.WithUnit("{stream}"),
		metric.WithDescription("Agent streams refused at Hello, by reason (invalid_hello; identity: the client certificate does not name the node)."))
	c.m.limits, err4 = m.Int64Counter("tmwarden.coordinator.limits.hit", metric.WithUnit("{event}"),
		metric.WithDescription("Times a limit was hit, by limit (agent_report_rate, ...)."))
	c.m.reports, err1 = m.Int64Counter("tmwarden.coordinator.reports", metric.WithUnit("{report}"),
		metric.WithDescription("Reports received from agents, by outcome (stored, duplicate, rejected)."))
	c.m.sessions, err2 = m.Int64UpDownCounter("tmwarden.coordinator.sessions", metric.WithUnit("{session}"),
		metric.WithDescription("Agent streams open now."))
	_, err3 = m.Int64ObservableGauge("tmwarden.coordinator.nodes", metric.WithUnit("{node}"),
		metric.WithDescription("Known nodes by reachability."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			var up, down int64
			c.mu.RLock()
			for _, ns := range c.nodes {
				ns.mu.Lock()
				if ns.rec.Reachable {
					up++
				} else {
					down++
				}
				ns.mu.Unlock()
			}
			c.mu.RUnlock()
			o.Observe(up, metric.WithAttributes(attribute.String("state", "reachable")))
			o.Observe(down, metric.WithAttributes(attribute.String("state", "unreachable")))
			return nil
		}))
	return errors.Join(err1, err2, err3, err4, err5)
}

// Listen binds the gRPC and HTTP addresses, so that a taken port fails before anything runs.
func (c *Coordinator) Listen() error {
	var err error
	if c.grpcLn, err = net.Listen("tcp", c.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("coordinator grpc listen on %s: %w", c.cfg.GRPCAddr, err)
	}
	if c.cfg.HTTPAddr != "" {
		if c.httpLn, err = net.Listen("tcp", c.cfg.HTTPAddr); err != nil {
			c.grpcLn.Close()
			return fmt.Errorf("coordinator http listen on %s: %w", c.cfg.HTTPAddr, err)
		}
	}
	if c.cfg.PprofAddr != "" {
		if c.pprofLn, err = net.Listen("tcp", c.cfg.PprofAddr); err != nil {
			c.grpcLn.Close()
			if c.httpLn != nil {
				c.httpLn.Close()
			}
			return fmt.Errorf("coordinator pprof listen on %s: %w", c.cfg.PprofAddr, err)
		}
	}
	return nil
}

// GRPCAddr is the bound gRPC address (after Listen).
func (c *Coordinator) GRPCAddr() string { return c.grpcLn.Addr().String() }

// HTTPAddr is the bound HTTP address (after Listen), or "" when HTTP is off.
func (c *Coordinator) HTTPAddr() string {
	if c.httpLn == nil {
		return ""
	}
	return c.httpLn.Addr().String()
}

// Serve runs the gRPC and HTTP servers and the reachability loop until ctx is cancelled, then
// stops them gracefully and closes the store. Listen must have been called.
func (c *Coordinator) Serve(ctx context.Context) error {
	if c.grpcLn == nil {
		return errors.New("coordinator: Serve before Listen")
	}
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(c.cfg.MaxMessageBytes),
		// Thousands of agents keep a connection each; reports are a few KiB every few seconds,
		// so small per-connection buffers save hundreds of MiB at fleet scale.
		grpc.ReadBufferSize(8 << 10), grpc.WriteBufferSize(8 << 10),
		// An agent's connection writes a few acks every interval: its write buffer goes back to a
		// shared pool after each flush instead of staying with the connection.
		grpc.SharedWriteBuffer(true),
		// HTTP/2 flow control at its floor (64 KiB, a few reports) and fixed: what an agent may
		// send before the coordinator reads it is buffered here, so under a backlog a fleet's
		// connections hold 64 KiB each, not windows grown by bandwidth-delay estimation.
		grpc.InitialWindowSize(64 << 10), grpc.InitialConnWindowSize(64 << 10),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		experimental.BufferPool(frameBufferPool),
	}
	if c.cfg.TLS.Enabled() {
		tc, err := mtls.ServerConfig(c.cfg.TLS)
		if err != nil {
			return err
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(tc)))
	}
	gs := grpc.NewServer(serverOpts...)
	tmwardenv1.RegisterAgentServiceServer(gs, c)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// ErrServerStopped: the coordinator was stopped before the server got going.
		if err := gs.Serve(c.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	var hs *http.Server
	if c.httpLn != nil {
		hs = &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := hs.Serve(c.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		})
	}
	var ps *http.Server
	if c.pprofLn != nil {
		ps = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := ps.Serve(c.pprofLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("pprof server: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error { c.reachabilityLoop(gctx); return nil })
	g.Go(func() error { c.poller.run(gctx, c.cfg.Flink.PollInterval); return nil })
	if c.elector == nil {
		g.Go(func() error { c.act(gctx); return nil })
	} else {
		// Only the leader evaluates and acts; a follower keeps its store and serves reads.
		g.Go(func() error {
			return c.elector.Run(gctx, func(term context.Context) { c.act(term) },
				c.stopSessions) // agents reconnect, through the Service, to the new leader
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		c.ready.Store(false)
		c.stopSessions()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			gs.Stop()
		}
		if hs != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}
		if ps != nil {
			// A CPU profile under way holds its request open: close, do not wait for it.
			_ = ps.Close()
		}
		return nil
	})
	c.ready.Store(true)
	c.log.Info("coordinator serving", "grpc", c.GRPCAddr(), "http", c.HTTPAddr(), "version", Version)
	err := g.Wait()
	c.flushRecords()
	if cerr := c.st.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if c.ownTel {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.tel.Shutdown(sctx)
	}
	c.log.Info("coordinator stopped")
	return err
}

// Run is Listen followed by Serve.
func (c *Coordinator) Run(ctx context.Context) error {
	if err := c.Listen(); err != nil {
		c.st.Close()
		return err
	}
	return c.Serve(ctx)
}

// Close releases the store of a coordinator that was never served (tests, the simulator).
func (c *Coordinator) Close() error {
	c.flushRecords()
	return c.st.Close()
}

// Store exposes the durable store to the parts built on top of the coordinator.
func (c *Coordinator) Store() *store.Store { return c.st }

// event appends to the durable event log and logs it; a failed append is logged, not fatal,
// because the event log must never stop ingest.
func (c *Coordinator) event(node, typ, msg string, attrs map[string]string) {
	ev, err := c.st.AppendEvent(store.Event{Time: c.now().UTC(), Node: node, Type: typ, Message: msg, Attrs: attrs})
	if err != nil {
		c.log.Error("cannot append event", "node", node, "type", typ, "err", err)
		return
	}
	c.log.Info(msg, "event", ev.ID, "type", typ, "node", node)
}

// reachabilityLoop marks nodes unreachable after MissedIntervals silent intervals.
func (c *Coordinator) reachabilityLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.CheckReachability()
		}
	}
}

// CheckReachability runs one reachability pass now (the loop calls it every second; the
// simulator calls it in simulated time).
func (c *Coordinator) CheckReachability() {
	now := c.now()
	for _, ns := range c.nodeStates() {
		ns.mu.Lock()
		interval := c.intervalOf(&ns.rec)
		silentFor := now.Sub(ns.rec.LastSeen)
		// After a restart, give every node a full grace window before calling it lost.
		inGrace := now.Sub(c.started) < time.Duration(c.cfg.MissedIntervals)*interval
		lost := ns.rec.Reachable && !inGrace && silentFor > time.Duration(c.cfg.MissedIntervals)*interval
		if lost {
			ns.rec.Reachable = false
		}
		name := ns.rec.Name
		ns.mu.Unlock()
		if lost {
			ns.writeMu.Lock()
			c.persist(ns, nil, store.Durable)
			ns.writeMu.Unlock()
			c.event(name, "node_unreachable", fmt.Sprintf("node %s unreachable: silent for %s (%d intervals of %s)",
				name, silentFor.Round(time.Second), c.cfg.MissedIntervals, interval), nil)
		}
	}
}

func (c *Coordinator) intervalOf(rec *store.NodeRecord) time.Duration {
	if rec.IntervalSeconds > 0 {
		return time.Duration(rec.IntervalSeconds * float64(time.Second))
	}
	return c.cfg.DefaultInterval
}

// persist writes the node's current record and, if report is not nil, the report. The caller
// holds ns.writeMu and not ns.mu: the write happens outside mu, on a copy taken under it.
func (c *Coordinator) persist(ns *nodeState, report []byte, sync store.Sync) {
	ns.mu.Lock()
	rec := ns.rec
	ns.dirty = false
	ns.mu.Unlock()
	if err := c.st.PutNode(rec, report, sync); err != nil {
		c.log.Error("cannot store node", "node", rec.Name, "err", err)
	}
}

// flushRecord writes a node's record if it holds counters the store does not have yet.
func (c *Coordinator) flushRecord(ns *nodeState) {
	ns.writeMu.Lock()
	defer ns.writeMu.Unlock()
	ns.mu.Lock()
	dirty := ns.dirty
	ns.mu.Unlock()
	if dirty {
		c.persist(ns, nil, store.Durable)
	}
}

// flushRecords writes every record that is behind, before the store closes.
func (c *Coordinator) flushRecords() {
	for _, ns := range c.nodeStates() {
		c.flushRecord(ns)
	}
}

// reportSummary is what the node list shows of a node's last report.
type reportSummary struct {
	host                   *httpv1.HostSummary
	taskManagers, subtasks int
}

func summarize(r *tmwardenv1.Report) reportSummary {
	s := reportSummary{host: hostSummary(r.Host), taskManagers: len(r.TaskManagers)}
	for _, tm := range r.TaskManagers {
		s.subtasks += len(tm.Subtasks)
	}
	return s
}

// lastReport decodes the node's last report; nil when it has none. Call with ns.mu held.
func (ns *nodeState) lastReport() *tmwardenv1.Report {
	if ns.last == nil {
		return nil
	}
	r := &tmwardenv1.Report{}
	if err := proto.Unmarshal(ns.last, r); err != nil {
		return nil // it was encoded by this process
	}
	return r
}

func (c *Coordinator) nodeStates() []*nodeState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*nodeState, 0, len(c.nodes))
	for _, ns := range c.nodes {
		out = append(out, ns)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rec.Name < out[j].rec.Name })
	return out
}

// act is this replica's acting part, for one leader term or, without election, until ctx ends:
// the take-over, retried with backoff, then the evaluation loop and the executor. A leader whose
// take-over still fails after leader.take_over_timeout steps down, releasing the Lease, so a
// replica that can act takes over; /readyz says which replica acts.
func (c *Coordinator) act(ctx context.Context) {
	if c.elector != nil {
		c.event("", "leader_elected", fmt.Sprintf("%s is the leader (term %d)", c.elector.Identity(), c.elector.Terms()), nil)
	}
	if c.elector != nil {
		// With a shared store the previous leader registered nodes this replica never saw.
		if _, err := c.loadNodes(); err != nil {
			c.log.Error("reloading node records on taking over", "err", err)
		}
	}
	if err := c.takeOver(ctx); err != nil {
		if ctx.Err() == nil && c.elector != nil {
			c.event("", "leader_stepped_down", fmt.Sprintf("%s steps down: it cannot act: %v", c.elector.Identity(), err), nil)
			c.elector.StepDown(err.Error())
		}
		return
	}
	c.acting.Store(true)
	defer c.acting.Store(false)
	c.setActError("")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.evaluationLoop(ctx) }()
	go func() { defer wg.Done(); _ = c.eval.decisions.Run(ctx) }()
	wg.Wait()
}

// takeOver retries the decision layer's take-over (decisions.Manager.TakeOver: adopt what the
// cluster shows marked, reconcile the marks) with backoff from 1 s to 30 s. With election it
// gives up after leader.take_over_timeout; a single coordinator keeps trying.
func (c *Coordinator) takeOver(ctx context.Context) error {
	var deadline time.Time
	if c.elector != nil {
		deadline = c.now().Add(c.elector.TakeOverTimeout())
	}
	wait := time.Second
	for attempt := 1; ; attempt++ {
		err := c.eval.decisions.TakeOver(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		err = fmt.Errorf("taking over (attempt %d): %w", attempt, err)
		c.setActError(err.Error())
		c.log.Error("cannot act yet", "err", err, "retry_in", wait)
		if !deadline.IsZero() && !c.now().Add(wait).Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (c *Coordinator) setActError(msg string) {
	c.actMu.Lock()
	c.actErr = msg
	c.actMu.Unlock()
}

// actState says whether this replica acts now and, if not, why.
func (c *Coordinator) actState() (bool, string) {
	c.actMu.Lock()
	defer c.actMu.Unlock()
	return c.acting.Load(), c.actErr
}

// frameBufferPool holds the gRPC server's buffers, each HTTP/2 frame read into one of the
// smallest tier that fits it. gRPC's default tiers jump from 256 B to 4 KiB and 16 KiB, so a
// report of 1.1 KB (make bench-scale's 20 subtasks) sat in 4 KiB and one of 5 KB in 16 KiB; the
// reports waiting unread in the fleet's flow-control windows (up to 64 KiB of them per
// connection while the coordinator is behind) were most of its heap: 921 MiB of 1,467 at
// 10,000 nodes on a starved machine. Tiers 1.5x apart keep what a frame wastes under a third.
var frameBufferPool = mem.NewTieredBufferPool(256, 384, 512, 768, 1<<10, 1536, 2<<10, 3<<10, 4<<10, 6<<10, 8<<10, 12<<10, 16<<10, 24<<10, 32<<10, 1<<20)
