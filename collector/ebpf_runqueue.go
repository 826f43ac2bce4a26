package collector

import (
	"context"
	"log/slog"
	"slices"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/ebpf"
)

const (
	// cgroupRescanEvery limits walks of cgroupfs when ids do not resolve (new pods); a
	// histogram whose cgroup is not known yet goes out with its id and an empty path.
	cgroupRescanEvery = 15 * time.Second
	// forgetGoneAfter is how many rounds an id must stay unresolvable and idle before its
	// kernel entry is deleted, which keeps room in the bounded map as pods come and go.
	forgetGoneAfter = 3
)

// ebpfRunQueueCollector reports, per cgroup, how long runnable threads waited for a CPU. A
// TaskManager whose threads wait while a neighbour's cgroup keeps the CPUs busy is the CPU
// contention the coordinator looks for; the cgroups that waited most come first.
type ebpfRunQueueCollector struct {
	probeHandle[*ebpf.RunQueue, map[uint64]ebpf.Histogram]
	log        *slog.Logger
	resolver   *ebpf.CgroupResolver
	lastRescan time.Time
	prev       map[uint64]ebpf.Histogram
	gone       map[uint64]int
}

func newEBPFRunQueueCollector(o Options) (Collector, error) {
	c := &ebpfRunQueueCollector{log: ebpfLogger(o), prev: map[uint64]ebpf.Histogram{}, gone: map[uint64]int{}}
	hier, herr := ebpf.DetectCgroupHierarchy(ebpfSysfs(o))
	c.load(ebpf.RunQueueProbe, func() (*ebpf.RunQueue, error) {
		return ebpf.LoadRunQueue(ebpf.RunQueueOptions{CgroupV1CPU: hier.V1CPU})
	})
	if !c.loaded {
		return c, probeLoadResult(c.log, c.status)
	}
	if herr != nil {
		c.status.State = ebpf.StateDegraded
		c.status.Reason = ebpfJoinReasons(c.status.Reason, "cgroup paths unresolved: "+herr.Error())
	} else {
		c.resolver = ebpf.NewCgroupResolver(hier.Root)
	}
	return c, probeLoadResult(c.log, c.status)
}

func (c *ebpfRunQueueCollector) Collect(ctx context.Context, r *tmwardenv1.Report) error {
	cur, err := c.read(ctx)
	if err != nil {
		return err
	}

	type row struct {
		id uint64
		d  ebpf.Histogram
	}
	var rows []row
	for id, h := range cur {
		if d := h.Sub(c.prev[id]); d.Count > 0 {
			rows = append(rows, row{id, d})
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return descending(a.d.SumNs, b.d.SumNs) })
	if len(rows) > maxReportedCgroups {
		rows = rows[:maxReportedCgroups]
	}
	for _, rw := range rows {
		path, _ := c.path(rw.id)
		r.Histograms = append(r.Histograms, &tmwardenv1.LatencyHistogram{
			Kind:            tmwardenv1.LatencyHistogram_KIND_RUNQUEUE,
			Target:          path,
			CgroupId:        rw.id,
			Buckets:         rw.d.TrimmedBuckets(),
			Count:           rw.d.Count,
			SumMicroseconds: float64(rw.d.SumNs) / 1e3,
		})
	}
	c.forgetGone(cur)
	c.prev = cur
	return probeCollectError(c.status)
}

// path resolves a cgroup id, walking cgroupfs again at most every cgroupRescanEvery.
func (c *ebpfRunQueueCollector) path(id uint64) (string, bool) {
	if c.resolver == nil {
		return "", false
	}
	if p, ok := c.resolver.Path(id); ok {
		return p, true
	}
	if time.Since(c.lastRescan) < cgroupRescanEvery {
		return "", false
	}
	c.lastRescan = time.Now()
	if err := c.resolver.Rescan(); err != nil {
		c.log.Warn("eBPF run queue: cannot resolve cgroup paths", "err", err)
		return "", false
	}
	return c.resolver.Path(id)
}

// forgetGone deletes the kernel entries of cgroups that no longer exist and stopped counting.
func (c *ebpfRunQueueCollector) forgetGone(cur map[uint64]ebpf.Histogram) {
	if c.resolver == nil {
		return
	}
	var forget []uint64
	for id, h := range cur {
		if _, ok := c.resolver.Path(id); ok || h.Count != c.prev[id].Count {
			delete(c.gone, id)
			continue
		}
		c.gone[id]++
		if c.gone[id] >= forgetGoneAfter {
			forget = append(forget, id)
		}
	}
	if len(forget) == 0 {
		return
	}
	if err := c.probe.Forget(forget...); err != nil {
		c.log.Warn("eBPF run queue: cannot forget removed cgroups", "err", err)
	}
	for _, id := range forget {
		delete(c.gone, id)
		delete(cur, id)
	}
}
