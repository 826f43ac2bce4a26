package runner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/sim"
	"github.com/tmwarden/tmwarden/sim/scenario"
	"github.com/tmwarden/tmwarden/telemetry"
)

// coordinatorRun drives a real coordinator in simulated time: every report goes through its
// ingest (registry, pebble store, model, topology), every tick through its reachability check,
// detection and decision rounds (dry-run) and the decision executor. Only the gRPC transport
// is left out; it is tested on its own over loopback.
type coordinatorRun struct {
	c    *coordinator.Coordinator
	dir  string
	seq  map[string]uint64
	gen  map[string]int
	sc   *scenario.Scenario
	sim  *sim.Sim
	errs []error

	migrations      int
	falseMigrations int
	closed          bool
}

func newCoordinatorRun(sc *scenario.Scenario, s *sim.Sim) (*coordinatorRun, error) {
	dir, err := os.MkdirTemp("", "tmwarden-sim-")
	if err != nil {
		return nil, err
	}
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = dir, ""
	cfg.DefaultInterval, cfg.Detection.Interval = sc.Interval.D(), sc.Interval.D()
	c, err := coordinator.New(cfg, coordinator.WithClock(s.Now), coordinator.WithTelemetry(telemetry.Noop()),
		coordinator.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &coordinatorRun{c: c, dir: dir, seq: map[string]uint64{}, gen: map[string]int{}, sc: sc, sim: s}, nil
}

// deliver is what an agent's stream does: Hello on a new agent instance, then the report.
func (cr *coordinatorRun) deliver(node string, _ time.Time, r *tmwardenv1.Report) {
	if last, ok := cr.seq[node]; !ok || r.Sequence <= last {
		// A sequence that starts again is a restarted agent: a new instance says Hello.
		cr.gen[node]++
		labels, cpuModel, cpus, mem := cr.sim.NodeInfo(slices.Index(cr.sim.Nodes(), node))
		h := &tmwardenv1.Hello{NodeName: node, ProtocolVersion: uint32(tmwardenv1.ProtocolVersion_PROTOCOL_VERSION_1),
			InstanceId: fmt.Sprintf("sim-%s-%d", node, cr.gen[node]), AgentVersion: "sim", ReportIntervalSeconds: cr.sc.Interval.D().Seconds(),
			Labels: labels, CpuModel: cpuModel, NumCpus: cpus, MemoryBytes: mem}
		if _, err := cr.c.Register(h); err != nil {
			cr.errs = append(cr.errs, err)
			return
		}
	}
	cr.seq[node] = r.Sequence
	// The simulator reuses its report messages; the coordinator keeps the last one per node.
	if _, err := cr.c.Ingest(node, proto.Clone(r).(*tmwardenv1.Report)); err != nil {
		cr.errs = append(cr.errs, err)
	}
}

// tick runs one evaluation round and the executor, and counts the migrations decided.
func (cr *coordinatorRun) tick(ctx context.Context, now time.Time) (detect.Round, error) {
	cr.c.CheckReachability()
	round, ds, err := cr.c.Evaluate()
	if err != nil {
		return round, err
	}
	for _, d := range ds {
		if d.Action.Kind != decide.KindMigrate {
			continue
		}
		cr.migrations++
		if cr.sc.Negative || !trulySlow(cr.sc, d.Action.Node, now) {
			cr.falseMigrations++
		}
	}
	if _, err := cr.c.Decisions().Execute(ctx); err != nil {
		return round, err
	}
	return round, nil
}

// close releases the coordinator's store; calling it again does nothing.
func (cr *coordinatorRun) close() error {
	if cr.closed {
		return nil
	}
	cr.closed = true
	err := cr.c.Close()
	os.RemoveAll(cr.dir)
	if len(cr.errs) > 0 {
		return fmt.Errorf("coordinator ingest: %d errors, first: %w", len(cr.errs), cr.errs[0])
	}
	return err
}

// trulySlow reports whether the ground truth has node (or one of its TaskManagers) slow at t,
// with the same onset and grace the episode scoring allows.
func trulySlow(sc *scenario.Scenario, node string, t time.Time) bool {
	grace := time.Duration(GraceIntervals) * sc.Interval.D()
	for _, tr := range sc.Truth {
		// A migration moves the node's work: right for a node fault, wrong for one JVM's.
		if tr.Node != node || tr.TaskManager != "" {
			continue
		}
		onset := sim.Epoch.Add(tr.From.D())
		if tr.Onset > 0 && tr.Onset < tr.From {
			onset = sim.Epoch.Add(tr.Onset.D())
		}
		if !t.Before(onset) && !t.After(sim.Epoch.Add(tr.To.D()).Add(grace)) {
			return true
		}
	}
	return false
}
