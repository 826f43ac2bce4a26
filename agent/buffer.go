package agent

import (
	"sync"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// reportBuffer holds reports until the coordinator acknowledges them. It is bounded: when full,
// the oldest report is dropped, because during a long outage the newest state of the node is
// worth more than its history.
//
// A dropped report that was never sent is lost. One that was sent but not acknowledged may have
// been stored (the ack was cut off by the outage): it stays "in doubt" until the coordinator's
// next Welcome says how far it got. So the drop count is exactly what the coordinator lacks.
type reportBuffer struct {
	mu    sync.Mutex
	cap   int
	items []*tmwardenv1.Report // ordered by sequence
	// lastSent is the highest sequence written to a stream.
	lastSent uint64
	// dropped counts reports known lost.
	dropped uint64
	// doubtLo..doubtHi are dropped reports that were sent but not acknowledged. Drops take the
	// oldest reports and sends go in order, so they form one contiguous range.
	doubtLo, doubtHi uint64
	notify           chan struct{}
}

func newReportBuffer(capacity int) *reportBuffer {
	return &reportBuffer{cap: capacity, notify: make(chan struct{}, 1)}
}

// push appends r, dropping the oldest report if the buffer is full.
func (b *reportBuffer) push(r *tmwardenv1.Report) {
	b.mu.Lock()
	for len(b.items) >= b.cap {
		old := b.items[0]
		b.items[0] = nil
		b.items = b.items[1:]
		if old.Sequence <= b.lastSent {
			if b.doubtHi == 0 {
				b.doubtLo = old.Sequence
			}
			b.doubtHi = old.Sequence
		} else {
			b.dropped++
		}
	}
	b.items = append(b.items, r)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// sent records that every report up to seq was written to the stream.
func (b *reportBuffer) sent(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastSent = max(b.lastSent, seq)
}

// ack records that the coordinator stored seq, and with it every report sent before it (one
// stream delivers in order). With final (a Welcome, which ends the previous session), the
// reports in doubt beyond seq are lost; otherwise they may still be acknowledged.
func (b *reportBuffer) ack(seq uint64, final bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(b.items) && b.items[i].Sequence <= seq {
		i++
	}
	clear(b.items[:i])
	b.items = b.items[i:]
	if b.doubtHi > 0 && seq >= b.doubtLo {
		b.doubtLo = seq + 1
	}
	if b.doubtHi > 0 && (final || b.doubtLo > b.doubtHi) {
		if b.doubtLo <= b.doubtHi {
			b.dropped += b.doubtHi - b.doubtLo + 1
		}
		b.doubtLo, b.doubtHi = 0, 0
	}
	if final {
		// What was sent before the Welcome and not stored will be sent again.
		b.lastSent = min(b.lastSent, seq)
	}
}

// after returns the oldest buffered report with sequence > seq, or nil.
func (b *reportBuffer) after(seq uint64) *tmwardenv1.Report {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.items {
		if r.Sequence > seq {
			return r
		}
	}
	return nil
}

// stats returns how many reports wait and how many are known lost so far.
func (b *reportBuffer) stats() (pending int, dropped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items), b.dropped
}
