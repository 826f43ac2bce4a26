package coordinator

import (
	"context"
	"testing"
	"time"
)

// A report waits while any round runs, including rounds that overlap, and goes on when the
// last one ends or its stream's context does.
func TestPauseHoldsReportsUntilTheLastRoundEnds(t *testing.T) {
	var p pause
	passed := func() <-chan struct{} {
		done := make(chan struct{})
		go func() { p.wait(context.Background()); close(done) }()
		return done
	}
	select {
	case <-passed():
	case <-time.After(30 * time.Second):
		t.Fatal("wait blocked with no round running")
	}
	p.begin()
	p.begin()
	w := passed()
	p.end()
	select {
	case <-w:
		t.Fatal("wait returned while a second round still ran")
	case <-time.After(50 * time.Millisecond):
	}
	p.end()
	select {
	case <-w:
	case <-time.After(30 * time.Second):
		t.Fatal("wait still blocked after the last round ended")
	}
	p.begin()
	defer p.end()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.wait(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("wait ignored its context")
	}
}
