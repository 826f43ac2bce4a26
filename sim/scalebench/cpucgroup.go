package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The CPU weights of the two cpu cgroups (cgroup v1 cpu.shares; v2's cpu.weight is derived from
// them). The coordinator's is the kernel's maximum: whenever one of its threads is ready it gets
// a core ahead of the simulated fleet and of other work on the machine, as it would on cores of
// its own. The fleet's is ten times a plain process's, the weight a process at nice -10 has, so
// that it still offers its reports on time on a busy machine; it takes what the coordinator
// leaves.
const (
	coordinatorShares = 262144
	fleetShares       = 10240
)

// cpuIsolation holds the coordinator and this process (the simulated fleet) in separate cpu
// cgroups, so that the round's wall time measures the coordinator on cores it has to itself,
// not the 0.3–0.5 cores the fleet takes beside it on a small machine. Nothing is capped: the
// fleet runs whenever the coordinator has no thread ready.
type cpuIsolation struct {
	coordinator, fleet string // cgroup directories
	// home is the cgroup this process came from, to go back to before the fleet's is removed.
	home   string
	v2     bool
	weight string // the file the weight is written to
}

// newCPUIsolation makes the two cgroups, cgroup v2's cpu controller first, else v1's, and moves
// this process into the fleet's. It fails where neither can be written (not root, no cpu
// controller, a v2 hierarchy that does not delegate cpu); the caller then says so and runs
// without.
func newCPUIsolation(name string) (*cpuIsolation, error) {
	hs, errs := hierarchies("cpu", "cpu.weight", "cpu.shares")
	for _, c := range hs {
		home, err := ownCgroup(c.v2)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		iso := &cpuIsolation{coordinator: filepath.Join(c.root, name+"-coordinator"), fleet: filepath.Join(c.root, name+"-fleet"),
			home: filepath.Join(c.root, home), v2: c.v2, weight: c.file}
		if err := iso.make(); err != nil {
			iso.remove()
			errs = append(errs, err)
			continue
		}
		return iso, nil
	}
	return nil, errors.Join(errs...)
}

func (c *cpuIsolation) make() error {
	for _, g := range []struct {
		dir    string
		shares int
	}{{c.coordinator, coordinatorShares}, {c.fleet, fleetShares}} {
		if err := os.Mkdir(g.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		w := g.shares
		if c.v2 {
			w = sharesToWeight(w)
		}
		if err := os.WriteFile(filepath.Join(g.dir, c.weight), []byte(strconv.Itoa(w)), 0o644); err != nil {
			return fmt.Errorf("%s: %w", g.dir, err)
		}
	}
	return c.move(c.fleet, os.Getpid())
}

// sharesToWeight maps cgroup v1 shares onto cgroup v2's weight as the kernel's and systemd's
// conversion does: [2, 262144] onto [1, 10000].
func sharesToWeight(shares int) int { return 1 + (shares-2)*9999/262142 }

// addCoordinator moves the coordinator (every thread of it) into its cgroup.
func (c *cpuIsolation) addCoordinator(pid int) error { return c.move(c.coordinator, pid) }

func (c *cpuIsolation) move(dir string, pid int) error {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("moving process %d into %s: %w", pid, dir, err)
	}
	return nil
}

// describe says what the isolation is, for the table's header.
func (c *cpuIsolation) describe() string {
	if c == nil {
		return ""
	}
	v, file := "v1", "cpu.shares"
	co, fl := coordinatorShares, fleetShares
	if c.v2 {
		v, file, co, fl = "v2", "cpu.weight", sharesToWeight(co), sharesToWeight(fl)
	}
	return fmt.Sprintf("CPU: the coordinator in cgroup %s %s (%s %d), the simulated fleet in %s (%s %d), nothing capped: the coordinator gets a core whenever a thread of it is ready, as on cores of its own; the fleet takes what it leaves",
		v, c.coordinator, file, co, c.fleet, file, fl)
}

// remove moves this process back where it came from and deletes both cgroups; the
// coordinators in them have exited by then.
func (c *cpuIsolation) remove() {
	if c == nil {
		return
	}
	_ = c.move(c.home, os.Getpid())
	_ = os.Remove(c.coordinator)
	_ = os.Remove(c.fleet)
}

// ownCgroup is this process's cgroup path in the cpu hierarchy (v1) or the unified one (v2),
// from /proc/self/cgroup.
func ownCgroup(v2 bool) (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], nil
		}
		if !v2 && strings.Contains(","+parts[1]+",", ",cpu,") {
			return parts[2], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("/proc/self/cgroup names no cpu cgroup for this process")
}
