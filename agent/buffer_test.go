package agent

import (
	"testing"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func TestBufferDropsOldestAndCounts(t *testing.T) {
	b := newReportBuffer(3)
	for seq := uint64(1); seq <= 5; seq++ {
		b.push(&tmwardenv1.Report{Sequence: seq})
	}
	pending, dropped := b.stats()
	if pending != 3 || dropped != 2 {
		t.Fatalf("pending %d dropped %d, want 3 and 2", pending, dropped)
	}
	if r := b.after(0); r.Sequence != 3 {
		t.Errorf("oldest kept is %d, want 3", r.Sequence)
	}
	b.ack(4)
	if r := b.after(0); r.Sequence != 5 {
		t.Errorf("after ack(4) oldest is %d, want 5", r.Sequence)
	}
	if r := b.after(5); r != nil {
		t.Errorf("after(5) = %d, want nothing", r.Sequence)
	}
	b.ack(9)
	if pending, _ := b.stats(); pending != 0 {
		t.Errorf("pending %d after acking everything", pending)
	}
}

func TestBackoffGrowsWithJitterAndCaps(t *testing.T) {
	b := backoff{initial: 100, max: 1000}
	prevCeil := int64(0)
	for i := 0; i < 10; i++ {
		ceil := min(int64(100)<<i, 1000)
		d := int64(b.next())
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %d outside [%d, %d]", i, d, ceil/2, ceil)
		}
		if ceil < prevCeil {
			t.Fatal("ceiling shrank")
		}
		prevCeil = ceil
	}
	b.reset()
	if d := b.next(); d > 100 {
		t.Errorf("after reset: %d, want <= 100", d)
	}
}
