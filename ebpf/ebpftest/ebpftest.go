// Package ebpftest makes the kernel events the eBPF probes count, for their tests: threads
// queueing for one CPU, and a TCP handshake that must be retransmitted. It is for tests only.
package ebpftest

import (
	"crypto/rand"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ContendOneCPU runs n busy threads pinned to the first CPU this process may use, for d, so
// that they wait in that CPU's run queue.
func ContendOneCPU(t testing.TB, n int, d time.Duration) {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for ; cpu < 1024 && !set.IsSet(cpu); cpu++ {
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			// The thread is never unlocked, so it exits with the goroutine instead of going
			// back to the runtime pinned to one CPU.
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				errs <- err
				return
			}
			x := 0
			for time.Now().Before(deadline) {
				for range 1000 {
					x++
				}
			}
			_ = x
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("pin thread to CPU %d: %v", cpu, err)
	}
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
