//go:build chaos

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/telemetry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// coordinatorBin is the real tmwarden-coordinator, built once for the whole run.
var coordinatorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tmwarden-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	coordinatorBin = filepath.Join(dir, "tmwarden-coordinator")
	build := exec.Command("go", "build", "-o", coordinatorBin, "github.com/tmwarden/tmwarden/cmd/tmwarden-coordinator")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the coordinator:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address nobody listens on now; the coordinator keeps the same
// one across restarts so agents find it again.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// coordinator runs the real binary as a subprocess on a fixed data dir and addresses.
type coordinator struct {
	t        *testing.T
	cfgPath  string
	grpcAddr string
	httpAddr string
	logPath  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// lives counts starts; kills counts SIGKILLs.
	lives, kills int
}

// newCoordinator writes the config file: yamlBody is appended after the addresses and data dir.
func newCoordinator(t *testing.T, yamlBody string) *coordinator {
	t.Helper()
	dir := t.TempDir()
	c := &coordinator{t: t, grpcAddr: freeAddr(t), httpAddr: freeAddr(t), logPath: filepath.Join(dir, "coordinator.log"),
		cfgPath: filepath.Join(dir, "coordinator.yaml")}
	cfg := fmt.Sprintf("data_dir: %s\ngrpc_addr: %s\nhttp_addr: %s\nlog_level: info\n%s", filepath.Join(dir, "data"), c.grpcAddr, c.httpAddr, yamlBody)
	if err := os.WriteFile(c.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(c.logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("coordinator log tail:\n%s", b)
		}
	})
	return c
}

// start runs the binary and waits until its API answers.
func (c *coordinator) start() {
	c.t.Helper()
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(coordinatorBin, "--config", c.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("starting the coordinator: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.lives++
	c.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + c.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			c.t.Fatalf("coordinator exited during start-up (see %s)", c.logPath)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatal("coordinator not ready after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and waits for the process to end; it does nothing when none runs.
func (c *coordinator) stop(sig syscall.Signal) {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	if cmd != nil && sig == syscall.SIGKILL {
		c.kills++
	}
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (c *coordinator) getJSON(path string, v any) error {
	resp, err := http.Get("http://" + c.httpAddr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (c *coordinator) decisions() (httpv1.DecisionList, error) {
	var l httpv1.DecisionList
	err := c.getJSON("/api/v1/decisions?limit=100000", &l)
	return l, err
}

func (c *coordinator) nodes() ([]httpv1.Node, error) {
	var l httpv1.NodeList
	err := c.getJSON("/api/v1/nodes", &l)
	return l.Nodes, err
}

// fleet is a set of real agents (real gRPC client, real buffer) in this process.
type fleet struct {
	agents map[string]*agent.Agent
	cancel map[string]context.CancelFunc
	wg     sync.WaitGroup
}

type collectorFunc func(ctx context.Context, r *tmwardenv1.Report) error

func (f collectorFunc) Collect(ctx context.Context, r *tmwardenv1.Report) error { return f(ctx, r) }

// startFleet runs one agent per name; collect fills each report for its node.
func startFleet(t *testing.T, coordAddr string, names []string, interval time.Duration, buffer int, collect func(node string, r *tmwardenv1.Report)) *fleet {
	t.Helper()
	f := &fleet{agents: map[string]*agent.Agent{}, cancel: map[string]context.CancelFunc{}}
	for _, name := range names {
		cfg := agent.DefaultConfig()
		cfg.NodeName, cfg.Coordinator, cfg.Interval, cfg.HTTPAddr, cfg.BufferSize = name, coordAddr, interval, "", buffer
		cfg.BackoffInitial, cfg.BackoffMax = 100*time.Millisecond, time.Second
		node := name
		col := collectorFunc(func(_ context.Context, r *tmwardenv1.Report) error { collect(node, r); return nil })
		a, err := agent.New(cfg, agent.WithCollectors(agent.NamedCollector{Name: "chaos", Collector: col}),
			agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(quiet))
		if err != nil {
			t.Fatalf("agent.New(%s): %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		f.agents[name], f.cancel[name] = a, cancel
		f.wg.Add(1)
		go func() { defer f.wg.Done(); _ = a.Run(ctx) }()
	}
	t.Cleanup(f.stopAll)
	return f
}

// cut stops the named agents at once (their node goes silent, as behind a partition).
func (f *fleet) cut(names []string) {
	for _, n := range names {
		f.cancel[n]()
	}
}

func (f *fleet) stopAll() {
	for _, c := range f.cancel {
		c()
	}
	f.wg.Wait()
}

// nodeNames returns n, prefix0..prefix(n-1), zero-padded so they sort.
func nodeNames(prefix string, n int) []string {
	out := make([]string, n)
	width := len(fmt.Sprint(n - 1))
	for i := range out {
		out[i] = fmt.Sprintf("%s%0*d", prefix, width, i)
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		if state != "" {
			last = state
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last: %s)", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// straggler fills reports for a Flink job spread over every node: two vertices with two
// subtasks per node. The node slow() names processes records six times slower than its peers
// (busy nearly all the time for a third of the records) and shows CPU steal, which the peer
// detector (coordinator/detect/peer.go) reads as a slow node with host corroboration.
type straggler struct {
	mu    sync.Mutex
	slow  string
	index map[string]int
}

func newStraggler(names []string) *straggler {
	s := &straggler{index: map[string]int{}}
	for i, n := range names {
		s.index[n] = i
	}
	return s
}

func (s *straggler) setSlow(node string) {
	s.mu.Lock()
	s.slow = node
	s.mu.Unlock()
}

func (s *straggler) fill(node string, r *tmwardenv1.Report) {
	s.mu.Lock()
	slow, idx := s.slow == node, s.index[node]
	s.mu.Unlock()
	steal, busy, in := 0.01, 500.0, 1000.0
	if slow {
		steal, busy, in = 0.4, 950, 300
	}
	r.Host = &tmwardenv1.HostSignals{NumCpus: 8, Load1: 2,
		Cpu: &tmwardenv1.CpuShares{User: 0.3, System: 0.05, Steal: steal, Idle: 0.64 - steal}}
	tm := &tmwardenv1.TaskManager{ResourceId: "tm-" + node, Pid: 4242, PodName: "tm-" + node, PodNamespace: "flink",
		MainClass: "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"}
	for _, v := range []string{"map", "window"} {
		for k := range 2 {
			tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{
				JobId: "00000000000000000000000000chaos0", JobName: "chaos", VertexId: "vertex-" + v + "-0000000000000000", VertexName: v,
				SubtaskIndex: int32(idx*2 + k), AttemptId: fmt.Sprintf("%s-%d-%d", v, idx, k),
				BusyMsPerSecond: busy, IdleMsPerSecond: 1000 - busy, RecordsInPerSecond: in, RecordsOutPerSecond: in,
			})
		}
	}
	r.TaskManagers = []*tmwardenv1.TaskManager{tm}
}

func memStats() string {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return fmt.Sprintf("heap %d MiB, goroutines %d", ms.HeapAlloc>>20, runtime.NumGoroutine())
}

func joinMax(items []string, n int) string {
	if len(items) > n {
		return strings.Join(items[:n], ", ") + fmt.Sprintf(" (+%d more)", len(items)-n)
	}
	return strings.Join(items, ", ")
}
