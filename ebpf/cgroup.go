package ebpf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// CgroupHierarchy is the cgroup tree whose ids key the run-queue histograms.
type CgroupHierarchy struct {
	// Root is where the hierarchy is mounted, e.g. /sys/fs/cgroup or /sys/fs/cgroup/cpu.
	Root string
	// V1CPU is true for the v1 cpu controller's hierarchy: on v1 and hybrid hosts every task
	// sits in the unified root, and containers are placed by the cpu hierarchy.
	V1CPU bool
}

// DetectCgroupHierarchy picks the hierarchy under sysfs (normally /sys): the unified one when
// the host runs cgroup v2 only, otherwise the v1 cpu controller's.
func DetectCgroupHierarchy(sysfs string) (CgroupHierarchy, error) {
	base := filepath.Join(sysfs, "fs", "cgroup")
	if exists(filepath.Join(base, "cgroup.controllers")) {
		return CgroupHierarchy{Root: base}, nil
	}
	for _, name := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
		if dir := filepath.Join(base, name); exists(filepath.Join(dir, "cgroup.procs")) {
			return CgroupHierarchy{Root: dir, V1CPU: true}, nil
		}
	}
	if dir := filepath.Join(base, "unified"); exists(filepath.Join(dir, "cgroup.controllers")) {
		return CgroupHierarchy{Root: dir}, nil
	}
	return CgroupHierarchy{}, fmt.Errorf("no cgroup v2 or v1 cpu hierarchy mounted under %s", base)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// CgroupID returns the id of the cgroup at path: the inode of its directory in cgroupfs, which
// is what the kernel's kernfs node id is on 64-bit hosts.
func CgroupID(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup id of %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("cgroup id of %s: no inode", path)
	}
	return st.Ino, nil
}

// maxCgroups bounds the resolver's table; a host with more cgroups resolves the first ones.
const maxCgroups = 1 << 16

// CgroupResolver maps cgroup ids to paths inside one hierarchy, such as
// /kubepods/burstable/pod<uid>/<container>, the form /proc/PID/cgroup uses.
type CgroupResolver struct {
	root  string
	paths map[uint64]string
}

// NewCgroupResolver resolves ids of the hierarchy mounted at root. It scans lazily.
func NewCgroupResolver(root string) *CgroupResolver {
	return &CgroupResolver{root: root, paths: map[uint64]string{}}
}

// Path returns the cgroup path of id from the last scan.
func (r *CgroupResolver) Path(id uint64) (string, bool) {
	p, ok := r.paths[id]
	return p, ok
}

// Rescan walks the hierarchy again. Cgroups that vanish mid-walk are skipped.
func (r *CgroupResolver) Rescan() error {
	paths := map[uint64]string{}
	err := filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != r.root {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if len(paths) >= maxCgroups {
			return filepath.SkipAll
		}
		id, err := CgroupID(path)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(r.root, path)
		paths[id] = "/" + strings.TrimPrefix(filepath.ToSlash(rel), ".")
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan cgroups under %s: %w", r.root, err)
	}
	r.paths = paths
	return nil
}

// CgroupLine is one line of /proc/PID/cgroup: "hierarchy-id:controllers:path". The cgroup v2
// line has id 0 and no controllers.
type CgroupLine struct {
	ID          int
	Controllers []string
	Path        string
}

// ParseProcCgroupLines reads every line of /proc/PID/cgroup.
func ParseProcCgroupLines(r io.Reader) ([]CgroupLine, error) {
	var out []CgroupLine
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("cgroup line %d: want id:controllers:path, got %q", n, line)
		}
		id, err := strconv.Atoi(parts[0])
		if err != nil {
			return nil, fmt.Errorf("cgroup line %d: bad hierarchy id %q", n, parts[0])
		}
		l := CgroupLine{ID: id, Path: parts[2]}
		if parts[1] != "" {
			l.Controllers = strings.Split(parts[1], ",")
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading cgroup: %w", err)
	}
	return out, nil
}

// V1Path returns the path of the v1 hierarchy that has controller, with all its controllers,
// or "" if none has.
func V1Path(lines []CgroupLine, controller string) (string, []string) {
	for _, l := range lines {
		if slices.Contains(l.Controllers, controller) {
			return l.Path, l.Controllers
		}
	}
	return "", nil
}

// UnifiedPath returns the path in the cgroup v2 hierarchy (the "0::" line), if there is one.
func UnifiedPath(lines []CgroupLine) (string, bool) {
	for _, l := range lines {
		if l.ID == 0 && len(l.Controllers) == 0 {
			return l.Path, true
		}
	}
	return "", false
}

// ParseProcCgroup reads /proc/PID/cgroup and returns the process's path in the hierarchy the
// run-queue probe uses: the unified one ("0::/path"), or the v1 one holding the cpu controller.
func ParseProcCgroup(r io.Reader, v1cpu bool) (string, error) {
	lines, err := ParseProcCgroupLines(r)
	if err != nil {
		return "", err
	}
	if v1cpu {
		if p, _ := V1Path(lines, "cpu"); p != "" {
			return p, nil
		}
		return "", errors.New("cgroup file: no line for the v1 cpu controller")
	}
	if p, ok := UnifiedPath(lines); ok {
		return p, nil
	}
	return "", errors.New("cgroup file: no cgroup v2 (0::) line")
}
