// Command scalebench measures one real coordinator process under a fleet: N simulated nodes,
// each with M subtasks, each streaming a report every interval over its own gRPC connection, as
// agents do (several nodes share a connection, each with its own stream, when the open-file limit
// cannot hold one connection per node: -nodes-per-conn). It prints the ingest rate, the evaluation-round time (every round timed by the
// coordinator itself, GET /api/v1/rounds: exact percentiles, not histogram buckets), the
// coordinator's peak RSS and how many reports were dropped. Given several fleet sizes it runs a
// fresh coordinator for each, one after the other, and ends with one table (`make bench-scale`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func main() {
	nodeList := flag.String("nodes", "10000", "simulated nodes; a comma-separated list runs each size in turn (a fresh coordinator each)")
	subtasks := flag.Int("subtasks", 20, "subtasks per node (one TaskManager each)")
	interval := flag.Duration("interval", 5*time.Second, "report interval")
	duration := flag.Duration("duration", 90*time.Second, "how long to measure after every node is connected")
	bin := flag.String("coordinator", "", "coordinator binary (default: build it)")
	connectRate := flag.Int("connect-rate", 500, "nodes that connect per second while the fleet comes up")
	memLimit := flag.Int64("memory-limit-mib", -1, "the coordinator runs in a memory cgroup with this limit; -1: the Helm chart's coordinator.resources.limits.memory as it ships, or for a fleet larger than that holds the limit the chart's sizing rule gives it (sizedMemoryLimit); 0: no cgroup")
	profile := flag.String("profile", "", "directory to keep the coordinator's CPU profile (over the measured window, at most 30s) and heap profile (at its end) per fleet size, summarised with go tool pprof; empty: no profiles")
	perConnFlag := flag.Int("nodes-per-conn", 0, "simulated nodes multiplexed over one gRPC connection, each with its own stream; 0: one connection per node, or as few nodes per connection as the open-file limit (RLIMIT_NOFILE, raised to its hard limit first) requires")
	isolate := flag.Bool("cpu-isolation", true, "the coordinator and this process (the simulated fleet) in separate cpu cgroups, the coordinator weighted to get a core whenever it has a thread ready, as on cores of its own (needs root and a cpu controller; says why not and runs without); false: both share the machine's cores as plain processes")
	traceFor := flag.Duration("trace", 11*time.Second, "with -profile, a Go execution trace of the coordinator this long, taken after the measured window (so it does not slow the rounds measured), and where each whole round in it spent its wall time; 0: none")
	flag.Parse()
	var sizes []int
	for _, f := range strings.Split(*nodeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("-nodes: %q is not a node count", f)
		}
		sizes = append(sizes, n)
	}
	limitOf := func(int) int64 { return *memLimit << 20 }
	if *memLimit < 0 {
		chart, err := chartMemoryLimit("packaging/helm/tmwarden/values.yaml")
		if err != nil {
			log.Fatalf("-memory-limit-mib -1: %v", err)
		}
		limitOf = func(nodes int) int64 { return sizedMemoryLimit(chart, nodes) }
	}
	fileLimit := raiseFileLimit(slices.Max(sizes))
	dir, err := os.MkdirTemp("", "tmwarden-scale-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if *bin == "" {
		*bin = filepath.Join(dir, "tmwarden-coordinator")
		if *profile != "" {
			// Beside its profiles, so go tool pprof can read them after this run.
			if err := os.MkdirAll(*profile, 0o755); err != nil {
				log.Fatal(err)
			}
			*bin = filepath.Join(*profile, "tmwarden-coordinator")
		}
		b := exec.Command("go", "build", "-o", *bin, "./cmd/tmwarden-coordinator")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			log.Fatalf("building the coordinator: %v", err)
		}
	}
	var iso *cpuIsolation
	cpuSetup := "CPU: not isolated (-cpu-isolation=false): the coordinator and the simulated fleet share the machine's cores as plain processes"
	if *isolate {
		if iso, err = newCPUIsolation(fmt.Sprintf("tmwarden-scalebench-%d", os.Getpid())); err != nil {
			cpuSetup = fmt.Sprintf("CPU: NOT isolated, the coordinator shares the cores with the simulated fleet (no cpu cgroups: %v)", err)
		} else {
			defer iso.remove()
			cpuSetup = iso.describe()
		}
	}
	fmt.Println(cpuSetup)
	var results []result
	for i, n := range sizes {
		perConn := nodesPerConn(n, *perConnFlag, fileLimit)
		if conns := uint64((n + perConn - 1) / perConn); conns+fileSlack > fileLimit {
			// Each connection is one file on either side: a fleet beyond the limit measures
			// failed dials, not the coordinator.
			fmt.Printf("\n%d nodes: skipped, %d per connection need %d open files and the limit is %d (fewer -nodes-per-conn, or 0 to choose)\n",
				n, perConn, conns+fileSlack, fileLimit)
			results = append(results, result{nodes: n, perConn: perConn, skipped: true})
			continue
		}
		r, err := run(n, perConn, *subtasks, *interval, *duration, *connectRate, limitOf(n), *bin, filepath.Join(dir, strconv.Itoa(i)), *profile, *traceFor, iso)
		if err != nil {
			// The size keeps its row in the table, saying how it failed: a fleet size the
			// coordinator cannot hold is a result, and the sizes after it still run.
			fmt.Printf("\n%d nodes: FAILED: %v (memory: %s; last RSS seen %.0f MiB, peak %.0f MiB)\n", n, err, r.memoryCell(), r.rss, r.hwm)
			r.err = err
		}
		results = append(results, r)
	}
	printTable(results, *subtasks, *interval, *duration, cpuSetup)
}

// result is one fleet size's figures.
type result struct {
	nodes                 int
	perConn               int // simulated nodes per gRPC connection
	rate, offered         float64
	rounds                []float64 // seconds, each round in the measured window
	detect, decide        []float64
	roundCPU              []float64 // seconds of CPU each round's thread used
	roundRunQueue         []float64 // seconds each round's thread waited for a core
	hwm, rss              float64
	memLimit, oomKills    int64   // the coordinator's memory cgroup limit (0: none) and the kernel's kills in it
	coordCPU, simCPU      float64 // cores busy over the measured window: the coordinator, this simulator
	memory                string  // the coordinator's runtime memory figures (with -profile)
	connect               time.Duration
	skipped               bool
	err                   error   // the size did not finish: the coordinator died, or did not answer
	cgroupPeak            float64 // MiB, the memory cgroup's own high-water mark (it outlives a killed process)
	gaps, stored          uint64
	counted               bool // gaps and stored were read from the coordinator
	sent, acked, failed   int64
	retries               int64
	loadBefore, loadAfter string
	// isolated: the coordinator ran in its own cpu cgroup (cpuIsolation).
	isolated bool
}

func run(nodes, perConn, subtasks int, interval, duration time.Duration, connectRate int, memLimit int64, bin, dir, profileDir string, traceFor time.Duration, iso *cpuIsolation) (res result, err error) {
	res = result{nodes: nodes, perConn: perConn, loadBefore: loadAvg()}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	args := []string{"--data-dir", filepath.Join(dir, "data"), "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--log-level", "warn"}
	pprofAddr := ""
	if profileDir != "" {
		pprofAddr = freeAddr()
		args = append(args, "--pprof-addr", pprofAddr)
	}
	cmd := exec.Command(bin, args...)
	logf, _ := os.Create(filepath.Join(dir, "coordinator.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	var cg *memoryCgroup
	if memLimit > 0 {
		// The process starts outside and is moved at once: automemlimit reads the cgroup when the
		// coordinator has parsed its configuration, well after the move.
		var err error
		if cg, err = newMemoryCgroup(fmt.Sprintf("tmwarden-scalebench-%d", os.Getpid()), memLimit); err != nil {
			fmt.Printf("\nno memory cgroup for the coordinator (it runs unlimited): %v\n", err)
		}
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	if iso != nil {
		if err := iso.addCoordinator(cmd.Process.Pid); err != nil {
			fmt.Printf("\ncannot move the coordinator into its cpu cgroup (it shares the cores with the fleet): %v\n", err)
		} else {
			res.isolated = true
		}
	}
	if cg != nil {
		if err := cg.add(cmd.Process.Pid); err != nil {
			fmt.Printf("\ncannot move the coordinator into its memory cgroup (it runs unlimited): %v\n", err)
			cg.remove()
			cg = nil
		} else {
			res.memLimit = memLimit
			defer cg.remove()
		}
	}
	// exited is closed when the coordinator has gone, for whatever reason: every wait below
	// watches it, so a killed coordinator ends the size at once, with a row saying so.
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	// The coordinator's memory, sampled every second: a process the kernel kills leaves no
	// /proc entry to read afterwards.
	var mem memorySampler
	stopSampling := mem.start(cmd.Process.Pid)
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		stopSampling()
		if err != nil {
			res.hwm, res.rss = mem.last()
			if cg != nil {
				res.oomKills, res.cgroupPeak = cg.oomKills(), cg.peak()
			}
		}
	}()
	gone := func() error {
		select {
		case <-exited:
			return fmt.Errorf("the coordinator exited (%v); its log ends: %s", exitErr, logTail(filepath.Join(dir, "coordinator.log"), 3))
		default:
			return nil
		}
	}
	if err := waitReady("http://" + httpAddr + "/readyz"); err != nil {
		return res, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var c counters
	var wg sync.WaitGroup
	start := time.Now()
	cs0, ss0 := cpuOf(cmd.Process.Pid), cpuOf(os.Getpid())
	// The fleet: one stream per node, perConn nodes to a connection, connecting at connectRate
	// (a fleet rolling out, not ten thousand agents dialling in the same second), each node's
	// reports then spread over the interval by when it connected. The connections are closed
	// once every node using them has stopped.
	var conns []*grpc.ClientConn
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	for range (nodes + perConn - 1) / perConn {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Ten thousand connections in one process: small buffers, as the coordinator's side has.
			grpc.WithReadBufferSize(8<<10), grpc.WithWriteBufferSize(8<<10))
		if err != nil {
			return res, fmt.Errorf("a client connection: %w", err)
		}
		conns = append(conns, cc) // NewClient does not dial: the first stream does
	}
	wg.Add(1) // the spawner itself, so Wait never races an Add
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second / time.Duration(max(1, connectRate)))
		defer t.Stop()
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				node(ctx, conns[i/perConn], i, subtasks, interval, &c)
			}()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	// Stops the fleet before the connections are closed (defers run last first).
	defer func() { cancel(); wg.Wait() }()
	for c.connected.Load() < int64(nodes) && time.Since(start) < 5*time.Minute {
		if err := gone(); err != nil {
			return res, fmt.Errorf("%d of %d nodes connected: %w", c.connected.Load(), nodes, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	res.connect = took
	fmt.Printf("%d nodes connected in %s (CPU meanwhile: coordinator %.2f cores, the simulated fleet %.2f cores; load average %s)\n", c.connected.Load(), took.Round(time.Millisecond),
		(cpuOf(cmd.Process.Pid)-cs0)/took.Seconds(), (cpuOf(os.Getpid())-ss0)/took.Seconds(), loadAvg())
	a0, t0 := c.acked.Load(), time.Now()
	c0, s0 := cpuOf(cmd.Process.Pid), cpuOf(os.Getpid())
	var profiled sync.WaitGroup
	if pprofAddr != "" {
		profiled.Add(1)
		go func() {
			defer profiled.Done()
			secs := int(min(duration-2*time.Second, 30*time.Second) / time.Second)
			saveProfile(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, max(1, secs)), filepath.Join(profileDir, fmt.Sprintf("cpu-%d.pprof", nodes)))
		}()
		// What the coordinator allocates in the steady state: the heap profile's allocation
		// counts are since it started, the fleet's first reports (every placement new) included.
		profiled.Add(1)
		go func() {
			defer profiled.Done()
			secs := int(min(duration-2*time.Second, 30*time.Second) / time.Second)
			saveProfile(fmt.Sprintf("http://%s/debug/pprof/allocs?seconds=%d", pprofAddr, max(1, secs)), filepath.Join(profileDir, fmt.Sprintf("allocs-%d.pprof", nodes)))
		}()
	}
	select {
	case <-time.After(duration):
	case <-exited:
		profiled.Wait()
		return res, fmt.Errorf("during the measured window: %w", gone())
	}
	a1, t1 := c.acked.Load(), time.Now()
	c1, s1 := cpuOf(cmd.Process.Pid), cpuOf(os.Getpid())
	res.coordCPU, res.simCPU = (c1-c0)/t1.Sub(t0).Seconds(), (s1-s0)/t1.Sub(t0).Seconds()
	profiled.Wait()
	if pprofAddr != "" {
		saveProfile(fmt.Sprintf("http://%s/debug/pprof/heap", pprofAddr), filepath.Join(profileDir, fmt.Sprintf("heap-%d.pprof", nodes)))
		res.memory = memoryBreakdown(pprofAddr)
	}
	rounds, err := httpv1.NewClient(httpAddr).Rounds(context.Background())
	if err != nil {
		if g := gone(); g != nil {
			err = g
		}
		return res, fmt.Errorf("reading the rounds: %w", err)
	}
	for _, r := range rounds {
		if r.Started.After(t0) && r.Started.Add(time.Duration(r.Seconds*float64(time.Second))).Before(t1) {
			res.rounds = append(res.rounds, r.Seconds)
			res.detect = append(res.detect, r.DetectSeconds)
			res.decide = append(res.decide, r.DecideSeconds)
			res.roundCPU = append(res.roundCPU, r.CPUSeconds)
			res.roundRunQueue = append(res.roundRunQueue, r.RunQueueSeconds)
		}
	}
	res.hwm, res.rss = memOf(cmd.Process.Pid)
	res.gaps, res.stored, res.counted = fleetGaps(httpAddr)
	res.loadAfter = loadAvg()
	var traced []roundTime
	tracePath := filepath.Join(profileDir, fmt.Sprintf("trace-%d.out", nodes))
	if pprofAddr != "" && traceFor > 0 {
		saveProfile(fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", pprofAddr, max(1, int(traceFor/time.Second))), tracePath)
		if traced, err = analyseTrace(tracePath); err != nil {
			log.Printf("%v", err)
		}
	}
	cancel()
	wg.Wait()
	if cg != nil {
		// Read last: a kill while the figures above were taken shows here.
		res.oomKills, res.cgroupPeak = cg.oomKills(), cg.peak()
	}
	res.rate = float64(a1-a0) / t1.Sub(t0).Seconds()
	res.offered = float64(nodes) / interval.Seconds()
	res.sent, res.acked, res.failed, res.retries = c.sent.Load(), c.acked.Load(), c.failed.Load(), c.retries.Load()

	fmt.Printf("\nscale benchmark: %d nodes x %d subtasks, a report per node every %s, %d nodes per gRPC connection, measured over %s (load average %s, then %s; the coordinator's cores: %s)\n",
		nodes, subtasks, interval, perConn, duration, res.loadBefore, res.loadAfter, res.coresCell())
	fmt.Printf("  %-34s %10.0f reports/s (fleet offers %.0f/s; ratio %.3f)\n", "ingest rate (acknowledged)", res.rate, res.offered, res.rate/res.offered)
	if len(res.rounds) > 0 {
		fmt.Printf("  %-34s p50 %.1f ms, p99 %.1f ms, max %.1f ms over %d rounds (detection p50 %.1f ms, decisions p50 %.1f ms)\n", "evaluation round",
			1000*quantile(res.rounds, 0.5), 1000*quantile(res.rounds, 0.99), 1000*quantile(res.rounds, 1), len(res.rounds),
			1000*quantile(res.detect, 0.5), 1000*quantile(res.decide, 0.5))
		fmt.Printf("  %-34s p50 %.1f ms, p99 %.1f ms, max %.1f ms (the CPU time of the round's thread: what the round costs, without the wait for a core)\n", "evaluation round CPU",
			1000*quantile(res.roundCPU, 0.5), 1000*quantile(res.roundCPU, 0.99), 1000*quantile(res.roundCPU, 1))
		fmt.Printf("  %-34s p50 %.1f ms, p99 %.1f ms, max %.1f ms (its thread ready to run, in the kernel's run queue: other processes' and threads' share of the cores)\n", "evaluation round waiting for a core",
			1000*quantile(res.roundRunQueue, 0.5), 1000*quantile(res.roundRunQueue, 0.99), 1000*quantile(res.roundRunQueue, 1))
		fmt.Printf("  %-34s", "every round: wall = CPU + core wait + off its thread")
		for i, off := range res.offThread() {
			fmt.Printf(" %.0f=%.0f+%.0f+%.0f", 1000*res.rounds[i], 1000*res.roundCPU[i], 1000*res.roundRunQueue[i], 1000*off)
		}
		fmt.Println(" ms")
	}
	if pprofAddr != "" && traceFor > 0 {
		printRounds(traced, tracePath)
	}
	fmt.Printf("  %-34s %10.0f MiB peak, %.0f MiB now\n", "coordinator RSS", res.hwm, res.rss)
	if res.memLimit > 0 {
		fmt.Printf("  %-34s %10d MiB (soft limit 90%% of it), %d OOM kills\n", "coordinator memory cgroup", res.memLimit>>20, res.oomKills)
	}
	fmt.Printf("  %-34s %10.2f cores, %.0f µs per report acknowledged, rounds included (the simulated fleet, same machine: %.2f cores)\n",
		"coordinator CPU", res.coordCPU, 1e6*res.coordCPU/res.rate, res.simCPU)
	if res.memory != "" {
		fmt.Printf("  %-34s %s\n", "coordinator memory (runtime)", res.memory)
	}
	if profileDir != "" {
		summarise(bin, profileDir, nodes)
	}
	dropped := "unknown (the coordinator did not list its nodes)"
	if res.counted {
		dropped = fmt.Sprintf("%d missing in sequence at the coordinator, %d reports stored", res.gaps, res.stored)
	}
	fmt.Printf("  %-34s %s, %d sent, %d acknowledged, %d streams opened again after a failure, %d nodes failed\n",
		"reports dropped", dropped, res.sent, res.acked, res.retries, res.failed)
	return res, nil
}

// memoryCell says what the coordinator's memory cgroup did: its limit, or that the kernel
// killed the coordinator for going over it.
func (r result) memoryCell() string {
	switch {
	case r.memLimit == 0:
		return "unlimited"
	case r.oomKills > 0:
		return fmt.Sprintf("OOM-KILLED at %d MiB", r.memLimit>>20)
	}
	return fmt.Sprintf("%d MiB ok", r.memLimit>>20)
}

// printTable prints every fleet size's figures in one table, with the goals at 10,000 nodes.
func printTable(rs []result, subtasks int, interval, duration time.Duration, cpuSetup string) {
	fmt.Printf("\nfleet sizes side by side (%d subtasks per node, a report every %s, %s measured each; round times are every round in the window, timed by the coordinator)\n",
		subtasks, interval, duration)
	fmt.Println(cpuSetup)
	fmt.Printf("%8s %9s %9s %8s %12s %12s %12s %12s %14s %14s %8s %12s %12s %10s %10s %10s %10s %10s %10s %8s  %s\n", "nodes", "nodes/conn", "connect", "rounds", "round p50", "round p99", "round max", "CPU p99", "core wait p99", "off thread p99", "ingest", "peak RSS", "RSS/node", "coord CPU", "µs/report", "sim CPU", "dropped", "reopened", "memory", "cores", "load average")
	for _, r := range rs {
		if r.skipped {
			fmt.Printf("%8d  skipped: not enough open files for %d nodes per connection\n", r.nodes, r.perConn)
			continue
		}
		if r.err != nil {
			peak := ""
			if r.cgroupPeak > 0 {
				peak = fmt.Sprintf(", the cgroup's peak %.0f MiB", r.cgroupPeak)
			}
			fmt.Printf("%8d  FAILED (%s; last RSS seen %.0f MiB, peak %.0f MiB%s): %v\n", r.nodes, r.memoryCell(), r.rss, r.hwm, peak, r.err)
			continue
		}
		p50, p99, mx, cpu99, wait99, off99 := math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
		if len(r.rounds) > 0 {
			p50, p99, mx, cpu99 = quantile(r.rounds, 0.5), quantile(r.rounds, 0.99), quantile(r.rounds, 1), quantile(r.roundCPU, 0.99)
			wait99, off99 = quantile(r.roundRunQueue, 0.99), quantile(r.offThread(), 0.99)
		}
		fmt.Printf("%8d %9d %7.1f s %8d %9.1f ms %9.1f ms %9.1f ms %9.1f ms %11.1f ms %11.1f ms %8.3f %8.0f MiB %8.1f KiB %10.2f %10.0f %10.2f %10s %10d %10s %8s  %s\n", r.nodes, r.perConn, r.connect.Seconds(), len(r.rounds), 1000*p50, 1000*p99, 1000*mx, 1000*cpu99, 1000*wait99, 1000*off99,
			r.rate/r.offered, r.hwm, r.hwm*1024/float64(r.nodes), r.coordCPU, 1e6*r.coordCPU/r.rate, r.simCPU, r.droppedCell(), r.retries, r.memoryCell(), r.coresCell(), r.loadAfter)
	}
	fmt.Println("goal at 10,000 nodes: round p99 <= 500 ms, peak RSS <= 1024 MiB, 0 dropped")
	fmt.Println("round p50/p99/max: wall time, timed by the coordinator; CPU p99: the round's own CPU time (its thread's clock), which a loaded machine does not inflate")
	fmt.Println("cores: own, the coordinator in a cpu cgroup weighted over the fleet and other work (as on cores of its own, see above); shared, plain processes side by side")
	fmt.Println("core wait p99: the round's thread ready but without a core (other processes, this simulated fleet among them); off thread p99: neither running nor in the kernel's run queue (waiting for a P behind the coordinator's other goroutines, a lock, the store, the GC)")
}

// offThread is each round's wall time neither on a core nor waiting for one.
func (r result) offThread() []float64 {
	out := make([]float64, len(r.rounds))
	for i := range r.rounds {
		out[i] = r.rounds[i] - r.roundCPU[i] - r.roundRunQueue[i]
	}
	return out
}

// coresCell says whether the coordinator had its cores to itself (its own cpu cgroup) or shared
// them with the simulated fleet.
func (r result) coresCell() string {
	if r.isolated {
		return "own"
	}
	return "shared"
}

// droppedCell is the table's dropped column: the gaps, or "?" when they could not be read.
func (r result) droppedCell() string {
	if !r.counted {
		return "?"
	}
	return strconv.FormatUint(r.gaps, 10)
}

// quantile is the q-quantile of xs by the nearest-rank method (q = 1 is the maximum).
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// node is one simulated agent, as the agent behaves: a connection (its own, or shared with
// -nodes-per-conn), over which it opens its
// stream again after a failure (backoff with jitter, 500ms doubling to 30s, the agent's
// defaults), resuming after the last report the coordinator stored (Welcome). Each session
// sends Hello, then a report every interval, reading acks concurrently.
func node(ctx context.Context, conn *grpc.ClientConn, i, subtasks int, interval time.Duration, c *counters) {
	client := tmwardenv1.NewAgentServiceClient(conn)
	name := fmt.Sprintf("node-%05d", i)
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	bo := agent.Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second}
	everConnected := false
	for ctx.Err() == nil {
		welcomed, err := session(ctx, client, name, i, subtasks, interval, rng, c, !everConnected)
		everConnected = everConnected || welcomed
		if ctx.Err() != nil {
			return
		}
		if welcomed {
			bo.Reset()
		}
		c.retries.Add(1)
		if n := c.retries.Load(); n <= 5 || n%1000 == 0 {
			log.Printf("node %d: %v (opening the stream again; %d retries in the fleet so far)", i, err, n)
		}
		select {
		case <-ctx.Done():
		case <-time.After(bo.Next()):
		}
	}
}

// counters are the fleet's totals.
type counters struct {
	sent, acked, connected, retries, failed atomic.Int64
}

// session is one stream: Hello, Welcome, then reports from the one after Welcome's last stored.
// It reports whether the coordinator welcomed it.
func session(ctx context.Context, client tmwardenv1.AgentServiceClient, name string, i, subtasks int, interval time.Duration,
	rng *rand.Rand, c *counters, first bool) (bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.Connect(sctx)
	if err != nil {
		return false, err
	}
	if err := s.Send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Hello{Hello: &tmwardenv1.Hello{NodeName: name,
		ProtocolVersion: 1, InstanceId: name, AgentVersion: "scalebench", ReportIntervalSeconds: interval.Seconds()}}}); err != nil {
		return false, err
	}
	w, err := s.Recv()
	if err != nil {
		return false, err
	}
	if first {
		c.connected.Add(1)
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				recvErr <- err
				return
			}
			c.acked.Add(1)
		}
	}()
	slow := i == 7 // one straggler node, so detection has work to do
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := w.GetWelcome().GetLastSequence() + 1; ; seq++ {
		if err := s.Send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Report{Report: report(name, i, seq, subtasks, interval, slow, rng)}}); err != nil {
			return true, err
		}
		c.sent.Add(1)
		select {
		case <-ctx.Done():
			return true, nil
		case err := <-recvErr:
			return true, err
		case <-t.C:
		}
	}
}

// jobIDs and vertexIDs are the simulated jobs' ids, spelled once for every report.
var jobIDs, vertexIDs = func() ([4]string, [4][5]string) {
	var j [4]string
	var v [4][5]string
	for job := range 4 {
		j[job] = fmt.Sprintf("job%02d", job)
		for vertex := range 5 {
			v[job][vertex] = fmt.Sprintf("job%02d-v%d", job, vertex)
		}
	}
	return j, v
}()

// report is one node's report: host signals and one TaskManager whose subtasks belong to four
// jobs of five vertices each, spread so every vertex has peers on many nodes.
func report(name string, i int, seq uint64, subtasks int, interval time.Duration, slow bool, rng *rand.Rand) *tmwardenv1.Report {
	speed := 1.0
	if slow {
		speed = 0.4
	}
	r := &tmwardenv1.Report{Sequence: seq, CollectedAt: timestamppb.Now(), IntervalSeconds: interval.Seconds(),
		Host: &tmwardenv1.HostSignals{NumCpus: 16, Cpu: &tmwardenv1.CpuShares{User: 0.5, Idle: 0.45, Steal: map[bool]float64{true: 0.3, false: 0.01}[slow]},
			Load1: 8, Memory: &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: 20 << 30}}}
	tm := &tmwardenv1.TaskManager{ResourceId: name + "-tm", Host: name, Subtasks: make([]*tmwardenv1.SubtaskMetrics, 0, subtasks)}
	for s := range subtasks {
		job, vertex := s%4, (s/4)%5
		in := 1000 + 50*rng.Float64()
		tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{
			JobId: jobIDs[job], VertexId: vertexIDs[job][vertex], SubtaskIndex: int32(i),
			BusyMsPerSecond: math.Min(1000, 400/speed+20*rng.Float64()), RecordsInPerSecond: in * math.Min(1, speed*2.5), RecordsOutPerSecond: in,
		})
	}
	r.TaskManagers = []*tmwardenv1.TaskManager{tm}
	return r
}

// fleetGaps sums the sequence gaps and stored reports over every node record; ok is false when
// the coordinator did not answer.
func fleetGaps(httpAddr string) (gaps, stored uint64, ok bool) {
	c := httpv1.NewClient(httpAddr)
	c.HTTP.Timeout = 2 * time.Minute // every node's record, from a coordinator under load
	nodes, err := c.Nodes(context.Background())
	if err != nil {
		log.Printf("reading nodes: %v", err)
		return 0, 0, false
	}
	for _, n := range nodes {
		gaps += n.SequenceGaps
		stored += n.ReportsReceived
	}
	return gaps, stored, true
}

// memOf returns VmHWM and VmRSS of pid in MiB.
func memOf(pid int) (hwm, rss float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmHWM:":
			hwm = kb / 1024
		case "VmRSS:":
			rss = kb / 1024
		}
	}
	return hwm, rss
}

func waitReady(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("coordinator did not become ready within 30s")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// raiseFileLimit lifts RLIMIT_NOFILE so that every node's connection fits (this process holds
// one end, the coordinator, a child inheriting the limit, the other): to the hard limit, and past
// it where the process may (CAP_SYS_RESOURCE). It returns the limit now in force.
func raiseFileLimit(nodes int) uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return math.MaxUint64
	}
	if want := uint64(nodes) + fileSlack; want > r.Max {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err == nil {
			return want
		}
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	return r.Max
}

// logTail is the last n lines of the coordinator's log, joined: the log goes with the run's
// temporary directory.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return "(empty)"
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// nodesPerConn is how many simulated nodes share a connection: the -nodes-per-conn flag when
// set, else one when the open-file limit holds a connection per node, else the fewest that fit.
func nodesPerConn(nodes, flagged int, fileLimit uint64) int {
	if flagged > 0 {
		return flagged
	}
	if uint64(nodes)+fileSlack <= fileLimit || fileLimit <= fileSlack {
		return 1
	}
	room := fileLimit - fileSlack
	return int((uint64(nodes) + room - 1) / room)
}

// memorySampler keeps the coordinator's latest VmHWM and VmRSS, read every second.
type memorySampler struct {
	mu       sync.Mutex
	hwm, rss float64
}

// start samples pid until the returned stop is called; stop waits for the sampler to end.
func (m *memorySampler) start(pid int) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if hwm, rss := memOf(pid); hwm > 0 {
				m.mu.Lock()
				m.hwm, m.rss = hwm, rss
				m.mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-ended }
}

// last is the latest sample: VmHWM and VmRSS in MiB.
func (m *memorySampler) last() (hwm, rss float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hwm, m.rss
}

// fileSlack is what either process needs besides one file per node: the store's files, the HTTP
// clients and servers, the profiles.
const fileSlack = 4096
