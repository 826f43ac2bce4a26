package coordinator_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/telemetry"
)

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// recorder keeps every stored report sequence per node, across coordinator restarts.
type recorder struct {
	mu   sync.Mutex
	seqs map[string][]uint64
	last map[string]*tmwardenv1.Report
}

func newRecorder() *recorder {
	return &recorder{seqs: map[string][]uint64{}, last: map[string]*tmwardenv1.Report{}}
}

func (r *recorder) observe(node string, _ time.Time, rep *tmwardenv1.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs[node] = append(r.seqs[node], rep.Sequence)
	r.last[node] = rep
}

func (r *recorder) sequences(node string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs[node]...)
}

func (r *recorder) lastReport(node string) *tmwardenv1.Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[node]
}

type runningCoordinator struct {
	*coordinator.Coordinator
	cancel context.CancelFunc
	done   chan error
}

func (rc *runningCoordinator) stop(t *testing.T) {
	t.Helper()
	rc.cancel()
	if err := <-rc.done; err != nil {
		t.Errorf("coordinator stopped with error: %v", err)
	}
}

// startCoordinator serves a real coordinator on loopback with its store in dir.
func startCoordinator(t *testing.T, dir, grpcAddr string, mutate func(*coordinator.Config), obs ...coordinator.ReportObserver) *runningCoordinator {
	t.Helper()
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = dir, grpcAddr, "127.0.0.1:0"
	cfg.DefaultInterval = 100 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	opts := []coordinator.Option{coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop())}
	for _, o := range obs {
		opts = append(opts, coordinator.WithReportObserver(o))
	}
	c, err := coordinator.New(cfg, opts...)
	if err != nil {
		t.Fatalf("coordinator.New: %v", err)
	}
	if err := c.Listen(); err != nil {
		c.Close()
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningCoordinator{Coordinator: c, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Serve(ctx) }()
	return rc
}

// hostStub is a collector with fixed output, so these tests do not depend on this machine.
type hostStub struct{}

func (hostStub) Collect(_ context.Context, r *tmwardenv1.Report) error {
	r.Host = &tmwardenv1.HostSignals{NumCpus: 4, Load1: 1}
	return nil
}

// startAgent runs a real agent (real gRPC client, real buffer) with a stub collector.
func startAgent(t *testing.T, name, coordAddr string, interval time.Duration, buffer int) (*agent.Agent, context.CancelFunc) {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.Coordinator, cfg.Interval, cfg.HTTPAddr, cfg.BufferSize = name, coordAddr, interval, "", buffer
	cfg.BackoffInitial, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	a, err := agent.New(cfg, agent.WithCollectors(agent.NamedCollector{Name: "host", Collector: hostStub{}}),
		agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(quiet))
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return a, stop
}

// waitFor polls cond until it holds. The deadline is three times the one asked for: it only
// bounds a failing test, and on a loaded 2-core CI machine the asked-for one was sometimes
// too short for a passing one.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	timeout *= 3
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOrdered fails unless seqs strictly increase; it returns the number of missing sequences.
func checkOrdered(t *testing.T, node string, seqs []uint64) uint64 {
	t.Helper()
	var gaps uint64
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("%s: report %d stored after %d (out of order or twice): %v", node, seqs[i], seqs[i-1], seqs)
		}
		gaps += seqs[i] - seqs[i-1] - 1
	}
	return gaps
}

func TestReportsArriveInOrderFromSeveralAgents(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", nil, rec.observe)
	defer c.stop(t)
	nodes := []string{"node-a", "node-b", "node-c", "node-d"}
	for _, n := range nodes {
		startAgent(t, n, c.GRPCAddr(), 20*time.Millisecond, 100)
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, n+" to send 25 reports", func() bool { return len(rec.sequences(n)) >= 25 })
	}
	for _, n := range nodes {
		seqs := rec.sequences(n)
		if seqs[0] != 1 {
			t.Errorf("%s: first stored report is %d, want 1", n, seqs[0])
		}
		if gaps := checkOrdered(t, n, seqs); gaps != 0 {
			t.Errorf("%s: %d reports missing without an outage: %v", n, gaps, seqs)
		}
	}
	got := c.Nodes()
	if len(got) != len(nodes) {
		t.Fatalf("registry has %d nodes, want %d", len(got), len(nodes))
	}
	for _, n := range got {
		if n.State != httpv1.StateReachable || !n.Connected || n.Host == nil || n.Host.NumCPUs != 4 {
			t.Errorf("node %s: state %s connected %v host %+v; want reachable, connected, 4 CPUs", n.Name, n.State, n.Connected, n.Host)
		}
	}
}

func TestRestartedCoordinatorKeepsNodesAndEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := newRecorder()
	c := startCoordinator(t, dir, "127.0.0.1:0", nil, rec.observe)
	_, stopAgent := startAgent(t, "node-keep", c.GRPCAddr(), 20*time.Millisecond, 100)
	waitFor(t, 10*time.Second, "10 reports", func() bool { return len(rec.sequences("node-keep")) >= 10 })
	stopAgent()
	c.stop(t)
	lastSeq := rec.sequences("node-keep")[len(rec.sequences("node-keep"))-1]

	c2 := startCoordinator(t, dir, "127.0.0.1:0", nil)
	defer c2.stop(t)
	d, ok := c2.NodeDetail("node-keep")
	if !ok {
		t.Fatal("restarted coordinator forgot node-keep")
	}
	if d.LastSequence != lastSeq || d.ReportsReceived != uint64(len(rec.sequences("node-keep"))) {
		t.Errorf("after restart: last sequence %d, reports %d; want %d, %d", d.LastSequence, d.ReportsReceived, lastSeq, len(rec.sequences("node-keep")))
	}
	if len(d.LastReport) == 0 || d.Host == nil {
		t.Error("after restart: last report lost")
	}
	types := map[string]bool{}
	for _, e := range d.Events {
		types[e.Type] = true
	}
	for _, want := range []string{"node_registered", "node_reachable", "agent_disconnected"} {
		if !types[want] {
			t.Errorf("after restart: event %q missing from %v", want, d.Events)
		}
	}
}

// TestAgentRidesOutCoordinatorOutage stops the coordinator for 30 seconds while an agent keeps
// collecting into a buffer too small for the outage, then brings it back on the same address
// and data directory.
func TestAgentRidesOutCoordinatorOutage(t *testing.T) {
	t.Parallel()
	const (
		interval = 100 * time.Millisecond
		buffer   = 100
		outage   = 30 * time.Second
	)
	dir := t.TempDir()
	rec := newRecorder()
	c := startCoordinator(t, dir, "127.0.0.1:0", nil, rec.observe)
	addr := c.GRPCAddr()
	a, _ := startAgent(t, "node-outage", addr, interval, buffer)
	waitFor(t, 10*time.Second, "reports before the outage", func() bool { return len(rec.sequences("node-outage")) >= 10 })
	c.stop(t)
	before := rec.sequences("node-outage")
	time.Sleep(outage)
	if st := a.Status(); st.Connected || st.Pending != buffer || st.Dropped == 0 {
		t.Fatalf("during the outage: connected %v, pending %d, dropped %d; want disconnected, a full buffer of %d and drops",
			st.Connected, st.Pending, st.Dropped, buffer)
	}

	c2 := startCoordinator(t, dir, addr, nil, rec.observe)
	defer c2.stop(t)
	waitFor(t, 20*time.Second, "the buffered reports and fresh ones after the outage", func() bool {
		st := a.Status()
		return st.Connected && st.Pending <= 1 && len(rec.sequences("node-outage")) > len(before)+buffer
	})
	all := rec.sequences("node-outage")
	gaps := checkOrdered(t, "node-outage", all) // in order and none twice, across both coordinators
	dropped := a.Status().Dropped
	if gaps != dropped {
		t.Errorf("%d reports missing at the coordinator, but the agent counted %d drops", gaps, dropped)
	}
	if last := rec.lastReport("node-outage"); last.DroppedReports != dropped {
		t.Errorf("latest report says %d dropped, agent counted %d", last.DroppedReports, dropped)
	}
	d, _ := c2.NodeDetail("node-outage")
	if d.SequenceGaps != dropped || d.DroppedByAgent != dropped {
		t.Errorf("node record: gaps %d, dropped by agent %d; want both %d", d.SequenceGaps, d.DroppedByAgent, dropped)
	}
	t.Logf("outage %v: %d reports before, %d stored in all, %d dropped by the full buffer", outage, len(before), len(all), dropped)
}

// rawStream opens a stream with a bare gRPC client, to send what a real agent never would.
func rawStream(t *testing.T, addr string, opts ...grpc.CallOption) grpc.BidiStreamingClient[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage] {
	return rawStreamB(t, addr, opts...)
}

func rawStreamB(t testing.TB, addr string, opts ...grpc.CallOption) grpc.BidiStreamingClient[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage] {
	t.Helper()
	return streamWith(t, addr, insecure.NewCredentials(), opts...)
}

func streamWith(t testing.TB, addr string, creds credentials.TransportCredentials, opts ...grpc.CallOption) grpc.BidiStreamingClient[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage] {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	s, err := tmwardenv1.NewAgentServiceClient(conn).Connect(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hello(name string, version uint32) *tmwardenv1.AgentMessage {
	return &tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Hello{Hello: &tmwardenv1.Hello{
		NodeName: name, ProtocolVersion: version, InstanceId: "raw-" + name, AgentVersion: "test"}}}
}

func report(seq uint64) *tmwardenv1.AgentMessage {
	return &tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Report{Report: &tmwardenv1.Report{Sequence: seq, CollectedAt: timestamppb.Now()}}}
}

// expectStatus sends msgs and expects the stream to end with code and a message containing want.
func expectStatus(t *testing.T, s grpc.BidiStreamingClient[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage], code codes.Code, want string, msgs ...*tmwardenv1.AgentMessage) {
	t.Helper()
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			break // the server may already have closed the stream; Recv has the status
		}
	}
	for {
		_, err := s.Recv()
		if err == nil {
			continue // the Welcome and acks before the refusal
		}
		st := status.Convert(err)
		if st.Code() != code || !strings.Contains(st.Message(), want) {
			t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, want)
		}
		return
	}
}

func TestBadInputIsRefusedAndOthersKeepBeingServed(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", func(cfg *coordinator.Config) { cfg.MaxMessageBytes = 1 << 20 }, rec.observe)
	defer c.stop(t)
	startAgent(t, "good-node", c.GRPCAddr(), 20*time.Millisecond, 100)
	waitFor(t, 10*time.Second, "the good agent to report", func() bool { return len(rec.sequences("good-node")) >= 5 })

	cases := []struct {
		name string
		code codes.Code
		want string
		msgs []*tmwardenv1.AgentMessage
		opts []grpc.CallOption
	}{
		{"report before hello", codes.FailedPrecondition, "first message on a stream must be Hello, got Report", []*tmwardenv1.AgentMessage{report(1)}, nil},
		{"wrong protocol version", codes.FailedPrecondition, "protocol version: hello says 7, this side speaks 1", []*tmwardenv1.AgentMessage{hello("v7-node", 7)}, nil},
		{"invalid node name", codes.InvalidArgument, `node_name "bad name!"`, []*tmwardenv1.AgentMessage{hello("bad name!", 1)}, nil},
		{"hello twice", codes.FailedPrecondition, "Hello sent twice", []*tmwardenv1.AgentMessage{hello("twice-node", 1), hello("twice-node", 1)}, nil},
		{"sequence zero", codes.InvalidArgument, "sequence must start at 1", []*tmwardenv1.AgentMessage{hello("zero-node", 1), report(0)}, nil},
		{"report without time", codes.InvalidArgument, "collected_at is missing", []*tmwardenv1.AgentMessage{hello("notime-node", 1),
			{Msg: &tmwardenv1.AgentMessage_Report{Report: &tmwardenv1.Report{Sequence: 1}}}}, nil},
		{"oversize message", codes.ResourceExhausted, "larger than max", []*tmwardenv1.AgentMessage{{Msg: &tmwardenv1.AgentMessage_Hello{Hello: &tmwardenv1.Hello{
			NodeName: "big-node", ProtocolVersion: 1, InstanceId: "x", Labels: map[string]string{"junk": strings.Repeat("x", 2<<20)}}}}},
			[]grpc.CallOption{grpc.MaxCallSendMsgSize(8 << 20)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectStatus(t, rawStream(t, c.GRPCAddr(), tc.opts...), tc.code, tc.want, tc.msgs...)
		})
	}
	// The good agent was never disturbed: its reports keep coming, in order, none lost.
	n := len(rec.sequences("good-node"))
	waitFor(t, 10*time.Second, "the good agent to keep reporting", func() bool { return len(rec.sequences("good-node")) >= n+10 })
	if gaps := checkOrdered(t, "good-node", rec.sequences("good-node")); gaps != 0 {
		t.Errorf("good agent lost %d reports while others misbehaved", gaps)
	}
	for _, name := range []string{"v7-node", "big-node", "bad name!"} {
		if _, ok := c.NodeDetail(name); ok {
			t.Errorf("refused agent %q was registered", name)
		}
	}
	// A stream whose report was refused stored nothing for that report.
	if d, ok := c.NodeDetail("zero-node"); !ok || d.ReportsReceived != 0 {
		t.Errorf("zero-node: registered %v with %d reports; want registered with none", ok, d.ReportsReceived)
	}
}

func TestDuplicateReportsAreAckedButStoredOnce(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	c := startCoordinator(t, t.TempDir(), "127.0.0.1:0", nil, rec.observe)
	defer c.stop(t)
	s := rawStream(t, c.GRPCAddr())
	if err := s.Send(hello("dup-node", 1)); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("want welcome, got %v %v", m, err)
	}
	for _, seq := range []uint64{1, 2, 2, 1, 3} {
		if err := s.Send(report(seq)); err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil || m.GetReportAck().GetSequence() != seq {
			t.Fatalf("report %d: want its ack, got %v %v", seq, m, err)
		}
	}
	if got := fmt.Sprint(rec.sequences("dup-node")); got != "[1 2 3]" {
		t.Errorf("stored %s, want [1 2 3]", got)
	}
}
