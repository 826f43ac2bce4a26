package collector

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/ebpf"
)

// parseProcCgroup reads /proc/PID/cgroup; every process has at least one line.
func parseProcCgroup(r io.Reader) ([]ebpf.CgroupLine, error) {
	lines, err := ebpf.ParseProcCgroupLines(r)
	if err == nil && len(lines) == 0 {
		err = errors.New("cgroup: empty")
	}
	return lines, err
}

// primaryCgroup is the path reported for a process: the v1 cpu hierarchy's where cgroup v1
// runs the CPU controller, else the unified one.
func primaryCgroup(lines []ebpf.CgroupLine) string {
	if p, _ := ebpf.V1Path(lines, "cpu"); p != "" {
		return p
	}
	if p, ok := ebpf.UnifiedPath(lines); ok {
		return p
	}
	if p, _ := ebpf.V1Path(lines, "memory"); p != "" {
		return p
	}
	return lines[0].Path
}

var (
	// podUID matches kubelet's pod cgroup in both drivers: cgroupfs "pod<uid>" and systemd
	// "kubepods-burstable-pod<uid with _ for ->.slice".
	podUIDRe = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
	// containerRe matches the container's own cgroup (the last element): systemd scopes
	// "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope", or a bare id under cgroupfs.
	containerRe = regexp.MustCompile(`^(?:cri-containerd-|crio-|docker-|containerd-|libpod-)?([0-9a-f]{64})(?:\.scope)?$`)
	// yarnContainerRe matches YARN's LinuxContainerExecutor cgroup "container_<epoch>_<app>_<attempt>_<n>".
	yarnContainerRe = regexp.MustCompile(`^(container_(?:e\d+_)?\d+_\d+_\d+_\d+)$`)
)

// containerFromCgroup extracts the container id and the Kubernetes pod uid from a cgroup path.
// Either is "" when the path does not say.
func containerFromCgroup(p string) (containerID, podUID string) {
	if m := podUIDRe.FindStringSubmatch(p); m != nil {
		podUID = strings.ReplaceAll(m[1], "_", "-")
	}
	base := path.Base(p)
	if strings.HasPrefix(base, "crio-conmon-") {
		return "", podUID // cri-o's monitor process, not the container
	}
	if m := containerRe.FindStringSubmatch(base); m != nil {
		containerID = m[1]
	} else if m := yarnContainerRe.FindStringSubmatch(base); m != nil {
		containerID = m[1]
	}
	return containerID, podUID
}

// parseFlatKeyed reads cgroup "key value" files (cpu.stat, memory.stat).
func parseFlatKeyed(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: %q is not \"key value\"", n, sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, f[0], err)
		}
		out[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// parseCPUMax reads cgroup v2 cpu.max ("max 100000" or "quota period") as cores; 0 is no limit.
func parseCPUMax(r io.Reader) (float64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("cpu.max: %q is not \"quota period\"", strings.TrimSpace(string(b)))
	}
	if f[0] == "max" {
		return 0, nil
	}
	q, err1 := strconv.ParseFloat(f[0], 64)
	p, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, fmt.Errorf("cpu.max: bad numbers in %q", strings.TrimSpace(string(b)))
	}
	return q / p, nil
}

// parseSingleValue reads a one-number cgroup file; "max" (v2 unlimited) is returned as 0, and
// so are v1's huge "unlimited" values and -1.
func parseSingleValue(r io.Reader) (uint64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" || s == "-1" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q: %w", s, err)
	}
	if v >= math.MaxInt64/4096*4096-4096 { // v1 memory.limit_in_bytes when unlimited
		return 0, nil
	}
	return v, nil
}

// cgroupSample is one reading of a cgroup's cumulative counters.
type cgroupSample struct {
	at                        time.Time
	usageNs, throttledNs      uint64
	periods, throttledPeriods uint64
	psi                       [len(psiResources)]*psiFile
}

// cgroupCollector reports CPU, throttling, memory and pressure for the cgroups of the
// TaskManagers that discovery put in the report, so it runs after the taskmanagers row.
type cgroupCollector struct {
	proc string
	root string // the cgroup filesystem root, usually /sys/fs/cgroup
	prev map[string]cgroupSample
	now  func() time.Time
}

func newCgroupCollector(o Options) (Collector, error) {
	sys := o.Config.Paths.SysFS
	if sys == "" {
		sys = "/sys"
	}
	return &cgroupCollector{
		proc: procRoot(o.Config.Paths),
		root: filepath.Join(sys, "fs", "cgroup"),
		prev: map[string]cgroupSample{},
		now:  time.Now,
	}, nil
}

func (c *cgroupCollector) Collect(_ context.Context, r *tmwardenv1.Report) error {
	var problems []string
	next := map[string]cgroupSample{}
	for _, tm := range r.TaskManagers {
		if tm.Pid <= 0 {
			continue // static target: no process to look at
		}
		b, err := os.ReadFile(filepath.Join(c.proc, strconv.Itoa(int(tm.Pid)), "cgroup"))
		if err != nil {
			if vanished(err) {
				problems = append(problems, fmt.Sprintf("pid %d exited before its cgroup was read", tm.Pid))
			} else {
				problems = append(problems, fmt.Sprintf("pid %d: %v", tm.Pid, err))
			}
			continue
		}
		lines, err := parseProcCgroup(strings.NewReader(string(b)))
		if err != nil {
			problems = append(problems, fmt.Sprintf("pid %d: %v", tm.Pid, err))
			continue
		}
		key := primaryCgroup(lines)
		if _, done := next[key]; done {
			continue
		}
		st, sample, probs := c.read(key, lines)
		for _, p := range probs {
			problems = append(problems, fmt.Sprintf("cgroup %s: %s", key, p))
		}
		if st == nil {
			continue
		}
		if prev, ok := c.prev[key]; ok {
			fillCgroupRates(st, prev, sample)
		} else {
			fillCgroupRates(st, cgroupSample{}, sample)
		}
		next[key] = sample
		st.TaskManager = true
		st.ContainerId, st.PodUid = containerFromCgroup(key)
		st.PodName, st.PodNamespace = tm.PodName, tm.PodNamespace
		r.Cgroups = append(r.Cgroups, st)
	}
	c.prev = next // cgroups of TaskManagers that left are forgotten
	if len(problems) > 0 {
		return Degradedf("cgroups: %s", strings.Join(problems, "; "))
	}
	return nil
}

// read takes one reading of a cgroup. Missing usage files are problems; limits and pressure
// are optional (not every kernel or hierarchy has them).
func (c *cgroupCollector) read(key string, lines []ebpf.CgroupLine) (*tmwardenv1.CgroupStats, cgroupSample, []string) {
	s := cgroupSample{at: c.now()}
	st := &tmwardenv1.CgroupStats{Path: key}
	var probs []string
	usable := false
	need := func(what string, err error) {
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s: %v", what, err))
		} else if what == "cpuacct.usage" || what == "cpu.stat" || strings.HasPrefix(what, "memory.") {
			usable = true
		}
	}
	unified, hasUnified := ebpf.UnifiedPath(lines)
	cpuPath, cpuCtl := ebpf.V1Path(lines, "cpu")
	memPath, memCtl := ebpf.V1Path(lines, "memory")
	acctPath, acctCtl := ebpf.V1Path(lines, "cpuacct")
	v2Root := c.root
	if _, err := os.Stat(filepath.Join(c.root, "cgroup.controllers")); err != nil {
		v2Root = filepath.Join(c.root, "unified") // hybrid: v2 mounted beside the v1 controllers
	}

	if cpuPath == "" && memPath == "" && hasUnified {
		st.Version = 2
		dir := filepath.Join(v2Root, unified)
		stat, err := readFlat(filepath.Join(dir, "cpu.stat"))
		need("cpu.stat", err)
		if err == nil {
			s.usageNs = stat["usage_usec"] * 1000
			s.throttledNs = stat["throttled_usec"] * 1000
			s.periods, s.throttledPeriods = stat["nr_periods"], stat["nr_throttled"]
		}
		if f, err := os.Open(filepath.Join(dir, "cpu.max")); err == nil {
			st.CpuLimitCores, err = parseCPUMax(f)
			f.Close()
			need("cpu.max", err)
		}
		st.MemoryUsageBytes, err = readValue(filepath.Join(dir, "memory.current"))
		need("memory.current", err)
		if v, err := readValue(filepath.Join(dir, "memory.max")); err == nil {
			st.MemoryLimitBytes = v
		}
	} else {
		st.Version = 1
		if cpuPath != "" {
			dir := c.v1Dir(cpuCtl, "cpu", cpuPath)
			stat, err := readFlat(filepath.Join(dir, "cpu.stat"))
			need("cpu.stat", err)
			if err == nil {
				s.periods, s.throttledPeriods = stat["nr_periods"], stat["nr_throttled"]
				s.throttledNs = stat["throttled_time"]
			}
			quota, errQ := readSigned(filepath.Join(dir, "cpu.cfs_quota_us"))
			period, errP := readSigned(filepath.Join(dir, "cpu.cfs_period_us"))
			if errQ == nil && errP == nil && quota > 0 && period > 0 {
				st.CpuLimitCores = float64(quota) / float64(period)
			}
		}
		if acctPath == "" {
			acctPath, acctCtl = cpuPath, cpuCtl
		}
		var err error
		s.usageNs, err = readValue(filepath.Join(c.v1Dir(acctCtl, "cpuacct", acctPath), "cpuacct.usage"))
		need("cpuacct.usage", err)
		if memPath != "" {
			dir := c.v1Dir(memCtl, "memory", memPath)
			st.MemoryUsageBytes, err = readValue(filepath.Join(dir, "memory.usage_in_bytes"))
			need("memory.usage_in_bytes", err)
			if v, err := readValue(filepath.Join(dir, "memory.limit_in_bytes")); err == nil {
				st.MemoryLimitBytes = v
			}
		}
	}

	// Pressure lives in the unified hierarchy, also on hybrid hosts, and needs PSI. A hybrid
	// host that leaves the process in the unified root has no pressure of its own for it.
	if hasUnified && (st.Version == 2 || unified != "/") {
		dir := filepath.Join(v2Root, unified)
		for i, res := range psiResources {
			f, err := readPSI(filepath.Join(dir, res+".pressure"))
			if err != nil {
				if !psiUnsupported(err) {
					probs = append(probs, fmt.Sprintf("%s.pressure: %v", res, err))
				}
				continue
			}
			s.psi[i] = &f
		}
	}
	if !usable {
		return nil, s, probs // nothing usable: the cgroup is gone or unreadable
	}
	return st, s, probs
}

// v1Dir finds a v1 hierarchy's directory: mounted under the joined controller names
// ("cpu,cpuacct", usually with a "cpu" symlink) or under the controller alone.
func (c *cgroupCollector) v1Dir(controllers []string, want, p string) string {
	for _, name := range []string{strings.Join(controllers, ","), want} {
		dir := filepath.Join(c.root, name)
		if _, err := os.Stat(dir); err == nil {
			return filepath.Join(dir, p)
		}
	}
	return filepath.Join(c.root, want, p)
}

// fillCgroupRates sets the rates over the interval between two readings; a zero prev (first
// reading) leaves them unset.
func fillCgroupRates(st *tmwardenv1.CgroupStats, a, b cgroupSample) {
	var elapsed time.Duration
	if !a.at.IsZero() {
		elapsed = b.at.Sub(a.at)
	}
	if elapsed > 0 {
		secs := elapsed.Seconds()
		if b.usageNs >= a.usageNs {
			st.CpuUsageCores = float64(b.usageNs-a.usageNs) / 1e9 / secs
		}
		if b.throttledNs >= a.throttledNs {
			st.ThrottledSecondsPerSecond = float64(b.throttledNs-a.throttledNs) / 1e9 / secs
		}
		if b.periods > a.periods && b.throttledPeriods >= a.throttledPeriods {
			st.ThrottledShare = float64(b.throttledPeriods-a.throttledPeriods) / float64(b.periods-a.periods)
		}
	}
	for i, f := range b.psi {
		if f == nil {
			continue
		}
		var prev *psiFile
		if elapsed > 0 {
			prev = a.psi[i]
		}
		ps := psiStat(*f, prev, elapsed)
		switch psiResources[i] {
		case "cpu":
			st.CpuPressure = ps
		case "memory":
			st.MemoryPressure = ps
		case "io":
			st.IoPressure = ps
		}
	}
}

func readFlat(p string) (map[string]uint64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := parseFlatKeyed(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

func readValue(p string) (uint64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	v, err := parseSingleValue(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return v, nil
}

func readSigned(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return v, nil
}
