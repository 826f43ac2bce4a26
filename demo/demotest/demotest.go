// Package demotest runs the demo in the background of a test: a real coordinator, real agents
// and the simulated cluster, on loopback ports, stopped when the test ends.
// Tests that check a surface against the live system (the status page, the dashboards) start it
// here instead of each spelling out the start, the wait and the stop.
package demotest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/demo"
)

// Start runs demo.Run with opts on free loopback ports, quiet (no table, no log), until the test
// ends; it returns once every component runs. A demo that fails to start, or ends with an error,
// fails the test.
func Start(t testing.TB, opts demo.Options) demo.Running {
	t.Helper()
	opts.GRPCAddr, opts.HTTPAddr, opts.AgentHTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	opts.Out = io.Discard
	opts.Render = func(io.Writer, []httpv1.Node, time.Time) {}
	started := make(chan demo.Running, 1)
	opts.Started = func(r demo.Running) { started <- r }
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := demo.Run(ctx, opts)
		done <- err
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	select {
	case run := <-started:
		return run
	case err := <-done:
		t.Fatalf("demo ended before it started: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("demo did not start within 2 minutes")
	}
	return demo.Running{}
}
