package collector

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/ebpf"
	"github.com/tmwarden/tmwarden/ebpf/ebpftest"
)

// ebpfChildEnv makes the test binary build the eBPF collectors and print their statuses
// instead of running tests; the parent starts it as an unprivileged user.
const ebpfChildEnv = "TMWARDEN_COLLECTOR_EBPF_CHILD"

func init() {
	if os.Getenv(ebpfChildEnv) == "collect" {
		ebpfChild()
		os.Exit(0)
	}
}

type ebpfChildResult struct {
	Name          string
	FactoryErr    string
	FactoryDegrad bool
	Status        *tmwardenv1.CollectorStatus
	Histograms    int
}

func ebpfChild() {
	var out []ebpfChildResult
	for _, reg := range Registrations() {
		if !strings.HasPrefix(reg.Name, "ebpf_") {
			continue
		}
		res := ebpfChildResult{Name: reg.Name}
		c, err := reg.New(Options{Config: DefaultConfig()})
		if err != nil {
			res.FactoryErr, res.FactoryDegrad = err.Error(), IsDegraded(err)
		}
		if c != nil {
			r := &tmwardenv1.Report{}
			res.Status = StatusOf(reg.Name, c.Collect(context.Background(), r))
			res.Histograms = len(r.Histograms) + len(r.Retransmits)
			if cl, ok := c.(Closer); ok {
				cl.Close()
			}
		}
		out = append(out, res)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func TestEBPFCollectorsWithoutPrivilegesReportWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileges forbid it: starting a child as another user needs root")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go test binary lives in a root-only directory; nobody needs a copy it can execute.
	dir, err := os.MkdirTemp("", "tmwarden-collector-ebpf-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "collector.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = []string{ebpfChildEnv + "=collect"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	var results []ebpfChildResult
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	if len(results) != 3 {
		t.Fatalf("child built %d eBPF collectors, want 3: %+v", len(results), results)
	}
	for _, res := range results {
		t.Logf("%s as nobody: factory %q; status %v: %s", res.Name, res.FactoryErr, res.Status.GetState(), res.Status.GetReason())
		if !res.FactoryDegrad {
			t.Errorf("%s: factory error %q, want a DegradedError with a usable collector", res.Name, res.FactoryErr)
		}
		if res.Status.GetState() != tmwardenv1.CollectorStatus_STATE_FAILED || !strings.Contains(res.Status.GetReason(), "unavailable") ||
			!strings.Contains(res.Status.GetReason(), "CAP_BPF") {
			t.Errorf("%s: status %v %q, want FAILED saying the probe is unavailable for lack of CAP_BPF", res.Name, res.Status.GetState(), res.Status.GetReason())
		}
		if res.Histograms != 0 {
			t.Errorf("%s: reported %d rows without a probe", res.Name, res.Histograms)
		}
	}
}

// newEBPFCollectorOrSkip builds an eBPF collector; it skips only when the kernel or the
// test's privileges forbid loading the probe.
func newEBPFCollectorOrSkip(t *testing.T, f Factory) Collector {
	t.Helper()
	c, err := f(Options{Config: DefaultConfig()})
	if c == nil {
		t.Fatalf("factory returned no collector: %v", err)
	}
	t.Cleanup(func() { c.(Closer).Close() })
	st := c.(probeStatuser).ProbeStatus()
	switch {
	case st.State == ebpf.StateLoaded:
	case strings.Contains(st.Reason, "not permitted"):
		t.Skipf("privileges forbid loading the probe: %v", st)
	case st.State == ebpf.StateUnavailable && strings.Contains(st.Reason, "kernel"):
		t.Skipf("the kernel forbids loading the probe: %v", st)
	default:
		t.Fatalf("probe not loaded: %v (factory: %v)", st, err)
	}
	return c
}

func collectOnce(t *testing.T, c Collector) *tmwardenv1.Report {
	t.Helper()
	r := &tmwardenv1.Report{}
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatalf("collect: %v", err)
	}
	return r
}

func TestEBPFRunQueueReportsOwnCgroupDelta(t *testing.T) {
	c := newEBPFCollectorOrSkip(t, newEBPFRunQueueCollector)
	hier, err := ebpf.DetectCgroupHierarchy("/sys")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own, err := ebpf.ParseProcCgroup(f, hier.V1CPU)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ebpf.CgroupID(filepath.Join(hier.Root, own))
	if err != nil {
		t.Fatal(err)
	}

	collectOnce(t, c)
	ebpftest.ContendOneCPU(t, 4, 500*time.Millisecond)
	r := collectOnce(t, c)

	var mine *tmwardenv1.LatencyHistogram
	for i, h := range r.Histograms {
		if h.Kind != tmwardenv1.LatencyHistogram_KIND_RUNQUEUE {
			t.Errorf("histogram %d has kind %v, want RUNQUEUE", i, h.Kind)
		}
		if i > 0 && h.SumMicroseconds > r.Histograms[i-1].SumMicroseconds {
			t.Errorf("histogram %d (%s) waited more than the one before it: the worst cgroups must come first", i, h.Target)
		}
		if h.CgroupId == id {
			mine = h
		}
	}
	if mine == nil {
		t.Fatalf("no run-queue histogram for the test's cgroup %s (id %d) in %v", own, id, r.Histograms)
	}
	t.Logf("cgroup %q (id %d): %d waits, %.0f us, buckets %v", mine.Target, mine.CgroupId, mine.Count, mine.SumMicroseconds, mine.Buckets)
	if mine.Target != own || mine.Count < 20 {
		t.Errorf("own cgroup histogram: target %q count %d, want %q with at least 20 waits", mine.Target, mine.Count, own)
	}
	var sum uint64
	for _, n := range mine.Buckets {
		sum += n
	}
	if sum != mine.Count {
		t.Errorf("buckets add up to %d, count is %d", sum, mine.Count)
	}
}

func TestEBPFBlockIOReportsDeviceDelta(t *testing.T) {
	c := newEBPFCollectorOrSkip(t, newEBPFBlockIOCollector)
	dir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	disk := diskName(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if disk == "" {
		t.Skipf("%s is not on a plain disk or partition (tmpfs, overlay or device-mapper), so its IO has no single device to look for", dir)
	}

	collectOnce(t, c)
	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	const writes = 16
	for range writes {
		rand.Read(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	r := collectOnce(t, c)
	for _, h := range r.Histograms {
		if h.Kind == tmwardenv1.LatencyHistogram_KIND_BLOCK_IO && h.Target == disk {
			t.Logf("%s: %d requests, %.0f us, buckets %v", h.Target, h.Count, h.SumMicroseconds, h.Buckets)
			if h.Count < writes {
				t.Errorf("%s: %d requests after %d fsynced writes, want at least %d", disk, h.Count, writes, writes)
			}
			return
		}
	}
	t.Errorf("no block-IO histogram for %s after fsynced writes: %v", disk, r.Histograms)
}

// diskName returns the name of the disk behind a /sys/dev/block entry (the parent of a
// partition), or "" for stacked devices.
func diskName(sys string) string {
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
		real = filepath.Dir(real)
	}
	if slaves, _ := os.ReadDir(filepath.Join(real, "slaves")); len(slaves) > 0 {
		return ""
	}
	return filepath.Base(real)
}

func TestEBPFTCPRetransReportsRemoteDelta(t *testing.T) {
	c := newEBPFCollectorOrSkip(t, newEBPFTCPRetransCollector)
	addr := ebpftest.FullListener(t)
	collectOnce(t, c)

	// The listener's accept queue is full: the SYN is dropped and retransmitted after 1 s.
	if conn, err := net.DialTimeout("tcp", addr.String(), 1500*time.Millisecond); err == nil {
		conn.Close()
	}
	r := collectOnce(t, c)
	var got uint64
	for _, rt := range r.Retransmits {
		if rt.RemoteAddress == addr.Addr().String() {
			got = rt.Retransmits
		}
	}
	t.Logf("retransmits to %s: %d", addr.Addr(), got)
	if got < 1 {
		t.Fatalf("no retransmits reported for %s: %v", addr.Addr(), r.Retransmits)
	}
	// Deltas: a quiet interval reports nothing for that address.
	for _, rt := range collectOnce(t, c).Retransmits {
		if rt.RemoteAddress == addr.Addr().String() {
			t.Errorf("quiet interval reported %d retransmits to %s, want none", rt.Retransmits, addr.Addr())
		}
	}
}
