package coordinator_test

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/telemetry"
)

// TestIngestQueuesObserversNotOnTheirLock: while an observer is held up on its lock (the model
// while a round reads it), many streams' Ingest calls wait, but only one of them on that lock;
// the rest wait on their own channels. Every report is observed once it is free, and never two
// at a time. Without the queue every Ingest call parked on the observer's mutex, and a queue of
// thousands of goroutines on one sync.Mutex costs the GC quadratic time (observeQueue).
func TestIngestQueuesObserversNotOnTheirLock(t *testing.T) {
	t.Parallel()
	var (
		held          sync.Mutex
		inside, most  atomic.Int32
		observedMu    sync.Mutex
		observedNodes = map[string]int{}
	)
	observe := func(node string, _ time.Time, _ *tmwardenv1.Report) {
		n := inside.Add(1)
		defer inside.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		held.Lock()
		defer held.Unlock()
		observedMu.Lock()
		observedNodes[node]++
		observedMu.Unlock()
	}
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), ""
	c, err := coordinator.New(cfg, coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()), coordinator.WithReportObserver(observe))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const streams = 200
	for i := range streams {
		if _, err := c.Register(helloFor(fmt.Sprintf("node-%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	held.Lock()
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			if _, err := c.Ingest(fmt.Sprintf("node-%03d", i), benchReport(1)); err != nil {
				t.Error(err)
			}
		})
	}
	// Every Ingest call has stored its report and waits for the observer.
	var onLock int
	waitFor(t, 10*time.Second, "every Ingest call waiting for the observer", func() bool {
		var waiting int
		waiting, onLock = ingestWaits()
		return waiting == streams
	})
	held.Unlock()
	wg.Wait()
	if onLock > 1 {
		t.Errorf("%d Ingest calls waited on the observer's mutex, want at most 1 (the one applying reports)", onLock)
	}
	if most.Load() != 1 {
		t.Errorf("%d observer calls were under way at once, want 1", most.Load())
	}
	for i := range streams {
		if n := observedNodes[fmt.Sprintf("node-%03d", i)]; n != 1 {
			t.Errorf("node-%03d observed %d times, want 1", i, n)
		}
	}
}

// ingestWaits counts the goroutines blocked inside Coordinator.Ingest, and of them those blocked
// on a sync.Mutex.
func ingestWaits() (waiting, onMutex int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if !bytes.Contains(g, []byte("coordinator.(*Coordinator).Ingest")) {
			continue
		}
		header, _, _ := bytes.Cut(g, []byte("\n"))
		switch {
		case bytes.Contains(header, []byte("[sync.Mutex.Lock")):
			waiting++
			onMutex++
		case bytes.Contains(header, []byte("[chan receive")):
			waiting++
		}
	}
	return waiting, onMutex
}

func helloFor(node string) *tmwardenv1.Hello {
	h := hello(node, 1)
	return h.GetHello()
}
