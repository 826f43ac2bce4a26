package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the cgroup v1 controllers are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// machine is what the lab set up on this machine: the TaskManager's and the neighbour's
// cgroups, the network namespace and veth pair the TaskManager's traffic crosses, and the block
// device its state lives on. Names carry Prefix so they are recognisably the lab's.
type machine struct {
	prefix            string
	nftTable          string // nftables identifiers take no '-'
	tmCgroup, noisyCG string // cgroup names (one level under each controller's root)
	netns             string // name; /var/run/netns/<name>
	vethHost, vethNS  string
	hostIP, nsIP      string
	blockDev          string // MAJ:MIN of the device under the state directory
}

// tmShares is the TaskManager cgroup's cpu.shares; the CPU neighbour gets 8 times as many.
const tmShares = 8192

var tmControllers = []string{"cpu", "cpuacct", "memory", "blkio"}

func cgPath(controller, name, file string) string {
	return filepath.Join(cgroupRoot, controller, name, file)
}

func writeFile(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
		return fmt.Errorf("writing %q to %s: %w", v, path, err)
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setupMachine creates the cgroups, the namespace and the veth pair. teardown undoes what was
// done, also after a partial setup or an earlier run that was killed.
func setupMachine(ctx context.Context, prefix, stateDir string) (*machine, error) {
	if len(prefix) == 0 || len(prefix) > 12 {
		return nil, fmt.Errorf("prefix %q: want 1 to 12 characters (interface names are at most 15)", prefix)
	}
	// Each prefix gets its own /30, so two labs (make lab and its test) never share a route.
	h := fnv.New32a()
	h.Write([]byte(prefix))
	n := h.Sum32() % (250 * 64)
	m := &machine{prefix: prefix, nftTable: strings.ReplaceAll(prefix, "-", "_"), tmCgroup: prefix + "-tm", noisyCG: prefix + "-noisy", netns: prefix + "-ns",
		vethHost: prefix + "-v0", vethNS: prefix + "-v1",
		hostIP: fmt.Sprintf("10.216.%d.%d", n/64, (n%64)*4+1), nsIP: fmt.Sprintf("10.216.%d.%d", n/64, (n%64)*4+2)}
	m.teardown(ctx) // leftovers of a killed run
	for _, c := range tmControllers {
		if _, err := os.Stat(filepath.Join(cgroupRoot, c)); err != nil {
			return nil, fmt.Errorf("cgroup v1 controller %s is not mounted at %s: %w", c, cgroupRoot, err)
		}
		if err := os.MkdirAll(filepath.Join(cgroupRoot, c, m.tmCgroup), 0o755); err != nil {
			return nil, err
		}
	}
	for _, c := range []string{"cpu", "cpuacct"} {
		if err := os.MkdirAll(filepath.Join(cgroupRoot, c, m.noisyCG), 0o755); err != nil {
			return nil, err
		}
	}
	// The TaskManager has a large CPU request (cpu.shares 8192, a Guaranteed pod's 8 CPUs):
	// whatever else runs on the machine outside the lab then barely moves its speed, so the
	// quiet baseline stays quiet enough to compare with, while a neighbour with still more
	// shares, or a quota, does slow it.
	if err := writeFile(cgPath("cpu", m.tmCgroup, "cpu.shares"), strconv.Itoa(tmShares)); err != nil {
		m.teardown(ctx)
		return nil, err
	}
	steps := [][]string{
		{"ip", "netns", "add", m.netns},
		{"ip", "link", "add", m.vethHost, "type", "veth", "peer", "name", m.vethNS},
		{"ip", "link", "set", m.vethNS, "netns", m.netns},
		{"ip", "addr", "add", m.hostIP + "/30", "dev", m.vethHost},
		{"ip", "link", "set", m.vethHost, "up"},
		{"ip", "-n", m.netns, "addr", "add", m.nsIP + "/30", "dev", m.vethNS},
		{"ip", "-n", m.netns, "link", "set", m.vethNS, "up"},
		{"ip", "-n", m.netns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			m.teardown(ctx)
			return nil, fmt.Errorf("network namespace: %w", err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(stateDir, &st); err != nil {
		m.teardown(ctx)
		return nil, err
	}
	dev, err := wholeDisk(unix.Major(st.Dev), unix.Minor(st.Dev))
	if err != nil {
		m.teardown(ctx)
		return nil, err
	}
	m.blockDev = dev
	return m, nil
}

// wholeDisk maps a partition's device number to its disk's: blkio throttles whole devices.
func wholeDisk(major, minor uint32) (string, error) {
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		b, err := os.ReadFile(filepath.Join(sys, "..", "dev"))
		if err != nil {
			return "", fmt.Errorf("the disk of partition %d:%d: %w", major, minor, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if _, err := os.Stat(sys); err != nil {
		return "", fmt.Errorf("state directory's device %d:%d is not a block device (tmpfs or overlay?): %w", major, minor, err)
	}
	return fmt.Sprintf("%d:%d", major, minor), nil
}

// teardown removes everything setupMachine made; errors are ignored because parts may be gone.
func (m *machine) teardown(ctx context.Context) {
	_ = run(ctx, "nft", "delete", "table", "inet", m.nftTable)
	_ = run(ctx, "ip", "link", "del", m.vethHost)
	_ = run(ctx, "ip", "netns", "del", m.netns)
	for _, c := range tmControllers {
		removeCgroup(filepath.Join(cgroupRoot, c, m.tmCgroup))
	}
	for _, c := range []string{"cpu", "cpuacct"} {
		removeCgroup(filepath.Join(cgroupRoot, c, m.noisyCG))
	}
}

// removeCgroup moves any process left in a cgroup to the root and removes it.
func removeCgroup(dir string) {
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
		root := filepath.Join(filepath.Dir(dir), "cgroup.procs")
		for _, pid := range strings.Fields(string(b)) {
			_ = os.WriteFile(root, []byte(pid), 0o644)
		}
	}
	_ = os.Remove(dir)
}

// joinTM moves a process (all its threads) into the TaskManager's cgroups.
func (m *machine) joinTM(pid int) error {
	for _, c := range tmControllers {
		if err := writeFile(cgPath(c, m.tmCgroup, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// tmCgroupProcs lists the TaskManager cgroups' cgroup.procs files.
func (m *machine) tmCgroupProcs() []string {
	var out []string
	for _, c := range tmControllers {
		out = append(out, cgPath(c, m.tmCgroup, "cgroup.procs"))
	}
	return out
}

// tmCPUSeconds is the TaskManager cgroup's CPU time (cpuacct.usage).
func (m *machine) tmCPUSeconds() (float64, error) {
	b, err := os.ReadFile(cgPath("cpuacct", m.tmCgroup, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	return ns / 1e9, err
}

// Fault is one real fault: Inject puts it on the machine and returns how to take it away.
type Fault struct {
	Name string
	// What the lab expects: the cause, the culprit (empty: none expected), and whether the
	// verdict belongs to the TaskManager rather than the node.
	Cause, Culprit string
	TaskManager    bool
	Describe       string
	Inject         func(ctx context.Context) (remove func() error, err error)
}

// faultEnv is what the faults act on.
type faultEnv struct {
	m *machine
	// tmMetrics is the stand-in's endpoint (for the GC storm).
	tmMetrics string
	// quietCores is the TaskManager's CPU use in the quiet baseline.
	quietCores float64
	cpus       int
}

func (e *faultEnv) faults() []Fault {
	m := e.m
	return []Fault{
		{
			Name: "cpu-neighbour", Cause: "cpu_contention", Culprit: "/" + m.noisyCG,
			Describe: fmt.Sprintf("stress-ng --cpu %d in cgroup %s (cpu.shares %d: a neighbour with 8 times the TaskManager's CPU request)", e.cpus, m.noisyCG, 8*tmShares),
			Inject: func(ctx context.Context) (func() error, error) {
				if err := writeFile(cgPath("cpu", m.noisyCG, "cpu.shares"), strconv.Itoa(8*tmShares)); err != nil {
					return nil, err
				}
				script := fmt.Sprintf("echo $$ > %s && echo $$ > %s && exec stress-ng --cpu %d --cpu-method matrixprod --quiet",
					cgPath("cpu", m.noisyCG, "cgroup.procs"), cgPath("cpuacct", m.noisyCG, "cgroup.procs"), e.cpus)
				cmd := exec.Command("sh", "-c", script)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := cmd.Start(); err != nil {
					return nil, fmt.Errorf("stress-ng: %w", err)
				}
				return func() error {
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
					done := make(chan struct{})
					go func() { _ = cmd.Wait(); close(done) }()
					select {
					case <-done:
					case <-time.After(5 * time.Second):
						_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
						<-done
					}
					return nil
				}, nil
			},
		},
		{
			Name: "cpu-quota", Cause: "cpu_throttled",
			Describe: fmt.Sprintf("cpu.cfs_quota_us on %s: 30%% of the TaskManager's quiet CPU use (%.2f cores)", m.tmCgroup, e.quietCores),
			Inject: func(context.Context) (func() error, error) {
				quota := max(2000, int(0.3*e.quietCores*100000))
				if err := writeFile(cgPath("cpu", m.tmCgroup, "cpu.cfs_period_us"), "100000"); err != nil {
					return nil, err
				}
				if err := writeFile(cgPath("cpu", m.tmCgroup, "cpu.cfs_quota_us"), strconv.Itoa(quota)); err != nil {
					return nil, err
				}
				return func() error { return writeFile(cgPath("cpu", m.tmCgroup, "cpu.cfs_quota_us"), "-1") }, nil
			},
		},
		{
			Name: "disk-throttle", Cause: "disk",
			Describe: fmt.Sprintf("blkio.throttle.write_iops_device %s 10 and write_bps_device 256 KiB/s on %s", m.blockDev, m.tmCgroup),
			Inject: func(context.Context) (func() error, error) {
				set := func(iops, bps string) error {
					if err := writeFile(cgPath("blkio", m.tmCgroup, "blkio.throttle.write_iops_device"), m.blockDev+" "+iops); err != nil {
						return err
					}
					return writeFile(cgPath("blkio", m.tmCgroup, "blkio.throttle.write_bps_device"), m.blockDev+" "+bps)
				}
				if err := set("10", "262144"); err != nil {
					return nil, err
				}
				return func() error { return set("0", "0") }, nil
			},
		},
		{
			Name: "network-loss", Cause: "network",
			Describe: fmt.Sprintf("nftables in %s: drop 30%% of packets arriving on %s (numgen random; no netem qdisc in this kernel)", m.netns, m.vethNS),
			Inject: func(ctx context.Context) (func() error, error) {
				// Dropped where they arrive, after the sender let them go: a drop in the sender's
				// own output hook fails the send locally and TCP counts no retransmission.
				nft := func(ctx context.Context, args ...string) error {
					return run(ctx, "ip", append([]string{"netns", "exec", m.netns, "nft"}, args...)...)
				}
				cmds := [][]string{
					{"add", "table", "inet", m.nftTable},
					{"add", "chain", "inet", m.nftTable, "in", "{ type filter hook input priority 0; }"},
					{"add", "rule", "inet", m.nftTable, "in", "iifname", m.vethNS, "numgen", "random", "mod", "100", "<", "30", "drop"},
				}
				for _, c := range cmds {
					if err := nft(ctx, c...); err != nil {
						_ = nft(ctx, "delete", "table", "inet", m.nftTable)
						return nil, err
					}
				}
				return func() error { return nft(context.Background(), "delete", "table", "inet", m.nftTable) }, nil
			},
		},
		{
			Name: "memory-squeeze", Cause: "memory",
			Describe: fmt.Sprintf("memory.limit_in_bytes on %s squeezed to its anonymous memory plus a third of its cached state", m.tmCgroup),
			Inject: func(context.Context) (func() error, error) {
				rss, cache, err := memStat(cgPath("memory", m.tmCgroup, "memory.stat"))
				if err != nil {
					return nil, err
				}
				limit := rss + cache/3 + 8<<20
				var last error
				// The kernel refuses a limit it cannot reclaim down to (EBUSY): step up until it holds.
				for range 8 {
					if last = writeFile(cgPath("memory", m.tmCgroup, "memory.limit_in_bytes"), strconv.FormatUint(limit, 10)); last == nil {
						break
					}
					limit += cache / 8
				}
				if last != nil {
					return nil, last
				}
				return func() error { return writeFile(cgPath("memory", m.tmCgroup, "memory.limit_in_bytes"), "-1") }, nil
			},
		},
		{
			Name: "gc-storm", Cause: "gc", TaskManager: true,
			Describe: "the stand-in stops its own world for 600 ms of every second and reports it as GC time",
			Inject: func(ctx context.Context) (func() error, error) {
				set := func(on string) error {
					req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, "http://"+e.tmMetrics+"/lab/gc-storm?on="+on, nil)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return err
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("gc-storm: %s", resp.Status)
					}
					return nil
				}
				if err := set("true"); err != nil {
					return nil, err
				}
				return func() error { return set("false") }, nil
			},
		},
	}
}

// memStat reads total_rss and total_cache from a v1 memory.stat.
func memStat(path string) (rss, cache uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	found := 0
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "total_rss":
			rss, found = n, found+1
		case "total_cache":
			cache, found = n, found+1
		}
	}
	if found < 2 {
		return 0, 0, errors.Join(sc.Err(), fmt.Errorf("%s: no total_rss/total_cache", path))
	}
	return rss, cache, sc.Err()
}
