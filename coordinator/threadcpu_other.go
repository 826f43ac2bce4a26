//go:build !linux

package coordinator

// threadCPU is not measured outside Linux.
func threadCPU() float64 { return 0 }
