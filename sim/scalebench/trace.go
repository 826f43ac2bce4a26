package main

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// roundRegion is the region of the Go execution trace the coordinator wraps every evaluation
// round in (runtime/trace.StartRegion in coordinator.evaluate).
const roundRegion = "evaluation round"

// roundTime is where one round's wall time went, from the Go scheduler's view of the round's
// goroutine: running on a thread (Go does not see the kernel taking that thread's core away; the
// round's own run_queue_seconds does), runnable (in Go's run queue, waiting for a P), waiting (on
// a lock, a channel, the garbage collector), in a system call; and what part of its running was
// spent assisting the garbage collector, and how much of the round the collector's mark phase
// overlapped.
type roundTime struct {
	wall, running, runnable, waiting, syscall, assist, gcMark time.Duration
	// waits sums the waiting time by reason and where the goroutine blocked.
	waits map[string]time.Duration
}

// analyseTrace reads a Go execution trace of the coordinator and returns every evaluation round
// it holds from start to end.
func analyseTrace(path string) ([]roundTime, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading trace %s: %w", path, err)
	}
	type goState struct {
		state trace.GoState
		since trace.Time
		wait  string
		// round is the round the goroutine is in, nil outside one.
		round       *roundTime
		assistSince trace.Time
	}
	gs := map[trace.GoID]*goState{}
	get := func(id trace.GoID) *goState {
		g := gs[id]
		if g == nil {
			g = &goState{}
			gs[id] = g
		}
		return g
	}
	var (
		out                      []roundTime
		open                     = map[*roundTime]trace.Time{}
		gcMark                   bool
		gcSince                  trace.Time
		roundBegan, roundStarted = map[trace.GoID]trace.Time{}, map[trace.GoID]bool{}
	)
	// account adds the time g spent in its state since the last transition to its round.
	account := func(g *goState, now trace.Time) {
		if g.round == nil || g.since == 0 {
			return
		}
		d := now.Sub(g.since)
		switch g.state {
		case trace.GoRunning:
			g.round.running += d
		case trace.GoRunnable:
			g.round.runnable += d
		case trace.GoWaiting:
			g.round.waiting += d
			g.round.waits[g.wait] += d
		case trace.GoSyscall:
			g.round.syscall += d
		}
	}
	// gcOverlap adds the mark phase's time in [from, to] to every open round.
	gcOverlap := func(now trace.Time) {
		for rt, began := range open {
			rt.gcMark += now.Sub(max(began, gcSince))
		}
	}
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("reading trace %s: %w", path, err)
		}
		now := ev.Time()
		switch ev.Kind() {
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			g := get(st.Resource.Goroutine())
			account(g, now)
			_, to := st.Goroutine()
			g.state, g.since = to, now
			if to == trace.GoWaiting {
				g.wait = st.Reason + " at " + blockedAt(st.Stack)
			}
		case trace.EventRegionBegin:
			if ev.Region().Type != roundRegion {
				continue
			}
			g := get(ev.Goroutine())
			rt := &roundTime{waits: map[string]time.Duration{}}
			g.round, g.state, g.since = rt, trace.GoRunning, now
			open[rt] = now
			roundBegan[ev.Goroutine()], roundStarted[ev.Goroutine()] = now, true
		case trace.EventRegionEnd:
			if ev.Region().Type != roundRegion {
				continue
			}
			g := get(ev.Goroutine())
			if g.round == nil || !roundStarted[ev.Goroutine()] {
				continue
			}
			account(g, now)
			if gcMark {
				g.round.gcMark += now.Sub(max(roundBegan[ev.Goroutine()], gcSince))
			}
			g.round.wall = now.Sub(roundBegan[ev.Goroutine()])
			delete(open, g.round)
			out = append(out, *g.round)
			g.round, g.since = nil, now
			delete(roundStarted, ev.Goroutine())
		case trace.EventRangeBegin, trace.EventRangeActive:
			rg := ev.Range()
			switch {
			case strings.HasPrefix(rg.Name, "GC concurrent mark"):
				gcMark, gcSince = true, now
			case rg.Name == "GC mark assist" && rg.Scope.Kind == trace.ResourceGoroutine:
				get(rg.Scope.Goroutine()).assistSince = now
			}
		case trace.EventRangeEnd:
			rg := ev.Range()
			switch {
			case strings.HasPrefix(rg.Name, "GC concurrent mark"):
				if gcMark {
					gcOverlap(now)
				}
				gcMark = false
			case rg.Name == "GC mark assist" && rg.Scope.Kind == trace.ResourceGoroutine:
				g := get(rg.Scope.Goroutine())
				if g.round != nil && g.assistSince != 0 {
					g.round.assist += now.Sub(max(g.assistSince, roundBegan[rg.Scope.Goroutine()]))
				}
				g.assistSince = 0
			}
		}
	}
	return out, nil
}

// blockedAt names where a goroutine blocked: the innermost frame outside the runtime and the
// sync and time packages, with the frame it was called from in them.
func blockedAt(s trace.Stack) string {
	var inner string
	for fr := range s.Frames() {
		fn := fr.Func
		if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "internal/") {
			continue
		}
		if strings.HasPrefix(fn, "sync.") || strings.HasPrefix(fn, "time.") || strings.HasPrefix(fn, "context.") {
			if inner == "" {
				inner = fn
			}
			continue
		}
		fn = strings.TrimPrefix(fn, "github.com/tmwarden/tmwarden/")
		if inner != "" {
			return inner + " in " + fn
		}
		return fn
	}
	return cmp.Or(inner, "the runtime")
}

// printRounds prints where each traced round's wall time went.
func printRounds(rts []roundTime, tracePath string) {
	if len(rts) == 0 {
		fmt.Printf("  %-34s no whole round in %s\n", "round in the Go execution trace", tracePath)
		return
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	fmt.Printf("  round in the Go execution trace (%s; the round's goroutine as Go's scheduler saw it)\n", tracePath)
	for i, rt := range rts {
		fmt.Printf("    round %d: wall %.1f ms = running %.1f (of which assisting the GC %.1f) + runnable, waiting for a P %.1f + waiting %.1f + syscall %.1f ms; GC mark phase over %.0f%% of it\n",
			i+1, ms(rt.wall), ms(rt.running), ms(rt.assist), ms(rt.runnable), ms(rt.waiting), ms(rt.syscall), 100*float64(rt.gcMark)/float64(max(1, rt.wall)))
		type w struct {
			at string
			d  time.Duration
		}
		var ws []w
		for at, d := range rt.waits {
			ws = append(ws, w{at, d})
		}
		slices.SortFunc(ws, func(a, b w) int { return cmp.Compare(b.d, a.d) })
		for _, x := range ws[:min(3, len(ws))] {
			if x.d >= time.Millisecond {
				fmt.Printf("      waiting %.1f ms: %s\n", ms(x.d), x.at)
			}
		}
	}
}
