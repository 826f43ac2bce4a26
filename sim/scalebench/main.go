// Command scalebench measures one real coordinator process under a fleet: N simulated nodes,
// each with M subtasks, each streaming a report every interval over its own gRPC connection, as
// agents do. It prints the ingest rate, the evaluation-round time, the coordinator's peak RSS
// and how many reports were dropped, from one run (`make bench-scale`).
package main

import (
	"bufio"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tmwarden/tmwarden/api/httpv1"
	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func main() {
	nodes := flag.Int("nodes", 10000, "simulated nodes")
	subtasks := flag.Int("subtasks", 20, "subtasks per node (one TaskManager each)")
	interval := flag.Duration("interval", 5*time.Second, "report interval")
	duration := flag.Duration("duration", 90*time.Second, "how long to measure after every node is connected")
	bin := flag.String("coordinator", "", "coordinator binary (default: build it)")
	flag.Parse()
	if err := run(*nodes, *subtasks, *interval, *duration, *bin); err != nil {
		log.Fatal(err)
	}
}

func run(nodes, subtasks int, interval, duration time.Duration, bin string) error {
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "tmwarden-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "tmwarden-coordinator")
		b := exec.Command("go", "build", "-o", bin, "./cmd/tmwarden-coordinator")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("building the coordinator: %w", err)
		}
	}
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--log-level", "warn")
	logf, _ := os.Create(filepath.Join(dir, "coordinator.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	if err := waitReady("http://" + httpAddr + "/readyz"); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent, acked, failed atomic.Int64
	var connected atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	// The fleet: one connection and stream per node, their first reports spread over an interval.
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.Int64N(int64(interval))))
			if err := node(ctx, grpcAddr, i, subtasks, interval, &sent, &acked, &connected); err != nil && ctx.Err() == nil {
				failed.Add(1)
				log.Printf("node %d: %v", i, err)
			}
		}()
	}
	for connected.Load() < int64(nodes) && time.Since(start) < 5*time.Minute {
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("%d nodes connected in %s\n", connected.Load(), time.Since(start).Round(time.Millisecond))
	before, err := scrape(httpAddr)
	if err != nil {
		return err
	}
	a0, t0 := acked.Load(), time.Now()
	time.Sleep(duration)
	a1, t1 := acked.Load(), time.Now()
	after, err := scrape(httpAddr)
	if err != nil {
		return err
	}
	hwm, rss := memOf(cmd.Process.Pid)
	gaps, stored := fleetGaps(httpAddr)
	cancel()
	wg.Wait()

	rounds := after["tmwarden_evaluation_duration_seconds_count"] - before["tmwarden_evaluation_duration_seconds_count"]
	roundSum := after["tmwarden_evaluation_duration_seconds_sum"] - before["tmwarden_evaluation_duration_seconds_sum"]
	rate := float64(a1-a0) / t1.Sub(t0).Seconds()
	want := float64(nodes) / interval.Seconds()
	fmt.Printf("\nscale benchmark: %d nodes x %d subtasks, a report per node every %s, measured over %s\n", nodes, subtasks, interval, duration)
	fmt.Printf("  %-34s %10.0f reports/s (fleet offers %.0f/s; ratio %.3f)\n", "ingest rate (acknowledged)", rate, want, rate/want)
	if rounds > 0 {
		fmt.Printf("  %-34s %10.1f ms mean over %.0f rounds (goal <= 1000 ms)\n", "evaluation round", 1000*roundSum/rounds, rounds)
		fmt.Printf("  %-34s %10.1f ms (histogram bucket bound)\n", "evaluation round, p99 bound", 1000*after["p99"])
	}
	fmt.Printf("  %-34s %10.0f MiB peak, %.0f MiB now (goal <= 2048 MiB)\n", "coordinator RSS", hwm, rss)
	fmt.Printf("  %-34s %10d missing in sequence at the coordinator, %d reports stored, %d sent, %d acknowledged, %d streams failed\n",
		"reports dropped", gaps, stored, sent.Load(), acked.Load(), failed.Load())
	return nil
}

// node is one simulated agent: Hello, then a report every interval, reading acks concurrently.
func node(ctx context.Context, addr string, i, subtasks int, interval time.Duration, sent, acked, connected *atomic.Int64) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	s, err := tmwardenv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("node-%05d", i)
	if err := s.Send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Hello{Hello: &tmwardenv1.Hello{NodeName: name,
		ProtocolVersion: 1, InstanceId: name, AgentVersion: "scalebench", ReportIntervalSeconds: interval.Seconds()}}}); err != nil {
		return err
	}
	if _, err := s.Recv(); err != nil {
		return err
	}
	connected.Add(1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
			acked.Add(1)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	slow := i == 7 // one straggler node, so detection has work to do
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := uint64(1); ; seq++ {
		if err := s.Send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Report{Report: report(name, i, seq, subtasks, interval, slow, rng)}}); err != nil {
			return err
		}
		sent.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

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
	tm := &tmwardenv1.TaskManager{ResourceId: name + "-tm", Host: name}
	for s := range subtasks {
		job, vertex := s%4, (s/4)%5
		in := 1000 + 50*rng.Float64()
		tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{
			JobId: fmt.Sprintf("job%02d", job), VertexId: fmt.Sprintf("job%02d-v%d", job, vertex), SubtaskIndex: int32(i),
			BusyMsPerSecond: math.Min(1000, 400/speed+20*rng.Float64()), RecordsInPerSecond: in * math.Min(1, speed*2.5), RecordsOutPerSecond: in,
		})
	}
	r.TaskManagers = []*tmwardenv1.TaskManager{tm}
	return r
}

// scrape reads the coordinator's /metrics into name → value (summed over labels), plus "p99",
// the upper bound of the bucket holding the 99th percentile of the evaluation duration.
func scrape(httpAddr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	type bucket struct{ le, n float64 }
	var buckets []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name := line[:sp]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			if strings.HasPrefix(name, "tmwarden_evaluation_duration_seconds_bucket") {
				if k := strings.Index(name, `le="`); k >= 0 {
					val := name[k+4:]
					val = val[:strings.IndexByte(val, '"')]
					le, _ := strconv.ParseFloat(val, 64) // "+Inf" parses as +Inf
					buckets = append(buckets, bucket{le, v})
				}
			}
			name = name[:j]
		}
		out[name] += v
	}
	if n := len(buckets); n > 0 {
		total := buckets[n-1].n
		for _, b := range buckets {
			if b.n >= 0.99*total {
				out["p99"] = b.le
				break
			}
		}
	}
	return out, sc.Err()
}

func fleetGaps(httpAddr string) (gaps, stored uint64) {
	nodes, err := httpv1.NewClient(httpAddr).Nodes(context.Background())
	if err != nil {
		log.Printf("reading nodes: %v", err)
		return 0, 0
	}
	for _, n := range nodes {
		gaps += n.SequenceGaps
		stored += n.ReportsReceived
	}
	return gaps, stored
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

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit: every node holds a connection, and the
// coordinator (a child process) inherits the limit.
func raiseFileLimit() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}
