package agent

import (
	"testing"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func pushN(b *reportBuffer, from, to uint64) {
	for seq := from; seq <= to; seq++ {
		b.push(&tmwardenv1.Report{Sequence: seq})
	}
}

func TestBufferDropsOldestAndCounts(t *testing.T) {
	b := newReportBuffer(3)
	pushN(b, 1, 5) // never sent: 1 and 2 are lost
	pending, dropped := b.stats()
	if pending != 3 || dropped != 2 {
		t.Fatalf("pending %d dropped %d, want 3 and 2", pending, dropped)
	}
	if r := b.after(0); r.Sequence != 3 {
		t.Errorf("oldest kept is %d, want 3", r.Sequence)
	}
	b.ack(4, false)
	if r := b.after(0); r.Sequence != 5 {
		t.Errorf("after ack(4) oldest is %d, want 5", r.Sequence)
	}
	if r := b.after(5); r != nil {
		t.Errorf("after(5) = %d, want nothing", r.Sequence)
	}
	b.ack(9, false)
	if pending, _ := b.stats(); pending != 0 {
		t.Errorf("pending %d after acking everything", pending)
	}
}

// TestDropsOfSentReportsWaitForTheWelcome covers reports sent just before an outage: the
// coordinator may have stored them although their acks never arrived, and the full buffer then
// dropped them. Only the Welcome says which were lost.
func TestDropsOfSentReportsWaitForTheWelcome(t *testing.T) {
	b := newReportBuffer(3)
	pushN(b, 1, 3)
	b.sent(3)      // 1..3 written to the stream, then the coordinator went away
	pushN(b, 4, 7) // drops 1..4: 1..3 in doubt, 4 never sent
	if _, dropped := b.stats(); dropped != 1 {
		t.Fatalf("dropped %d, want 1 (report 4; 1..3 are in doubt)", dropped)
	}
	b.ack(2, true) // the Welcome: the coordinator stored up to 2, so 3 is lost too
	if _, dropped := b.stats(); dropped != 2 {
		t.Fatalf("after the Welcome: dropped %d, want 2 (3 and 4)", dropped)
	}
	if r := b.after(2); r.Sequence != 5 {
		t.Fatalf("resend starts at %d, want 5", r.Sequence)
	}
	// Mid-session: sent reports dropped, then acknowledged after all.
	b.sent(7)
	pushN(b, 8, 9) // drops 5 and 6, both sent
	b.ack(6, false)
	b.ack(9, false)
	if pending, dropped := b.stats(); dropped != 2 || pending != 0 {
		t.Fatalf("dropped %d pending %d, want 2 and 0: 5 and 6 were stored", dropped, pending)
	}
}

func TestBackoffGrowsWithJitterAndCaps(t *testing.T) {
	b := Backoff{Initial: 100, Max: 1000}
	for i := 0; i < 10; i++ {
		ceil := min(int64(100)<<i, 1000)
		d := int64(b.Next())
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %d outside [%d, %d]", i, d, ceil/2, ceil)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100 {
		t.Errorf("after reset: %d, want <= 100", d)
	}
}
