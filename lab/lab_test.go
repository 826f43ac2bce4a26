package lab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/collector/collectortest"
	"github.com/tmwarden/tmwarden/packaging/releasebin"
)

// TestLabShort is the lab's short form, so that `make lab` cannot rot: the real binaries, the
// TaskManager stand-in in its cgroups and network namespace, calibrated peers, and one real fault
// (a GC storm inside the stand-in, which needs no outside tool) for about a minute. It asserts
// that the lab runs end to end: calibration measured every vertex, the fault went on and off, no
// peer was judged slow and the node is healthy afterwards; what detection made of the fault is
// logged (the full `make lab` reports it per fault).
func TestLabShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the lab short form runs about three minutes")
	}
	if why := CheckRoot(); why != "" {
		t.Skip(why)
	}
	// The lab's agent scans procfs: another package's TaskManager stand-ins must not be there.
	collectortest.HoldTaskManagerDiscovery(t)
	// The binaries as they ship (releasebin: `make release-bin`, built once per `make test`).
	bin := releasebin.Dir(t)
	o := DefaultOptions()
	o.BinDir, o.Self = bin, filepath.Join(bin, "tmwardenctl")
	o.Prefix = "tmwlabtest"
	o.Warmup, o.Calibrate, o.Quiet = 10*time.Second, 20*time.Second, 0
	o.FaultFor, o.FaultMax, o.RecoverMax = 20*time.Second, 30*time.Second, 2*time.Minute
	o.Faults = []string{"gc-storm"}
	o.WorkDir = t.TempDir()
	var out bytes.Buffer
	o.Out = &out
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if res != nil {
		res.PrintTable(&out)
	}
	t.Log(out.String())
	if err != nil {
		for _, f := range []string{"agent.log", "coordinator.log", "taskmanager.log"} {
			b, _ := os.ReadFile(filepath.Join(o.WorkDir, f))
			t.Logf("%s (tail):\n%s", f, tail(string(b), 3000))
		}
		t.Fatal(err)
	}
	if res.Calibration.Reports < 3 || len(res.Calibration.TPR) != len(vertexNames) {
		t.Errorf("calibration: %d reports, TPR for %d vertices; want >= 3 and %d", res.Calibration.Reports, len(res.Calibration.TPR), len(vertexNames))
	}
	if len(res.Rows) != 1 {
		t.Fatalf("rows: %+v, want the gc-storm row", res.Rows)
	}
	row := res.Rows[0]
	if row.SkippedReason != "" {
		t.Fatalf("gc-storm skipped: %s", row.SkippedReason)
	}
	// The lab's own machinery must hold: the fault went on and off, no calibrated peer was
	// judged slow, and the node came back to healthy (through probation if it was moved).
	if len(row.FalseVerdicts) > 0 {
		t.Errorf("false verdicts on the calibrated peers: %v", row.FalseVerdicts)
	}
	if !row.Recovered {
		t.Errorf("the node did not come back to healthy: %s", row.Decision)
	}
	// Whether detection names the TaskManager is the detector's result, which the full lab
	// reports and this short form does not assert: on a shared machine a host signal that
	// happens to be out (one retransmission against quiet peers) makes the rules blame the node
	// instead (docs/lab.md). It is logged so the short form shows it.
	t.Logf("detection (reported, not asserted): detected %v after %.0fs, target %q, cause %q, decision %q, pass %v",
		row.Detected, row.TTD, row.Node, row.Cause, row.Decision, row.Pass)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
