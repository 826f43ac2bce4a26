package coordinator_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

// GET /api/v1/rounds lists every evaluation round with its own timing, oldest first: what the
// scale benchmark reads its exact round percentiles from.
func TestRoundsAreListedWithTheirTimings(t *testing.T) {
	rc := startCoordinator(t, t.TempDir(), "127.0.0.1:0", nil)
	defer rc.stop(t)
	for range 3 {
		if _, _, err := rc.Evaluate(); err != nil {
			t.Fatal(err)
		}
	}
	rounds, err := httpv1.NewClient(rc.HTTPAddr()).Rounds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The evaluation loop may have run rounds of its own beside the three.
	if len(rounds) < 3 {
		t.Fatalf("got %d rounds, want at least the 3 evaluated", len(rounds))
	}
	for i, r := range rounds {
		if r.Started.IsZero() || r.Seconds <= 0 || r.DetectSeconds < 0 || r.DecideSeconds < 0 ||
			r.DetectSeconds+r.DecideSeconds > r.Seconds*1.0001 {
			t.Errorf("round %d = %+v: want a start, a duration and its two steps within it", i, r)
		}
		// A thread's CPU clock runs only while the thread runs: some CPU time, never more than
		// the round took (plus the clocks' granularity).
		if runtime.GOOS == "linux" && (r.CPUSeconds <= 0 || r.CPUSeconds > r.Seconds+0.01) {
			t.Errorf("round %d = %+v: want its CPU time, above 0 and within its duration", i, r)
		}
		// The thread's wait for a core is part of the round's wall time too, beside its CPU time.
		if r.RunQueueSeconds < 0 || r.CPUSeconds+r.RunQueueSeconds > r.Seconds+0.01 {
			t.Errorf("round %d = %+v: want its run-queue wait, with its CPU time within its duration", i, r)
		}
		if i > 0 && r.Started.Before(rounds[i-1].Started) {
			t.Errorf("round %d started %v, before round %d (%v): want oldest first", i, r.Started, i-1, rounds[i-1].Started)
		}
	}
}
