package coordinator_test

import (
	"context"
	"fmt"
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

// BenchmarkIngest measures the coordinator's ingest path (dedupe, registry, pebble write)
// in-process, with 1000 nodes reporting round-robin.
func BenchmarkIngest(b *testing.B) {
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = b.TempDir(), ""
	c, err := coordinator.New(cfg, coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	const nodes = 1000
	for i := 0; i < nodes; i++ {
		if _, err := c.Register(&tmwardenv1.Hello{NodeName: fmt.Sprintf("n%04d", i), ProtocolVersion: 1, InstanceId: "i"}); err != nil {
			b.Fatal(err)
		}
	}
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
