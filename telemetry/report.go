package telemetry

import (
	"context"
	"fmt"
	"math"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// Attribute keys of the report metrics (semantic-convention keys where they exist).
const (
	attrCPUMode     = attribute.Key("cpu.mode")
	attrMemState    = attribute.Key("system.memory.state")
	attrDevice      = attribute.Key("system.device")
	attrDiskDir     = attribute.Key("disk.io.direction")
	attrIface       = attribute.Key("network.interface.name")
	attrNetDir      = attribute.Key("network.io.direction")
	attrTransport   = attribute.Key("network.transport")
	attrConnState   = attribute.Key("network.connection.state")
	attrResource    = attribute.Key("resource")
	attrLevel       = attribute.Key("level")
	attrCgroup      = attribute.Key("cgroup")
	attrStat        = attribute.Key("stat")
	attrTaskManager = attribute.Key("flink.taskmanager.id")
	attrPod         = attribute.Key("k8s.pod.name")
)

// RegisterReportMetrics exports the agent's latest report as OpenTelemetry metrics on meter.
// last returns the newest report (nil before the first); it is called on every collection, so
// it must be cheap and safe for concurrent use.
//
// Reports carry per-interval rates; the semantic conventions want cumulative counters for IO, so
// the counters here integrate rate × interval once per new report (by sequence number).
func RegisterReportMetrics(meter metric.Meter, last func() *tmwardenv1.Report) error {
	byName := make(map[string]Instrument, len(Instruments))
	for _, in := range Instruments {
		byName[in.Name] = in
	}
	gauges := map[string]metric.Float64ObservableGauge{}
	counters := map[string]metric.Float64ObservableCounter{}
	updowns := map[string]metric.Int64ObservableUpDownCounter{}
	var insts []metric.Observable
	for _, name := range []string{
		MetricCPUUtilization, MetricLoadAverage1m, MetricMemoryUtilization, MetricPressure, MetricRunqueueLatency,
		MetricBlockIOLatency, MetricTaskManagers, MetricSubtasks, MetricTMCPULoad, MetricTMGCShare, MetricTMHeapUsage,
		MetricTMBusy, MetricTMBackpressured, MetricCacheCapacity, MetricCacheUsage, MetricCacheObjects, MetricCacheHitRatio,
	} {
		in := byName[name]
		g, err := meter.Float64ObservableGauge(name, metric.WithUnit(in.Unit), metric.WithDescription(in.Description))
		if err != nil {
			return fmt.Errorf("creating gauge %s: %w", name, err)
		}
		gauges[name], insts = g, append(insts, g)
	}
	for _, name := range []string{
		MetricDiskIO, MetricDiskOperations, MetricDiskOperationTime, MetricDiskIOTime, MetricNetworkIO, MetricNetworkPackets,
		MetricNetworkErrors, MetricNetworkDropped, MetricTCPRetransmits,
	} {
		in := byName[name]
		c, err := meter.Float64ObservableCounter(name, metric.WithUnit(in.Unit), metric.WithDescription(in.Description))
		if err != nil {
			return fmt.Errorf("creating counter %s: %w", name, err)
		}
		counters[name], insts = c, append(insts, c)
	}
	for _, name := range []string{MetricCPULogicalCount, MetricMemoryUsage, MetricNetworkConnections} {
		in := byName[name]
		u, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(in.Unit), metric.WithDescription(in.Description))
		if err != nil {
			return fmt.Errorf("creating up-down counter %s: %w", name, err)
		}
		updowns[name], insts = u, append(insts, u)
	}

	acc := &accumulator{totals: map[accKey]float64{}}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r := last()
		if r == nil {
			return nil
		}
		acc.integrate(r)
		observeGauges(o, gauges, r)
		h := r.GetHost()
		if h != nil {
			o.ObserveInt64(updowns[MetricCPULogicalCount], int64(h.NumCpus))
			if m := h.Memory; m != nil {
				o.ObserveInt64(updowns[MetricMemoryUsage], int64(m.UsedBytes), metric.WithAttributes(attrMemState.String("used")))
				o.ObserveInt64(updowns[MetricMemoryUsage], int64(m.CachedBytes), metric.WithAttributes(attrMemState.String("cached")))
				if free := int64(m.TotalBytes) - int64(m.UsedBytes) - int64(m.CachedBytes); free >= 0 {
					o.ObserveInt64(updowns[MetricMemoryUsage], free, metric.WithAttributes(attrMemState.String("free")))
				}
			}
			if t := h.Tcp; t != nil {
				o.ObserveInt64(updowns[MetricNetworkConnections], int64(t.Established),
					metric.WithAttributes(attrTransport.String("tcp"), attrConnState.String("established")))
			}
		}
		acc.observe(o, counters)
		return nil
	}, insts...)
	if err != nil {
		return fmt.Errorf("registering report metrics callback: %w", err)
	}
	return nil
}

func observeGauges(o metric.Observer, g map[string]metric.Float64ObservableGauge, r *tmwardenv1.Report) {
	if h := r.GetHost(); h != nil {
		if c := h.Cpu; c != nil {
			for _, m := range []struct {
				mode string
				v    float64
			}{{"user", c.User}, {"system", c.System}, {"idle", c.Idle}, {"iowait", c.Iowait}, {"steal", c.Steal},
				{"interrupt", c.Irq + c.Softirq}, {"nice", c.Nice}} {
				o.ObserveFloat64(g[MetricCPUUtilization], m.v, metric.WithAttributes(attrCPUMode.String(m.mode)))
			}
		}
		o.ObserveFloat64(g[MetricLoadAverage1m], h.Load1)
		if m := h.Memory; m != nil && m.TotalBytes > 0 {
			o.ObserveFloat64(g[MetricMemoryUtilization], 1-float64(m.AvailableBytes)/float64(m.TotalBytes),
				metric.WithAttributes(attrMemState.String("used")))
		}
		if p := h.Pressure; p != nil && p.Available {
			for _, s := range []struct {
				res string
				st  *tmwardenv1.PressureStat
			}{{"cpu", p.Cpu}, {"memory", p.Memory}, {"io", p.Io}} {
				if s.st == nil {
					continue
				}
				o.ObserveFloat64(g[MetricPressure], s.st.SomeShare, metric.WithAttributes(attrResource.String(s.res), attrLevel.String("some")))
				if s.res != "cpu" { // the kernel reports a meaningless full line for cpu on the host
					o.ObserveFloat64(g[MetricPressure], s.st.FullShare, metric.WithAttributes(attrResource.String(s.res), attrLevel.String("full")))
				}
			}
		}
	}
	for _, hist := range r.Histograms {
		var inst metric.Float64ObservableGauge
		var target attribute.KeyValue
		switch hist.Kind {
		case tmwardenv1.LatencyHistogram_KIND_RUNQUEUE:
			inst, target = g[MetricRunqueueLatency], attrCgroup.String(hist.Target)
		case tmwardenv1.LatencyHistogram_KIND_BLOCK_IO:
			inst, target = g[MetricBlockIOLatency], attrDevice.String(hist.Target)
		default:
			continue
		}
		if hist.Count == 0 {
			continue
		}
		o.ObserveFloat64(inst, hist.SumMicroseconds/float64(hist.Count)/1e6, metric.WithAttributes(target, attrStat.String("mean")))
		o.ObserveFloat64(inst, Log2Quantile(hist.Buckets, 0.5)/1e6, metric.WithAttributes(target, attrStat.String("p50")))
		o.ObserveFloat64(inst, Log2Quantile(hist.Buckets, 0.99)/1e6, metric.WithAttributes(target, attrStat.String("p99")))
	}
	subtasks := 0
	for _, tm := range r.TaskManagers {
		subtasks += len(tm.Subtasks)
		attrs := metric.WithAttributes(attrTaskManager.String(tm.ResourceId), attrPod.String(tm.PodName))
		if j := tm.Jvm; j != nil {
			o.ObserveFloat64(g[MetricTMCPULoad], j.CpuLoad, attrs)
			o.ObserveFloat64(g[MetricTMGCShare], j.GcTimeMsPerSecond/1000, attrs)
			o.ObserveFloat64(g[MetricTMHeapUsage], float64(j.HeapUsedBytes), attrs)
		}
		var busy, bp float64
		var n int
		for _, s := range tm.Subtasks {
			if math.IsNaN(s.BusyMsPerSecond) || math.IsNaN(s.BackpressuredMsPerSecond) {
				continue
			}
			busy, bp, n = busy+s.BusyMsPerSecond, bp+s.BackpressuredMsPerSecond, n+1
		}
		if n > 0 {
			o.ObserveFloat64(g[MetricTMBusy], busy/float64(n)/1000, attrs)
			o.ObserveFloat64(g[MetricTMBackpressured], bp/float64(n)/1000, attrs)
		}
	}
	o.ObserveFloat64(g[MetricTaskManagers], float64(len(r.TaskManagers)))
	o.ObserveFloat64(g[MetricSubtasks], float64(subtasks))
	if c := r.Cache; c != nil {
		o.ObserveFloat64(g[MetricCacheCapacity], float64(c.CapacityBytes))
		o.ObserveFloat64(g[MetricCacheUsage], float64(c.UsedBytes))
		o.ObserveFloat64(g[MetricCacheObjects], float64(c.Objects))
		o.ObserveFloat64(g[MetricCacheHitRatio], c.HitRatio)
	}
}

// Log2Quantile estimates quantile q of a log2 histogram (bucket i holds [2^i, 2^(i+1)) us) by
// linear interpolation inside the bucket that holds it. Empty histograms give 0.
func Log2Quantile(buckets []uint64, q float64) float64 {
	var total uint64
	for _, b := range buckets {
		total += b
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, b := range buckets {
		if b == 0 {
			continue
		}
		if seen+float64(b) >= rank {
			lo := math.Ldexp(1, i)
			if i == 0 {
				lo = 0
			}
			hi := math.Ldexp(1, i+1)
			return lo + (hi-lo)*(rank-seen)/float64(b)
		}
		seen += float64(b)
	}
	return math.Ldexp(1, len(buckets))
}

type accKey struct {
	name string
	a, b attribute.KeyValue
}

// accumulator turns per-interval rates into the cumulative counters OTel expects.
type accumulator struct {
	mu      sync.Mutex
	lastSeq uint64
	seen    bool
	totals  map[accKey]float64
}

func (a *accumulator) integrate(r *tmwardenv1.Report) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen && r.Sequence == a.lastSeq {
		return
	}
	a.seen, a.lastSeq = true, r.Sequence
	dt := r.IntervalSeconds
	h := r.GetHost()
	if dt <= 0 || h == nil {
		return
	}
	add := func(name string, a1, a2 attribute.KeyValue, rate float64) {
		if math.IsNaN(rate) || rate < 0 {
			return
		}
		a.totals[accKey{name, a1, a2}] += rate * dt
	}
	read, write := attrDiskDir.String("read"), attrDiskDir.String("write")
	for _, d := range h.Disks {
		dev := attrDevice.String(d.Device)
		add(MetricDiskIO, dev, read, d.ReadBytesPerSecond)
		add(MetricDiskIO, dev, write, d.WriteBytesPerSecond)
		add(MetricDiskOperations, dev, read, d.ReadsPerSecond)
		add(MetricDiskOperations, dev, write, d.WritesPerSecond)
		add(MetricDiskOperationTime, dev, read, d.AwaitMs/1000*d.ReadsPerSecond)
		add(MetricDiskOperationTime, dev, write, d.AwaitMs/1000*d.WritesPerSecond)
		add(MetricDiskIOTime, dev, attribute.KeyValue{}, d.Utilization)
	}
	rx, tx := attrNetDir.String("receive"), attrNetDir.String("transmit")
	for _, n := range h.Interfaces {
		ifc := attrIface.String(n.Interface)
		add(MetricNetworkIO, ifc, rx, n.RxBytesPerSecond)
		add(MetricNetworkIO, ifc, tx, n.TxBytesPerSecond)
		add(MetricNetworkPackets, ifc, rx, n.RxPacketsPerSecond)
		add(MetricNetworkPackets, ifc, tx, n.TxPacketsPerSecond)
		add(MetricNetworkErrors, ifc, rx, n.RxErrorsPerSecond)
		add(MetricNetworkErrors, ifc, tx, n.TxErrorsPerSecond)
		add(MetricNetworkDropped, ifc, rx, n.RxDropsPerSecond)
		add(MetricNetworkDropped, ifc, tx, n.TxDropsPerSecond)
	}
	if t := h.Tcp; t != nil {
		add(MetricTCPRetransmits, attribute.KeyValue{}, attribute.KeyValue{}, t.RetransmitsPerSecond)
	}
}

func (a *accumulator) observe(o metric.Observer, c map[string]metric.Float64ObservableCounter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.totals {
		var kv []attribute.KeyValue
		for _, x := range []attribute.KeyValue{k.a, k.b} {
			if x.Key != "" {
				kv = append(kv, x)
			}
		}
		o.ObserveFloat64(c[k.name], v, metric.WithAttributes(kv...))
	}
}
