// Package collectortest lets the tests that share this machine's procfs with the agent's
// TaskManager discovery take turns. It is for tests only; nothing else imports it.
package collectortest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile is the same path for every test process on the machine: go test runs packages as
// separate processes at once, so an in-process mutex would not do.
var lockFile = filepath.Join(os.TempDir(), "tmwarden-test-taskmanager-discovery.lock")

// HoldTaskManagerDiscovery blocks until no other test on this machine holds it, and holds it
// until t ends. A test calls it when it starts processes that look like TaskManager JVMs in
// procfs, or runs an agent that scans procfs for them: one test's stand-ins would otherwise be
// found by another test's agent (the lab's real agent calibrated on a stand-in another package
// had started, and failed).
func HoldTaskManagerDiscovery(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatalf("TaskManager discovery lock %s: %v", lockFile, err)
	}
	start := time.Now()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("TaskManager discovery lock %s: %v", lockFile, err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %s for another test's TaskManager stand-ins to go (%s)", waited.Round(time.Second), lockFile)
	}
	// Closing the file releases the lock, also if the process dies.
	t.Cleanup(func() { f.Close() })
}
