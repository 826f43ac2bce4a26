package collector

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// TestNeighbourCollector lays out a cgroup v1 cpuacct tree as a Kubernetes node with a systemd
// service and a bare leaf cgroup has it, and checks which cgroups are reported as neighbours,
// with what CPU and identity: never the TaskManager's cgroup, nor its pod, nor a slice.
func TestNeighbourCollector(t *testing.T) {
	sys := t.TempDir()
	acct := filepath.Join(sys, "fs", "cgroup", "cpu,cpuacct")
	const (
		tmPod    = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f9c3a52_1b2c_4d5e_8f90_123456789abc.slice"
		tmCg     = tmPod + "/cri-containerd-" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.scope"
		noisyPod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod11111111_2222_3333_4444_555555555555.slice"
		svc      = "/system.slice/backup.service"
		leaf     = "/batch"
	)
	usage := map[string]uint64{tmPod: 0, tmCg: 0, noisyPod: 0, noisyPod + "/cri-containerd-" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.scope": 0, svc: 0, leaf: 0,
		"/kubepods.slice": 0, "/kubepods.slice/kubepods-burstable.slice": 0, "/kubepods.slice/kubepods-besteffort.slice": 0, "/system.slice": 0}
	write := func(add map[string]uint64) {
		for p, v := range add {
			usage[p] += v
		}
		for p, v := range usage {
			dir := filepath.Join(acct, p)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cpuacct.usage"), []byte(strconv.FormatUint(v, 10)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(nil)
	if err := os.WriteFile(filepath.Join(acct, "cpuacct.usage"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	col, err := newNeighbourCollector(Options{Config: Config{Paths: Paths{SysFS: sys}}})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	c := col.(*neighbourCollector)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	report := func() *tmwardenv1.Report {
		r := &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: "tm-1", Pid: 42, Cgroup: tmCg}}}
		if err := c.Collect(context.Background(), r); err != nil {
			t.Fatalf("collect: %v", err)
		}
		return r
	}
	if r := report(); len(r.Cgroups) != 0 {
		t.Fatalf("first round reported %d cgroups without a rate", len(r.Cgroups))
	}
	// Five seconds later: the noisy pod used 1.5 cores, the service 0.5, the leaf 0.1, the
	// TaskManager 2 (which its pod and the slices above count too).
	write(map[string]uint64{noisyPod: 7_500_000_000, svc: 2_500_000_000, leaf: 500_000_000, tmCg: 10_000_000_000, tmPod: 10_000_000_000})
	now = now.Add(5 * time.Second)
	r := report()
	got := map[string]*tmwardenv1.CgroupStats{}
	for _, cg := range r.Cgroups {
		got[cg.Path] = cg
	}
	if len(got) != 3 {
		t.Fatalf("reported %v, want the noisy pod, the service and the leaf", keys(got))
	}
	if r.Cgroups[0].Path != noisyPod || r.Cgroups[0].CpuUsageCores != 1.5 || r.Cgroups[0].PodUid != "11111111-2222-3333-4444-555555555555" || r.Cgroups[0].TaskManager {
		t.Errorf("busiest = %+v, want the noisy pod at 1.5 cores with its uid", r.Cgroups[0])
	}
	if s := got[svc]; s == nil || s.SystemdUnit != "backup.service" || s.CpuUsageCores != 0.5 {
		t.Errorf("service = %+v", s)
	}
	if l := got[leaf]; l == nil || l.CpuUsageCores != 0.1 {
		t.Errorf("leaf = %+v", l)
	}

	// A unit removed between walks is dropped, and the next round walks the tree again.
	if err := os.RemoveAll(filepath.Join(acct, leaf)); err != nil {
		t.Fatal(err)
	}
	delete(usage, leaf)
	now = now.Add(5 * time.Second)
	r = report()
	for _, cg := range r.Cgroups {
		if cg.Path == leaf {
			t.Errorf("removed cgroup still reported: %+v", cg)
		}
	}
	if !c.lastScan.IsZero() {
		t.Error("a vanished unit did not ask for a new walk")
	}
}

func TestNeighbourCollectorNoHierarchy(t *testing.T) {
	sys := t.TempDir()
	col, err := newNeighbourCollector(Options{Config: Config{Paths: Paths{SysFS: sys}}})
	if !IsDegraded(err) {
		t.Fatalf("no cgroup hierarchy: err = %v, want degraded", err)
	}
	if err := col.Collect(context.Background(), &tmwardenv1.Report{}); !IsDegraded(err) {
		t.Fatalf("collect without hierarchy: err = %v, want degraded with the reason", err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
