package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	rtrace "runtime/trace"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/decisions"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/topology"
	"github.com/tmwarden/tmwarden/telemetry"
)

// DetectionConfig is the `detection:` section.
type DetectionConfig struct {
	// Interval between evaluation rounds. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Detector names the detector whose verdicts drive decisions (see coordinator/detect's
	// table). Default tmwarden.
	Detector string `yaml:"detector"`
	// Window is how many report intervals the model keeps the host digest of a report that
	// arrived late (an agent replaying its buffer) for detection to judge in retrospect. Default 12.
	Window int `yaml:"window"`
	// ForgetAfter drops subtasks and nodes not reported for this long from the model. Default 10m.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// Peer tunes the tmwarden detector: what makes a subtask a straggler, a node slow, a host
	// signal severe, a machine slower hardware (detect.PeerConfig; defaults in
	// packaging/config/coordinator.yaml). The baselines ignore it.
	Peer detect.PeerConfig `yaml:"peer"`
}

func defaultDetectionConfig() DetectionConfig {
	return DetectionConfig{Interval: 5 * time.Second, Detector: "tmwarden", Window: 12, ForgetAfter: 10 * time.Minute,
		Peer: detect.DefaultPeerConfig()}
}

// evaluator is the policy side of the coordinator: the cluster model fed by ingest, the
// detector that reads it, and the decision manager that acts on its verdicts. Collection,
// evaluation and execution stay separate steps with separate types.
type evaluator struct {
	model     *model.Model
	detector  detect.Detector
	decisions *decisions.Manager
	tracer    trace.Tracer

	detections metric.Int64Counter
	decided    metric.Int64Counter
	migrations metric.Int64Counter
	// transitions counts health changes (decisions.WithTransition).
	transitions metric.Int64Counter
	duration    metric.Float64Histogram

	mu   sync.Mutex
	last detect.Round
	// rounds are the latest rounds' timings, oldest first (GET /api/v1/rounds).
	rounds []httpv1.Round
}

// keptRounds is how many rounds GET /api/v1/rounds shows: over an hour at the default interval.
const keptRounds = 1024

// initMetrics creates the instruments the Grafana dashboards query (telemetry/names.go).
func (e *evaluator) initMetrics(c *Coordinator) error {
	m := c.tel.Meters.Meter("github.com/tmwarden/tmwarden/coordinator")
	var errs [8]error
	e.detections, errs[0] = m.Int64Counter(telemetry.MetricDetections, metric.WithUnit("{verdict}"),
		metric.WithDescription("Nodes newly judged slow, by cause."))
	e.decided, errs[1] = m.Int64Counter(telemetry.MetricDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Decisions taken, by action, mode and outcome."))
	e.migrations, errs[2] = m.Int64Counter(telemetry.MetricMigrations, metric.WithUnit("{migration}"),
		metric.WithDescription("Migrations that ended, by outcome (succeeded, failed, node_gone, dry_run) and mode; a dry run counts as outcome dry_run, never as succeeded."))
	e.transitions, errs[7] = m.Int64Counter(telemetry.MetricNodeTransitions, metric.WithUnit("{transition}"),
		metric.WithDescription("Changes of a node's health (decision state), by node, from and to."))
	e.duration, errs[3] = m.Float64Histogram(telemetry.MetricEvaluationDuration, metric.WithUnit("s"),
		metric.WithDescription("Time one evaluation round (detection and decisions) took."),
		metric.WithExplicitBucketBoundaries(telemetry.SecondsBuckets...))
	_, errs[4] = m.Float64ObservableGauge(telemetry.MetricNodeScore, metric.WithDescription("A node's slowness score from peer comparison."),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			for _, v := range c.LastRound().Verdicts {
				if v.TaskManager == "" {
					o.Observe(v.Score, metric.WithAttributes(attribute.String("k8s.node.name", v.Node), attribute.String("cause", string(v.Cause))))
				}
			}
			return nil
		}))
	_, errs[5] = m.Int64ObservableGauge(telemetry.MetricNodeState, metric.WithDescription("1 for the decision state a node is in."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for _, n := range c.Nodes() {
				o.Observe(1, metric.WithAttributes(attribute.String("k8s.node.name", n.Name), attribute.String("state", n.Health)))
			}
			return nil
		}))
	_, errs[6] = m.Int64ObservableGauge(telemetry.MetricCircuitBreakerOpen, metric.WithDescription("1 while the circuit breaker holds all migrations."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			open := int64(0)
			if c.eval.decisions.Breaker().Open {
				open = 1
			}
			o.Observe(open)
			return nil
		}))
	return errors.Join(errs[:]...)
}

func (c *Coordinator) newEvaluator() error {
	cfg := c.cfg.Detection
	mcfg := model.DefaultConfig()
	mcfg.Window, mcfg.Interval, mcfg.StaleAfter = cfg.Window, c.cfg.DefaultInterval, c.cfg.MissedIntervals
	det := detect.NewWith(cfg.Detector, cfg.Peer)
	if det == nil {
		return fmt.Errorf("detection.detector %q: no such detector", cfg.Detector)
	}
	act, err := actuate.Build(c.cfg.Actuator, actuate.Deps{
		Kube: c.kube, Checkpointer: c.poller.checkpointer(), Commands: c, Records: c.st,
		Log: c.log.With("component", "actuator"),
	})
	if err != nil {
		return fmt.Errorf("actuator: %w", err)
	}
	e := &evaluator{model: model.New(mcfg, c.topo), detector: det, tracer: c.tel.Tracers.Tracer("github.com/tmwarden/tmwarden/coordinator")}
	// Migrations are counted when they end, with how they ended; the executor calls back.
	finished := func(d decisions.Decision) {
		if d.Action.Kind == decide.KindMigrate && e.migrations != nil {
			e.migrations.Add(context.Background(), 1, metric.WithAttributes(attribute.String("outcome", d.Status),
				attribute.String("mode", string(d.Action.Mode))))
		}
	}
	transition := func(node string, from, to decide.State) {
		if e.transitions != nil {
			e.transitions.Add(context.Background(), 1, metric.WithAttributes(attribute.String("k8s.node.name", node),
				attribute.String("from", string(from)), attribute.String("to", string(to))))
		}
	}
	mgr, err := decisions.New(c.st, c.cfg.Decisions, act, decisions.WithClock(c.now), decisions.WithResidents(c.topo.Residents), decisions.WithLogger(c.log.With("component", "decisions")),
		decisions.WithTracer(c.tel.Tracers.Tracer("github.com/tmwarden/tmwarden/coordinator/decisions")), decisions.WithFinished(finished),
		decisions.WithTransition(transition))
	if err != nil {
		return fmt.Errorf("decisions: %w", err)
	}
	e.decisions = mgr
	c.eval = e
	return c.eval.initMetrics(c)
}

// Evaluate runs one round now: the detector over the model, then the decision policy over its
// verdicts. The loop calls it every detection interval; the simulator calls it in simulated time.
func (c *Coordinator) Evaluate() (detect.Round, []decisions.Decision, error) {
	return c.evaluate(context.Background())
}

func (c *Coordinator) evaluate(ctx context.Context) (detect.Round, []decisions.Decision, error) {
	// The round keeps one thread, so the thread's CPU clock is the round's CPU time.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, wait0 := threadSched()
	start := time.Now()
	// The streams' new reports wait while the round reads the model and decides (receiveLoop):
	// detection is the coordinator's periodic deadline, they have the interval to be
	// acknowledged in. Reports let through mid-round are thousands of runnable goroutines at
	// 10,000 nodes, and the round's goroutine, preempted, waits behind all of them each time: a
	// Go execution trace of one 10k round showed 7 of its 10 s runnable, most of it after
	// detection, in the in-memory half of the decisions. The pause ends before the round's
	// first store write (RoundFromDetect's decided): a slow store (etcd, pebble) must not hold
	// the whole fleet's ingest.
	c.roundPause.begin()
	paused := true
	endPause := func() {
		if paused {
			c.roundPause.end()
			paused = false
		}
	}
	defer endPause()
	ctx, span := c.eval.tracer.Start(ctx, "evaluation round")
	defer span.End()
	// A region of the Go execution trace (pprof_addr's /debug/pprof/trace), which tells where a
	// round's wall time went beyond its CPU time; free when no trace is taken.
	defer rtrace.StartRegion(ctx, "evaluation round").End()
	now := c.now()
	v := c.eval.model.View()
	nodes := v.NodeCount()
	round := c.eval.detector.Evaluate(v, now)
	v.Release()
	c.realNames(round)
	detected := time.Now()
	span.SetAttributes(attribute.Int("tmwarden.verdicts", len(round.Verdicts)), attribute.Int("tmwarden.fleet.anomalous_nodes", round.Fleet.Anomalous), attribute.Int("tmwarden.fleet.late_nodes", round.Fleet.Late))
	ds, err := c.eval.decisions.RoundFromDetect(now, round, c.reachability(), endPause)
	endPause()
	end := time.Now()
	cpu1, wait1 := threadSched()
	c.eval.mu.Lock()
	prev := c.eval.last
	c.eval.last = round
	if len(c.eval.rounds) == keptRounds {
		c.eval.rounds = append(c.eval.rounds[:0], c.eval.rounds[1:]...)
	}
	c.eval.rounds = append(c.eval.rounds, httpv1.Round{Started: start, Seconds: end.Sub(start).Seconds(),
		DetectSeconds: detected.Sub(start).Seconds(), DecideSeconds: end.Sub(detected).Seconds(), CPUSeconds: cpu1 - cpu0, RunQueueSeconds: wait1 - wait0,
		Nodes: nodes, Verdicts: len(round.Verdicts)})
	c.eval.mu.Unlock()
	c.recordRound(ctx, prev, round, ds)
	c.eval.duration.Record(ctx, end.Sub(start).Seconds())
	span.SetAttributes(attribute.Bool("tmwarden.breaker_open", c.eval.decisions.Breaker().Open))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return round, ds, fmt.Errorf("decision round: %w", err)
	}
	return round, ds, nil
}

// reachability is every known node with whether it reports, for the decisions.
func (c *Coordinator) reachability() map[string]bool {
	c.mu.RLock()
	nodes := make([]*nodeState, 0, len(c.nodes))
	for _, ns := range c.nodes {
		nodes = append(nodes, ns)
	}
	c.mu.RUnlock()
	known := make(map[string]bool, len(nodes))
	for _, ns := range nodes {
		ns.mu.Lock()
		known[ns.rec.Name] = ns.rec.Reachable
		ns.mu.Unlock()
	}
	return known
}

// recordRound counts new detections and the round's decisions, each decision with its span.
func (c *Coordinator) recordRound(ctx context.Context, prev, round detect.Round, ds []decisions.Decision) {
	wasSlow := map[string]bool{}
	for _, v := range prev.Slow() {
		wasSlow[v.Node+"/"+v.TaskManager] = true
	}
	for _, v := range round.Slow() {
		if !wasSlow[v.Node+"/"+v.TaskManager] {
			c.eval.detections.Add(ctx, 1, metric.WithAttributes(attribute.String("cause", string(v.Cause))))
		}
	}
	for _, d := range ds {
		a := d.Action
		_, span := c.eval.tracer.Start(ctx, "decision", trace.WithAttributes(attribute.String("tmwarden.decision.id", a.ID),
			attribute.String("tmwarden.decision.kind", string(a.Kind)), attribute.String("k8s.node.name", a.Node),
			attribute.String("tmwarden.decision.mode", string(a.Mode)), attribute.String("tmwarden.decision.status", d.Status)))
		span.End()
		c.eval.decided.Add(ctx, 1, metric.WithAttributes(attribute.String("action", string(a.Kind)),
			attribute.String("mode", string(a.Mode)), attribute.String("outcome", d.Status)))
	}
}

// Rounds returns the timings of the latest evaluation rounds, oldest first.
func (c *Coordinator) Rounds() []httpv1.Round {
	c.eval.mu.Lock()
	defer c.eval.mu.Unlock()
	return slices.Clone(c.eval.rounds)
}

// LastRound is the latest detection round.
func (c *Coordinator) LastRound() detect.Round {
	c.eval.mu.Lock()
	defer c.eval.mu.Unlock()
	return c.eval.last
}

// Decisions is the decision manager (its executor runs inside Serve).
func (c *Coordinator) Decisions() *decisions.Manager { return c.eval.decisions }

func (c *Coordinator) evaluationLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Detection.Interval)
	defer t.Stop()
	lastPrune := c.now()
	warmer := newStateWarmer(c)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := c.evaluate(ctx); err != nil {
			c.log.Error("evaluation round failed", "err", err)
		}
		warmer.round(ctx)
		if now := c.now(); now.Sub(lastPrune) > time.Minute {
			c.eval.model.Prune(now.Add(-c.cfg.Detection.ForgetAfter))
			lastPrune = now
		}
	}
}

// realNames gives evidence the job and vertex names the JobManager uses ("Sink: orders-out"),
// where the topology knows them: the scrape's labels carry them sanitised ("Sink:_orders_out"),
// and every view (page, CLI, decisions) must spell a vertex one way.
func (c *Coordinator) realNames(round detect.Round) {
	for i := range round.Verdicts {
		ev := round.Verdicts[i].Evidence
		for j := range ev {
			e := &ev[j]
			if e.JobID == "" || e.VertexID == "" {
				continue
			}
			if p, ok := c.topo.Locate(topology.Key{JobID: e.JobID, VertexID: e.VertexID, Index: e.Subtask}); ok {
				e.JobName, e.VertexName = cmp.Or(p.JobName, e.JobName), cmp.Or(p.VertexName, e.VertexName)
			}
		}
	}
}
