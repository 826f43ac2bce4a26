package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// memoryCgroup holds the coordinator in a memory cgroup limited as the Helm chart limits the
// coordinator's container (coordinator.resources.limits.memory), so that the bench measures it
// as it ships: its soft memory limit comes from the cgroup (automemlimit, in package daemon),
// and going over the hard one gets it killed, as in a pod.
type memoryCgroup struct {
	dir   string
	v2    bool
	limit int64
}

// newMemoryCgroup makes the cgroup, cgroup v2's memory controller first, else v1's. It fails
// where neither can be written (not root, no memory controller); the caller then says so.
func newMemoryCgroup(name string, limit int64) (*memoryCgroup, error) {
	hs, errs := hierarchies("memory", "memory.max", "memory.limit_in_bytes")
	for _, c := range hs {
		dir := filepath.Join(c.root, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			errs = append(errs, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			_ = os.Remove(dir)
			errs = append(errs, err)
			continue
		}
		return &memoryCgroup{dir: dir, v2: c.v2, limit: limit}, nil
	}
	return nil, errors.Join(errs...)
}

// add moves a process into the cgroup. The few pages it touched before are charged where it
// started; everything it allocates from then on is charged here.
func (m *memoryCgroup) add(pid int) error {
	return os.WriteFile(filepath.Join(m.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// oomKills is how many times the kernel killed a process of the cgroup for going over.
func (m *memoryCgroup) oomKills() int64 {
	file := "memory.oom_control"
	if m.v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(m.dir, file))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// peak is the cgroup's memory high-water mark in MiB (0: unknown); it stays after its process
// was killed. cgroup v1 counts the page cache the process caused too.
func (m *memoryCgroup) peak() float64 {
	file := "memory.max_usage_in_bytes"
	if m.v2 {
		file = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(m.dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	return n / (1 << 20)
}

// remove deletes the cgroup once its processes are gone.
func (m *memoryCgroup) remove() { _ = os.Remove(m.dir) }

// chartMemoryLimit reads coordinator.resources.limits.memory from the chart's values, in bytes.
func chartMemoryLimit(values string) (int64, error) {
	b, err := os.ReadFile(values)
	if err != nil {
		return 0, fmt.Errorf("the chart's values (run from the repository root): %w", err)
	}
	var v struct {
		Coordinator struct {
			Resources struct {
				Limits struct {
					Memory string `yaml:"memory"`
				} `yaml:"limits"`
			} `yaml:"resources"`
		} `yaml:"coordinator"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("%s: %w", values, err)
	}
	q, err := resource.ParseQuantity(v.Coordinator.Resources.Limits.Memory)
	if err != nil {
		return 0, fmt.Errorf("%s: coordinator.resources.limits.memory %q: %w", values, v.Coordinator.Resources.Limits.Memory, err)
	}
	return q.Value(), nil
}

// chartHolds is the fleet the chart's default memory limit is sized for: its values.yaml and
// README say "2Gi holds 10,000 nodes ... 30,000 need 6Gi", the limit growing with the fleet.
const chartHolds = 10_000

// sizedMemoryLimit is the limit a fleet of nodes runs under: the chart's default for the
// fleets it holds, and for a larger fleet that limit grown in proportion and rounded up to a
// whole GiB, as an operator following the chart would set it (30,000 nodes: 6 GiB).
func sizedMemoryLimit(chart int64, nodes int) int64 {
	if nodes <= chartHolds {
		return chart
	}
	need := chart * int64(nodes) / chartHolds
	return (need + 1<<30 - 1) &^ (1<<30 - 1)
}
