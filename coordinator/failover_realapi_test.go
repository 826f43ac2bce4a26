package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/coordinator/actuate/kubetest"
	"github.com/tmwarden/tmwarden/coordinator/store/etcdtest"
	"github.com/tmwarden/tmwarden/packaging/releasebin"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
	"github.com/tmwarden/tmwarden/telemetry"
)

// TestRealFailoverOfWholeCoordinators runs two real tmwarden-coordinator processes (the binary of
// cmd/tmwarden-coordinator, built here) with store.backend etcd on one real etcd (Debian's
// etcd-server), leader election on a Lease of a real kube-apiserver and the Kubernetes actuator
// against that API server (kubetest: real etcd, kube-apiserver, kube-controller-manager; the
// scheduler and kubelet are stand-ins), both as the Helm chart's own ServiceAccount.
//
// The fleet is the Flink stand-in (sim/flink: TaskManagers serving PrometheusReporter endpoints,
// a JobManager serving the REST API) scraped by real agents (package agent, in this process)
// whose real taskmanagers and flink collectors read those endpoints and whose host collector is
// synthetic; they stream over gRPC through a stand-in for the coordinator's Service that sends
// each new connection to the replica answering /readyz 200, as kube-proxy does with ready
// endpoints. The slowed node carries three TaskManager pods under a PodDisruptionBudget that
// first allows no eviction.
//
// Replica A leads, decides the migration in auto mode, taints the node and is held by the
// budget; it is killed with SIGKILL there. Replica B must take the Lease, show the decision log,
// its audit trail, the command records and the node's history from before the kill, finish the
// migration exactly once when the budget is relaxed (each pod evicted once, one taint, no second
// decision) and, once the node is clean, release it leaving no taint or condition behind.
func TestRealFailoverOfWholeCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two coordinator processes against a real control plane")
	}
	kc := kubetest.Start(t)
	etcdURL := etcdtest.Start(t)
	bin := buildCoordinator(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const ns, flinkNS, release = "tmwarden", "flink", "t"
	sa := release + "-tmwarden-coordinator"
	for _, n := range []string{ns, flinkNS} {
		if _, err := kc.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n,
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the flink namespace's default ServiceAccount", func() bool {
		_, err := kc.Admin.CoreV1().ServiceAccounts(flinkNS).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	kc.ApplyRBAC(t, ns, kc.RenderChart(t, release, ns, "--set", "coordinator.config.actuator.kind=kubernetes"))
	kubeconfig := kc.KubeconfigFor(t, sa, kc.ServiceAccountConfig(t, ns, sa).BearerToken)

	// The Flink stand-in: six nodes, two slots each; the JobManager completes a checkpoint
	// every second, so a migration's checkpoint step and the state warmer have one to use.
	fcfg := flinksim.DemoConfig(6, 2)
	fcfg.CheckpointInterval = time.Second
	fc, err := flinksim.Start(ctx, fcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	nodes := fc.Nodes()
	victim := nodes[1]
	for _, n := range nodes {
		kc.AddNode(t, n)
	}
	kc.TaskManagers(t, flinkNS, "tm", victim, 3, 3) // the budget allows no eviction yet

	write := func(id string) *coordProc {
		p := &coordProc{t: t, bin: bin, id: id, http: freeLoopback(t), grpc: freeLoopback(t), dir: t.TempDir(),
			client: http.Client{Timeout: 5 * time.Second}}
		cfg := fmt.Sprintf(failoverConfig, filepath.Join(p.dir, "data"), p.grpc, p.http, fc.RESTURL(),
			kubeconfig, etcdURL, sa, ns, id, kubeconfig)
		p.cfg = filepath.Join(p.dir, "coordinator.yaml")
		if err := os.WriteFile(p.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.kill(); p.logTail() })
		return p
	}
	a, b := write("replica-a"), write("replica-b")
	svc := newServiceStandIn(t, a, b)
	a.start()
	waitFor(t, 2*time.Minute, "replica-a to lead and act", func() bool { return a.readyz() == http.StatusOK })
	b.start()
	waitFor(t, time.Minute, "replica-b to serve as a follower", func() bool { return b.healthz() })
	if code := b.readyz(); code == http.StatusOK {
		t.Fatalf("replica-b ready while replica-a leads")
	}

	steal := &stealTable{m: map[string]float64{}}
	for _, n := range nodes {
		startSimAgent(t, ctx, fc, n, svc.addr, steal)
	}
	waitFor(t, 2*time.Minute, "every node reporting its subtasks to replica-a", func() bool {
		var l httpv1.NodeList
		if a.get("/api/v1/nodes", &l) != nil || len(l.Nodes) != len(nodes) {
			return false
		}
		for _, n := range l.Nodes {
			if n.State != httpv1.StateReachable || n.Subtasks == 0 {
				return false
			}
		}
		return true
	})

	// A TaskManager failover before the fault: node-6's subtasks restart on node-5, and the
	// leader asks node-5's agent to prefetch their state. These command records are replica-a's.
	from, to := nodes[5], nodes[4]
	if err := fc.MoveTaskManagerTasks(fc.TaskManagersOn(from)[0].ID, fc.TaskManagersOn(to)[0].ID); err != nil {
		t.Fatal(err)
	}
	var cmdsA httpv1.CommandList
	waitFor(t, 2*time.Minute, "replica-a's prefetch commands for "+to, func() bool {
		return a.get("/api/v1/commands?limit=1000", &cmdsA) == nil && len(cmdsA.Commands) > 0
	})

	// The fault: CPU steal on the victim and its TaskManager at 30 % speed.
	steal.set(victim, 0.35)
	if err := fc.SetNodeSlowness(victim, 0.3); err != nil {
		t.Fatal(err)
	}
	var decA httpv1.Decision
	waitFor(t, 3*time.Minute, "replica-a to decide the migration of "+victim+" and be held by the budget", func() bool {
		var l httpv1.DecisionList
		if a.get("/api/v1/decisions?limit=1000&node="+victim, &l) != nil {
			return false
		}
		for _, d := range l.Decisions {
			if d.Kind == "migrate" && d.Status == httpv1.DecisionBlocked {
				decA = d
				return true
			}
		}
		return false
	})
	if !tainted(t, kc, victim) {
		t.Fatalf("replica-a is held at the eviction but %s carries no taint", victim)
	}
	// What replica-a shows just before it dies.
	var detailA httpv1.Decision
	var listA httpv1.DecisionList
	var nodeA httpv1.EventList
	if err := a.get("/api/v1/decisions/"+decA.ID, &detailA); err != nil {
		t.Fatal(err)
	}
	if err := a.get("/api/v1/decisions?limit=1000", &listA); err != nil {
		t.Fatal(err)
	}
	if err := a.get("/api/v1/events?limit=10000&node="+victim, &nodeA); err != nil {
		t.Fatal(err)
	}
	if err := a.get("/api/v1/commands?limit=1000", &cmdsA); err != nil {
		t.Fatal(err)
	}
	a.kill()
	t.Logf("killed replica-a (SIGKILL) with %s blocked: %s", decA.ID, decA.Message)

	waitFor(t, 2*time.Minute, "replica-b to take the Lease and act", func() bool { return b.readyz() == http.StatusOK })
	lease, err := kc.Admin.CoordinationV1().Leases(ns).Get(ctx, sa, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "replica-b" {
		t.Fatalf("Lease after the kill: %+v, %v; want replica-b holding it", lease.Spec.HolderIdentity, err)
	}

	// Replica-b shows everything replica-a recorded.
	var listB httpv1.DecisionList
	if err := b.get("/api/v1/decisions?limit=1000", &listB); err != nil {
		t.Fatal(err)
	}
	for _, d := range listA.Decisions {
		if !containsDecision(listB.Decisions, d.ID) {
			t.Errorf("replica-b's decision log lacks %s (%s %s), which replica-a showed", d.ID, d.Kind, d.Node)
		}
	}
	var detailB httpv1.Decision
	if err := b.get("/api/v1/decisions/"+decA.ID, &detailB); err != nil {
		t.Fatal(err)
	}
	if len(detailA.Audit) == 0 || !auditIncludes(detailA.Audit, detailB.Audit) {
		t.Errorf("replica-b's audit of %s lacks entries replica-a showed:\nA: %v\nB: %v", decA.ID, detailA.Audit, detailB.Audit)
	}
	var cmdsB httpv1.CommandList
	if err := b.get("/api/v1/commands?limit=1000", &cmdsB); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmdsA.Commands {
		if !containsCommand(cmdsB.Commands, c.ID) {
			t.Errorf("replica-b's command records lack %s (%s on %s)", c.ID, c.Kind, c.Node)
		}
	}
	var nodeB httpv1.EventList
	if err := b.get("/api/v1/events?limit=10000&node="+victim, &nodeB); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, e := range nodeB.Events {
		seen[e.ID] = true
	}
	for _, e := range nodeA.Events {
		if !seen[e.ID] {
			t.Errorf("replica-b's history of %s lacks event %d (%s: %s)", victim, e.ID, e.Type, e.Message)
		}
	}
	if len(nodeA.Events) == 0 {
		t.Errorf("replica-a showed no history for %s", victim)
	}

	// The budget relaxes: replica-b finishes the migration, one pod at a time.
	pdb, err := kc.Admin.PolicyV1().PodDisruptionBudgets(flinkNS).Get(ctx, "tm", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	two := intstr.FromInt32(2)
	pdb.Spec.MinAvailable = &two
	if _, err := kc.Admin.PolicyV1().PodDisruptionBudgets(flinkNS).Update(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 4*time.Minute, "replica-b to finish "+decA.ID, func() bool {
		var d httpv1.Decision
		return b.get("/api/v1/decisions/"+decA.ID, &d) == nil && d.Status == httpv1.DecisionSucceeded
	})
	if n := len(kc.RunningPods(t, flinkNS, "tm", victim)); n != 0 {
		t.Errorf("%d TaskManager pods still on %s after the migration", n, victim)
	}
	user := "system:serviceaccount:" + ns + ":" + sa
	evicted := map[string]int{}
	for _, e := range kc.Audit(t, user) {
		if e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Subresource == "eviction" && e.ResponseStatus != nil && e.ResponseStatus.Code < 300 {
			evicted[e.ObjectRef.Name]++
		}
	}
	if len(evicted) != 3 {
		t.Errorf("evicted pods %v, want the 3 of %s", evicted, victim)
	}
	for p, n := range evicted {
		if n != 1 {
			t.Errorf("pod %s evicted %d times", p, n)
		}
	}
	if n := taintCount(t, kc, victim); n != 1 {
		t.Errorf("%s carries %d tmwarden taints after the migration, want 1", victim, n)
	}

	// The node recovers (the stand-in's TaskManager there keeps its subtasks, so detection
	// sees it clean at once); the policy releases it and nothing tmwarden put on the cluster stays.
	steal.set(victim, 0)
	if err := fc.SetNodeSlowness(victim, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 4*time.Minute, "replica-b to release "+victim, func() bool {
		var l httpv1.DecisionList
		if b.get("/api/v1/decisions?limit=1000&node="+victim, &l) != nil {
			return false
		}
		for _, d := range l.Decisions {
			if d.Kind == "release" && d.Status == httpv1.DecisionSucceeded {
				return true
			}
		}
		return false
	})
	if n := taintCount(t, kc, victim); n != 0 {
		t.Errorf("%s still carries %d tmwarden taints after its release", victim, n)
	}
	if conditionTrue(t, kc, victim) {
		t.Errorf("%s still has TmwardenSlowNode=True after its release", victim)
	}
	var final httpv1.DecisionList
	if err := b.get("/api/v1/decisions?limit=1000&node="+victim, &final); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, d := range final.Decisions {
		kinds[d.Kind]++
	}
	if kinds["migrate"] != 1 || kinds["release"] != 1 {
		t.Errorf("decisions for %s: %v, want exactly one migrate and one release", victim, kinds)
	}
	var all httpv1.DecisionList
	if err := b.get("/api/v1/decisions?limit=1000", &all); err != nil {
		t.Fatal(err)
	}
	for _, d := range all.Decisions {
		if d.Node != victim && !d.DryRun {
			t.Errorf("a decision for %s (%s %s); only %s was slowed", d.Node, d.Kind, d.Status, victim)
		}
	}
	for _, e := range kc.Audit(t, user) {
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			t.Errorf("403 for the chart's ServiceAccount: %s %s", e.Verb, e.RequestURI)
		}
	}
}

// failoverConfig is both replicas' file: data_dir, grpc_addr, http_addr, the JobManager URL,
// the actuator's kubeconfig, etcd, lease name, namespace, identity and the leader's kubeconfig.
// The policy's waits are short so the test runs in minutes; blocked_timeout is long, so the
// budget holds the migration until the test relaxes it.
const failoverConfig = `data_dir: %s
grpc_addr: %s
http_addr: %s
log_level: info
default_interval: 500ms
missed_intervals: 30
detection:
  interval: 500ms
flink:
  jobmanagers:
    - url: %s
  poll_interval: 1s
decisions:
  exec_interval: 200ms
  blocked_timeout: 30m
  policy:
    mode: auto
    max_quarantined_share: 0.5
    job_cooldown: 0s
    quarantine_min: 1s
    recovery_rounds: 3
    probation_min: 1s
    retry_after: 1s
actuator:
  kind: kubernetes
  kubernetes:
    kubeconfig: %s
    namespace: flink
    checkpoint: true
    checkpoint_timeout: 30s
    pdb_retry: 1s
    pod_gone_poll: 200ms
store:
  backend: etcd
  etcd:
    endpoints: [%s]
leader:
  lease_name: %s
  namespace: %s
  identity: %s
  kubeconfig: %s
  lease_duration: 4s
  renew_deadline: 3s
  retry_period: 500ms
  take_over_timeout: 1m
`

// buildCoordinator gives the coordinator binary as the release builds it (packaging/releasebin:
// the one `make test` built for the whole run, or a build through the same make rule).
func buildCoordinator(t *testing.T) string {
	t.Helper()
	return filepath.Join(releasebin.Dir(t), "tmwarden-coordinator")
}

// coordProc is one coordinator process.
type coordProc struct {
	t                 *testing.T
	bin, id, cfg, dir string
	http, grpc        string
	mu                sync.Mutex
	cmd               *exec.Cmd
	done              chan struct{}
	logPath           string
	client            http.Client
}

func (p *coordProc) start() {
	p.t.Helper()
	p.logPath = filepath.Join(p.dir, "coordinator.log")
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, "--config", p.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatalf("starting %s: %v", p.id, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// kill sends SIGKILL and waits for the process to end; it does nothing when none runs.
func (p *coordProc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (p *coordProc) alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

func (p *coordProc) logTail() {
	if !p.t.Failed() || p.logPath == "" {
		return
	}
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	p.t.Logf("%s log tail:\n%s", p.id, b)
}

func (p *coordProc) readyz() int {
	resp, err := p.client.Get("http://" + p.http + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *coordProc) healthz() bool {
	resp, err := p.client.Get("http://" + p.http + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *coordProc) get(path string, v any) error {
	resp, err := p.client.Get("http://" + p.http + path)
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

// serviceStandIn stands in for the coordinator's Kubernetes Service: each new connection goes
// to a replica whose /readyz answers 200 (kube-proxy routes only to ready endpoints); with none
// ready the connection is closed and the agent retries.
type serviceStandIn struct {
	addr     string
	backends []*coordProc
}

func newServiceStandIn(t *testing.T, backends ...*coordProc) *serviceStandIn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &serviceStandIn{addr: ln.Addr().String(), backends: backends}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				var target string
				for _, p := range s.backends {
					if p.alive() && p.readyz() == http.StatusOK {
						target = p.grpc
						break
					}
				}
				if target == "" {
					return
				}
				out, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				track(in, true)
				track(out, true)
				defer track(in, false)
				defer track(out, false)
				go func() { _, _ = io.Copy(out, in); out.Close() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// stealTable is the synthetic host collectors' CPU steal per node.
type stealTable struct {
	mu sync.Mutex
	m  map[string]float64
}

func (s *stealTable) set(node string, v float64) { s.mu.Lock(); s.m[node] = v; s.mu.Unlock() }
func (s *stealTable) get(node string) float64    { s.mu.Lock(); defer s.mu.Unlock(); return s.m[node] }

// syntheticHost plays a node's machine: steady CPU shares with jitter, plus the steal the test sets.
type syntheticHost struct {
	node  string
	steal *stealTable
	mu    sync.Mutex
	rng   *rand.Rand
}

func (h *syntheticHost) Collect(_ context.Context, r *tmwardenv1.Report) error {
	steal := h.steal.get(h.node)
	h.mu.Lock()
	j := func(base, spread float64) float64 { return max(base+(h.rng.Float64()-0.5)*spread, 0) }
	user, sys := j(0.45, 0.08), j(0.08, 0.02)
	load, avail, retrans := j(7, 1.5), j(24, 4), j(0.5, 0.5)
	h.mu.Unlock()
	r.Host = &tmwardenv1.HostSignals{
		NumCpus: 16,
		Cpu:     &tmwardenv1.CpuShares{User: user, System: sys, Steal: steal, Iowait: 0.01, Idle: max(1-user-sys-steal-0.01, 0)},
		Load1:   load + steal*30,
		Memory:  &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: uint64(avail * (1 << 30))},
		Tcp:     &tmwardenv1.TcpStats{RetransmitsPerSecond: retrans, OutSegmentsPerSecond: 20000},
	}
	return nil
}

// startSimAgent runs a real agent for node: the synthetic host, the real taskmanagers and flink
// collectors scraping the Flink stand-in's TaskManagers on node, and a real state cache (so the
// agent announces a gateway and the state warmer has somewhere to send prefetches; its upstream
// is never reached here).
func startSimAgent(t *testing.T, ctx context.Context, fc *flinksim.Cluster, node, coordAddr string, steal *stealTable) {
	t.Helper()
	cfg := collector.DefaultConfig()
	off := false
	cfg.TaskManagers.ScanProc = &off
	for _, tm := range fc.TaskManagersOn(node) {
		cfg.TaskManagers.Static = append(cfg.TaskManagers.Static, collector.StaticTaskManager{Endpoint: tm.MetricsAddr, ResourceID: tm.ID})
	}
	seed := uint64(0)
	for _, c := range []byte(node) {
		seed = seed*31 + uint64(c)
	}
	cols := []agent.NamedCollector{{Name: "host", Collector: &syntheticHost{node: node, steal: steal, rng: rand.New(rand.NewPCG(seed, 7))}}}
	for _, name := range []string{"taskmanagers", "flink"} {
		col, err := collector.New(name, collector.Options{Config: cfg, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		cols = append(cols, agent.NamedCollector{Name: name, Collector: col})
	}
	acfg := agent.DefaultConfig()
	acfg.NodeName, acfg.Coordinator, acfg.Interval, acfg.HTTPAddr = node, coordAddr, 500*time.Millisecond, ""
	acfg.BackoffInitial, acfg.BackoffMax = 200*time.Millisecond, time.Second
	sc := &acfg.StateCache // the agent's defaults, as a configuration file would start from
	sc.Enabled, sc.Listen, sc.AccessKey, sc.SecretKey, sc.Dir = true, "127.0.0.1:0", "flink", "flink-secret-key", t.TempDir()
	sc.Upstream.Endpoint, sc.Upstream.AccessKey, sc.Upstream.SecretKey = "http://127.0.0.1:1", "up", "up-secret"
	a, err := agent.New(acfg, agent.WithCollectors(cols...), agent.WithTelemetry(telemetry.Noop()), agent.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-done })
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func taintCount(t *testing.T, kc *kubetest.Cluster, node string) int {
	t.Helper()
	n, err := kc.Admin.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, x := range n.Spec.Taints {
		if x.Key == "tmwarden.io/slow-node" {
			c++
		}
	}
	return c
}

func tainted(t *testing.T, kc *kubetest.Cluster, node string) bool {
	return taintCount(t, kc, node) > 0
}

func conditionTrue(t *testing.T, kc *kubetest.Cluster, node string) bool {
	t.Helper()
	n, err := kc.Admin.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "TmwardenSlowNode" {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func containsDecision(ds []httpv1.Decision, id string) bool {
	for _, d := range ds {
		if d.ID == id {
			return true
		}
	}
	return false
}

func containsCommand(cs []httpv1.Command, id string) bool {
	for _, c := range cs {
		if c.ID == id {
			return true
		}
	}
	return false
}

// auditIncludes says whether every entry of a is in b.
func auditIncludes(a, b []httpv1.AuditEntry) bool {
	key := func(e httpv1.AuditEntry) string {
		return e.Time.UTC().Format(time.RFC3339Nano) + "|" + e.Event + "|" + e.Step + "|" + e.Message
	}
	in := map[string]bool{}
	for _, e := range b {
		in[key(e)] = true
	}
	for _, e := range a {
		if !in[key(e)] {
			return false
		}
	}
	return true
}
