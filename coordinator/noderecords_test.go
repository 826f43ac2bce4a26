package coordinator_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/coordinator/store/etcdtest"
	"github.com/tmwarden/tmwarden/telemetry"
)

// etcdCoordinator opens a coordinator on the etcd at url under prefix, with the given clock.
func etcdCoordinator(t testing.TB, url, prefix string, now func() time.Time) *coordinator.Coordinator {
	t.Helper()
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), ""
	cfg.Store.Backend, cfg.Store.Etcd.Endpoints, cfg.Store.Etcd.Prefix = store.BackendEtcd, []string{url}, prefix
	c, err := coordinator.New(cfg, coordinator.WithClock(now), coordinator.WithLogger(quiet), coordinator.WithTelemetry(telemetry.Noop()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// storedRecord reads node's record as the store has it.
func storedRecord(t *testing.T, st *store.Store, node string) store.NodeRecord {
	t.Helper()
	recs, err := st.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(recs, func(r store.NodeRecord) bool { return r.Name == node })
	if i < 0 {
		t.Fatalf("no stored record of %s", node)
	}
	return recs[i]
}

// A node's record is written with the report body at most every 30 s while only the per-report
// counters change, at once when anything else changes (a gap, the agent's drop count), and when
// the coordinator stops. A coordinator that crashed in between leaves a record behind what it
// received; the next one (a restart or a take-over on the shared store) takes the difference
// from the agent's own drop count, so the counters come out exact.
func TestNodeRecordWrittenAtABoundedRate(t *testing.T) {
	url := etcdtest.Start(t)
	var mu sync.Mutex
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	at := func(d time.Duration) { mu.Lock(); now = t0.Add(d); mu.Unlock() }

	c1 := etcdCoordinator(t, url, "/bounded/", clock)
	t.Cleanup(func() { c1.Close() })
	h := &tmwardenv1.Hello{NodeName: "n1", ProtocolVersion: 1, InstanceId: "i1"}
	if _, err := c1.Register(h); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		at               time.Duration
		seq, dropped     uint64
		wantStoredSeq    uint64
		wantStoredGaps   uint64
		wantStoredReason string
	}{
		{0, 1, 0, 1, 0, "the first report writes record and body"},
		{5 * time.Second, 2, 0, 1, 0, "unchanged but the counters: not written"},
		{10 * time.Second, 3, 0, 1, 0, "unchanged but the counters: not written"},
		{25 * time.Second, 6, 0, 6, 2, "4 and 5 missing: a gap, written at once"},
		{30 * time.Second, 7, 0, 7, 2, "30 s after the last body: written"},
		{35 * time.Second, 8, 0, 7, 2, "unchanged but the counters: not written"},
		{40 * time.Second, 10, 1, 10, 3, "9 dropped by the agent: written at once"},
		{45 * time.Second, 11, 1, 10, 3, "unchanged but the counters: not written"},
		{50 * time.Second, 12, 1, 10, 3, "unchanged but the counters: not written"},
	}
	for _, s := range steps {
		at(s.at)
		if _, err := c1.Ingest("n1", &tmwardenv1.Report{Sequence: s.seq, DroppedReports: s.dropped}); err != nil {
			t.Fatal(err)
		}
		if rec := storedRecord(t, c1.Store(), "n1"); rec.LastSequence != s.wantStoredSeq || rec.SequenceGaps != s.wantStoredGaps {
			t.Errorf("after report %d (%s): stored last sequence %d, gaps %d; want %d, %d",
				s.seq, s.wantStoredReason, rec.LastSequence, rec.SequenceGaps, s.wantStoredSeq, s.wantStoredGaps)
		}
	}
	// Received: 1, 2, 3, 6, 7, 8, 10, 11, 12.
	if d, _ := c1.NodeDetail("n1"); d.LastSequence != 12 || d.ReportsReceived != 9 || d.SequenceGaps != 3 {
		t.Fatalf("live record: last %d, received %d, gaps %d; want 12, 9, 3", d.LastSequence, d.ReportsReceived, d.SequenceGaps)
	}

	// c1 crashes: not closed, its last two reports never written. The agent had them
	// acknowledged, then dropped 13 and 14 from a full buffer while no coordinator answered:
	// 13 before it collected 15, 14 before 16, so 15 and 16, resent, carry counts of 2 and 3.
	at(90 * time.Second)
	c2 := etcdCoordinator(t, url, "/bounded/", clock)
	last, err := c2.Register(h)
	if err != nil {
		t.Fatal(err)
	}
	if last != 10 {
		t.Fatalf("the next coordinator resumes the agent after %d, want 10 (the stored record)", last)
	}
	for _, s := range []struct {
		seq, dropped, received, gaps uint64
		why                          string
	}{
		{15, 2, 11, 4, "of 11-14 one was dropped (the count went from 1 to 2); the others count as received"},
		{16, 3, 11, 5, "a second of them was dropped: 11 and 12 arrived at c1, 13 and 14 never did"},
	} {
		at(90*time.Second + time.Duration(s.seq-15)*5*time.Second)
		if _, err := c2.Ingest("n1", &tmwardenv1.Report{Sequence: s.seq, DroppedReports: s.dropped}); err != nil {
			t.Fatal(err)
		}
		if d, _ := c2.NodeDetail("n1"); d.LastSequence != s.seq || d.ReportsReceived != s.received || d.SequenceGaps != s.gaps {
			t.Errorf("after the crash, report %d: last %d, received %d, gaps %d; want %d, %d, %d (%s)",
				s.seq, d.LastSequence, d.ReportsReceived, d.SequenceGaps, s.seq, s.received, s.gaps, s.why)
		}
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	c3 := etcdCoordinator(t, url, "/bounded/", clock)
	defer c3.Close()
	if rec := storedRecord(t, c3.Store(), "n1"); rec.LastSequence != 16 || rec.ReportsReceived != 11 || rec.SequenceGaps != 5 {
		t.Errorf("after a clean stop: stored last %d, received %d, gaps %d; want 16, 11, 5", rec.LastSequence, rec.ReportsReceived, rec.SequenceGaps)
	}
}

// BenchmarkNodeRecordsOnEtcd measures what node records cost a shared etcd (real, Debian's
// etcd-server): a fleet of 1,000 and 10,000 nodes, 20 subtasks each, reports every 5 s for 60 s of
// fleet time, ingested as fast as 32 streams can, once with a record written per report (as
// before) and once at the bounded rate. It prints the writes the fleet asks of etcd per second
// of fleet time (etcd revisions / 60 s), what etcd sustained in wall time, and ingest latency.
// Run: go test -run '^$' -bench NodeRecordsOnEtcd -benchtime 1x ./coordinator/
func BenchmarkNodeRecordsOnEtcd(b *testing.B) {
	url := etcdtest.Start(b)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	revision := func() int64 {
		r, err := cli.Get(context.Background(), "/none")
		if err != nil {
			b.Fatal(err)
		}
		return r.Header.Revision
	}
	const (
		interval = 5 * time.Second
		rounds   = 12
		workers  = 32
	)
	for _, nodes := range []int{1000, 10000} {
		for _, mode := range []struct {
			name  string
			every time.Duration
		}{{"every-report", 0}, {"bounded", 30 * time.Second}} {
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, mode.name), func(b *testing.B) {
				for range b.N {
					var clock atomic.Int64
					t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
					c := etcdCoordinator(b, url, fmt.Sprintf("/bench-%d-%s-%d/", nodes, mode.name, time.Now().UnixNano()),
						func() time.Time { return t0.Add(time.Duration(clock.Load())) })
					coordinator.SetPersistEvery(c, mode.every)
					parallel(nodes, workers, func(i int) {
						if _, err := c.Register(&tmwardenv1.Hello{NodeName: fmt.Sprintf("n%05d", i), ProtocolVersion: 1, InstanceId: "i"}); err != nil {
							b.Error(err)
						}
					})
					reports := make([]*tmwardenv1.Report, rounds)
					for r := range reports {
						reports[r] = benchReport(uint64(r + 1))
					}
					lat := make([][]time.Duration, workers)
					rev0, start := revision(), time.Now()
					for r := range rounds {
						clock.Store(int64(time.Duration(r) * interval))
						parallelW(nodes, workers, func(w, i int) {
							t := time.Now()
							if _, err := c.Ingest(fmt.Sprintf("n%05d", i), reports[r]); err != nil {
								b.Error(err)
							}
							lat[w] = append(lat[w], time.Since(t))
						})
					}
					wall, writes := time.Since(start), revision()-rev0
					all := slices.Concat(lat...)
					slices.Sort(all)
					fleet := float64(rounds) * interval.Seconds()
					b.ReportMetric(float64(writes)/fleet, "etcd-writes/fleet-s")
					b.ReportMetric(float64(writes)/wall.Seconds(), "etcd-writes/wall-s")
					b.ReportMetric(float64(len(all))/wall.Seconds(), "reports/wall-s")
					b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "ingest-p50-ms")
					b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "ingest-p99-ms")
					b.Logf("%d nodes, %s: %d etcd writes for %.0f s of fleet time (%.0f/s; the fleet sends %.0f reports/s); "+
						"etcd took %.0f writes/s of wall time; ingest p50 %v p99 %v", nodes, mode.name, writes, fleet,
						float64(writes)/fleet, float64(nodes)/interval.Seconds(), float64(writes)/wall.Seconds(),
						all[len(all)/2], all[len(all)*99/100])
					c.Close()
				}
			})
		}
	}
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(n, workers int, f func(i int)) { parallelW(n, workers, func(_, i int) { f(i) }) }

// parallelW runs f(w, i) for i in 0..n-1 on workers goroutines, w the worker's number.
func parallelW(n, workers int, f func(w, i int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				f(w, i)
			}
		}()
	}
	wg.Wait()
}
