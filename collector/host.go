package collector

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	env common.EnvMap
	// netEnv and netProc point at /proc/1: the network counters of the host's network namespace
	// (that of init, pid 1), whichever namespace the agent itself runs in. In a pod, /proc/net
	// would be the pod's own interfaces and TCP counters (see docs/security.md).
	netEnv     common.EnvMap
	netProc    string
	proc       string
	diskIgnore *regexp.Regexp
	netIgnore  *regexp.Regexp
	now        func() time.Time
	prev       *hostSample
}

type hostSample struct {
	at              time.Time
	cpu             cpu.TimesStat
	stat            procStat
	swapIn, swapOut uint64
	majFaults       uint64
	haveVM          bool
	listenDrops     uint64
	haveNetstat     bool
	disks           map[string]disk.IOCountersStat
	nets            map[string]net.IOCountersStat
	tcp             map[string]int64
}

// Defaults of HostConfig.
const (
	// DefaultDiskIgnore leaves out pseudo devices (ram, zram, loop, floppy) and partitions.
	DefaultDiskIgnore = `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`
	// DefaultNetIgnore leaves out loopback and the host ends of per-pod veth pairs.
	DefaultNetIgnore = `^(lo|veth.*|cali.*|lxc.*)$`
)

func newHostCollector(o Options) (Collector, error) {
	cfg := o.Config.Host
	dre, err := regexp.Compile(orDefault(cfg.DiskIgnore, DefaultDiskIgnore))
	if err != nil {
		return nil, fmt.Errorf("collectors.host.disk_ignore: %w", err)
	}
	nre, err := regexp.Compile(orDefault(cfg.NetIgnore, DefaultNetIgnore))
	if err != nil {
		return nil, fmt.Errorf("collectors.host.net_ignore: %w", err)
	}
	proc := procRoot(o.Config.Paths)
	netEnv := hostEnv(o.Config.Paths)
	netEnv[common.HostProcEnvKey] = filepath.Join(proc, "1")
	return &hostCollector{env: hostEnv(o.Config.Paths), netEnv: netEnv, proc: proc, netProc: filepath.Join(proc, "1"),
		diskIgnore: dre, netIgnore: nre, now: time.Now}, nil
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
	cur := &hostSample{at: h.now()}
	hs := &tmwardenv1.HostSignals{}

	if t, err := cpu.TimesWithContext(ctx, false); err != nil || len(t) == 0 {
		missing = append(missing, fmt.Sprintf("cpu times: %v", err))
	} else {
		cur.cpu = t[0]
	}
	if l, err := load.AvgWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("load: %v", err))
	} else {
		hs.Load1, hs.Load5, hs.Load15 = l.Load1, l.Load5, l.Load15
	}
	// /proc/stat directly: gopsutil's load.Misc lacks interrupts and lists all of /proc to count processes.
	if st, err := readProcStat(filepath.Join(h.proc, "stat")); err != nil {
		missing = append(missing, fmt.Sprintf("procs, interrupts and context switches: %v", err))
	} else {
		cur.stat = st
		hs.NumCpus = uint32(st.cpus) // counted here: gopsutil's count reads all of /proc/cpuinfo
		hs.ProcsRunning, hs.ProcsBlocked = uint32(st.procsRunning), uint32(st.procsBlocked)
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("memory: %v", err))
	} else {
		hs.Memory = &tmwardenv1.Memory{TotalBytes: vm.Total, AvailableBytes: vm.Available, UsedBytes: vm.Used, CachedBytes: vm.Cached,
			SwapTotalBytes: vm.SwapTotal, SwapUsedBytes: vm.SwapTotal - vm.SwapFree}
	}
	if sw, err := mem.SwapMemoryWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("swap and page faults: %v", err))
	} else {
		// gopsutil scales these /proc/vmstat page counts by 4 KiB whatever the page size; undo it.
		cur.swapIn, cur.swapOut, cur.majFaults, cur.haveVM = sw.Sin/4096, sw.Sout/4096, sw.PgMajFault/4096, true
	}
	if up, err := host.UptimeWithContext(ctx); err == nil {
		hs.UptimeSeconds = float64(up)
	}
	if d, err := disk.IOCountersWithContext(ctx); err != nil {
		missing = append(missing, fmt.Sprintf("disk counters: %v", err))
	} else {
		for name := range d {
			if h.diskIgnore.MatchString(name) {
				delete(d, name)
			}
		}
		cur.disks = d
	}
	netCtx := context.WithValue(ctx, common.EnvKey, h.netEnv)
	if n, err := net.IOCountersWithContext(netCtx, true); err != nil {
		missing = append(missing, fmt.Sprintf("network counters: %v", err))
	} else {
		cur.nets = make(map[string]net.IOCountersStat, len(n))
		for _, s := range n {
			if !h.netIgnore.MatchString(s.Name) {
				cur.nets[s.Name] = s
			}
		}
	}
	if p, err := net.ProtoCountersWithContext(netCtx, []string{"tcp"}); err != nil || len(p) == 0 {
		missing = append(missing, fmt.Sprintf("tcp counters: %v", err))
	} else {
		cur.tcp = p[0].Stats
		hs.Tcp = &tmwardenv1.TcpStats{Established: uint32(max(p[0].Stats["CurrEstab"], 0))}
	}
	// ListenDrops (accept queue overflows) is in TcpExt of /proc/net/netstat, which gopsutil does not read.
	if ns, err := readNetstat(filepath.Join(h.netProc, "net", "netstat"), "TcpExt"); err != nil {
		missing = append(missing, fmt.Sprintf("tcp listen drops: %v", err))
	} else if v, ok := ns["ListenDrops"]; ok {
		cur.listenDrops, cur.haveNetstat = v, true
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
	hs.ContextSwitchesPerSecond = rate(a.stat.ctxt, b.stat.ctxt)
	hs.InterruptsPerSecond = rate(a.stat.intr, b.stat.intr)
	if a.haveVM && b.haveVM && hs.Memory != nil {
		hs.Memory.SwapInPagesPerSecond = rate(a.swapIn, b.swapIn)
		hs.Memory.SwapOutPagesPerSecond = rate(a.swapOut, b.swapOut)
		hs.Memory.MajorFaultsPerSecond = rate(a.majFaults, b.majFaults)
	}
	for _, name := range slices.Sorted(maps.Keys(b.disks)) {
		d := b.disks[name]
		p, ok := a.disks[name]
		if !ok {
			continue
		}
		if d.ReadCount < p.ReadCount || d.WriteCount < p.WriteCount {
			continue // counters went back: the device was replaced
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
	for _, name := range slices.Sorted(maps.Keys(b.nets)) {
		n := b.nets[name]
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
	if a.haveNetstat && b.haveNetstat && hs.Tcp != nil {
		hs.Tcp.ListenDropsPerSecond = rate(a.listenDrops, b.listenDrops)
	}
}

// procStat holds the /proc/stat counters the host collector reads besides CPU time.
type procStat struct {
	ctxt, intr                 uint64
	procsRunning, procsBlocked uint64
	cpus                       int
}

// parseProcStat reads the "ctxt", "intr" (its first number is the total), "procs_running" and
// "procs_blocked" lines of /proc/stat, and counts the online CPUs ("cpuN" lines).
func parseProcStat(r io.Reader) (procStat, error) {
	var st procStat
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20) // the intr line is long on big machines
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 3 && line[:3] == "cpu" && line[3] >= '0' && line[3] <= '9' {
			st.cpus++
			continue
		}
		key, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "ctxt":
			dst = &st.ctxt
		case "intr":
			dst = &st.intr
			rest, _, _ = strings.Cut(rest, " ")
		case "procs_running":
			dst = &st.procsRunning
		case "procs_blocked":
			dst = &st.procsBlocked
		default:
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
		if err != nil {
			return st, fmt.Errorf("stat: %s: %w", key, err)
		}
		*dst = v
		found++
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("reading stat: %w", err)
	}
	if found < 4 {
		return st, fmt.Errorf("stat: only %d of ctxt, intr, procs_running, procs_blocked found", found)
	}
	return st, nil
}

func readProcStat(path string) (procStat, error) {
	f, err := os.Open(path)
	if err != nil {
		return procStat{}, err
	}
	defer f.Close()
	return parseProcStat(f)
}

// parseNetstat reads the section want ("TcpExt", "IpExt", ...) of /proc/net/netstat (or
// /proc/net/snmp): pairs of lines, a header "Prefix: Name1 Name2 ..." followed by
// "Prefix: v1 v2 ...". Negative values (some snmp gauges) are skipped. A missing section gives
// an empty map.
func parseNetstat(r io.Reader, want string) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		header := sc.Text()
		if strings.TrimSpace(header) == "" {
			continue
		}
		if !sc.Scan() {
			return nil, fmt.Errorf("netstat line %d: header without values", n)
		}
		n++
		hp, names, ok1 := strings.Cut(header, ":")
		vp, values, ok2 := strings.Cut(sc.Text(), ":")
		if !ok1 || !ok2 || hp != vp {
			return nil, fmt.Errorf("netstat line %d: values do not follow header %q", n, hp)
		}
		if hp != want {
			continue
		}
		nf, vf := strings.Fields(names), strings.Fields(values)
		if len(nf) != len(vf) {
			return nil, fmt.Errorf("netstat line %d: %s has %d names but %d values", n, hp, len(nf), len(vf))
		}
		for i, name := range nf {
			if v, err := strconv.ParseUint(vf[i], 10, 64); err == nil {
				out[name] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading netstat: %w", err)
	}
	return out, nil
}

func readNetstat(path, want string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetstat(f, want)
}
