package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/mtls"
)

// reportPersistEvery bounds how often a node's record and last report body are written to the
// store while nothing but the per-report counters changes. Every report used to write the
// record: N/interval writes a second, which with store.backend etcd is a quorum write and a
// new revision each (BenchmarkNodeRecordsOnEtcd). What a crash loses in between is recovered
// from the agent (see Ingest).
const reportPersistEvery = 30 * time.Second

// ErrNotConnected is returned when a command is sent to a node without an open stream.
var ErrNotConnected = errors.New("node has no open stream")

// session is one agent's open stream.
type session struct {
	id   uint64
	node string
	// out queues commands for the stream's handler goroutine to send.
	out    chan *tmwardenv1.CoordinatorMessage
	cancel context.CancelCauseFunc
	// sendMu serialises the stream's two senders, the receive loop's acks and the handler's
	// commands (a gRPC stream takes one Send at a time); done is set under it when the handler
	// returns, after which the stream is not to be used.
	sendMu sync.Mutex
	done   bool
}

// send sends m on the session's stream unless its handler has returned.
func (s *session) send(stream grpc.BidiStreamingServer[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage], m *tmwardenv1.CoordinatorMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.done {
		return status.Error(codes.Canceled, "the stream has ended")
	}
	return stream.Send(m)
}

// Connect serves one agent's stream. Protocol violations end only that stream, with a status
// that names the problem; every other agent keeps being served.
func (c *Coordinator) Connect(stream grpc.BidiStreamingServer[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage]) error {
	if c.elector != nil && !c.elector.IsLeader() {
		return status.Errorf(codes.Unavailable, "this coordinator is a follower; the leader is %s", c.elector.Leader())
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Errorf(codes.FailedPrecondition, "the first message on a stream must be Hello, got %s", msgKind(first))
	}
	if err := validateHello(hello); err != nil {
		c.log.Warn("refused agent hello", "node", hello.NodeName, "err", err)
		c.m.refused.Add(stream.Context(), 1, attrBadHello)
		return err
	}
	if err := c.checkIdentity(stream.Context(), hello.NodeName); err != nil {
		c.log.Warn("refused agent hello", "node", hello.NodeName, "err", err)
		c.m.refused.Add(stream.Context(), 1, attrIdentity)
		return err
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	sess, last := c.openSession(hello, cancel)
	defer c.closeSession(sess)
	c.m.sessions.Add(ctx, 1)
	defer c.m.sessions.Add(context.Background(), -1)

	if err := stream.Send(&tmwardenv1.CoordinatorMessage{Msg: &tmwardenv1.CoordinatorMessage_Welcome{Welcome: &tmwardenv1.Welcome{
		CoordinatorVersion: Version, ProtocolVersion: uint32(tmwardenv1.ProtocolVersion_PROTOCOL_VERSION_1),
		LastSequence: last, SessionId: fmt.Sprint(sess.id),
	}}}); err != nil {
		return err
	}
	// Two goroutines per stream, at fleet scale tens of thousands of stacks: this one sends and
	// watches the session, a second one receives (a Recv cannot be abandoned any other way than
	// by returning from the handler).
	recvErr := make(chan error, 1)
	go func() { recvErr <- c.receiveLoop(ctx, stream, sess) }()
	err = sendLoop(ctx, stream, sess, recvErr)
	cancel(err)
	sess.sendMu.Lock()
	sess.done = true
	sess.sendMu.Unlock()
	return err
}

// receiveLoop ingests the agent's messages until the stream ends or breaks the protocol.
func (c *Coordinator) receiveLoop(ctx context.Context, stream grpc.BidiStreamingServer[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage], sess *session) error {
	limit := rate.NewLimiter(rate.Limit(c.cfg.MaxReportsPerSecond), c.cfg.ReportBurst)
	var lastWarn time.Time
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// While an evaluation round reads the model, new work waits for it: ten thousand streams' reports
		// would otherwise fill Go's run queue ahead of the round's goroutine each time it is
		// preempted, and the round's wall time would grow to many times its CPU time. What
		// arrives meanwhile waits in the stream's flow-control window, nothing is lost.
		c.roundPause.wait(ctx)
		switch msg := m.Msg.(type) {
		case *tmwardenv1.AgentMessage_Report:
			// Throttle rather than refuse: the agent's buffer holds what waits, nothing is lost.
			if res := limit.Reserve(); res.Delay() > 0 {
				c.m.limits.Add(ctx, 1, attrRateLimit)
				if time.Since(lastWarn) > time.Minute {
					lastWarn = time.Now()
					c.log.Warn("agent exceeds the report rate limit; throttling its stream", "node", sess.node,
						"limit_per_second", c.cfg.MaxReportsPerSecond, "burst", c.cfg.ReportBurst)
				}
				select {
				case <-time.After(res.Delay()):
				case <-ctx.Done():
					res.Cancel()
					return context.Cause(ctx)
				}
			}
			if err := validateReport(msg.Report); err != nil {
				c.m.reports.Add(ctx, 1, attrRejected)
				c.log.Warn("refused report", "node", sess.node, "err", err)
				return err
			}
			if _, err := c.Ingest(sess.node, msg.Report); err != nil {
				return status.Errorf(codes.Internal, "storing report %d: %v", msg.Report.Sequence, err)
			}
			// Acked from this goroutine, not handed to the handler's: one wake-up less per report.
			ack := &tmwardenv1.CoordinatorMessage{Msg: &tmwardenv1.CoordinatorMessage_ReportAck{ReportAck: &tmwardenv1.ReportAck{Sequence: msg.Report.Sequence}}}
			if err := sess.send(stream, ack); err != nil {
				return err
			}
		case *tmwardenv1.AgentMessage_Hello:
			return status.Error(codes.FailedPrecondition, "Hello sent twice on one stream; open a new stream to start a new session")
		case *tmwardenv1.AgentMessage_CommandAck:
			a := msg.CommandAck
			state, words := store.CommandAcknowledged, ""
			if !a.Accepted {
				state, words = store.CommandFailed, "agent refused the command: "+a.Error
			}
			c.recordAnswer(sess.node, a.CommandId, state, words, 0, 0)
			attrs := map[string]string{"command": a.CommandId, "accepted": fmt.Sprint(a.Accepted)}
			if a.Error != "" {
				attrs["error"] = a.Error
			}
			c.event(sess.node, "command_ack", fmt.Sprintf("agent acknowledged command %s (accepted=%v)", a.CommandId, a.Accepted), attrs)
		case *tmwardenv1.AgentMessage_CommandProgress:
			p := msg.CommandProgress
			state := store.CommandProgress
			switch p.State {
			case tmwardenv1.CommandProgress_STATE_SUCCEEDED:
				state = store.CommandDone
			case tmwardenv1.CommandProgress_STATE_FAILED:
				state = store.CommandFailed
			}
			c.recordAnswer(sess.node, p.CommandId, state, p.Message, p.DoneBytes, p.TotalBytes)
			if state.Final() {
				c.event(sess.node, "command_done", fmt.Sprintf("command %s ended: %s %s", p.CommandId, p.State, p.Message),
					map[string]string{"command": p.CommandId, "state": p.State.String()})
			}
		default:
			return status.Errorf(codes.InvalidArgument, "unknown message kind %s", msgKind(m))
		}
	}
}

// sendLoop sends the session's queued commands until the receive loop ends (its error is the
// stream's), a send fails or the session is cancelled.
func sendLoop(ctx context.Context, stream grpc.BidiStreamingServer[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage], sess *session, recvErr <-chan error) error {
	for {
		select {
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return context.Cause(ctx)
		case m := <-sess.out:
			if err := sess.send(stream, m); err != nil {
				return err
			}
		}
	}
}

// pause holds new ingest work while an evaluation round reads the model (Coordinator.roundPause;
// not while it writes its decisions to the store). Rounds may overlap (Evaluate called beside
// the loop): the pause lasts until the last one has read.
type pause struct {
	mu sync.Mutex
	n  int
	// ch is open while paused and closed when the pause ends; nil when not paused. Read
	// without mu: every report looks at it.
	ch atomic.Pointer[chan struct{}]
}

func (p *pause) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		ch := make(chan struct{})
		p.ch.Store(&ch)
	}
	p.n++
}

func (p *pause) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 {
		close(*p.ch.Swap(nil))
	}
}

// wait returns when no pause is on or ctx ends.
func (p *pause) wait(ctx context.Context) {
	if ch := p.ch.Load(); ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
		}
	}
}

// openSession registers the agent and returns the last sequence already stored for its instance.
// A newer stream for the same node replaces an older one, which is closed: one node, one voice.
func (c *Coordinator) openSession(h *tmwardenv1.Hello, cancel context.CancelCauseFunc) (*session, uint64) {
	sess := &session{id: c.sessionSeq.Add(1), node: h.NodeName, out: make(chan *tmwardenv1.CoordinatorMessage, 64), cancel: cancel}
	c.mu.Lock()
	if old := c.sessions[h.NodeName]; old != nil {
		old.cancel(status.Error(codes.Aborted, "replaced by a newer stream from the same node"))
	}
	c.sessions[h.NodeName] = sess
	c.mu.Unlock()
	return sess, c.register(h, fmt.Sprint(sess.id))
}

// Register records a node's Hello without a stream (the simulator feeds reports through Ingest
// directly) and returns the last sequence already stored for its agent instance.
func (c *Coordinator) Register(h *tmwardenv1.Hello) (uint64, error) {
	if err := tmwardenv1.ValidateHello(h); err != nil {
		return 0, err
	}
	return c.register(h, ""), nil
}

func (c *Coordinator) register(h *tmwardenv1.Hello, sessionID string) uint64 {
	now := c.now()
	c.mu.Lock()
	ns, known := c.nodes[h.NodeName]
	if !known {
		ns = &nodeState{rec: store.NodeRecord{Name: h.NodeName, FirstSeen: now}}
		c.nodes[h.NodeName] = ns
	}
	c.mu.Unlock()

	ns.writeMu.Lock()
	ns.mu.Lock()
	restarted := known && ns.rec.InstanceID != h.InstanceId
	// Drops counted in a later session are not of the missing reports Ingest was unsure of.
	ns.unsure = unsureRange{}
	if restarted || !known {
		ns.rec.LastSequence = 0
	}
	ns.rec.AgentVersion, ns.rec.InstanceID, ns.rec.Hostname, ns.rec.BootID = h.AgentVersion, h.InstanceId, h.Hostname, h.BootId
	ns.rec.Labels, ns.rec.Capabilities, ns.rec.IntervalSeconds = h.Labels, h.Capabilities, h.ReportIntervalSeconds
	ns.rec.GatewayEndpoint = h.GatewayEndpoint
	ns.rec.LastSeen = now
	ns.collectors = h.Collectors
	last := ns.rec.LastSequence
	ns.mu.Unlock()
	c.persist(ns, nil, store.Durable)
	ns.writeMu.Unlock()
	if c.eval != nil {
		// Detection compares a node with machines of its class (DESIGN.md, hardware-aware peers).
		c.eval.model.Describe(h.NodeName, now, model.NodeInfo{Labels: h.Labels, CPUModel: h.CpuModel, NumCPUs: h.NumCpus, MemoryBytes: h.MemoryBytes})
	}

	attrs := map[string]string{"agent_version": h.AgentVersion, "instance": h.InstanceId}
	if sessionID != "" {
		attrs["session"] = sessionID
	}
	switch {
	case !known:
		c.event(h.NodeName, "node_registered", fmt.Sprintf("node %s registered (agent %s)", h.NodeName, h.AgentVersion), attrs)
	case restarted:
		c.event(h.NodeName, "agent_restarted", fmt.Sprintf("agent on %s restarted (new instance %s)", h.NodeName, h.InstanceId), attrs)
	default:
		c.event(h.NodeName, "agent_connected", fmt.Sprintf("agent on %s reconnected, resuming after report %d", h.NodeName, last), attrs)
	}
	return last
}

func (c *Coordinator) closeSession(sess *session) {
	c.mu.Lock()
	current := c.sessions[sess.node] == sess
	if current {
		delete(c.sessions, sess.node)
	}
	ns := c.nodes[sess.node]
	c.mu.Unlock()
	if ns != nil {
		// What the record's bounded-rate writes left behind (Ingest) is written now.
		c.flushRecord(ns)
	}
	if current {
		c.event(sess.node, "agent_disconnected", fmt.Sprintf("agent on %s disconnected", sess.node), map[string]string{"session": fmt.Sprint(sess.id)})
	}
}

func (c *Coordinator) stopSessions() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sessions {
		s.cancel(status.Error(codes.Unavailable, "coordinator shutting down"))
	}
}

// Ingest stores one report of node, unless it was stored before (same agent instance, sequence
// not newer), and tells the observers. It reports whether the report was new. The gRPC stream
// calls it after Hello; the simulator calls it directly.
func (c *Coordinator) Ingest(node string, r *tmwardenv1.Report) (bool, error) {
	now := c.now()
	c.mu.RLock()
	ns := c.nodes[node]
	c.mu.RUnlock()
	if ns == nil {
		return false, fmt.Errorf("report from node %q that never said hello", node)
	}
	wire, err := proto.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encoding report %d of %s: %w", r.Sequence, node, err)
	}
	sum := summarize(r)
	ns.writeMu.Lock()
	ns.mu.Lock()
	if r.Sequence <= ns.rec.LastSequence {
		ns.mu.Unlock()
		ns.writeMu.Unlock()
		c.m.reports.Add(context.Background(), 1, attrDuplicate)
		return false, nil
	}
	var gap uint64
	if ns.rec.LastSequence > 0 && r.Sequence > ns.rec.LastSequence+1 {
		missing := r.Sequence - ns.rec.LastSequence - 1
		if ns.loaded {
			// A record read from the store (a restart, a take-over) may be up to
			// reportPersistEvery behind what the coordinator before received, so whether a
			// missing report arrived then or was dropped by the agent's buffer is not known
			// here. The agent counts its drops, and the reports it resends carry the count as
			// it was when each was collected: the missing ones count as received until the
			// count says they were dropped (every drop while the resent reports wait is one of
			// them: a full buffer drops its oldest).
			ns.unsure = unsureRange{missing: missing, base: ns.rec.DroppedByAgent, open: true}
			ns.rec.ReportsReceived += missing
		} else {
			gap = missing
			ns.rec.SequenceGaps += gap
		}
	}
	ns.loaded = false
	if u := &ns.unsure; u.open {
		if g := min(u.missing, r.DroppedReports-min(r.DroppedReports, u.base)); g > u.dropped {
			gap = g - u.dropped
			ns.rec.SequenceGaps += gap
			ns.rec.ReportsReceived -= gap
			u.dropped = g
		}
	}
	becameReachable := !ns.rec.Reachable
	// Anything but the per-report counters (sequence, counts, times) is written at once.
	changed := becameReachable || gap > 0 || r.DroppedReports != ns.rec.DroppedByAgent
	ns.rec.LastSequence = r.Sequence
	ns.rec.ReportsReceived++
	ns.rec.DroppedByAgent = r.DroppedReports
	ns.rec.LastSeen, ns.rec.LastReportAt, ns.rec.Reachable = now, now, true
	ns.last, ns.lastSum = wire, sum
	ns.collectors = r.Collectors
	// The record and the report body are written at most every reportPersistEvery, which is all
	// a restart needs to show the node again, or when the record changed otherwise; else the
	// record is dirty and written when the agent's stream closes or the coordinator stops.
	body := now.Sub(ns.reportPersisted) >= c.persistEvery
	if body {
		ns.reportPersisted = now
	}
	ns.dirty = !body && !changed
	ns.mu.Unlock()
	switch {
	case body:
		c.persist(ns, wire, store.Buffered)
	case changed:
		c.persist(ns, nil, store.Buffered)
	}
	ns.writeMu.Unlock()
	c.m.reports.Add(context.Background(), 1, attrStored)
	if becameReachable {
		c.event(node, "node_reachable", fmt.Sprintf("node %s is reporting", node), map[string]string{"sequence": fmt.Sprint(r.Sequence)})
	}
	// The observers' in-memory updates run one at a time through the queue (observeQueue),
	// not in every stream's goroutine at once on their own locks.
	c.observeQ.observe(node, now, r, c.notifyObservers)
	return true, nil
}

func (c *Coordinator) notifyObservers(node string, at time.Time, r *tmwardenv1.Report) {
	for _, o := range c.observers {
		o(node, at, r)
	}
}

// SendCommand queues cmd on node's open stream and records it in the command's durable record
// (store.CommandRecord, keyed by the command id), where the agent's answers arrive.
func (c *Coordinator) SendCommand(ctx context.Context, node string, cmd *tmwardenv1.Command) error {
	c.mu.RLock()
	sess := c.sessions[node]
	c.mu.RUnlock()
	if sess == nil {
		return fmt.Errorf("sending command %s to %s: %w", cmd.Id, node, ErrNotConnected)
	}
	select {
	case sess.out <- &tmwardenv1.CoordinatorMessage{Msg: &tmwardenv1.CoordinatorMessage_Command{Command: cmd}}:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return fmt.Errorf("sending command %s to %s: stream is not draining", cmd.Id, node)
	}
	kind := "unknown"
	switch cmd.Action.(type) {
	case *tmwardenv1.Command_Drain:
		kind = "drain"
	case *tmwardenv1.Command_Prefetch:
		kind = "prefetch"
	}
	now := c.now().UTC()
	var deadline time.Time
	if cmd.Deadline != nil {
		deadline = cmd.Deadline.AsTime()
	}
	if _, err := c.st.UpdateCommand(cmd.Id, func(r *store.CommandRecord) bool {
		return r.Sent(node, kind, cmd.Reason, deadline, now)
	}); err != nil {
		return fmt.Errorf("command %s was sent to %s but its record was not stored: %w", cmd.Id, node, err)
	}
	return nil
}

// recordAnswer writes an agent's answer into the command's record. An answer about a command
// recorded for another node is ignored: an agent speaks for its own node only.
func (c *Coordinator) recordAnswer(node, id string, state store.CommandState, msg string, done, total uint64) {
	now := c.now().UTC()
	var foreign string
	if _, err := c.st.UpdateCommand(id, func(r *store.CommandRecord) bool {
		if r.Node != "" && r.Node != node {
			foreign = r.Node
			return false
		}
		r.Node = node
		return r.Answer(state, msg, done, total, now)
	}); err != nil {
		c.log.Error("cannot record the agent's answer", "node", node, "command", id, "err", err)
	}
	if foreign != "" {
		c.log.Warn("ignoring an agent's answer about another node's command", "node", node, "command", id, "command_node", foreign)
	}
}

// checkIdentity refuses a stream whose verified client certificate does not name the node it
// reports as, so a stolen or compromised agent key speaks for its own node only.
func (c *Coordinator) checkIdentity(ctx context.Context, node string) error {
	if c.cfg.TLS.CAFile == "" || c.cfg.AgentIdentity == AgentIdentityAny {
		return nil
	}
	var state *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			state = &info.State
		}
	}
	leaf := mtls.VerifiedPeer(state)
	if leaf == nil {
		return status.Error(codes.Unauthenticated, "no verified client certificate on this stream")
	}
	if names := mtls.Names(leaf); !slices.Contains(names, node) {
		return status.Errorf(codes.PermissionDenied,
			"the client certificate names %q, not node %q: issue each agent a certificate with its node name as Common Name or DNS name, or set agent_identity: any",
			names, node)
	}
	return nil
}

func validateHello(h *tmwardenv1.Hello) error {
	if err := tmwardenv1.ValidateHello(h); err != nil {
		if errors.Is(err, tmwardenv1.ErrProtocolVersion) {
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

func validateReport(r *tmwardenv1.Report) error {
	if err := tmwardenv1.ValidateReport(r); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

func msgKind(m *tmwardenv1.AgentMessage) string {
	switch m.Msg.(type) {
	case *tmwardenv1.AgentMessage_Hello:
		return "Hello"
	case *tmwardenv1.AgentMessage_Report:
		return "Report"
	case *tmwardenv1.AgentMessage_CommandAck:
		return "CommandAck"
	case *tmwardenv1.AgentMessage_CommandProgress:
		return "CommandProgress"
	default:
		return "an empty message"
	}
}

// nodeRecord returns a copy of a node's record.
func (c *Coordinator) nodeRecord(name string) (store.NodeRecord, bool) {
	c.mu.RLock()
	ns := c.nodes[name]
	c.mu.RUnlock()
	if ns == nil {
		return store.NodeRecord{}, false
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.rec, true
}
