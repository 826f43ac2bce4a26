package ebpf

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tmwarden/tmwarden/ebpf/ebpftest"
)

// These tests load the real probes into the running kernel. They skip only when the kernel or
// the test's privileges forbid loading, and say which.

func skipIfForbidden(t *testing.T, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotPermitted):
		t.Skipf("privileges forbid it (run as root, or with CAP_BPF and CAP_PERFMON): %v", err)
	case errors.Is(err, ErrKernelUnsupported):
		t.Skipf("the kernel forbids it: %v", err)
	default:
		t.Fatal(err)
	}
}

// forEachMode runs f with tp_btf and with the raw_tp fallback forced.
func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	for _, mode := range []string{ModeTPBTF, ModeRawTP} {
		t.Run(mode, func(t *testing.T) {
			if mode == ModeRawTP {
				modesOverride = []string{ModeRawTP}
				t.Cleanup(func() { modesOverride = nil })
			} else if ms, _, err := modes(); err == nil && ms[0] != ModeTPBTF {
				t.Skipf("the kernel forbids tp_btf here: %v", ms)
			}
			f(t, mode)
		})
	}
}

func TestRunQueueSeesContentionInOwnCgroup(t *testing.T) {
	hier, cgPath, id := ownTestCgroup(t)

	forEachMode(t, func(t *testing.T, mode string) {
		rq, err := LoadRunQueue(RunQueueOptions{CgroupV1CPU: hier.V1CPU})
		skipIfForbidden(t, err)
		defer rq.Close()
		if st := rq.Status(); st.State != StateLoaded || st.Mode != mode {
			t.Fatalf("status %v, want loaded with %s", st, mode)
		}
		// The tp_btf program reads the kernel's own run-queue accounting on sched_switch alone;
		// the raw_tp fallback times waits itself from the wakeups.
		want := []Hook{{"sched_switch", mode}}
		if mode == ModeRawTP {
			want = []Hook{{"sched_switch", mode}, {"sched_wakeup", mode}, {"sched_wakeup_new", mode}}
		}
		if got := rq.Hooks(); !slices.Equal(got, want) {
			t.Fatalf("hooks %v, want %v", got, want)
		}

		before, err := rq.Read()
		if err != nil {
			t.Fatal(err)
		}
		threads := ebpftest.ThreadWaits(t)
		spinners := ebpftest.ContendOneCPU(t, 4, 600*time.Millisecond)
		others := ebpftest.WaitsSince(threads, ebpftest.ThreadWaits(t))
		after, err := rq.Read()
		if err != nil {
			t.Fatal(err)
		}

		d := after[id].Sub(before[id])
		top := -1
		for i, n := range d.Buckets {
			if n > 0 {
				top = i
			}
		}
		t.Logf("cgroup %s (id %d): %d waits, %.0f us total, buckets %v", cgPath, id, d.Count, float64(d.SumNs)/1e3, d.TrimmedBuckets())
		if d.Count < 20 {
			t.Errorf("cgroup %s saw %d run-queue waits while 4 threads shared one CPU, want at least 20", cgPath, d.Count)
		}
		// Four spinning threads on one CPU each wait about a time slice for their turn.
		if top < 9 {
			t.Errorf("longest run-queue wait is in bucket %d (< %d us), want waits of a time slice (>= 512 us)", top, 1<<(top+1))
		}
		// The probe counts the waits the kernel timed of the cgroup's threads: the spinning
		// ones, and the test's and the runtime's own, which wait too on a busy machine. The
		// only slack is the last waits of the spinners, which exit after reading their
		// figures.
		t.Logf("the kernel timed %d waits, %.0f us of the spinning threads and %d, %.0f us of the others",
			spinners.Count, float64(spinners.Ns)/1e3, others.Count, float64(others.Ns)/1e3)
		lo, hi := float64(spinners.Ns), 1.02*float64(spinners.Ns+others.Ns)+20e6
		if sum := float64(d.SumNs); sum < lo || sum > hi {
			t.Errorf("the probe counted %.0f us of waits in the cgroup, want between the %.0f us the kernel timed of the spinning threads and %.0f us",
				sum/1e3, lo/1e3, hi/1e3)
		}
		if d.Count < spinners.Count {
			t.Errorf("the probe counted %d waits in the cgroup, fewer than the %d the kernel timed of the spinning threads", d.Count, spinners.Count)
		}
		// Forget frees the entry of a cgroup; what the test's threads did since starts over.
		if err := rq.Forget(id); err != nil {
			t.Fatal(err)
		}
		if again, err := rq.Read(); err != nil || again[id].Count >= after[id].Count {
			t.Errorf("after Forget the cgroup still holds %d waits (had %d), err %v", again[id].Count, after[id].Count, err)
		}

		res := NewCgroupResolver(hier.Root)
		if err := res.Rescan(); err != nil {
			t.Fatal(err)
		}
		if got, ok := res.Path(id); !ok || got != cgPath {
			t.Errorf("resolver maps id %d to %q, %v; want %q", id, got, ok, cgPath)
		}
	})
}

// ownTestCgroup finds the machine's cgroup hierarchy (skipping the test where none is mounted),
// moves the test process into a cgroup of its own (joinOwnCgroup) and returns the hierarchy, that
// cgroup's path under the hierarchy's root and its id, the key of its run-queue histogram.
func ownTestCgroup(t *testing.T) (CgroupHierarchy, string, uint64) {
	hier, err := DetectCgroupHierarchy("/sys")
	if err != nil {
		t.Skipf("the kernel has no cgroup hierarchy mounted: %v", err)
	}
	path := joinOwnCgroup(t, hier)
	id, err := CgroupID(filepath.Join(hier.Root, path))
	if err != nil {
		t.Fatal(err)
	}
	return hier, path, id
}

// joinOwnCgroup moves the test process into a fresh cgroup so the histogram under test is
// its own alone, and moves it back at cleanup. Where cgroupfs is read-only (an unprivileged
// container) it stays in the cgroup it is in, and says so.
func joinOwnCgroup(t *testing.T, hier CgroupHierarchy) string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	orig, err := ParseProcCgroup(f, hier.V1CPU)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("/tmwarden-ebpf-test-%d", os.Getpid())
	dir := filepath.Join(hier.Root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Logf("cannot create a cgroup (%v); measuring the test's current cgroup %s", err, orig)
		return orig
	}
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), pid, 0); err != nil {
		os.Remove(dir)
		t.Logf("cannot join a new cgroup (%v); measuring the test's current cgroup %s", err, orig)
		return orig
	}
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(hier.Root, orig, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("move back to %s: %v", orig, err)
		}
		for range 50 {
			if err = os.Remove(dir); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("remove test cgroup: %v", err)
	})
	return name
}

// contend pins n spinning threads to one CPU, so each waits in the run queue for the others.
func TestBlockRqIssuePrototypeOfThisKernel(t *testing.T) {
	kspec, err := kernelBTF(BlockIOProbe)
	skipIfForbidden(t, err)
	typ, err := kspec.AnyTypeByName("btf_trace_block_rq_issue")
	if err != nil {
		t.Skipf("the kernel has no block_rq_issue tracepoint: %v", err)
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	var major, minor int
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	want := 1
	if major < 5 || major == 5 && minor < 11 {
		want = 2
	}
	if got := tracepointArgs(typ); got != want {
		t.Errorf("kernel %s: block_rq_issue has %d args, want %d", release, got, want)
	}
}

func TestBlockIOSeesFsyncedWrites(t *testing.T) {
	dir, devs := dirOnBlockDevice(t)
	forEachMode(t, func(t *testing.T, mode string) {
		bio, err := LoadBlockIO()
		skipIfForbidden(t, err)
		defer bio.Close()
		if st := bio.Status(); st.State != StateLoaded || st.Mode != mode {
			t.Fatalf("status %v, want loaded with %s", st, mode)
		}
		before, err := bio.Read()
		if err != nil {
			t.Fatal(err)
		}

		f, err := os.CreateTemp(dir, "tmwarden-biolat-*")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		buf := make([]byte, 64<<10)
		const writes = 32
		for range writes {
			rand.Read(buf)
			if _, err := f.Write(buf); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}

		after, err := bio.Read()
		if err != nil {
			t.Fatal(err)
		}
		var got uint64
		for _, d := range devs {
			delta := after[d].Sub(before[d])
			t.Logf("%s (%s): %d requests, buckets %v", DeviceName("/sys", d), d, delta.Count, delta.TrimmedBuckets())
			got += delta.Count
		}
		if got < writes {
			t.Errorf("%d fsynced writes in %s produced %d completed requests on %v, want at least %d", writes, dir, got, devs, writes)
		}
	})
}

// dirOnBlockDevice finds a writable directory backed by a block device and the disks whose
// requests carry its IO (the disk itself, the disk of a partition, or the members of a
// device-mapper device).
func dirOnBlockDevice(t *testing.T) (string, []Dev) {
	wd, _ := os.Getwd()
	for _, dir := range []string{t.TempDir(), wd} {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			continue
		}
		maj, min := unix.Major(st.Dev), unix.Minor(st.Dev)
		sys := fmt.Sprintf("/sys/dev/block/%d:%d", maj, min)
		if _, err := os.Stat(sys); err != nil {
			continue
		}
		if devs := diskDevs(t, sys); len(devs) > 0 {
			return dir, devs
		}
	}
	t.Skip("the machine has no writable directory on a block device (tmpfs or overlay only), so no block IO to observe")
	return "", nil
}

func diskDevs(t *testing.T, sys string) []Dev {
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
		real = filepath.Dir(real)
	}
	if slaves, _ := os.ReadDir(filepath.Join(real, "slaves")); len(slaves) > 0 {
		var out []Dev
		for _, s := range slaves {
			out = append(out, diskDevs(t, filepath.Join(real, "slaves", s.Name()))...)
		}
		return out
	}
	b, err := os.ReadFile(filepath.Join(real, "dev"))
	if err != nil {
		return nil
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
		t.Fatalf("parse %s/dev: %v", real, err)
	}
	return []Dev{Dev(maj<<20 | min)}
}

func TestTCPRetransmitsSeesDroppedSYN(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		tr, err := LoadTCPRetransmits()
		skipIfForbidden(t, err)
		defer tr.Close()
		if st := tr.Status(); st.State != StateLoaded || st.Mode != mode {
			t.Fatalf("status %v, want loaded with %s", st, mode)
		}
		addr := ebpftest.FullListener(t)
		before, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}

		// The listener's accept queue is full, so the kernel drops this SYN and the client
		// retransmits it after its initial 1 s timeout.
		c, err := net.DialTimeout("tcp", addr.String(), 1500*time.Millisecond)
		if err == nil {
			c.Close()
		}

		after, err := tr.Read()
		if err != nil {
			t.Fatal(err)
		}
		got := after[addr.Addr()] - before[addr.Addr()]
		t.Logf("retransmits to %s: %d (dial: %v)", addr.Addr(), got, err)
		if got < 1 {
			t.Errorf("no retransmit counted for %s after a dropped SYN; counts %v", addr.Addr(), after)
		}
	})
}

// TestTCPRetransmitsReadsAFullMap fills the probe's map to its bound with remotes of both
// families, in more entries than one batch holds, and checks that Read (batch lookups) returns
// every remote with its count, the same as reading the map key by key (the fallback for
// kernels without batch lookups).
func TestTCPRetransmitsReadsAFullMap(t *testing.T) {
	tr, err := LoadTCPRetransmits()
	skipIfForbidden(t, err)
	defer tr.Close()
	want := fillRetransMap(t, tr)
	limit := len(want)
	if limit <= retransBatchSize {
		t.Fatalf("the map holds %d entries, not more than one batch (%d): the test proves nothing", limit, retransBatchSize)
	}
	got, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	iter, err := tr.readIterate()
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]map[netip.Addr]uint64{"Read": got, "key by key": iter} {
		if len(m) != len(want) {
			t.Errorf("%s: %d remotes, want %d", name, len(m), len(want))
		}
		for a, n := range want {
			if m[a] != n {
				t.Errorf("%s: %s = %d, want %d", name, a, m[a], n)
				break
			}
		}
	}
}

// fillRetransMap detaches the probe (so this machine's own retransmits stay out of the map)
// and fills its map to the bound with remotes of both families; it returns what it wrote.
func fillRetransMap(t testing.TB, tr *TCPRetransmits) map[netip.Addr]uint64 {
	t.Helper()
	for _, l := range tr.p.links {
		l.Close()
	}
	tr.p.links = nil
	want := map[netip.Addr]uint64{}
	limit := int(tr.counts.MaxEntries())
	for i := 0; i < limit; i++ {
		var k tcpretransRetransKey
		var a netip.Addr
		if i%2 == 0 {
			k.Family = unix.AF_INET
			b := [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}
			copy(k.Daddr[:], b[:])
			a = netip.AddrFrom4(b)
		} else {
			k.Family = unix.AF_INET6
			b := [16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
			k.Daddr = b
			a = netip.AddrFrom16(b)
		}
		n := uint64(i + 1)
		if err := tr.counts.Put(&k, &n); err != nil {
			t.Fatalf("fill entry %d of %d: %v", i, limit, err)
		}
		want[a] = n
	}
	return want
}

// BenchmarkTCPRetransmitsRead reads a full map (4,096 remotes) with batch lookups and, beside
// it, key by key as before.
func BenchmarkTCPRetransmitsRead(b *testing.B) {
	tr, err := LoadTCPRetransmits()
	if err != nil {
		b.Skipf("cannot load the probe: %v", err)
	}
	defer tr.Close()
	fillRetransMap(b, tr)
	for _, c := range []struct {
		name string
		read func() (map[netip.Addr]uint64, error)
	}{{"batch", tr.Read}, {"key-by-key", tr.readIterate}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestProbesLoadAfterReleaseKernelBTF: the agent drops the shared kernel BTF once its probes
// are loaded; a probe loaded after that (a test, a restart of a collector) decodes it again.
func TestProbesLoadAfterReleaseKernelBTF(t *testing.T) {
	first, err := LoadTCPRetransmits()
	skipIfForbidden(t, err)
	defer first.Close()
	ReleaseKernelBTF()
	second, err := LoadTCPRetransmits()
	if err != nil {
		t.Fatalf("load after ReleaseKernelBTF: %v", err)
	}
	defer second.Close()
	if st := second.Status(); st.State != StateLoaded {
		t.Errorf("status after ReleaseKernelBTF: %v", st)
	}
}

// TestRunQueueForgetFreesSlots: each cgroup's histogram holds one of a fixed number of slots,
// and Forget must give it back. Forgetting the test's own cgroup more times than there are
// slots, its threads taking a new slot after each, leaves it still counted.
func TestRunQueueForgetFreesSlots(t *testing.T) {
	hier, _, id := ownTestCgroup(t)
	forEachMode(t, func(t *testing.T, mode string) {
		rq, err := LoadRunQueue(RunQueueOptions{CgroupV1CPU: hier.V1CPU})
		skipIfForbidden(t, err)
		defer rq.Close()
		for i := range rq.capacity + 100 {
			if err := rq.Forget(id); err != nil {
				t.Fatalf("forget %d: %v", i, err)
			}
			// A short sleep is a switch of this thread: its cgroup takes a slot again.
			time.Sleep(20 * time.Microsecond)
		}
		ebpftest.ContendOneCPU(t, 2, 100*time.Millisecond)
		h, err := rq.Read()
		if err != nil {
			t.Fatal(err)
		}
		if h[id].Count == 0 {
			t.Errorf("after %d forgets the cgroup is no longer counted (%d cgroups are)", rq.capacity+100, len(h))
		}
	})
}

// TestRunQueueSlotsFitTheBudget: every CPU keeps its own copy of each histogram slot, so the
// number of slots shrinks with the CPUs to keep the kernel memory within the budget, down to the
// floor that still holds a full node's cgroups.
func TestRunQueueSlotsFitTheBudget(t *testing.T) {
	size := int(unsafe.Sizeof(runqlatRunqHist{}))
	for _, cpus := range []int{1, 2, 16, 64, 128, 256, 1024} {
		n := runQueueSlots(cpus)
		t.Logf("%d CPUs: %d slots, %.1f MiB", cpus, n, float64(n*cpus*size)/(1<<20))
		if n > maxRunQueueSlots || n < minRunQueueSlots {
			t.Errorf("%d CPUs: %d slots, want between %d and %d", cpus, n, minRunQueueSlots, maxRunQueueSlots)
		}
		if n > minRunQueueSlots && n*cpus*size > runQueueBudget {
			t.Errorf("%d CPUs: %d slots take %d bytes, over the budget of %d", cpus, n, n*cpus*size, runQueueBudget)
		}
		if n < maxRunQueueSlots && n > minRunQueueSlots && (n+1)*cpus*size <= runQueueBudget {
			t.Errorf("%d CPUs: %d slots leave room for more within the budget", cpus, n)
		}
	}
}
