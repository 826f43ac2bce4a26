package localstate

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	liveJob = "11111111111111111111111111111111"
	deadJob = "22222222222222222222222222222222"
)

func mkfile(t *testing.T, p string, size int, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-age)
	for d := p; len(d) > 1; d = filepath.Dir(d) {
		_ = os.Chtimes(d, old, old)
		if filepath.Base(d) == "root" {
			break
		}
	}
}

// janitorTree builds a local-recovery root and a FLIP-198 working dir with live and dead state.
func janitorTree(t *testing.T) (root, work string) {
	base := t.TempDir()
	root = filepath.Join(base, "root")
	work = filepath.Join(base, "work")
	mkfile(t, filepath.Join(root, "aid_aaaa", "jid_"+liveJob, "vtx_v_sti_0", "chk_3", "_task_state_snapshot"), 1000, 3*time.Hour)
	mkfile(t, filepath.Join(root, "aid_bbbb", "jid_"+deadJob, "vtx_v_sti_0", "chk_9", "db", "000123.sst"), 5000, 3*time.Hour)
	mkfile(t, filepath.Join(root, "aid_cccc", "jid_"+deadJob, "vtx_v_sti_1", "chk_9", "db", "000124.sst"), 7000, 10*time.Minute)
	mkfile(t, filepath.Join(work, "tm_gone-1", "localState", "aid_dddd", "jid_"+deadJob, "x"), 2000, 3*time.Hour)
	mkfile(t, filepath.Join(work, "tm_alive-1", "tmp", "job_"+deadJob+"_op_Window_abc__1_4__uuid_u", "db", "1.sst"), 3000, 3*time.Hour)
	mkfile(t, filepath.Join(work, "tm_alive-1", "tmp", "job_"+liveJob+"_op_Window_abc__1_4__uuid_v", "db", "1.sst"), 3000, 3*time.Hour)
	return root, work
}

func TestJanitorDryRunThenClean(t *testing.T) {
	root, work := janitorTree(t)
	live := LiveSet{Jobs: map[string]bool{liveJob: true}, Allocations: map[string]bool{"aaaa": true},
		TaskManagers: map[string]bool{"alive-1": true}, Complete: true}
	dry := true
	j := NewJanitor(JanitorConfig{Dirs: []string{root, work}, GracePeriod: time.Hour, DryRun: &dry}, func() LiveSet { return live }, nil)
	now := time.Now()
	j.now = func() time.Time { return now }

	r := j.Round()
	if r.TotalBytes != 21000 || len(r.Dirs) != 6 {
		t.Fatalf("usage: %d bytes in %d dirs: %+v", r.TotalBytes, len(r.Dirs), r.Dirs)
	}
	if len(r.Removed) != 0 {
		t.Fatalf("removed before the grace period: %+v", r.Removed)
	}
	now = now.Add(2 * time.Hour)
	r = j.Round()
	// Two hours on, every dead directory is past the one-hour grace period (owner gone and files
	// untouched for as long): both dead allocations, the gone TaskManager and the dead RocksDB dir.
	want := map[string]bool{
		filepath.Join(root, "aid_bbbb"):  true,
		filepath.Join(root, "aid_cccc"):  true,
		filepath.Join(work, "tm_gone-1"): true,
		filepath.Join(work, "tm_alive-1", "tmp", "job_"+deadJob+"_op_Window_abc__1_4__uuid_u"): true,
	}
	if len(r.Removed) != len(want) {
		t.Fatalf("dry-run removals: %+v", r.Removed)
	}
	for _, rm := range r.Removed {
		if !want[rm.Path] {
			t.Fatalf("unexpected removal %s", rm.Path)
		}
		if _, err := os.Stat(rm.Path); err != nil {
			t.Fatalf("dry run deleted %s", rm.Path)
		}
	}
	dry = false
	r = j.Round()
	for p := range want {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not removed: %v", p, err)
		}
	}
	for _, keep := range []string{filepath.Join(root, "aid_aaaa"), filepath.Join(work, "tm_alive-1", "tmp", "job_"+liveJob+"_op_Window_abc__1_4__uuid_v")} {
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("live dir %s removed", keep)
		}
	}
	if len(r.Removed) != len(want) {
		t.Fatalf("removals: %+v", r.Removed)
	}
}

func TestJanitorBudgetAndIncompleteView(t *testing.T) {
	root, work := janitorTree(t)
	dry := false
	live := LiveSet{Jobs: map[string]bool{liveJob: true}, Allocations: map[string]bool{"aaaa": true},
		TaskManagers: map[string]bool{"alive-1": true}}
	j := NewJanitor(JanitorConfig{Dirs: []string{root, work}, GracePeriod: 24 * time.Hour, BudgetBytes: 12000, DryRun: &dry},
		func() LiveSet { return live }, nil)
	if r := j.Round(); len(r.Removed) != 0 {
		t.Fatalf("removed with an incomplete view of what runs: %+v", r.Removed)
	}
	live.Complete = true
	r := j.Round()
	// 21000 bytes, budget 12000: the oldest dead dirs go first until it fits (grace not reached).
	var freed int64
	for _, rm := range r.Removed {
		freed += rm.Bytes
	}
	if r.TotalBytes-freed > 12000 || len(r.Removed) == 0 {
		t.Fatalf("budget not enforced: %d - %d: %+v", r.TotalBytes, freed, r.Removed)
	}
	if _, err := os.Stat(filepath.Join(root, "aid_aaaa")); err != nil {
		t.Fatal("live allocation removed to meet the budget")
	}
	if _, err := os.Stat(filepath.Join(root, "aid_cccc")); err != nil {
		t.Fatal("newest dead dir removed before older ones")
	}
}
