package collector

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func parsePSIFixture(t *testing.T, name string) (psiFile, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata/psi", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return parsePSI(f)
}

func TestParsePSI(t *testing.T) {
	f, err := parsePSIFixture(t, "io-full")
	if err != nil {
		t.Fatal(err)
	}
	want := psiFile{
		some:    psiLine{avg10: 12, avg60: 8, avg300: 3, total: 50000000},
		full:    psiLine{avg10: 10, avg60: 6, avg300: 2, total: 40000000},
		hasFull: true,
	}
	if f != want {
		t.Errorf("io-full = %+v, want %+v", f, want)
	}

	// Before Linux 5.13 the system-wide cpu file has no "full" line.
	f, err = parsePSIFixture(t, "cpu-5.10")
	if err != nil {
		t.Fatal(err)
	}
	if f.hasFull || f.some.total != 123456 || f.some.avg10 != 1.5 {
		t.Errorf("cpu-5.10 = %+v", f)
	}

	for name, wantErr := range map[string]string{"bad-kind": "unknown kind", "bad-number": "avg10", "no-some": "no \"some\""} {
		if _, err := parsePSIFixture(t, name); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, wantErr)
		}
	}
}

func writePSI(t *testing.T, dir, res, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "pressure", res), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPressureCollectorShareOverInterval(t *testing.T) {
	proc := t.TempDir()
	copyFixtureTree(t, "testdata/host/round1", proc)
	cfg := DefaultConfig()
	cfg.Paths.ProcFS = proc
	c, _ := newPressureCollector(Options{Config: cfg})
	pc := c.(*pressureCollector)
	clock := &fakeClock{t: time.Unix(1763700000, 0)}
	pc.now = clock.now

	r := &tmwardenv1.Report{}
	if err := pc.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	p := r.Host.GetPressure()
	if !p.GetAvailable() {
		t.Fatal("pressure not available with all three files present")
	}
	approx(t, "cpu some avg10", p.Cpu.SomeAvg10, 0.0415)
	approx(t, "io full avg60", p.Io.FullAvg60, 0.06)
	if p.Io.SomeShare != 0 {
		t.Errorf("first round has a share %v before any interval", p.Io.SomeShare)
	}

	// 5 s later: io stalled 2.5 s (some) and 1 s (full); memory not at all.
	clock.t = clock.t.Add(5 * time.Second)
	writePSI(t, proc, "io", "some avg10=12.00 avg60=8.00 avg300=3.00 total=52500000\nfull avg10=10.00 avg60=6.00 avg300=2.00 total=41000000\n")
	r = &tmwardenv1.Report{Host: &tmwardenv1.HostSignals{NumCpus: 2}}
	if err := pc.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if r.Host.NumCpus != 2 {
		t.Error("pressure replaced the host signals instead of adding to them")
	}
	p = r.Host.Pressure
	approx(t, "io some share", p.Io.SomeShare, 0.5)
	approx(t, "io full share", p.Io.FullShare, 0.2)
	approx(t, "memory some share", p.Memory.SomeShare, 0)
}

func TestPressureCollectorWithoutPSI(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Paths.ProcFS = t.TempDir() // a kernel without CONFIG_PSI has no /proc/pressure
	c, _ := newPressureCollector(Options{Config: cfg})
	r := &tmwardenv1.Report{}
	err := c.Collect(context.Background(), r)
	if !IsDegraded(err) || !strings.Contains(err.Error(), "kernel has no PSI") {
		t.Fatalf("Collect = %v, want degraded saying the kernel has no PSI", err)
	}
	if r.Host.GetPressure() == nil || r.Host.Pressure.Available {
		t.Errorf("pressure = %v, want present with available=false", r.Host.GetPressure())
	}
	st := StatusOf("pressure", err)
	if st.State != tmwardenv1.CollectorStatus_STATE_DEGRADED || !strings.Contains(st.Reason, "CONFIG_PSI") {
		t.Errorf("status = %v", st)
	}
}

func TestPressureCollectorReportsMalformedFile(t *testing.T) {
	proc := t.TempDir()
	copyFixtureTree(t, "testdata/host/round1", proc)
	writePSI(t, proc, "memory", "garbage\n")
	cfg := DefaultConfig()
	cfg.Paths.ProcFS = proc
	c, _ := newPressureCollector(Options{Config: cfg})
	r := &tmwardenv1.Report{}
	err := c.Collect(context.Background(), r)
	if !IsDegraded(err) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("Collect = %v, want degraded naming memory", err)
	}
	if p := r.Host.Pressure; !p.Available || p.Cpu == nil || p.Memory != nil {
		t.Errorf("pressure = %v, want cpu and io but no memory", p)
	}
}

func TestPressureCollectorOnThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/pressure/cpu"); err != nil {
		t.Skipf("this kernel has no PSI: %v", err)
	}
	c, _ := newPressureCollector(Options{Config: DefaultConfig()})
	r := &tmwardenv1.Report{}
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if !r.Host.Pressure.Available || r.Host.Pressure.Cpu == nil {
		t.Errorf("pressure = %v", r.Host.Pressure)
	}
}
