package collector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

const (
	// neighbourRescanEvery bounds the walks of the cgroup tree: pods and units come and go far
	// slower than the report interval, and a unit that vanishes in between triggers a walk.
	neighbourRescanEvery = 15 * time.Second
	// maxNeighbourDepth bounds the walk: kubepods.slice/kubepods-burstable.slice/pod…/container
	// is four levels, systemd's deepest slices a few more.
	maxNeighbourDepth = 8
	// maxNeighbourUnits bounds what one walk keeps on a machine with a huge cgroup tree.
	maxNeighbourUnits = 2048
)

// neighbourCollector reports the CPU used by the node's other cgroups — pods, systemd units,
// any leaf cgroup that is not a TaskManager's — so that the coordinator can name the neighbour
// that takes the CPU from the TaskManagers. It runs after the cgroups row, whose TaskManager
// cgroups (and their ancestors and descendants, which count the TaskManager's own CPU) it
// leaves out.
type neighbourCollector struct {
	// dir is the hierarchy walked: cgroup v1's cpuacct, or the unified hierarchy.
	dir string
	// usageFile is cpuacct.usage (v1, nanoseconds) or cpu.stat (v2, usage_usec).
	usageFile string
	version   uint32
	// reason is why no hierarchy could be used ("" when one is).
	reason string

	units    []string
	lastScan time.Time
	prev     map[string]cpuReading
	now      func() time.Time
}

type cpuReading struct {
	at      time.Time
	usageNs uint64
}

func newNeighbourCollector(o Options) (Collector, error) {
	sys := o.Config.Paths.SysFS
	if sys == "" {
		sys = "/sys"
	}
	c := &neighbourCollector{prev: map[string]cpuReading{}, now: time.Now}
	c.findHierarchy(filepath.Join(sys, "fs", "cgroup"))
	if c.reason != "" {
		return c, Degradedf("neighbours: %s", c.reason)
	}
	return c, nil
}

// findHierarchy picks the hierarchy whose cgroups account CPU: pure cgroup v2, else v1's
// cpuacct (mounted alone or joined with cpu), else a hybrid host's unified hierarchy.
func (c *neighbourCollector) findHierarchy(root string) {
	if exists(filepath.Join(root, "cgroup.controllers")) {
		c.dir, c.usageFile, c.version = root, "cpu.stat", 2
		return
	}
	for _, name := range []string{"cpuacct", "cpu,cpuacct", "cpuacct,cpu"} {
		if d := filepath.Join(root, name); exists(filepath.Join(d, "cpuacct.usage")) {
			c.dir, c.usageFile, c.version = d, "cpuacct.usage", 1
			return
		}
	}
	if d := filepath.Join(root, "unified"); exists(filepath.Join(d, "cgroup.controllers")) {
		c.dir, c.usageFile, c.version = d, "cpu.stat", 2
		return
	}
	c.reason = fmt.Sprintf("no cgroup hierarchy accounting CPU under %s (neither cgroup v2 nor v1 cpuacct): neighbours' CPU unknown", root)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (c *neighbourCollector) Collect(_ context.Context, r *tmwardenv1.Report) error {
	if c.reason != "" {
		return Degradedf("neighbours: %s", c.reason)
	}
	var tms []string
	for _, tm := range r.TaskManagers {
		if tm.Cgroup != "" {
			tms = append(tms, tm.Cgroup)
		}
	}
	for _, cg := range r.Cgroups {
		if cg.TaskManager {
			tms = append(tms, cg.Path)
		}
	}
	at := c.now()
	if c.units == nil || at.Sub(c.lastScan) >= neighbourRescanEvery {
		units, err := scanUnits(c.dir)
		if err != nil {
			return fmt.Errorf("neighbours: walking %s: %w", c.dir, err)
		}
		c.units, c.lastScan = units, at
	}
	next := make(map[string]cpuReading, len(c.units))
	var out []*tmwardenv1.CgroupStats
	gone := false
	var problems []string
	for _, u := range c.units {
		if related(u, tms) {
			continue
		}
		ns, err := c.usage(u)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				gone = true // removed since the walk: walk again next round
			} else {
				problems = append(problems, fmt.Sprintf("%s: %v", u, err))
			}
			continue
		}
		cur := cpuReading{at: at, usageNs: ns}
		next[u] = cur
		prev, ok := c.prev[u]
		if !ok || !cur.at.After(prev.at) || cur.usageNs < prev.usageNs {
			continue // first reading (or a recreated cgroup): no rate yet
		}
		cores := float64(cur.usageNs-prev.usageNs) / 1e9 / cur.at.Sub(prev.at).Seconds()
		st := &tmwardenv1.CgroupStats{Path: u, Version: c.version, CpuUsageCores: cores}
		st.ContainerId, st.PodUid = containerFromCgroup(u)
		if b := path.Base(u); strings.HasSuffix(b, ".service") || (strings.HasSuffix(b, ".scope") && st.ContainerId == "") {
			st.SystemdUnit = b
		}
		out = append(out, st)
	}
	c.prev = next
	if gone {
		c.lastScan = time.Time{}
	}
	// The busiest first, and no more than the run-queue collector reports: the culprit is
	// among the busiest, and a node with hundreds of idle units should not grow every report.
	slices.SortFunc(out, func(a, b *tmwardenv1.CgroupStats) int {
		switch {
		case a.CpuUsageCores > b.CpuUsageCores:
			return -1
		case a.CpuUsageCores < b.CpuUsageCores:
			return 1
		}
		return strings.Compare(a.Path, b.Path)
	})
	if len(out) > maxReportedCgroups {
		out = out[:maxReportedCgroups]
	}
	r.Cgroups = append(r.Cgroups, out...)
	if len(problems) > 0 {
		return Degradedf("neighbours: %s", strings.Join(problems, "; "))
	}
	return nil
}

// usage reads a cgroup's cumulative CPU time in nanoseconds.
func (c *neighbourCollector) usage(unit string) (uint64, error) {
	p := filepath.Join(c.dir, unit, c.usageFile)
	if c.version == 1 {
		return readValue(p)
	}
	stat, err := readFlat(p)
	if err != nil {
		return 0, err
	}
	v, ok := stat["usage_usec"]
	if !ok {
		return 0, fmt.Errorf("%s: no usage_usec", p)
	}
	return v * 1000, nil
}

// related says whether a unit is a TaskManager's cgroup, holds one (a pod's cgroup counts its
// container's CPU) or sits inside one.
func related(unit string, tms []string) bool {
	for _, tm := range tms {
		if unit == tm || strings.HasPrefix(tm, unit+"/") || strings.HasPrefix(unit, tm+"/") {
			return true
		}
	}
	return false
}

// scanUnits walks a cgroup hierarchy for the units worth naming, as paths relative to its
// root: a Kubernetes pod's cgroup, a systemd service or scope, or any other cgroup without
// children. Slices and other inner cgroups are descended, never reported: their usage is the
// sum of their children's, and a culprit must be something one can act on.
func scanUnits(root string) ([]string, error) {
	var units []string
	var walk func(rel string, depth int) error
	walk = func(rel string, depth int) error {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			if rel != "/" && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		children := 0
		for _, e := range entries {
			if !e.IsDir() || len(units) >= maxNeighbourUnits {
				continue
			}
			children++
			child := path.Join(rel, e.Name())
			if depth+1 >= maxNeighbourDepth || isUnit(e.Name()) {
				units = append(units, child)
				continue
			}
			if err := walk(child, depth+1); err != nil {
				return err
			}
		}
		if children == 0 && rel != "/" {
			units = append(units, rel)
		}
		return nil
	}
	if err := walk("/", 0); err != nil {
		return nil, err
	}
	return units, nil
}

// isUnit says whether a cgroup's name makes it a unit of its own: a pod, a systemd service or
// scope (a container's scope under a pod is reached through the pod).
func isUnit(name string) bool {
	return podUIDRe.MatchString(name) || strings.HasSuffix(name, ".service") || strings.HasSuffix(name, ".scope")
}
