package sim

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

const histBuckets = 26

// reportShape is a node's report, built once and refilled every tick: a 2000-node scenario
// would otherwise allocate tens of thousands of messages per tick.
type reportShape struct {
	r       *tmwardenv1.Report
	ts      *timestamppb.Timestamp
	disk    *tmwardenv1.DiskStats
	iface   *tmwardenv1.NetStats
	rq      []*tmwardenv1.LatencyHistogram
	bio     *tmwardenv1.LatencyHistogram
	retrans []*tmwardenv1.TcpRetransmits
	cgroups []*tmwardenv1.CgroupStats
	tms     []*tmwardenv1.TaskManager
	// nbCgroups and nbRunq are the neighbours' cgroups and run-queue histograms.
	nbCgroups []*tmwardenv1.CgroupStats
	nbRunq    []*tmwardenv1.LatencyHistogram
	// inbound retransmits to other nodes' addresses (receiver-side loss there)
	toRecv []*tmwardenv1.TcpRetransmits
	// empty stands in for a TaskManager whose metrics are missing this round.
	empty []*tmwardenv1.TaskManager
	out   []*tmwardenv1.TaskManager
}

// nodeIP is the address the simulated node's TaskManagers listen on.
func nodeIP(idx int) string { return fmt.Sprintf("10.%d.%d.%d", idx>>16&255, idx>>8&255, idx&255) }

func newReportShape(n *node) *reportShape {
	rs := &reportShape{ts: &timestamppb.Timestamp{}}
	rs.disk = &tmwardenv1.DiskStats{Device: "nvme0n1"}
	rs.iface = &tmwardenv1.NetStats{Interface: "eth0"}
	h := &tmwardenv1.HostSignals{
		NumCpus:    uint32(n.cpus),
		Cpu:        &tmwardenv1.CpuShares{},
		Memory:     &tmwardenv1.Memory{},
		Disks:      []*tmwardenv1.DiskStats{rs.disk},
		Interfaces: []*tmwardenv1.NetStats{rs.iface},
		Tcp:        &tmwardenv1.TcpStats{},
		Pressure: &tmwardenv1.Pressure{Available: true, Cpu: &tmwardenv1.PressureStat{},
			Memory: &tmwardenv1.PressureStat{}, Io: &tmwardenv1.PressureStat{}},
	}
	rs.r = &tmwardenv1.Report{CollectedAt: rs.ts, Host: h}
	for i, tm := range n.tms {
		hg := &tmwardenv1.LatencyHistogram{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: tm.cgroup,
			CgroupId: uint64(1000 + n.idx*16 + i), Buckets: make([]uint64, histBuckets)}
		rs.rq = append(rs.rq, hg)
		cg := &tmwardenv1.CgroupStats{Path: tm.cgroup, Version: 2, CpuPressure: &tmwardenv1.PressureStat{},
			MemoryPressure: &tmwardenv1.PressureStat{}, IoPressure: &tmwardenv1.PressureStat{}, CpuLimitCores: 4,
			TaskManager: true, PodName: tm.id, PodNamespace: "flink"}
		rs.cgroups = append(rs.cgroups, cg)
		t := &tmwardenv1.TaskManager{
			ResourceId: tm.id, Pid: int32(4000 + i), Cgroup: tm.cgroup, PodName: tm.id, PodNamespace: "flink",
			MainClass:       "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
			Host:            nodeIP(n.idx),
			MetricsEndpoint: "http://127.0.0.1:9249/metrics", FlinkVersion: "1.20.1",
			Jvm: &tmwardenv1.JvmStats{HeapMaxBytes: 8 << 30, Threads: 180},
		}
		for _, st := range tm.subtasks {
			st.metric = &tmwardenv1.SubtaskMetrics{
				JobId: st.v.job.id, JobName: st.v.job.name, VertexId: st.v.id, VertexName: st.v.name,
				SubtaskIndex: int32(st.idx), IsSource: st.v.isSource,
				AttemptId: fmt.Sprintf("%s_%s_%d_0", st.v.job.id[:8], st.v.id[:8], st.idx),
			}
			t.Subtasks = append(t.Subtasks, st.metric)
		}
		rs.tms = append(rs.tms, t)
		rs.empty = append(rs.empty, &tmwardenv1.TaskManager{ResourceId: tm.id, Pid: t.Pid, Cgroup: tm.cgroup, PodName: tm.id, PodNamespace: "flink",
			MainClass: t.MainClass, Host: t.Host, MetricsEndpoint: t.MetricsEndpoint, FlinkVersion: t.FlinkVersion,
			ScrapeError: "scrape " + t.MetricsEndpoint + ": context deadline exceeded", Jvm: &tmwardenv1.JvmStats{}})
	}
	for i, nb := range n.neighbours {
		rs.nbCgroups = append(rs.nbCgroups, &tmwardenv1.CgroupStats{Path: nb.path, Version: 2, PodName: nb.pod, PodNamespace: nb.namespace,
			PodUid: nb.uid, SystemdUnit: nb.unit, CpuPressure: &tmwardenv1.PressureStat{}, MemoryPressure: &tmwardenv1.PressureStat{}, IoPressure: &tmwardenv1.PressureStat{}})
		rs.nbRunq = append(rs.nbRunq, &tmwardenv1.LatencyHistogram{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: nb.path,
			CgroupId: uint64(900000 + n.idx*64 + i), Buckets: make([]uint64, histBuckets)})
	}
	rs.bio = &tmwardenv1.LatencyHistogram{Kind: tmwardenv1.LatencyHistogram_KIND_BLOCK_IO, Target: "nvme0n1", Buckets: make([]uint64, histBuckets)}
	for i := range 3 {
		rs.retrans = append(rs.retrans, &tmwardenv1.TcpRetransmits{RemoteAddress: fmt.Sprintf("10.200.%d.%d:6121", (n.idx+i+1)%250, (n.idx*7+i)%250)})
	}
	return rs
}

// histShape spreads a latency distribution over log2 buckets around its mean bucket.
var histShape = [...]float64{0.04, 0.16, 0.42, 0.24, 0.1, 0.04}

func fillHist(h *tmwardenv1.LatencyHistogram, count float64, meanUS float64) {
	clear(h.Buckets)
	c := uint64(math.Max(0, count))
	h.Count = c
	h.SumMicroseconds = float64(c) * meanUS
	if c == 0 {
		return
	}
	center := int(math.Log2(math.Max(meanUS, 1)))
	var placed uint64
	for i, f := range histShape {
		b := min(max(center+i-2, 0), histBuckets-1)
		k := uint64(f * float64(c))
		h.Buckets[b] += k
		placed += k
	}
	h.Buckets[min(max(center, 0), histBuckets-1)] += c - placed
}

func (s *Sim) jitter(sigma float64) float64 { return math.Exp(sigma * s.rng.NormFloat64()) }

// agentState applies the partition and agent-restart controls to the node's agent this tick.
func (s *Sim) agentState(n *node) (down, partitioned bool) {
	t := scenario.Duration(s.elapsed())
	for ci := range s.sc.Controls {
		c := &s.sc.Controls[ci]
		if c.Kind != scenario.ControlPartition && c.Kind != scenario.ControlAgentRestart {
			continue
		}
		if t <= c.Start || t > c.Start+c.Duration || !s.controlNodes[ci][n.idx] {
			continue
		}
		if c.Kind == scenario.ControlPartition {
			partitioned = true
		} else {
			down = true
		}
	}
	return down, partitioned
}

func (s *Sim) emit(deliver Deliver) {
	at := s.Now()
	var receivers []*node
	for _, n := range s.nodes {
		if n.netRecvSev > 0 {
			receivers = append(receivers, n)
		}
	}
	for _, n := range s.nodes {
		n.rep.toRecv = n.rep.toRecv[:0]
		for _, rv := range receivers {
			if rv != n {
				// This node's share of the traffic to the lossy receiver is retransmitted.
				seg := (n.recordsOut/s.dt/8 + 200) / float64(len(s.nodes))
				n.rep.toRecv = append(n.rep.toRecv, &tmwardenv1.TcpRetransmits{RemoteAddress: nodeIP(rv.idx) + ":6121",
					Retransmits: uint64(seg * 0.3 * rv.netRecvSev * s.dt * s.jitter(0.3))})
			}
		}
	}
	for _, n := range s.nodes {
		down, part := s.agentState(n)
		if down {
			// The agent process is gone with its buffer; the next start begins a new sequence.
			n.seq = 0
			n.restarted = true
			n.buffer = nil
			continue
		}
		n.seq++
		s.fill(n, at)
		r := n.rep.r
		if part {
			if len(n.buffer) == agentBufferReports {
				n.buffer = n.buffer[1:]
				r.DroppedReports++
			}
			n.buffer = append(n.buffer, proto.Clone(r).(*tmwardenv1.Report))
			continue
		}
		if deliver == nil {
			continue
		}
		for _, b := range n.buffer {
			deliver(n.name, at, b)
		}
		n.buffer = nil
		deliver(n.name, at, r)
	}
}

func (s *Sim) fill(n *node, at time.Time) {
	rs := n.rep
	r := rs.r
	r.Sequence = n.seq
	rs.ts.Seconds, rs.ts.Nanos = at.Unix(), int32(at.Nanosecond())
	r.IntervalSeconds = s.dt
	first := n.restarted && n.seq == 1

	var busyCores float64
	for ti, tm := range n.tms {
		var tmBusy float64
		for _, st := range tm.subtasks {
			m := st.metric
			if n.metricsMode == "stale" {
				// The scrape returns the values it returned before the metrics stopped.
				tmBusy += m.BusyMsPerSecond / 1000
				continue
			}
			busy := min(1000, st.busyMs*s.jitter(0.02))
			rest := 1000 - busy
			other := st.bpMs + st.idleMs
			bp, idle := 0.0, rest
			if other > 0 {
				bp, idle = rest*st.bpMs/other, rest*st.idleMs/other
			}
			m.BusyMsPerSecond, m.BackpressuredMsPerSecond, m.IdleMsPerSecond = busy, bp, idle
			m.RecordsInPerSecond = st.processed / s.dt
			if st.v.isSource {
				m.RecordsInPerSecond = st.processed / s.dt
			}
			m.RecordsOutPerSecond = st.out / s.dt
			m.BytesInPerSecond = m.RecordsInPerSecond * 180
			m.BytesOutPerSecond = m.RecordsOutPerSecond * 180
			m.InputPoolUsage = min(1, st.queue/math.Max(st.capacity, 1))
			m.OutputPoolUsage = bp / 1000
			m.MailboxLatencyMsP50 = 0.02 + busy/1000*0.5
			m.MailboxLatencyMsP99 = 0.2 + busy/1000*20
			m.CheckpointStartDelayMs = st.ckptDelayMs
			if st.v.isSource {
				var lag float64
				for _, pi := range st.parts {
					lag += st.v.job.partitions[pi].lag
				}
				lag = math.Round(lag)
				m.KafkaLag = &lag
				m.PendingRecords = &lag
			}
			tmBusy += busy / 1000
		}
		tmBusy += 2 * tm.gcMs / 1000
		if tm.down {
			tmBusy = 0
		}
		busyCores += tmBusy
		t := rs.tms[ti]
		t.Jvm.GcTimeMsPerSecond = tm.gcMs
		t.Jvm.GcCountPerSecond = tm.gcMs / 40
		t.Jvm.CpuLoad = min(1, tmBusy/n.cpus)
		t.Jvm.HeapUsedBytes = uint64((tm.heapFrac + 0.4*tm.gcSev + 0.2*n.memSev) * float64(t.Jvm.HeapMaxBytes) * 0.95)
		cg := rs.cgroups[ti]
		cg.CpuUsageCores = tmBusy
		cg.MemoryUsageBytes = t.Jvm.HeapUsedBytes + 2<<30
		cg.MemoryLimitBytes = 16 << 30
		cg.CpuPressure.SomeShare = min(1, 0.01+0.5*n.cpuSev+n.steal)
		cg.MemoryPressure.SomeShare = 0.4 * n.memSev
		cg.IoPressure.SomeShare = 0.5 * n.diskSev
	}
	busyCores += 0.1 * s.jitter(0.2)
	n.busyCores = busyCores
	var nbCores float64
	for _, nb := range n.neighbours {
		if nb.fault < 0 {
			nbCores += nb.cores
		}
	}

	h := r.Host
	demand := busyCores + nbCores + n.noisyCores
	u := min(demand/n.cpus, 1.2)
	steal := n.steal + 0.002*math.Abs(s.rng.NormFloat64())
	iowait := 0.003*s.jitter(0.3) + 0.25*n.diskSev + 0.12*n.memSev
	work := min(u, 1-steal-iowait)
	c := h.Cpu
	c.User, c.System, c.Softirq = 0.85*work, 0.12*work, 0.03*work+0.05*n.netSev
	c.Steal, c.Iowait = steal, iowait
	c.Idle = max(0, 1-c.User-c.System-c.Softirq-c.Steal-c.Iowait)
	c.Irq, c.Nice, c.Guest = 0.002, 0, 0
	h.Load1 = demand + 4*n.diskSev*n.cpus/16
	h.Load5, h.Load15 = h.Load1*0.95, h.Load1*0.9
	h.ContextSwitchesPerSecond = 20000 * (1 + u) * s.jitter(0.05)
	h.InterruptsPerSecond = 15000 * s.jitter(0.05)
	h.ProcsRunning = uint32(math.Ceil(demand))
	h.ProcsBlocked = uint32(8 * (n.diskSev + n.memSev))
	h.UptimeSeconds = n.uptime + at.Sub(Epoch).Seconds()

	mem := h.Memory
	mem.TotalBytes = uint64(n.memGiB) << 30
	avail := max(0.01, 0.45+0.02*s.rng.NormFloat64()-0.42*n.memSev)
	mem.AvailableBytes = uint64(avail * float64(mem.TotalBytes))
	mem.UsedBytes = mem.TotalBytes - mem.AvailableBytes
	mem.CachedBytes = mem.AvailableBytes / 2
	mem.SwapTotalBytes = 8 << 30
	mem.SwapUsedBytes = uint64(n.memSev * float64(6<<30))
	mem.SwapInPagesPerSecond = 900 * n.memSev
	mem.SwapOutPagesPerSecond = 1200 * n.memSev
	mem.MajorFaultsPerSecond = 3*s.jitter(0.4) + 4000*n.memSev

	await := 0.4*s.jitter(0.2) + 150*n.diskSev + 15*n.memSev
	writes := 150 + n.diskWriteBytes/s.dt/(256<<10)
	d := rs.disk
	d.ReadsPerSecond, d.WritesPerSecond = 80*s.jitter(0.1), writes
	d.ReadBytesPerSecond, d.WriteBytesPerSecond = d.ReadsPerSecond*16384, n.diskWriteBytes/s.dt+writes*8192
	d.AwaitMs = await
	d.Utilization = min(1, 0.04+d.WriteBytesPerSecond/(1500<<20)+0.9*n.diskSev)
	d.InFlight = uint64(1 + 30*n.diskSev)

	outRecords := n.recordsOut / s.dt
	ifc := rs.iface
	ifc.TxBytesPerSecond, ifc.RxBytesPerSecond = outRecords*180, outRecords*175
	ifc.TxPacketsPerSecond, ifc.RxPacketsPerSecond = outRecords/8+200, outRecords/8+180
	tcp := h.Tcp
	tcp.OutSegmentsPerSecond = ifc.TxPacketsPerSecond
	tcp.RetransmitsPerSecond = tcp.OutSegmentsPerSecond * (0.0002 + 0.04*n.netSev) * s.jitter(0.3)
	tcp.Established = 120
	ifc.TxDropsPerSecond = 0.05 * tcp.RetransmitsPerSecond * n.netSev
	var toRecv float64
	for _, rt := range rs.toRecv {
		toRecv += float64(rt.Retransmits) / s.dt
	}
	tcp.RetransmitsPerSecond += toRecv

	ps := h.Pressure
	ps.Cpu.SomeShare = min(1, 0.01+0.3*u*u*u+0.5*n.cpuSev+n.steal)
	ps.Memory.SomeShare = min(1, 0.001+0.45*n.memSev)
	ps.Memory.FullShare = 0.25 * n.memSev
	ps.Io.SomeShare = min(1, 0.01+0.6*n.diskSev+0.2*n.memSev)
	ps.Io.FullShare = 0.4 * n.diskSev
	ps.Cpu.SomeAvg10, ps.Memory.SomeAvg10, ps.Io.SomeAvg10 = ps.Cpu.SomeShare*100, ps.Memory.SomeShare*100, ps.Io.SomeShare*100

	// Run-queue latency grows with utilisation (queueing) and with CPU taken by others.
	runq := (6 + 30*u*u/math.Max(1-u, 0.08) + 6000*n.cpuSev*boolf(n.noisyCores > 0) + 10000*n.steal) * s.jitter(0.15)
	r.Histograms = r.Histograms[:0]
	for i, tm := range n.tms {
		if tm.down {
			continue
		}
		fillHist(rs.rq[i], 2000*s.dt*float64(len(tm.subtasks)+1), runq)
		r.Histograms = append(r.Histograms, rs.rq[i])
	}
	r.Cgroups = r.Cgroups[:0]
	for i, tm := range n.tms {
		if !tm.down {
			r.Cgroups = append(r.Cgroups, rs.cgroups[i])
		}
	}
	for i, nb := range n.neighbours {
		if nb.cores <= 0 {
			continue
		}
		cg := rs.nbCgroups[i]
		cg.CpuUsageCores = nb.cores
		cg.MemoryUsageBytes = uint64(256<<20 + nb.cores*float64(512<<20))
		cg.CpuPressure.SomeShare = min(1, 0.01+0.5*n.cpuSev+n.steal)
		r.Cgroups = append(r.Cgroups, cg)
		fillHist(rs.nbRunq[i], 500*s.dt*(1+nb.cores), runq)
		r.Histograms = append(r.Histograms, rs.nbRunq[i])
	}
	fillHist(rs.bio, (d.ReadsPerSecond+d.WritesPerSecond)*s.dt, await*1000)
	r.Histograms = append(r.Histograms, rs.bio)

	r.Retransmits = r.Retransmits[:0]
	for _, rt := range rs.toRecv {
		if rt.Retransmits > 0 {
			r.Retransmits = append(r.Retransmits, rt)
		}
	}
	if total := (tcp.RetransmitsPerSecond - toRecv) * s.dt; total >= 1 {
		for i, rt := range rs.retrans {
			rt.Retransmits = uint64(total * []float64{0.5, 0.3, 0.2}[i])
			if rt.Retransmits > 0 {
				r.Retransmits = append(r.Retransmits, rt)
			}
		}
	}
	r.TaskManagers = r.TaskManagers[:0]
	for i, tm := range n.tms {
		switch {
		case tm.down:
			// A restarting TaskManager is not there to be discovered.
		case n.metricsMode == "missing":
			r.TaskManagers = append(r.TaskManagers, rs.empty[i])
		default:
			r.TaskManagers = append(r.TaskManagers, rs.tms[i])
		}
	}

	if first {
		// The first collection round after an agent start has no previous counters: host rates
		// are zero and the eBPF programs have only just been attached.
		*c = tmwardenv1.CpuShares{}
		tcp.RetransmitsPerSecond = 0
		mem.MajorFaultsPerSecond, mem.SwapInPagesPerSecond, mem.SwapOutPagesPerSecond = 0, 0, 0
		d.AwaitMs, d.Utilization = 0, 0
		r.Histograms = r.Histograms[:0]
		r.Retransmits = r.Retransmits[:0]
		n.restarted = false
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
