//go:build !linux

package coordinator

// threadSched is not measured outside Linux.
func threadSched() (cpu, wait float64) { return 0, 0 }
