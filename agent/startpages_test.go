package agent

import (
	"os"
	"syscall"
	"testing"
)

// TestReleaseStartupPages checks that the executable's read-only pages mapped by start-up (the
// test binary's package inits, as the agent's) are no longer mapped after the release, and that
// the process keeps running the released code (it faults back in from the file). Under -race
// the test binary is dynamically relocated (read-only pages that were written, RELRO): had
// those been released, the process would crash when the race runtime runs at exit.
func TestReleaseStartupPages(t *testing.T) {
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	st := exe.Sys().(*syscall.Stat_t)
	ranges, err := executableMappings(st.Dev, st.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) < 2 {
		t.Fatalf("want the executable's code and read-only data mappings, found %d: %+v", len(ranges), ranges)
	}
	before := mappedResident(ranges)
	if before == 0 {
		t.Skip("/proc/self/pagemap shows no present pages (not readable here)")
	}
	resident, err := ReleaseStartupPages()
	if err != nil {
		t.Fatal(err)
	}
	after := mappedResident(ranges)
	t.Logf("executable mapped: %d KiB before, %d KiB reported by the release, %d KiB after", before>>10, resident>>10, after>>10)
	if resident <= 0 {
		t.Errorf("ReleaseStartupPages reported %d bytes resident before it released them", resident)
	}
	// What runs between the release and the second count (this test, the counting itself,
	// the runtime) faults some pages back in, a small share of what start-up mapped.
	if after > before/2 {
		t.Errorf("after the release %d KiB of the executable are still mapped, of %d KiB before", after>>10, before>>10)
	}
	// The released code still runs: a second release works and reports what came back.
	if _, err := ReleaseStartupPages(); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

func TestExecutableMappingsMatchesByInode(t *testing.T) {
	ranges, err := executableMappings(^uint64(0), ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) != 0 {
		t.Errorf("mappings of a file that does not exist: %+v", ranges)
	}
}
