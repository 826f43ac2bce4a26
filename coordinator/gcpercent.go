package coordinator

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// DefaultGCPercent is Config.GCPercent's default. At 10,000 nodes the coordinator holds some
// 370 MB of heap and 256 MiB of goroutine stacks (a stream's share of gRPC's and its own), and
// Go's default (GOGC=100) lets the heap grow by as much again before each collection: peak RSS
// 1.1-1.2 GiB. At 50 the same fleet peaks under 1 GiB (docs/operating.md, Memory; make
// bench-scale), for GC cycles twice as often, which cost a few hundredths of a core there.
const DefaultGCPercent = 50

// ApplyGCPercent sets the garbage collector's target (runtime/debug.SetGCPercent) to
// cfg.GCPercent, unless the GOGC environment variable is set, which wins as it does for any Go
// program. It returns the percentage in force and where it came from ("gc_percent" or "GOGC").
// The process's tmwarden-coordinator command calls it; a Coordinator built in another program
// (a test, the simulator) leaves that program's setting alone.
func ApplyGCPercent(cfg Config, log *slog.Logger) (int, string) {
	if env := os.Getenv("GOGC"); env != "" {
		// The runtime read it at start; SetGCPercent(-1) then back tells what it made of it.
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		log.Info("garbage collector target from GOGC, gc_percent ignored", "gogc", env, "gc_percent", cfg.GCPercent)
		return p, "GOGC"
	}
	debug.SetGCPercent(cfg.GCPercent)
	return cfg.GCPercent, "gc_percent"
}
