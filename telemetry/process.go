package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// processCollector exports the process_* series of client_golang's process collector that
// describe this process: CPU seconds, resident and virtual memory, start time, open and maximum
// file descriptors, address-space limit. client_golang's collector also reads the network
// namespace's /proc/net/netstat on every scrape for process_network_{receive,transmit}_bytes_total,
// which are the whole namespace's counters (the host's, for an agent in the host network), not
// this process's, and that read and parse was most of its cost: 1.2 ms of every /metrics
// scrape, 4% of the agent's CPU in make bench-node's profile. Limits come from getrlimit instead
// of parsing /proc/self/limits.
type processCollector struct {
	cpu, rss, vsize, start, fds, maxFDs, maxVsize *prometheus.Desc
	// startTime is read once: it needs the boot time from /proc/stat, and it never changes.
	startOnce sync.Once
	startTime float64
	startOK   bool
}

func newProcessCollector() *processCollector {
	return &processCollector{
		cpu:      prometheus.NewDesc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", nil, nil),
		rss:      prometheus.NewDesc("process_resident_memory_bytes", "Resident memory size in bytes.", nil, nil),
		vsize:    prometheus.NewDesc("process_virtual_memory_bytes", "Virtual memory size in bytes.", nil, nil),
		start:    prometheus.NewDesc("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", nil, nil),
		fds:      prometheus.NewDesc("process_open_fds", "Number of open file descriptors.", nil, nil),
		maxFDs:   prometheus.NewDesc("process_max_fds", "Maximum number of open file descriptors.", nil, nil),
		maxVsize: prometheus.NewDesc("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", nil, nil),
	}
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.rss, c.vsize, c.start, c.fds, c.maxFDs, c.maxVsize} {
		ch <- d
	}
}

// Collect leaves out what it cannot read: process metrics are a mix-in, and a failed read must
// not fail the scrape of everything else (client_golang's default does the same).
func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	if p, err := procfs.Self(); err == nil {
		if st, err := p.Stat(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, st.CPUTime())
			ch <- prometheus.MustNewConstMetric(c.rss, prometheus.GaugeValue, float64(st.ResidentMemory()))
			ch <- prometheus.MustNewConstMetric(c.vsize, prometheus.GaugeValue, float64(st.VirtualMemory()))
			c.startOnce.Do(func() {
				t, err := st.StartTime()
				c.startTime, c.startOK = t, err == nil
			})
			if c.startOK {
				ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, c.startTime)
			}
		}
		if n, err := p.FileDescriptorsLen(); err == nil {
			ch <- prometheus.MustNewConstMetric(c.fds, prometheus.GaugeValue, float64(n))
		}
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(c.maxFDs, prometheus.GaugeValue, rlimitValue(lim.Cur))
	}
	if unix.Getrlimit(unix.RLIMIT_AS, &lim) == nil {
		ch <- prometheus.MustNewConstMetric(c.maxVsize, prometheus.GaugeValue, rlimitValue(lim.Cur))
	}
}

// rlimitValue is a limit as client_golang reports it: unlimited is the largest uint64.
func rlimitValue(v uint64) float64 {
	if v == unix.RLIM_INFINITY {
		return float64(^uint64(0))
	}
	return float64(v)
}
