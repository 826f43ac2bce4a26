package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReleaseStartupPages gives back the pages of the agent's own executable that only start-up
// used, as a kernel frees its __init sections once it has booted, and returns how many bytes of
// the executable were resident before.
//
// Why: Go runs the init function of every package linked into the binary before main, whether
// the process will use the package or not. The agent links the S3 gateway (versitygw, the AWS
// SDK, their Kafka, NATS and IAM packages) for the state cache, which is off by default, and its
// inits are scattered over the whole binary. Each one touched faults in a 64 KiB window of code
// and read-only data around it (the kernel's fault-around), so right after init about 22 MiB of
// the binary was resident, and the collectors' start-up (loading the eBPF probes) added more,
// none of it used again. Only the executable's read-only mappings (code, read-only data) are
// released: their pages are clean copies of the file and fault back in from it when touched
// again, so nothing is lost; the writable data mapping is left alone. MADV_PAGEOUT reclaims the
// page cache behind them where no other process maps them (kernels older than 5.4 lack it);
// MADV_DONTNEED then unmaps whatever is left from this process, so two agents started from one
// file (a test, a second agent on one host) release theirs too.
//
// cmd/tmwarden-agent calls it twice: first thing in main (what the package inits touched), and
// once the collectors are built (what loading the probes touched). bench-node shows the effect
// in the agent's RssFile.
func ReleaseStartupPages() (resident int64, err error) {
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	st, ok := exe.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("finding the executable: no inode")
	}
	ranges, err := executableMappings(st.Dev, st.Ino)
	if err != nil {
		return 0, err
	}
	if len(ranges) == 0 {
		return 0, errors.New("no read-only mapping of the executable without written pages in /proc/self/smaps")
	}
	resident = mappedResident(ranges)
	for _, r := range ranges {
		// PAGEOUT reclaims the pages no other process maps; DONTNEED then unmaps the rest
		// from this process (another process running the same file keeps its own).
		if err := madvise(r, unix.MADV_PAGEOUT); err != nil && !errors.Is(err, unix.EINVAL) {
			return resident, fmt.Errorf("releasing %#x-%#x of the executable: %w", r.start, r.end, err)
		}
		if err := madvise(r, unix.MADV_DONTNEED); err != nil {
			return resident, fmt.Errorf("releasing %#x-%#x of the executable: %w", r.start, r.end, err)
		}
	}
	return resident, nil
}

type addrRange struct{ start, end uintptr }

// madvise is madvise(2) on a range known only by its addresses (the executable's own mappings,
// no Go value refers to them as a slice).
func madvise(r addrRange, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}

// executableMappings lists the read-only (not writable) mappings of the file dev:ino in
// /proc/self/smaps that hold no anonymous pages. The file is matched by device and inode, not
// by path: an upgrade replaces the path while the old binary runs (smaps then says
// "(deleted)"). A read-only mapping with anonymous pages was written before it was made
// read-only (a dynamically linked binary's relocations, RELRO): those pages are the only copy
// of what was written, and MADV_DONTNEED would put the file's bytes back, so such a mapping is
// left alone. The release builds are static and have none.
func executableMappings(dev, ino uint64) ([]addrRange, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("reading the process's mappings: %w", err)
	}
	defer f.Close()
	var (
		out  []addrRange
		cur  addrRange
		mine bool // cur is a read-only mapping of the executable
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			if mine && string(bytes.TrimSpace(v)) == "0 kB" {
				out = append(out, cur)
			}
			mine = false
			continue
		}
		// A mapping's header: start-end perms offset major:minor inode [path]; its fields
		// ("Name: value kB") follow it.
		fs := bytes.Fields(line)
		if len(fs) < 5 || bytes.IndexByte(fs[0], '-') < 0 || bytes.HasSuffix(fs[0], []byte(":")) {
			continue
		}
		mine = false
		if len(fs) < 6 || bytes.IndexByte(fs[1], 'w') >= 0 {
			continue
		}
		if i, err := strconv.ParseUint(string(fs[4]), 10, 64); err != nil || i != ino {
			continue
		}
		maj, min, ok := bytes.Cut(fs[3], []byte{':'})
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(string(maj), 16, 32)
		mi, err2 := strconv.ParseUint(string(min), 16, 32)
		if err1 != nil || err2 != nil || unix.Mkdev(uint32(ma), uint32(mi)) != dev {
			continue
		}
		s, e, ok := bytes.Cut(fs[0], []byte{'-'})
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(s), 16, 64)
		end, err2 := strconv.ParseUint(string(e), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		cur, mine = addrRange{uintptr(start), uintptr(end)}, true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the process's mappings: %w", err)
	}
	return out, nil
}

// mappedResident is how many bytes of the ranges are mapped into the process now (present in
// /proc/self/pagemap); 0 when pagemap cannot be read.
func mappedResident(ranges []addrRange) int64 {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	var n int64
	buf := make([]byte, 8*512)
	for _, r := range ranges {
		for off := r.start / page * 8; off < r.end/page*8; {
			m := min(uintptr(len(buf)), r.end/page*8-off)
			k, err := f.ReadAt(buf[:m], int64(off))
			if k <= 0 {
				if err != nil {
					return n
				}
				break
			}
			for i := 0; i+8 <= k; i += 8 {
				// bit 63: page present
				if buf[i+7]&0x80 != 0 {
					n += int64(page)
				}
			}
			off += uintptr(k)
		}
	}
	return n
}
