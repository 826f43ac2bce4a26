package agent

import (
	"sync"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// reportBuffer holds reports until the coordinator acknowledges them. It is bounded: when full,
// the oldest report is dropped, because during a long outage the newest state of the node is
// worth more than its history.
type reportBuffer struct {
	mu      sync.Mutex
	cap     int
	items   []*tmwardenv1.Report // ordered by sequence
	dropped uint64
	notify  chan struct{}
}

func newReportBuffer(capacity int) *reportBuffer {
	return &reportBuffer{cap: capacity, notify: make(chan struct{}, 1)}
}

// push appends r, dropping the oldest report if the buffer is full.
func (b *reportBuffer) push(r *tmwardenv1.Report) {
	b.mu.Lock()
	if len(b.items) >= b.cap {
		n := len(b.items) - b.cap + 1
		clear(b.items[:n])
		b.items = b.items[n:]
		b.dropped += uint64(n)
	}
	b.items = append(b.items, r)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// ack forgets every report with sequence <= seq.
func (b *reportBuffer) ack(seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(b.items) && b.items[i].Sequence <= seq {
		i++
	}
	clear(b.items[:i])
	b.items = b.items[i:]
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

// stats returns how many reports wait and how many were dropped so far.
func (b *reportBuffer) stats() (pending int, dropped uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items), b.dropped
}
