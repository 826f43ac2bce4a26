package collector

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// BenchmarkFlinkCollect scrapes two TaskManager stand-ins (sim/tmstandin, in their own
// processes as in make bench-node: Flink 1.20 and 2.x, 200 subtasks each) per op, so the
// profile and the allocations are the agent's side only.
func BenchmarkFlinkCollect(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "tmstandin")
	if out, err := exec.Command("go", "build", "-o", bin, "../sim/tmstandin").CombinedOutput(); err != nil {
		b.Fatalf("build stand-in: %v\n%s", err, out)
	}
	var tms []*tmwardenv1.TaskManager
	for _, v := range []string{"1.20.1", "2.0.0"} {
		cmd := exec.Command(bin, "-Dmetrics.reporter.prom.port=0")
		cmd.Env = append(os.Environ(), "TMSTANDIN_FLINK_VERSION="+v, "TMSTANDIN_SUBTASKS=200")
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { stdin.Close(); cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "listening ") {
			b.Fatalf("stand-in: %q %v", line, err)
		}
		tms = append(tms, &tmwardenv1.TaskManager{MetricsEndpoint: "127.0.0.1:" + strings.TrimSpace(strings.TrimPrefix(line, "listening "))})
	}
	f := newFlinkCollectorWith(FlinkConfig{}, slog.New(slog.DiscardHandler))
	defer f.Close()
	b.ReportAllocs()
	// The process's own CPU per op beside the wall time: on a loaded machine the wall time
	// includes the wait for a core, and the stand-ins (other processes) are not counted.
	cpu0 := selfCPU()
	for b.Loop() {
		r := &tmwardenv1.Report{}
		for _, tm := range tms {
			r.TaskManagers = append(r.TaskManagers, &tmwardenv1.TaskManager{MetricsEndpoint: tm.MetricsEndpoint})
		}
		if err := f.Collect(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		if len(r.TaskManagers[0].Subtasks) != 200 || len(r.TaskManagers[1].Subtasks) != 200 {
			b.Fatalf("subtasks: %d, %d", len(r.TaskManagers[0].Subtasks), len(r.TaskManagers[1].Subtasks))
		}
	}
	b.ReportMetric(float64(selfCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// selfCPU is the process's user and system CPU time so far, in nanoseconds.
func selfCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
