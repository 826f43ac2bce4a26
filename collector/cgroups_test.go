package collector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector/collectortest"
	"github.com/tmwarden/tmwarden/ebpf"
)

func TestParseCgroupFiles(t *testing.T) {
	f, _ := os.Open("testdata/cgroups/v2/cpu.stat")
	defer f.Close()
	stat, err := parseFlatKeyed(f)
	if err != nil {
		t.Fatal(err)
	}
	if stat["usage_usec"] != 5000000 || stat["nr_throttled"] != 100 || stat["core_sched.force_idle_usec"] != 0 {
		t.Errorf("cpu.stat = %v", stat)
	}
	for file, want := range map[string]float64{"testdata/cgroups/v2/cpu.max": 2, "testdata/cgroups/v2-cpu.max-unlimited": 0} {
		f, _ := os.Open(file)
		got, err := parseCPUMax(f)
		f.Close()
		if err != nil || got != want {
			t.Errorf("%s: %v cores, %v; want %v", file, got, err, want)
		}
	}
	f2, _ := os.Open("testdata/cgroups/bad-cpu.max")
	defer f2.Close()
	if _, err := parseCPUMax(f2); err == nil || !strings.Contains(err.Error(), "cpu.max") {
		t.Errorf("bad cpu.max: err = %v", err)
	}
	f3, _ := os.Open("testdata/cgroups/bad-cpu.stat")
	defer f3.Close()
	if _, err := parseFlatKeyed(f3); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad cpu.stat: err = %v", err)
	}
	for in, want := range map[string]uint64{"max\n": 0, "-1\n": 0, "9223372036854771712\n": 0, "536870912\n": 536870912} {
		if got, err := parseSingleValue(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("parseSingleValue(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseSingleValue(strings.NewReader("lots\n")); err == nil {
		t.Error("parseSingleValue accepted a word")
	}
}

// fakeCgroupHost lays out a sysfs with the cgroup fixtures copied to path in the given
// hierarchy directories.
func fakeCgroupHost(t *testing.T, fixture, cgPath string, hierarchies ...string) (sys string) {
	t.Helper()
	sys = t.TempDir()
	for _, h := range hierarchies {
		dst := filepath.Join(sys, "fs", "cgroup", h, cgPath)
		copyFixtureTree(t, fixture, dst)
	}
	return sys
}

func newFakeCgroupCollector(t *testing.T, proc, sys string, clock *fakeClock) *cgroupCollector {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Paths.ProcFS, cfg.Paths.SysFS = proc, sys
	c, err := newCgroupCollector(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	cc := c.(*cgroupCollector)
	cc.now = clock.now
	return cc
}

func TestCgroupCollectorV2(t *testing.T) {
	const cg = "/kubepods.slice/kubepods-burstable.slice/pod1.slice/cri-containerd-abc.scope"
	sys := fakeCgroupHost(t, "testdata/cgroups/v2", cg, "")
	if err := os.WriteFile(filepath.Join(sys, "fs/cgroup/cgroup.controllers"), []byte("cpu memory io\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := fakeProc{t: t, root: t.TempDir()}
	proc.file(4242, "cgroup", []byte("0::"+cg+"\n"))
	clock := &fakeClock{t: time.Unix(1763700000, 0)}
	c := newFakeCgroupCollector(t, proc.root, sys, clock)
	report := func() *tmwardenv1.Report {
		return &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{
			{Pid: 4242, Cgroup: cg}, {ResourceId: "static, no pid", MetricsEndpoint: "10.0.0.1:9249"},
		}}
	}

	r := report()
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if len(r.Cgroups) != 1 {
		t.Fatalf("cgroups = %v, want one", r.Cgroups)
	}
	st := r.Cgroups[0]
	if st.Path != cg || st.Version != 2 || st.CpuLimitCores != 2 || st.MemoryUsageBytes != 1<<30 || st.MemoryLimitBytes != 2<<30 {
		t.Errorf("round 1 = %v", st)
	}
	approx(t, "cpu pressure some avg10", st.CpuPressure.GetSomeAvg10(), 0.25)
	if st.CpuUsageCores != 0 || st.CpuPressure.GetSomeShare() != 0 {
		t.Errorf("round 1 has rates before a second reading: %v", st)
	}

	dir := filepath.Join(sys, "fs/cgroup", cg)
	clock.t = clock.t.Add(5 * time.Second)
	if err := os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("usage_usec 12500000\nnr_periods 1050\nnr_throttled 125\nthrottled_usec 3000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.pressure"), []byte("some avg10=25.00 avg60=20.00 avg300=10.00 total=4000000\nfull avg10=5.00 avg60=4.00 avg300=2.00 total=1500000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = report()
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	st = r.Cgroups[0]
	approx(t, "cpu usage cores", st.CpuUsageCores, 1.5)
	approx(t, "throttled share", st.ThrottledShare, 0.5)
	approx(t, "throttled s/s", st.ThrottledSecondsPerSecond, 0.2)
	approx(t, "cpu pressure some share", st.CpuPressure.GetSomeShare(), 0.2)
	approx(t, "cpu pressure full share", st.CpuPressure.GetFullShare(), 0.1)
}

func TestCgroupCollectorV1Hybrid(t *testing.T) {
	const cg = "/kubepods/besteffort/pod3e2c7a4d-1b2c-4d5e-8f9a-0b1c2d3e4f5a/abc"
	// cpu and cpuacct co-mounted as "cpu,cpuacct"; memory alone; PSI in the unified hierarchy.
	sys := fakeCgroupHost(t, "testdata/cgroups/v1", cg, "cpu,cpuacct", "memory")
	copyFixtureTree(t, "testdata/cgroups/v2", filepath.Join(sys, "fs/cgroup/unified", cg))
	if err := os.WriteFile(filepath.Join(sys, "fs/cgroup/unified/cgroup.controllers"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	proc := fakeProc{t: t, root: t.TempDir()}
	proc.file(7, "cgroup", []byte("11:memory:"+cg+"\n10:cpu,cpuacct:"+cg+"\n1:name=systemd:"+cg+"\n0::"+cg+"\n"))
	clock := &fakeClock{t: time.Unix(1763700000, 0)}
	c := newFakeCgroupCollector(t, proc.root, sys, clock)

	r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{Pid: 7}}}
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	st := r.Cgroups[0]
	if st.Version != 1 || st.Path != cg || st.MemoryUsageBytes != 512<<20 || st.MemoryLimitBytes != 0 {
		t.Errorf("v1 = %v (an unlimited memory limit must read as 0)", st)
	}
	approx(t, "cpu limit cores", st.CpuLimitCores, 1.5)
	approx(t, "cpu pressure some avg60", st.CpuPressure.GetSomeAvg60(), 0.2)

	dir := filepath.Join(sys, "fs/cgroup/cpu,cpuacct", cg)
	clock.t = clock.t.Add(2 * time.Second)
	os.WriteFile(filepath.Join(dir, "cpuacct.usage"), []byte("6000000000\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("nr_periods 1020\nnr_throttled 110\nthrottled_time 2500000000\n"), 0o644)
	r = &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{Pid: 7}}}
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	st = r.Cgroups[0]
	approx(t, "v1 cpu usage cores", st.CpuUsageCores, 0.5)
	approx(t, "v1 throttled share", st.ThrottledShare, 0.5)
	approx(t, "v1 throttled s/s", st.ThrottledSecondsPerSecond, 0.25)
}

func TestCgroupCollectorDegrades(t *testing.T) {
	proc := fakeProc{t: t, root: t.TempDir()}
	proc.file(8, "cgroup", []byte("0::/gone.scope\n"))
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "fs/cgroup"), 0o755)
	os.WriteFile(filepath.Join(sys, "fs/cgroup/cgroup.controllers"), nil, 0o644)
	c := newFakeCgroupCollector(t, proc.root, sys, &fakeClock{t: time.Unix(1, 0)})
	// pid 9 exited after discovery; pid 8's cgroup directory is gone.
	r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{Pid: 9}, {Pid: 8}}}
	err := c.Collect(context.Background(), r)
	if !IsDegraded(err) {
		t.Fatalf("Collect = %v, want degraded", err)
	}
	for _, want := range []string{"pid 9 exited", "/gone.scope", "cpu.stat"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reason %q does not mention %q", err, want)
		}
	}
	if len(r.Cgroups) != 0 {
		t.Errorf("cgroups = %v, want none", r.Cgroups)
	}
}

// realCgroup creates a child of the test's own cgroup in every hierarchy that has controller
// cpu or memory (v1) or in the unified one (v2), with a CPU limit of 0.2 cores, and moves pid
// into it. It needs root and a writable cgroup filesystem. Its cleanup kills pid.
func realCgroup(t *testing.T, pid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating a cgroup needs root")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	lines, err := parseProcCgroup(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("tmwarden-test-%d", os.Getpid())
	var dirs []string
	t.Cleanup(func() {
		// This runs before the helper's own cleanup: the cgroup can only go once pid has exited.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := len(dirs) - 1; i >= 0; i-- {
			for try := 0; try < 50; try++ { // rmdir fails until the killed helper has left
				if err := os.Remove(dirs[i]); err == nil || errors.Is(err, fs.ErrNotExist) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	write := func(dir, file, v string) {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
			t.Skipf("cannot write %s/%s: %v", dir, file, err)
		}
	}
	mk := func(dir string) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Skipf("cannot create cgroup %s: %v", dir, err)
		}
		dirs = append(dirs, dir)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		p, _ := ebpf.UnifiedPath(lines)
		parent := filepath.Join("/sys/fs/cgroup", p)
		// A v2 cgroup with processes cannot enable controllers for children; such a parent
		// (a container's root) makes the test impossible here.
		write(parent, "cgroup.subtree_control", "+cpu +memory")
		dir := filepath.Join(parent, name)
		mk(dir)
		write(dir, "cpu.max", "20000 100000")
		write(dir, "memory.max", strconv.Itoa(512<<20))
		write(dir, "cgroup.procs", strconv.Itoa(pid))
		return
	}
	for _, ctl := range []string{"cpu", "cpuacct", "memory"} {
		p, ctls := ebpf.V1Path(lines, ctl)
		if ctls == nil {
			t.Skipf("no v1 %s hierarchy", ctl)
		}
		root := filepath.Join("/sys/fs/cgroup", strings.Join(ctls, ","))
		if _, err := os.Stat(root); err != nil {
			root = filepath.Join("/sys/fs/cgroup", ctl)
		}
		dir := filepath.Join(root, p, name)
		if _, err := os.Stat(dir); err == nil {
			continue // co-mounted with one done already
		}
		mk(dir)
		switch ctl {
		case "cpu":
			write(dir, "cpu.cfs_period_us", "100000")
			write(dir, "cpu.cfs_quota_us", "20000")
		case "memory":
			write(dir, "memory.limit_in_bytes", strconv.Itoa(512<<20))
		}
		write(dir, "cgroup.procs", strconv.Itoa(pid))
	}
}

// TestCgroupCollectorRealThrottling runs a busy stand-in TaskManager in a real cgroup limited
// to 0.2 cores: the collector must see the limit, the throttling and usage near the limit.
func TestCgroupCollectorRealThrottling(t *testing.T) {
	collectortest.HoldTaskManagerDiscovery(t)
	cmd := startFakeTaskManagerEnv(t, "127.0.0.1:0", []string{"TMWARDEN_TM_HELPER_SPIN=1"},
		"org.apache.flink.runtime.taskexecutor.TaskManagerRunner")
	realCgroup(t, cmd.Process.Pid)

	c, err := newCgroupCollector(Options{Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	tms := []*tmwardenv1.TaskManager{{Pid: int32(cmd.Process.Pid)}}
	if err := c.Collect(context.Background(), &tmwardenv1.Report{TaskManagers: tms}); err != nil {
		t.Fatalf("round 1: %v", err)
	}
	// On a loaded machine the busy loop may get less than its quota in a given second, and then
	// it is not throttled: take one-second rounds until one shows the quota biting (at most a
	// minute), checking in every round that usage never goes past the limit.
	var st *tmwardenv1.CgroupStats
	for deadline := time.Now().Add(time.Minute); ; {
		time.Sleep(time.Second)
		r := &tmwardenv1.Report{TaskManagers: tms}
		if err := c.Collect(context.Background(), r); err != nil {
			t.Fatalf("round: %v", err)
		}
		if len(r.Cgroups) != 1 {
			t.Fatalf("cgroups = %v", r.Cgroups)
		}
		st = r.Cgroups[0]
		t.Logf("v%d %s: %.3f cores of %.2f, throttled %.0f%% of periods, %.3f s/s, memory %d of %d bytes",
			st.Version, st.Path, st.CpuUsageCores, st.CpuLimitCores, st.ThrottledShare*100, st.ThrottledSecondsPerSecond, st.MemoryUsageBytes, st.MemoryLimitBytes)
		if st.CpuUsageCores > 0.3 {
			t.Fatalf("cpu usage %.3f cores, over the 0.2 limit", st.CpuUsageCores)
		}
		if st.ThrottledShare >= 0.2 || time.Now().After(deadline) {
			break
		}
	}
	approx(t, "cpu limit cores", st.CpuLimitCores, 0.2)
	if st.MemoryLimitBytes != 512<<20 || st.MemoryUsageBytes == 0 {
		t.Errorf("memory %d of %d, want some usage of 512 MiB", st.MemoryUsageBytes, st.MemoryLimitBytes)
	}
	if st.CpuUsageCores <= 0.02 {
		t.Errorf("cpu usage %.3f cores, want about the 0.2 limit", st.CpuUsageCores)
	}
	if st.ThrottledShare < 0.2 || st.ThrottledSecondsPerSecond <= 0 {
		t.Errorf("throttled share %.2f, %.3f s/s; a busy loop at 0.2 cores must be throttled in most periods", st.ThrottledShare, st.ThrottledSecondsPerSecond)
	}
}
