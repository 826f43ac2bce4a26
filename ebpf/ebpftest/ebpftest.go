// Package ebpftest makes the kernel events the eBPF probes count, for their tests: threads
// queueing for one CPU, and a TCP handshake that must be retransmitted. It is for tests only.
package ebpftest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Waits is what the kernel's own per-thread accounting (CONFIG_SCHED_INFO, the second and third
// fields of /proc/thread-self/schedstat) timed of some threads' run-queue waits.
type Waits struct {
	// Count is how many times the threads got a CPU after waiting for one.
	Count uint64
	// Ns is how long they waited in all, in nanoseconds.
	Ns uint64
}

// ContendOneCPU runs n busy threads pinned to the first CPU this process may use, for d, so
// that they wait in that CPU's run queue. It returns the waits the kernel timed of those
// threads from when each was pinned to when it stopped spinning: the figure a run-queue probe
// must count for them.
func ContendOneCPU(t testing.TB, n int, d time.Duration) Waits {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for ; cpu < 1024 && !set.IsSet(cpu); cpu++ {
	}
	var deadline time.Time
	var wg, pinned sync.WaitGroup
	var mu sync.Mutex
	var waits Waits
	start := make(chan struct{})
	errs := make(chan error, n)
	pinned.Add(n)
	for range n {
		wg.Go(func() {
			// The thread is never unlocked, so it exits with the goroutine instead of going
			// back to the runtime pinned to one CPU.
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			err := unix.SchedSetaffinity(0, &one)
			var first Waits
			if err == nil {
				first, err = threadWaits()
			}
			pinned.Done()
			if err != nil {
				errs <- err
				return
			}
			// The threads start spinning together, once each has read its own figures: the
			// waits of threads still being pinned would fall outside the figures.
			<-start
			x := 0
			for time.Now().Before(deadline) {
				for range 1000 {
					x++
				}
			}
			_ = x
			end, err := threadWaits()
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			waits.Count += end.Count - first.Count
			waits.Ns += end.Ns - first.Ns
			mu.Unlock()
		})
	}
	pinned.Wait()
	deadline = time.Now().Add(d)
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("contend for CPU %d: %v", cpu, err)
	}
	return waits
}

// ThreadWaits reads the waits the kernel timed of every thread of this process, by thread id.
// The threads of the Go runtime wait too, wherever the machine is busy.
func ThreadWaits(t testing.TB) map[int]Waits {
	t.Helper()
	paths, err := filepath.Glob("/proc/self/task/*/schedstat")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]Waits{}
	for _, p := range paths {
		tid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		w, err := readWaits(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		out[tid] = w
	}
	return out
}

// WaitsSince sums the waits of the threads in now since before; a thread not in before
// started since, and all of its waits count.
func WaitsSince(before, now map[int]Waits) Waits {
	var sum Waits
	for tid, w := range now {
		b := before[tid]
		sum.Count += w.Count - b.Count
		sum.Ns += w.Ns - b.Ns
	}
	return sum
}

// threadWaits reads the calling thread's run-queue waits from the kernel's schedstat line:
// time on the CPU, time waiting on a run queue, slices run.
func threadWaits() (Waits, error) { return readWaits("/proc/thread-self/schedstat") }

func readWaits(path string) (Waits, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Waits{}, err
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return Waits{}, fmt.Errorf("%s reads %q", path, b)
	}
	ns, err1 := strconv.ParseUint(f[1], 10, 64)
	count, err2 := strconv.ParseUint(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return Waits{}, fmt.Errorf("%s: %w", path, err)
	}
	return Waits{Count: count, Ns: ns}, nil
}

// FullListener listens on a fresh loopback address (so retransmit counts keyed by remote
// address are the test's own) with a zero backlog, and fills its accept queue with one
// connection that is never accepted: the next SYN to it is dropped and retransmitted.
func FullListener(t testing.TB) netip.AddrPort {
	t.Helper()
	var b [2]byte
	_, _ = rand.Read(b[:])
	ip := netip.AddrFrom4([4]byte{127, 100 + b[0]%100, b[1], 1 + b[1]%250})
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip.As4()}); err != nil {
		t.Fatalf("bind %s: %v", ip, err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(ip, uint16(sa.(*unix.SockaddrInet4).Port))
	c, err := net.DialTimeout("tcp", addr.String(), time.Second)
	if err != nil {
		t.Fatalf("first connection to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}
