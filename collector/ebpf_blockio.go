package collector

import (
	"context"
	"log/slog"
	"slices"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/ebpf"
)

// ebpfBlockIOCollector reports, per disk, how long requests took from issue to completion. A
// dying or saturated disk shows as a histogram shifted to the right compared with its peers.
type ebpfBlockIOCollector struct {
	probeHandle[*ebpf.BlockIO, map[ebpf.Dev]ebpf.Histogram]
	log   *slog.Logger
	sysfs string
	names map[ebpf.Dev]string
	prev  map[ebpf.Dev]ebpf.Histogram
}

func newEBPFBlockIOCollector(o Options) (Collector, error) {
	c := &ebpfBlockIOCollector{log: ebpfLogger(o), sysfs: ebpfSysfs(o), names: map[ebpf.Dev]string{}, prev: map[ebpf.Dev]ebpf.Histogram{}}
	c.load(ebpf.BlockIOProbe, ebpf.LoadBlockIO)
	return c, probeLoadResult(c.log, c.status)
}

func (c *ebpfBlockIOCollector) Collect(ctx context.Context, r *tmwardenv1.Report) error {
	cur, err := c.read(ctx)
	if err != nil {
		return err
	}
	devs := make([]ebpf.Dev, 0, len(cur))
	for d := range cur {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	for _, dev := range devs {
		d := cur[dev].Sub(c.prev[dev])
		// Requests without a disk (dev 0) cannot be attributed to a device.
		if d.Count == 0 || dev == 0 {
			continue
		}
		r.Histograms = append(r.Histograms, &tmwardenv1.LatencyHistogram{
			Kind:            tmwardenv1.LatencyHistogram_KIND_BLOCK_IO,
			Target:          c.name(dev),
			Buckets:         d.TrimmedBuckets(),
			Count:           d.Count,
			SumMicroseconds: float64(d.SumNs) / 1e3,
		})
	}
	c.prev = cur
	return probeCollectError(c.status)
}

// name resolves a device name once; a device seen by the kernel exists in sysfs.
func (c *ebpfBlockIOCollector) name(d ebpf.Dev) string {
	if n, ok := c.names[d]; ok {
		return n
	}
	n := ebpf.DeviceName(c.sysfs, d)
	if n != d.String() {
		c.names[d] = n
	}
	return n
}
