package coordinator_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/coordinator/store/etcdtest"
)

// stallingProxy forwards TCP connections to a real server and, while stalled, holds what the
// clients send: a store that stops answering, as a slow or partitioned etcd does.
type stallingProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	release chan struct{} // open while stalled
	held    chan struct{} // closed once a client wrote while stalled
	heldSet bool
}

func newStallingProxy(t *testing.T, target string) *stallingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingProxy{ln: ln, target: target}
	var conns sync.WaitGroup
	t.Cleanup(func() { p.unstall(); ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); p.forward(c) }()
		}
	}()
	return p
}

func (p *stallingProxy) addr() string { return p.ln.Addr().String() }

func (p *stallingProxy) forward(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	go func() { _, _ = io.Copy(client, server); client.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			release := p.release
			if release != nil && !p.heldSet {
				p.heldSet = true
				close(p.held)
			}
			p.mu.Unlock()
			if release != nil {
				<-release
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall holds client traffic from now on and returns a channel closed when a client has sent
// something that is being held.
func (p *stallingProxy) stall() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.release, p.held, p.heldSet = make(chan struct{}), make(chan struct{}), false
	return p.held
}

func (p *stallingProxy) unstall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.release != nil {
		close(p.release)
		p.release = nil
	}
}

// A round's decisions are written to the store after detection; a store that stops answering
// then (etcd slow or cut off) must not hold the fleet's reports, which wait only while the
// round reads the model. Here the round's store write is held by a proxy in front of a real
// etcd until the report sent meanwhile is acknowledged; had the pause lasted the whole round,
// the ack would come only once the write got through, after the round.
func TestSlowStoreWriteDoesNotHoldReports(t *testing.T) {
	proxy := newStallingProxy(t, etcdURLHost(t, etcdtest.Start(t)))
	rc := startCoordinator(t, t.TempDir(), "127.0.0.1:0", func(cfg *coordinator.Config) {
		cfg.Store.Backend, cfg.Store.Etcd.Endpoints, cfg.Store.Etcd.Prefix = store.BackendEtcd, []string{"http://" + proxy.addr()}, "/pause/"
		// The write waits for the proxy, not for a timeout that would end the round anyway.
		cfg.Store.Etcd.RequestTimeout = 5 * time.Minute
		// Nothing but the round below writes while the store is stalled: no rounds of the
		// loop's own, and the node stays reachable.
		cfg.Detection.Interval = time.Hour
		cfg.DefaultInterval = time.Hour
	})
	defer rc.stop(t)

	conn, err := grpc.NewClient(rc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := tmwardenv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(hello("paused-node", 1)); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("want welcome, got %v %v", m, err)
	}
	// The first report registers the node in the store, while it still answers.
	if err := s.Send(report(1)); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetReportAck().GetSequence() != 1 {
		t.Fatalf("report 1: want its ack, got %v %v", m, err)
	}

	held := proxy.stall()
	defer proxy.unstall()
	roundDone := make(chan error, 1)
	go func() { _, _, err := rc.Evaluate(); roundDone <- err }()
	select {
	case <-held:
	case err := <-roundDone:
		t.Fatalf("the round ended (err %v) without writing to the store", err)
	case <-time.After(time.Minute):
		t.Fatal("the round wrote nothing to the store within a minute")
	}
	// The round is now in its store write, which is held until the report is acknowledged.
	if err := s.Send(report(2)); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() {
		m, err := s.Recv()
		if err == nil && m.GetReportAck().GetSequence() != 2 {
			err = errors.New("got " + m.String() + ", want the ack of report 2")
		}
		acked <- err
	}()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-roundDone:
		t.Fatalf("the round ended (err %v) before the report sent during its store write was acknowledged", err)
	case <-time.After(time.Minute):
		t.Fatal("the report sent during the round's store write was not acknowledged within a minute: the round holds ingest while it writes")
	}
	proxy.unstall()
	if err := <-roundDone; err != nil {
		t.Errorf("round: %v", err)
	}
}

// etcdURLHost is the host:port of etcd's client URL.
func etcdURLHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
