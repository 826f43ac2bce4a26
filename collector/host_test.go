package collector

import (
	"context"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// copyFixtureTree copies a fixture directory over dst, so a test can advance a fake procfs
// from one round of counters to the next.
func copyFixtureTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copying fixture %s: %v", src, err)
	}
}

// fakeClock advances by the interval each time a collector asks for the time.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func approx(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestHostCollectorRatesFromFixtures(t *testing.T) {
	proc := t.TempDir()
	copyFixtureTree(t, "testdata/host/round1", proc)
	cfg := DefaultConfig()
	cfg.Paths.ProcFS = proc
	c, err := newHostCollector(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	h := c.(*hostCollector)
	clock := &fakeClock{t: time.Unix(1763700000, 0)}
	h.now = clock.now

	r1 := &tmwardenv1.Report{}
	if err := h.Collect(context.Background(), r1); err != nil {
		t.Fatalf("round 1: %v", err)
	}
	if r1.Host.Cpu != nil || len(r1.Host.Disks) != 0 {
		t.Errorf("round 1 has rates before a second sample: %v", r1.Host)
	}
	if r1.Host.NumCpus != 2 || r1.Host.ProcsRunning != 3 || r1.Host.ProcsBlocked != 1 {
		t.Errorf("cpus/procs = %d/%d/%d, want 2/3/1", r1.Host.NumCpus, r1.Host.ProcsRunning, r1.Host.ProcsBlocked)
	}
	approx(t, "load1", r1.Host.Load1, 0.5)
	if r1.Host.Tcp.GetEstablished() != 7 {
		t.Errorf("established = %d, want 7", r1.Host.Tcp.GetEstablished())
	}

	copyFixtureTree(t, "testdata/host/round2", proc)
	clock.t = clock.t.Add(5 * time.Second)
	r2 := &tmwardenv1.Report{}
	if err := h.Collect(context.Background(), r2); err != nil {
		t.Fatalf("round 2: %v", err)
	}
	hs := r2.Host
	approx(t, "cpu user", hs.Cpu.GetUser(), 0.3)
	approx(t, "cpu system", hs.Cpu.GetSystem(), 0.1)
	approx(t, "cpu idle", hs.Cpu.GetIdle(), 0.4)
	approx(t, "cpu iowait", hs.Cpu.GetIowait(), 0.1)
	approx(t, "cpu steal", hs.Cpu.GetSteal(), 0.1)
	approx(t, "context switches/s", hs.ContextSwitchesPerSecond, 10000)
	approx(t, "interrupts/s", hs.InterruptsPerSecond, 2000)
	approx(t, "swap in pages/s", hs.Memory.GetSwapInPagesPerSecond(), 10)
	approx(t, "swap out pages/s", hs.Memory.GetSwapOutPagesPerSecond(), 20)
	approx(t, "major faults/s", hs.Memory.GetMajorFaultsPerSecond(), 100)
	approx(t, "tcp retransmits/s", hs.Tcp.GetRetransmitsPerSecond(), 10)
	approx(t, "tcp out segments/s", hs.Tcp.GetOutSegmentsPerSecond(), 2000)
	approx(t, "tcp listen drops/s", hs.Tcp.GetListenDropsPerSecond(), 2)
	if hs.Memory.GetTotalBytes() != 8000000*1024 || hs.Memory.GetSwapUsedBytes() != 100000*1024 {
		t.Errorf("memory total/swap used = %d/%d", hs.Memory.GetTotalBytes(), hs.Memory.GetSwapUsedBytes())
	}

	var devs []string
	for _, d := range hs.Disks {
		devs = append(devs, d.Device)
	}
	if got := strings.Join(devs, ","); got != "dm-0,nvme0n1,sda" {
		t.Errorf("disks = %s, want dm-0,nvme0n1,sda (loop, ram, zram and partitions left out)", got)
	}
	for _, d := range hs.Disks {
		if d.Device != "sda" {
			continue
		}
		approx(t, "sda reads/s", d.ReadsPerSecond, 100)
		approx(t, "sda writes/s", d.WritesPerSecond, 100)
		approx(t, "sda read bytes/s", d.ReadBytesPerSecond, 10000*512/5)
		approx(t, "sda write bytes/s", d.WriteBytesPerSecond, 20000*512/5)
		approx(t, "sda utilization", d.Utilization, 0.5)
		approx(t, "sda await ms", d.AwaitMs, 1.5)
		if d.InFlight != 1 {
			t.Errorf("sda in flight = %d, want 1", d.InFlight)
		}
	}
	if len(hs.Interfaces) != 1 || hs.Interfaces[0].Interface != "eth0" {
		t.Fatalf("interfaces = %v, want only eth0 (lo and veth left out)", hs.Interfaces)
	}
	approx(t, "eth0 rx bytes/s", hs.Interfaces[0].RxBytesPerSecond, 1000000)
	approx(t, "eth0 rx packets/s", hs.Interfaces[0].RxPacketsPerSecond, 1000)
	approx(t, "eth0 rx drops/s", hs.Interfaces[0].RxDropsPerSecond, 1)
}

func TestHostCollectorDegradesOnMissingFiles(t *testing.T) {
	proc := t.TempDir()
	copyFixtureTree(t, "testdata/host/round1", proc)
	for _, f := range []string{"stat", "1/net/netstat", "diskstats"} {
		if err := os.Remove(filepath.Join(proc, f)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	cfg.Paths.ProcFS = proc
	c, err := newHostCollector(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	r := &tmwardenv1.Report{}
	err = c.Collect(context.Background(), r)
	if !IsDegraded(err) {
		t.Fatalf("Collect = %v, want a degraded error", err)
	}
	for _, want := range []string{"cpu times", "context switches", "listen drops", "disk counters"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reason %q does not mention %q", err, want)
		}
	}
	if r.Host == nil || r.Host.Memory == nil || r.Host.Load1 != 0.5 {
		t.Errorf("the readable parts are missing from the report: %v", r.Host)
	}
}

func TestHostCollectorRejectsBadIgnorePattern(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Host.DiskIgnore = "(["
	if _, err := newHostCollector(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "disk_ignore") {
		t.Fatalf("newHostCollector = %v, want an error naming disk_ignore", err)
	}
}

func TestParseProcStat(t *testing.T) {
	f, err := os.Open("testdata/host/round1/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := parseProcStat(f)
	if err != nil {
		t.Fatal(err)
	}
	if st != (procStat{ctxt: 1000000, intr: 500000, procsRunning: 3, procsBlocked: 1, cpus: 2}) {
		t.Errorf("parseProcStat = %+v", st)
	}
	if _, err := parseProcStat(strings.NewReader("ctxt 12\nintr x 1 2\nprocs_running 1\nprocs_blocked 0\n")); err == nil || !strings.Contains(err.Error(), "intr") {
		t.Errorf("bad intr: err = %v, want one naming intr", err)
	}
	if _, err := parseProcStat(strings.NewReader("cpu 1 2 3\n")); err == nil {
		t.Error("a stat without counters parsed without error")
	}
}

func TestParseNetstat(t *testing.T) {
	f, err := os.Open("testdata/host/round1/1/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := parseNetstat(f, "TcpExt")
	if err != nil {
		t.Fatal(err)
	}
	if m["ListenDrops"] != 12 || m["ListenOverflows"] != 10 || len(m) != 5 {
		t.Errorf("parseNetstat TcpExt = %v", m)
	}
	f.Seek(0, 0)
	if m, err := parseNetstat(f, "IpExt"); err != nil || m["OutOctets"] != 2000 {
		t.Errorf("parseNetstat IpExt = %v, %v", m, err)
	}
	for name, bad := range map[string]string{
		"missing values": "TcpExt: A B\n",
		"count mismatch": "TcpExt: A B\nTcpExt: 1\n",
		"prefix differs": "TcpExt: A\nIpExt: 1\n",
	} {
		if _, err := parseNetstat(strings.NewReader(bad), "TcpExt"); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
	// snmp has negative gauges (MaxConn -1): skipped, the rest kept.
	if m, err := parseNetstat(strings.NewReader("Tcp: MaxConn InSegs\nTcp: -1 7\n"), "Tcp"); err != nil || len(m) != 1 || m["InSegs"] != 7 {
		t.Errorf("negative value: %v, %v", m, err)
	}
}

// TestHostCollectorOnThisMachine runs against the real /proc: two rounds must give CPU shares
// that add up to one.
func TestHostCollectorOnThisMachine(t *testing.T) {
	c, err := newHostCollector(Options{Config: DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Collect(ctx, &tmwardenv1.Report{}); err != nil {
		t.Fatalf("round 1: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	r := &tmwardenv1.Report{}
	if err := c.Collect(ctx, r); err != nil {
		t.Fatalf("round 2: %v", err)
	}
	cs := r.Host.GetCpu()
	sum := cs.GetUser() + cs.GetSystem() + cs.GetIdle() + cs.GetIowait() + cs.GetSteal() + cs.GetIrq() + cs.GetSoftirq() + cs.GetNice()
	if sum < 0.99 || sum > 1.01 {
		t.Errorf("cpu shares add up to %v, want 1", sum)
	}
	if r.Host.ContextSwitchesPerSecond <= 0 {
		t.Errorf("context switches/s = %v, want > 0", r.Host.ContextSwitchesPerSecond)
	}
}

func BenchmarkHostCollect(b *testing.B) {
	c, err := newHostCollector(Options{Config: DefaultConfig()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		_ = c.Collect(ctx, &tmwardenv1.Report{})
	}
}
