package coordinator_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/telemetry"
)

// benchReport is a realistic report: host signals and one TaskManager with 20 subtasks.
func benchReport(seq uint64) *tmwardenv1.Report {
	r := &tmwardenv1.Report{Sequence: seq, CollectedAt: timestamppb.Now(), IntervalSeconds: 5,
		Host: &tmwardenv1.HostSignals{NumCpus: 16, Cpu: &tmwardenv1.CpuShares{User: 0.4, Idle: 0.5}, Load1: 6,
			Memory: &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: 20 << 30}}}
	tm := &tmwardenv1.TaskManager{ResourceId: "tm-1", Host: "10_0_0_1"}
	for i := 0; i < 20; i++ {
		tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{JobId: "a1b2c3", VertexId: fmt.Sprintf("v%02d", i%4), SubtaskIndex: int32(i),
			BusyMsPerSecond: 400, RecordsInPerSecond: 10000, RecordsOutPerSecond: 10000})
	}
	r.TaskManagers = []*tmwardenv1.TaskManager{tm}
	return r
}

// registeredCoordinator is an in-process coordinator (no listeners) that knows nodes n0000,
// n0001, … from their Hello; it is closed when the benchmark ends.
func registeredCoordinator(b *testing.B, nodes int) *coordinator.Coordinator {
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = b.TempDir(), ""
	c, err := coordinator.New(cfg, coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for i := range nodes {
		if _, err := c.Register(&tmwardenv1.Hello{NodeName: fmt.Sprintf("n%04d", i), ProtocolVersion: 1, InstanceId: "i"}); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkIngest measures the coordinator's ingest path (dedupe, registry, pebble write)
// in-process, with 1000 nodes reporting round-robin.
func BenchmarkIngest(b *testing.B) {
	const nodes = 1000
	c := registeredCoordinator(b, nodes)
	reports := make([]*tmwardenv1.Report, b.N/nodes+2)
	for i := range reports {
		reports[i] = benchReport(uint64(i + 1))
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.Ingest(fmt.Sprintf("n%04d", i%nodes), reports[i/nodes]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
}

// BenchmarkIngestGRPC measures reports per second through one agent stream over loopback,
// each report acknowledged before the next is counted.
func BenchmarkIngestGRPC(b *testing.B) {
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = b.TempDir(), "127.0.0.1:0", ""
	c, err := coordinator.New(cfg, coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	s := rawStreamB(b, c.GRPCAddr())
	if err := s.Send(hello("bench-node", 1)); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		b.Fatal(err)
	}
	// Acks are read concurrently so the stream is pipelined, as a real agent's is.
	acked := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := s.Recv(); err != nil {
				acked <- err
				return
			}
		}
		acked <- nil
	}()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := s.Send(&tmwardenv1.AgentMessage{Msg: &tmwardenv1.AgentMessage_Report{Report: benchReport(uint64(i + 1))}}); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-acked; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
}

// BenchmarkIngestConcurrent measures Ingest with the coordinator's own observers (the model and
// the topology) called by 3,000 goroutines at once, one per node, as 3,000 agents' streams call
// it: the CPU time of the whole process per report (the garbage collector's included) beside
// the wall time, since on a loaded machine wall time includes the wait for a core.
func BenchmarkIngestConcurrent(b *testing.B) {
	const streams = 3000
	c := registeredCoordinator(b, streams)
	// Each node runs subtasks of its own (a job of parallelism 15,000 over 4 vertices) in a
	// TaskManager of its own at an address of its own.
	report := func(i int, seq uint64) *tmwardenv1.Report {
		r := benchReport(seq)
		r.TaskManagers[0].ResourceId, r.TaskManagers[0].Host = fmt.Sprintf("tm-%04d", i), fmt.Sprintf("10_0_%d_%d", i/256, i%256)
		for _, st := range r.TaskManagers[0].Subtasks {
			st.SubtaskIndex += int32(20 * i)
		}
		return r
	}
	// The fleet's first reports place its subtasks; what is measured is the steady state after.
	const warm = 2
	for seq := uint64(1); seq <= warm; seq++ {
		for i := range streams {
			if _, err := c.Ingest(fmt.Sprintf("n%04d", i), report(i, seq)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var next atomic.Int64
	cpu0 := processCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range streams {
		node := fmt.Sprintf("n%04d", i)
		wg.Go(func() {
			for seq := uint64(warm + 1); next.Add(1) <= int64(b.N); seq++ {
				if _, err := c.Ingest(node, report(i, seq)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/report")
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
