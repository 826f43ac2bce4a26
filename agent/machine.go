package agent

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// machine is what the agent reads of its own hardware for Hello: with the configured labels
// (instance type, pool) it is the node's hardware class, so the coordinator compares a node
// with machines like it rather than with a faster generation.
type machine struct {
	cpuModel    string
	numCPUs     uint32
	memoryBytes uint64
}

// readMachine reads /proc/cpuinfo and /proc/meminfo under procfs; what cannot be read stays zero.
func readMachine(procfs string) machine {
	if procfs == "" {
		procfs = "/proc"
	}
	var m machine
	if f, err := os.Open(filepath.Join(procfs, "cpuinfo")); err == nil {
		m.cpuModel, m.numCPUs = parseCPUInfo(f)
		f.Close()
	}
	if f, err := os.Open(filepath.Join(procfs, "meminfo")); err == nil {
		m.memoryBytes = parseMemTotal(f)
		f.Close()
	}
	return m
}

// parseCPUInfo returns the first "model name" (x86) or "Model"/"CPU part" (arm) and the number
// of "processor" entries.
func parseCPUInfo(r io.Reader) (model string, cpus uint32) {
	sc := bufio.NewScanner(r)
	var part string
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "processor":
			cpus++
		case "model name", "Model":
			if model == "" {
				model = v
			}
		case "CPU part":
			if part == "" {
				part = "CPU part " + v
			}
		}
	}
	if model == "" {
		model = part
	}
	return model, cpus
}

// parseMemTotal returns MemTotal in bytes, 0 when absent.
func parseMemTotal(r io.Reader) uint64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
