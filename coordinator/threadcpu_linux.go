package coordinator

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// threadSched is the calling OS thread's CPU time and the time it waited in the kernel's run
// queue, ready to run but without a core, both in seconds since it started. The CPU time is the
// thread's CPU clock (schedstat's own figure lags behind a thread that is running); the wait
// comes from /proc/thread-self/schedstat (0 where the kernel keeps no schedstats): on a machine
// with more runnable threads than cores it is where a round's wall time goes beyond its CPU time.
func threadSched() (cpu, wait float64) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err == nil {
		cpu = float64(ts.Sec) + float64(ts.Nsec)/1e9
	}
	if b, err := os.ReadFile("/proc/thread-self/schedstat"); err == nil {
		// "run_ns wait_ns timeslices"
		if f := bytes.Fields(b); len(f) >= 2 {
			if w, err := strconv.ParseUint(string(f[1]), 10, 64); err == nil {
				wait = float64(w) / 1e9
			}
		}
	}
	return cpu, wait
}
