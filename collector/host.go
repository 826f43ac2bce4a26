package collector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// hostCollector reads machine-wide counters through gopsutil and reports them as rates over the
// interval, because the coordinator compares nodes, and cumulative counters are not comparable.
type hostCollector struct {
	env  common.EnvMap
	prev *hostSample
}

type hostSample struct {
	at    time.Time
	cpu   cpu.TimesStat
	ctxt  uint64
	disks map[string]disk.IOCountersStat
	nets  map[string]net.IOCountersStat
	tcp   map[string]int64
}

func newHostCollector(o Options) (Collector, error) {
	return &hostCollector{env: hostEnv(o.Config.Paths)}, nil
}

// hostEnv points gopsutil at the configured host paths instead of its process environment.
func hostEnv(p Paths) common.EnvMap {
	env := common.EnvMap{}
	if p.ProcFS != "" {
		env[common.HostProcEnvKey] = p.ProcFS
	}
	if p.SysFS != "" {
		env[common.HostSysEnvKey] = p.SysFS
	}
	if p.RootFS != "" && p.RootFS != "/" {
		env[common.HostRootEnvKey] = p.RootFS
	}
	return env
}

func (h *hostCollector) Collect(ctx context.Context, r *tmwardenv1.Report) error {
	ctx = context.WithValue(ctx, common.EnvKey, h.env)
	var missing []string
	cur := &hostSample{at: time.Now()}
	hs := &tmwardenv1.HostSignals{}

	if t, err := cpu.TimesWithContext(ctx, false); err != nil || len(t) == 0 {
		missing = append(missing, fmt.Sprintf("cpu times: %v", err))
	} else {
		cur.cpu = t[0]
	}
	if n, err := cpu.CountsWithContext(ctx, true); err == nil {
		hs.NumCpus = uint32(n)
	}
	if l, err := load.AvgWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("load: %v", err))
	} else {
		hs.Load1, hs.Load5, hs.Load15 = l.Load1, l.Load5, l.Load15
	}
	if m, err := load.MiscWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("procs and context switches: %v", err))
	} else {
		cur.ctxt = uint64(m.Ctxt)
		hs.ProcsRunning, hs.ProcsBlocked = uint32(m.ProcsRunning), uint32(m.ProcsBlocked)
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("memory: %v", err))
	} else {
		hs.Memory = &tmwardenv1.Memory{TotalBytes: vm.Total, AvailableBytes: vm.Available, UsedBytes: vm.Used, CachedBytes: vm.Cached,
			SwapTotalBytes: vm.SwapTotal, SwapUsedBytes: vm.SwapTotal - vm.SwapFree}
	}
	if up, err := host.UptimeWithContext(ctx); err == nil {
		hs.UptimeSeconds = float64(up)
	}
	if d, err := disk.IOCountersWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("disk counters: %v", err))
	} else {
		cur.disks = d
	}
	if n, err := net.IOCountersWithContext(ctx, true); err != nil {
		missing = append(missing, fmt.Sprintf("network counters: %v", err))
	} else {
		cur.nets = make(map[string]net.IOCountersStat, len(n))
		for _, s := range n {
			cur.nets[s.Name] = s
		}
	}
	if p, err := net.ProtoCountersWithContext(ctx, []string{"tcp"}); err != nil || len(p) == 0 {
		missing = append(missing, fmt.Sprintf("tcp counters: %v", err))
	} else {
		cur.tcp = p[0].Stats
		hs.Tcp = &tmwardenv1.TcpStats{Established: uint32(max(p[0].Stats["CurrEstab"], 0))}
	}

	if h.prev != nil {
		h.fillRates(hs, h.prev, cur)
	}
	h.prev = cur
	r.Host = hs
	if len(missing) > 0 {
		return Degradedf("%s", strings.Join(missing, "; "))
	}
	return nil
}

// fillRates turns two samples into per-second rates and CPU shares.
func (h *hostCollector) fillRates(hs *tmwardenv1.HostSignals, a, b *hostSample) {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return
	}
	rate := func(x, y uint64) float64 {
		if y < x { // counter reset (device re-added): no rate this round
			return 0
		}
		return float64(y-x) / secs
	}
	total := b.cpu.Total() - a.cpu.Total()
	if total > 0 {
		share := func(x, y float64) float64 { return max(y-x, 0) / total }
		hs.Cpu = &tmwardenv1.CpuShares{
			User: share(a.cpu.User, b.cpu.User), System: share(a.cpu.System, b.cpu.System),
			Idle: share(a.cpu.Idle, b.cpu.Idle), Iowait: share(a.cpu.Iowait, b.cpu.Iowait),
			Steal: share(a.cpu.Steal, b.cpu.Steal), Irq: share(a.cpu.Irq, b.cpu.Irq),
			Softirq: share(a.cpu.Softirq, b.cpu.Softirq), Nice: share(a.cpu.Nice, b.cpu.Nice),
			Guest: share(a.cpu.Guest, b.cpu.Guest),
		}
	}
	hs.ContextSwitchesPerSecond = rate(a.ctxt, b.ctxt)
	for name, d := range b.disks {
		p, ok := a.disks[name]
		if !ok {
			continue
		}
		ios := (d.ReadCount - p.ReadCount) + (d.WriteCount - p.WriteCount)
		ds := &tmwardenv1.DiskStats{
			Device: name, ReadsPerSecond: rate(p.ReadCount, d.ReadCount), WritesPerSecond: rate(p.WriteCount, d.WriteCount),
			ReadBytesPerSecond: rate(p.ReadBytes, d.ReadBytes), WriteBytesPerSecond: rate(p.WriteBytes, d.WriteBytes),
			Utilization: min(rate(p.IoTime, d.IoTime)/1000, 1), InFlight: d.IopsInProgress,
		}
		if ios > 0 && d.ReadTime+d.WriteTime >= p.ReadTime+p.WriteTime {
			ds.AwaitMs = float64((d.ReadTime+d.WriteTime)-(p.ReadTime+p.WriteTime)) / float64(ios)
		}
		hs.Disks = append(hs.Disks, ds)
	}
	for name, n := range b.nets {
		p, ok := a.nets[name]
		if !ok {
			continue
		}
		hs.Interfaces = append(hs.Interfaces, &tmwardenv1.NetStats{
			Interface: name, RxBytesPerSecond: rate(p.BytesRecv, n.BytesRecv), TxBytesPerSecond: rate(p.BytesSent, n.BytesSent),
			RxPacketsPerSecond: rate(p.PacketsRecv, n.PacketsRecv), TxPacketsPerSecond: rate(p.PacketsSent, n.PacketsSent),
			RxErrorsPerSecond: rate(p.Errin, n.Errin), TxErrorsPerSecond: rate(p.Errout, n.Errout),
			RxDropsPerSecond: rate(p.Dropin, n.Dropin), TxDropsPerSecond: rate(p.Dropout, n.Dropout),
		})
	}
	if a.tcp != nil && b.tcp != nil && hs.Tcp != nil {
		c := func(k string) float64 { return rate(uint64(max(a.tcp[k], 0)), uint64(max(b.tcp[k], 0))) }
		hs.Tcp.RetransmitsPerSecond = c("RetransSegs")
		hs.Tcp.OutSegmentsPerSecond = c("OutSegs")
	}
}
