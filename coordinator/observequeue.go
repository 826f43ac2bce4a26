package coordinator

import (
	"sync/atomic"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// observeHandoverAfter is how many reports one combining goroutine applies before it hands the
// rest of the queue to the next waiting stream: a stream's receive loop does other streams' work
// for a few milliseconds at most, not for as long as reports keep arriving.
const observeHandoverAfter = 64

// observeQueue runs the report observers (the model, the topology) for every stream one report
// at a time, on whichever ingesting goroutine finds nobody doing it (flat combining); the others
// wait on their own report's channel until it has been applied.
//
// Why not just the observers' own locks: with thousands of streams and a coordinator short of
// CPU, thousands of receive loops queued on Topology.Place's and Model.Observe's mutexes, and a
// goroutine parked on a sync.Mutex keeps the chain of every waiter behind it reachable from its
// own wait (runtime/sema.go sets g.waiting and links the waiters through sudog.waitlink), which
// the GC walks each time it shrinks such a goroutine's stack (adjustsudogs): quadratic in the queue,
// 30 % of the coordinator's CPU at 10,000 nodes. A goroutine parked on its own channel is one
// sudog. Only the in-memory update is queued here; Ingest's store writes run concurrently before.
type observeQueue struct {
	// head is the last pushed report; the list runs newest to oldest through observeItem.next.
	head atomic.Pointer[observeItem]
	// busy is set while one goroutine is applying reports.
	busy atomic.Bool
}

// observeItem is one report waiting for the observers.
type observeItem struct {
	node string
	at   time.Time
	r    *tmwardenv1.Report
	next *observeItem
	// done is closed when the report has been applied, or when its goroutine is handed the
	// combining (handover then holds the reports still to apply, this one first).
	done     chan struct{}
	handover *observeItem
}

// observe applies r through apply, in order with every other report queued, and returns when
// it has been applied.
func (q *observeQueue) observe(node string, at time.Time, r *tmwardenv1.Report, apply func(node string, at time.Time, r *tmwardenv1.Report)) {
	it := &observeItem{node: node, at: at, r: r, done: make(chan struct{})}
	for {
		old := q.head.Load()
		it.next = old
		if q.head.CompareAndSwap(old, it) {
			break
		}
	}
	if q.busy.CompareAndSwap(false, true) {
		q.combine(nil, apply)
	}
	<-it.done
	if list := it.handover; list != nil {
		q.combine(list, apply)
	}
}

// combine applies list (oldest first), then whatever was queued meanwhile, until the queue is
// empty or it has applied observeHandoverAfter reports and another goroutine's report is next;
// that goroutine then carries on. The caller holds busy; it is released or handed on.
func (q *observeQueue) combine(list *observeItem, apply func(node string, at time.Time, r *tmwardenv1.Report)) {
	for n := 0; ; {
		if list == nil {
			list = reverse(q.head.Swap(nil))
			if list == nil {
				q.busy.Store(false)
				// A report pushed between the Swap and the Store saw busy set and waits for
				// somebody to apply it: take it unless another goroutine already has.
				if q.head.Load() == nil || !q.busy.CompareAndSwap(false, true) {
					return
				}
				continue
			}
		}
		if n >= observeHandoverAfter && list.handover == nil {
			// list's goroutine is parked on its done channel (a handed-over item is the
			// caller's own, whose goroutine is this one).
			list.handover = list
			close(list.done)
			return
		}
		it := list
		list = it.next
		apply(it.node, it.at, it.r)
		n++
		if it.handover == nil {
			close(it.done)
		}
	}
}

// reverse turns a newest-first list oldest-first.
func reverse(l *observeItem) *observeItem {
	var out *observeItem
	for l != nil {
		next := l.next
		l.next = out
		out = l
		l = next
	}
	return out
}
