package localstate

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// LiveSet is what runs on this node now, from the TaskManager collector or the JobManagers.
// The janitor removes nothing unless Complete is true: an incomplete view must not look like
// "every job is gone".
type LiveSet struct {
	Jobs         map[string]bool // 32-hex job ids
	Allocations  map[string]bool // allocation ids (aid_<id>)
	TaskManagers map[string]bool // TaskManager resource ids (tm_<id>)
	Complete     bool
}

// DirUsage is one directory the janitor found.
type DirUsage struct {
	Path         string    `json:"path"`
	Kind         string    `json:"kind"` // allocation, taskmanager, rocksdb
	JobIDs       []string  `json:"job_ids,omitempty"`
	AllocationID string    `json:"allocation_id,omitempty"`
	TaskManager  string    `json:"task_manager,omitempty"`
	Bytes        int64     `json:"bytes"`
	ModTime      time.Time `json:"mod_time"`
	Live         bool      `json:"live"`
}

// JanitorReport is one round: usage, and what was (or in dry-run would be) removed and why.
type JanitorReport struct {
	At         time.Time  `json:"at"`
	DryRun     bool       `json:"dry_run"`
	TotalBytes int64      `json:"total_bytes"`
	Dirs       []DirUsage `json:"dirs"`
	Removed    []Removal  `json:"removed"`
}

// Removal is one directory removed (or to be removed in dry-run).
type Removal struct {
	Path   string `json:"path"`
	Bytes  int64  `json:"bytes"`
	Reason string `json:"reason"`
	Error  string `json:"error,omitempty"`
}

// Janitor cleans Flink's task-local recovery and TaskManager working directories of jobs and
// allocations that no longer exist on this node.
type Janitor struct {
	cfg  JanitorConfig
	live func() LiveSet
	log  *slog.Logger
	now  func() time.Time

	mu        sync.Mutex
	firstDead map[string]time.Time // path → when it was first seen without a live owner
	last      JanitorReport
}

// NewJanitor builds a janitor; live reports what runs on the node (nil: report usage only).
func NewJanitor(cfg JanitorConfig, live func() LiveSet, log *slog.Logger) *Janitor {
	if cfg.Interval == 0 || cfg.GracePeriod == 0 || cfg.DryRun == nil {
		c := Config{Janitor: cfg}
		c.applyDefaults()
		cfg = c.Janitor
	}
	if log == nil {
		log = slog.Default()
	}
	return &Janitor{cfg: cfg, live: live, log: log, now: time.Now, firstDead: map[string]time.Time{}}
}

// Run does a round every interval until ctx ends.
func (j *Janitor) Run(ctx context.Context) {
	t := time.NewTicker(j.cfg.Interval)
	defer t.Stop()
	for {
		r := j.Round()
		for _, rm := range r.Removed {
			j.log.Info("state janitor", "dry_run", r.DryRun, "path", rm.Path, "bytes", rm.Bytes, "reason", rm.Reason, "err", rm.Error)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Last returns the latest round's report.
func (j *Janitor) Last() JanitorReport {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

var (
	aidRe   = regexp.MustCompile(`^aid_([0-9a-fA-F]+)$`)
	jidRe   = regexp.MustCompile(`^jid_([0-9a-f]{32})$`)
	tmRe    = regexp.MustCompile(`^tm_(.+)$`)
	rocksRe = regexp.MustCompile(`^job_([0-9a-f]{32})_op_`)
)

// Scan measures the configured directories without changing anything.
func (j *Janitor) Scan(live LiveSet) []DirUsage {
	var out []DirUsage
	for _, root := range j.cfg.Dirs {
		ents, err := os.ReadDir(root)
		if err != nil {
			j.log.Debug("state janitor: read dir", "dir", root, "err", err)
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(root, e.Name())
			switch {
			case aidRe.MatchString(e.Name()):
				out = append(out, j.allocation(p, aidRe.FindStringSubmatch(e.Name())[1], "", live))
			case tmRe.MatchString(e.Name()):
				out = append(out, j.taskManager(p, tmRe.FindStringSubmatch(e.Name())[1], live)...)
			}
		}
	}
	return out
}

func (j *Janitor) allocation(p, aid, tm string, live LiveSet) DirUsage {
	d := DirUsage{Path: p, Kind: "allocation", AllocationID: aid, TaskManager: tm}
	d.Bytes, d.ModTime = du(p)
	d.Live = live.Allocations[aid]
	if ents, err := os.ReadDir(p); err == nil {
		for _, e := range ents {
			if m := jidRe.FindStringSubmatch(e.Name()); m != nil {
				d.JobIDs = append(d.JobIDs, m[1])
				d.Live = d.Live || live.Jobs[m[1]]
			}
		}
	}
	return d
}

// taskManager reports a FLIP-198 working directory: the TM itself when it is gone, else its
// local-recovery allocations and RocksDB instance dirs one by one.
func (j *Janitor) taskManager(p, rid string, live LiveSet) []DirUsage {
	if !live.TaskManagers[rid] {
		d := DirUsage{Path: p, Kind: "taskmanager", TaskManager: rid}
		d.Bytes, d.ModTime = du(p)
		return []DirUsage{d}
	}
	var out []DirUsage
	if ents, err := os.ReadDir(filepath.Join(p, "localState")); err == nil {
		for _, e := range ents {
			if m := aidRe.FindStringSubmatch(e.Name()); m != nil && e.IsDir() {
				out = append(out, j.allocation(filepath.Join(p, "localState", e.Name()), m[1], rid, live))
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(p, "tmp")); err == nil {
		for _, e := range ents {
			if m := rocksRe.FindStringSubmatch(e.Name()); m != nil && e.IsDir() {
				d := DirUsage{Path: filepath.Join(p, "tmp", e.Name()), Kind: "rocksdb", TaskManager: rid, JobIDs: []string{m[1]}, Live: live.Jobs[m[1]]}
				d.Bytes, d.ModTime = du(d.Path)
				out = append(out, d)
			}
		}
	}
	return out
}

// du sums file sizes under p and finds the newest modification time.
func du(p string) (int64, time.Time) {
	var n int64
	var newest time.Time
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if !d.IsDir() {
				n += fi.Size()
			}
			if fi.ModTime().After(newest) {
				newest = fi.ModTime()
			}
		}
		return nil
	})
	return n, newest
}

// Round scans, decides and (unless dry-run) removes. A directory goes when its owner has been
// gone for the grace period and nothing in it changed for as long; above the disk budget, dead
// directories go oldest first without waiting. Live directories are never touched.
func (j *Janitor) Round() JanitorReport {
	now := j.now()
	var live LiveSet
	if j.live != nil {
		live = j.live()
	}
	dirs := j.Scan(live)
	r := JanitorReport{At: now, DryRun: *j.cfg.DryRun, Dirs: dirs, Removed: []Removal{}}
	for _, d := range dirs {
		r.TotalBytes += d.Bytes
	}
	j.mu.Lock()
	seen := map[string]bool{}
	for _, d := range dirs {
		seen[d.Path] = true
		if d.Live {
			delete(j.firstDead, d.Path)
		} else if _, ok := j.firstDead[d.Path]; !ok {
			j.firstDead[d.Path] = now
		}
	}
	for p := range j.firstDead {
		if !seen[p] {
			delete(j.firstDead, p)
		}
	}
	firstDead := make(map[string]time.Time, len(j.firstDead))
	for k, v := range j.firstDead {
		firstDead[k] = v
	}
	j.mu.Unlock()
	if live.Complete {
		total := r.TotalBytes
		dead := make([]DirUsage, 0)
		for _, d := range dirs {
			if !d.Live {
				dead = append(dead, d)
			}
		}
		sort.Slice(dead, func(a, b int) bool { return dead[a].ModTime.Before(dead[b].ModTime) })
		for _, d := range dead {
			reason := ""
			switch {
			case now.Sub(firstDead[d.Path]) >= j.cfg.GracePeriod && now.Sub(d.ModTime) >= j.cfg.GracePeriod:
				reason = fmt.Sprintf("%s of a job/allocation/TaskManager gone for over %s", d.Kind, j.cfg.GracePeriod)
			case j.cfg.BudgetBytes > 0 && total > j.cfg.BudgetBytes:
				reason = fmt.Sprintf("over the disk budget (%d > %d bytes), oldest dead %s first", total, j.cfg.BudgetBytes, d.Kind)
			default:
				continue
			}
			rm := Removal{Path: d.Path, Bytes: d.Bytes, Reason: reason}
			if !r.DryRun {
				if err := os.RemoveAll(d.Path); err != nil {
					rm.Error = err.Error()
				}
			}
			if rm.Error == "" {
				total -= d.Bytes
			}
			r.Removed = append(r.Removed, rm)
		}
	}
	j.mu.Lock()
	j.last = r
	j.mu.Unlock()
	return r
}
