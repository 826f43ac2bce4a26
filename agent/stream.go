package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/mtls"
)

// Capabilities this agent announces in Hello.
var capabilities = []string{"reports.v1"}

// streamLoop keeps one session with the coordinator open, reconnecting with jittered
// exponential backoff, until ctx is cancelled.
func (a *Agent) streamLoop(ctx context.Context) {
	if !a.waitForGateway(ctx) {
		return
	}
	creds := insecure.NewCredentials()
	if a.cfg.TLS.Enabled() {
		tc, err := mtls.ClientConfig(a.cfg.TLS)
		if err != nil {
			a.log.Error("cannot set up TLS to the coordinator", "err", err)
			return
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(a.cfg.Coordinator,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(a.cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(a.cfg.MaxMessageBytes)),
		// Pings find a coordinator that vanished without closing the connection (a partition).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// gRPC redials with its own backoff (up to 2 minutes) under ours; cap it at ours, or after a
		// long outage agents come back minutes after the coordinator did.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: grpcbackoff.Config{BaseDelay: a.cfg.BackoffInitial, Multiplier: 1.6,
			Jitter: 0.2, MaxDelay: a.cfg.BackoffMax}, MinConnectTimeout: 20 * time.Second}),
	)
	if err != nil {
		// Only a malformed target gets here; Validate has checked it is not empty.
		a.log.Error("cannot create coordinator client", "coordinator", a.cfg.Coordinator, "err", err)
		return
	}
	defer conn.Close()
	client := tmwardenv1.NewAgentServiceClient(conn)
	bo := Backoff{Initial: a.cfg.BackoffInitial, Max: a.cfg.BackoffMax}
	for {
		welcomed, err := a.session(ctx, client)
		if ctx.Err() != nil {
			return
		}
		if welcomed {
			bo.Reset()
		}
		wait := bo.Next()
		pending, dropped := a.buf.stats()
		a.log.Warn("coordinator stream down, reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond),
			"pending_reports", pending, "dropped_reports", dropped)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session runs one stream: Hello, Welcome, then reports out and acks/commands in. It reports
// whether the coordinator welcomed the agent, so a refused Hello keeps backing off.
func (a *Agent) session(ctx context.Context, client tmwardenv1.AgentServiceClient) (welcomed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Connect(sctx)
	if err != nil {
		return false, fmt.Errorf("opening stream: %w", err)
	}
	if err := stream.Send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Hello{Hello: a.hello()}}); err != nil {
		return false, fmt.Errorf("sending hello: %w", recvErr(stream, err))
	}
	first, err := stream.Recv()
	if err != nil {
		return false, fmt.Errorf("waiting for welcome: %w", err)
	}
	w := first.GetWelcome()
	if w == nil {
		return false, fmt.Errorf("coordinator answered hello with %T, want welcome", first.GetMsg())
	}
	a.buf.ack(w.LastSequence, true)
	a.lastAckSeq.Store(w.LastSequence)
	a.connected.Store(true)
	defer a.connected.Store(false)
	a.sessions.Add(1)
	a.m.reconnects.Add(ctx, 1)
	a.log.Info("connected to coordinator", "coordinator", a.cfg.Coordinator, "session", w.SessionId, "resume_after", w.LastSequence)

	var sendMu sync.Mutex
	send := func(m *tmwardenv1.AgentMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	errc := make(chan error, 2)
	go func() { errc <- a.sendReports(sctx, send, w.LastSequence) }()
	go func() { errc <- a.receive(sctx, stream, send) }()
	err = <-errc
	cancel()
	<-errc
	return true, err
}

// sendReports writes every buffered report after lastSent, in sequence order, as they come.
func (a *Agent) sendReports(ctx context.Context, send func(*tmwardenv1.AgentMessage) error, lastSent uint64) error {
	for {
		r := a.buf.after(lastSent)
		if r == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-a.buf.notify:
				continue
			}
		}
		if err := send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Report{Report: r}}); err != nil {
			return fmt.Errorf("sending report %d: %w", r.Sequence, err)
		}
		a.buf.sent(r.Sequence)
		a.m.sent.Add(ctx, 1)
		lastSent = r.Sequence
	}
}

// receive handles acknowledgements and commands until the stream ends.
func (a *Agent) receive(ctx context.Context, stream grpc.BidiStreamingClient[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage], send func(*tmwardenv1.AgentMessage) error) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("coordinator closed the stream")
			}
			return err
		}
		switch msg := m.Msg.(type) {
		case *tmwardenv1.CoordinatorMessage_ReportAck:
			a.buf.ack(msg.ReportAck.Sequence, false)
			a.lastAckSeq.Store(msg.ReportAck.Sequence)
		case *tmwardenv1.CoordinatorMessage_Command:
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.runCommand(ctx, msg.Command, send)
			}()
		default:
			a.log.Warn("ignoring unexpected message from coordinator", "type", fmt.Sprintf("%T", m.Msg))
		}
	}
}

// runCommand acknowledges a command, runs it and reports how it ended.
func (a *Agent) runCommand(ctx context.Context, cmd *tmwardenv1.Command, send func(*tmwardenv1.AgentMessage) error) {
	log := a.log.With("command", cmd.Id, "reason", cmd.Reason)
	if a.commands == nil { // only when a caller passed a nil handler explicitly
		log.Warn("refusing command: this agent has no command handler configured")
		_ = send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_CommandAck{CommandAck: &tmwardenv1.CommandAck{
			CommandId: cmd.Id, Error: "this agent has no command handler configured"}}})
		return
	}
	_ = send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_CommandAck{CommandAck: &tmwardenv1.CommandAck{CommandId: cmd.Id, Accepted: true}}})
	progress := func(p *tmwardenv1.CommandProgress) {
		p.CommandId = cmd.Id
		_ = send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_CommandProgress{CommandProgress: p}})
	}
	log.Info("running command")
	if err := a.commands.Handle(ctx, cmd, progress); err != nil {
		log.Error("command failed", "err", err)
		progress(&tmwardenv1.CommandProgress{State: tmwardenv1.CommandProgress_STATE_FAILED, Message: err.Error()})
		return
	}
	log.Info("command succeeded")
	progress(&tmwardenv1.CommandProgress{State: tmwardenv1.CommandProgress_STATE_SUCCEEDED})
}

func (a *Agent) hello() *tmwardenv1.Hello {
	host, _ := os.Hostname()
	a.mu.Lock()
	statuses := a.statuses
	a.mu.Unlock()
	m := readMachine(a.cfg.Collectors.Paths.ProcFS)
	return &tmwardenv1.Hello{
		NodeName: a.cfg.NodeName, AgentVersion: Version, ProtocolVersion: uint32(tmwardenv1.ProtocolVersion_PROTOCOL_VERSION_1),
		InstanceId: a.instanceID, Hostname: host, BootId: bootID(a.cfg.Collectors.Paths.ProcFS), Capabilities: capabilities,
		Collectors: statuses, Labels: a.cfg.Labels, ReportIntervalSeconds: a.cfg.Interval.Seconds(),
		GatewayEndpoint: a.gatewayEndpoint(), CpuModel: m.cpuModel, NumCpus: m.numCPUs, MemoryBytes: m.memoryBytes,
	}
}

// GatewayEndpoint is the state cache's S3 endpoint (host:port) that Flink and peers use, ""
// when the cache is off.
func (a *Agent) GatewayEndpoint() string { return a.gatewayEndpoint() }

// gatewayEndpoint is where peers fetch this node's cached state ("" when the cache is off).
func (a *Agent) gatewayEndpoint() string {
	if a.gateway == nil {
		return ""
	}
	if addr := a.gateway.Addr(); addr != "" {
		return addr
	}
	return a.cfg.StateCache.Listen
}

// waitForGateway waits until the state cache listens, if the agent has one; false if ctx ended
// first. The hello names the cache's address to the coordinator, which keeps it for the whole
// session and sends it to peers as a prefetch source: announced before the cache has bound, an
// ephemeral listen address ("127.0.0.1:0") would be sent instead, and every prefetch from this
// node fails. A gateway that cannot start ends the agent's Run, and with it ctx.
func (a *Agent) waitForGateway(ctx context.Context) bool {
	if a.gateway == nil {
		return true
	}
	select {
	case <-a.gateway.Listening():
		return true
	case <-ctx.Done():
		return false
	}
}

func bootID(procfs string) string {
	b, err := os.ReadFile(procfs + "/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recvErr returns the stream's real status when Send failed because the server closed it.
func recvErr(stream grpc.BidiStreamingClient[tmwardenv1.AgentMessage, tmwardenv1.CoordinatorMessage], err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}
