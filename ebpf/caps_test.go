package ebpf

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary act as a probe-loading child (see init) instead of running
// tests: the parent starts it as an unprivileged user holding only the capabilities under test.
const childEnv = "TMWARDEN_EBPF_TEST_CHILD"

func init() {
	if os.Getenv(childEnv) == "load" {
		loadChild(os.Stdout)
		os.Exit(0)
	}
}

// childReport is what the child prints: its effective capabilities and each probe's status.
type childReport struct {
	UID      int
	CapEff   uint64
	Statuses []Status
}

func loadChild(w io.Writer) {
	rep := childReport{UID: os.Getuid(), CapEff: capEff()}
	if rq, err := LoadRunQueue(RunQueueOptions{}); err != nil {
		rep.Statuses = append(rep.Statuses, StatusOf(RunQueueProbe, err))
	} else {
		rep.Statuses = append(rep.Statuses, rq.Status())
		rq.Close()
	}
	if b, err := LoadBlockIO(); err != nil {
		rep.Statuses = append(rep.Statuses, StatusOf(BlockIOProbe, err))
	} else {
		rep.Statuses = append(rep.Statuses, b.Status())
		b.Close()
	}
	if tr, err := LoadTCPRetransmits(); err != nil {
		rep.Statuses = append(rep.Statuses, StatusOf(TCPRetransmitsProbe, err))
	} else {
		rep.Statuses = append(rep.Statuses, tr.Status())
		tr.Close()
	}
	json.NewEncoder(w).Encode(rep)
}

func capEff() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

// runChild runs this test binary as user nobody with only the given ambient capabilities.
func runChild(t *testing.T, caps ...uintptr) childReport {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileges forbid it: starting a child with chosen capabilities needs root")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go test binary lives in a root-only directory; nobody needs a copy it can execute.
	dir, err := os.MkdirTemp("", "tmwarden-ebpf-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ebpf.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = []string{childEnv + "=load", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: caps,
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var rep childReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	var want uint64
	for _, c := range caps {
		want |= 1 << c
	}
	if rep.UID != 65534 || rep.CapEff != want {
		t.Fatalf("child ran as uid %d with CapEff %#x, want uid 65534 with %#x", rep.UID, rep.CapEff, want)
	}
	return rep
}

func TestProbesLoadWithOnlyCapBPFAndCapPerfmon(t *testing.T) {
	rep := runChild(t, unix.CAP_BPF, unix.CAP_PERFMON)
	if notPermitted(rep) {
		// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK, which needs CAP_SYS_RESOURCE to lift.
		t.Logf("CAP_BPF and CAP_PERFMON were not enough (%v); retrying with CAP_SYS_RESOURCE", rep.Statuses)
		rep = runChild(t, unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_RESOURCE)
	}
	if len(rep.Statuses) != 3 {
		t.Fatalf("child reported %d probes, want 3", len(rep.Statuses))
	}
	for _, st := range rep.Statuses {
		t.Logf("uid %d, CapEff %#x: %v", rep.UID, rep.CapEff, st)
		if st.State != StateLoaded {
			t.Errorf("%s: %v, want loaded", st.Probe, st)
		}
	}
}

func notPermitted(rep childReport) bool {
	for _, st := range rep.Statuses {
		if st.State == StateUnavailable && strings.Contains(st.Reason, "not permitted") {
			return true
		}
	}
	return false
}

func TestProbesWithoutCapabilitiesReportWhy(t *testing.T) {
	rep := runChild(t)
	if len(rep.Statuses) != 3 {
		t.Fatalf("child reported %d probes, want 3", len(rep.Statuses))
	}
	for _, st := range rep.Statuses {
		t.Logf("uid %d, no capabilities: %v", rep.UID, st)
		if st.State != StateUnavailable || !strings.Contains(st.Reason, "CAP_BPF") {
			t.Errorf("%s: %v, want unavailable with a reason naming CAP_BPF", st.Probe, st)
		}
	}
}
