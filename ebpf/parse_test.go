package ebpf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestParseProcCgroup(t *testing.T) {
	cases := []struct {
		file  string
		v1cpu bool
		want  string
		err   string
	}{
		{file: "cgroup-hybrid", v1cpu: true, want: "/kubepods/burstable/pod6f1c/abc123"},
		{file: "cgroup-hybrid", v1cpu: false, want: "/"},
		{file: "cgroup-v2", v1cpu: false, want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c.slice/cri-containerd-abc123.scope"},
		{file: "cgroup-v2", v1cpu: true, err: "no line for the v1 cpu controller"},
		{file: "cgroup-v1-comounted", v1cpu: true, want: "/yarn/container_1700000000000_0001_01_000002"},
		{file: "cgroup-v1-comounted", v1cpu: false, err: "no cgroup v2 (0::) line"},
		{file: "cgroup-bad", v1cpu: true, err: "line 1: want id:controllers:path"},
	}
	for _, c := range cases {
		f, err := os.Open(filepath.Join("testdata", c.file))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseProcCgroup(f, c.v1cpu)
		f.Close()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s v1cpu=%v: error %v, want one containing %q", c.file, c.v1cpu, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s v1cpu=%v: got %q, %v; want %q", c.file, c.v1cpu, got, err, c.want)
		}
	}
}

func TestParseUevent(t *testing.T) {
	for file, want := range map[string]string{"uevent-vda": "vda", "uevent-nvme-partition": "nvme0n1p1"} {
		f, err := os.Open(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		kv, err := ParseUevent(f)
		f.Close()
		if err != nil || kv["DEVNAME"] != want {
			t.Errorf("%s: DEVNAME %q, %v; want %q", file, kv["DEVNAME"], err, want)
		}
	}
	f, err := os.Open("testdata/uevent-bad")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ParseUevent(f); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad uevent: error %v, want one naming line 2", err)
	}
}

func TestDeviceNameFallsBackToNumbers(t *testing.T) {
	sys := t.TempDir()
	dir := filepath.Join(sys, "dev", "block", "254:0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uevent"), []byte("MAJOR=254\nMINOR=0\nDEVNAME=vda\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := DeviceName(sys, Dev(254<<20)); got != "vda" {
		t.Errorf("DeviceName(254:0) = %q, want vda", got)
	}
	if got := DeviceName(sys, Dev(8<<20|16)); got != "8:16" {
		t.Errorf("DeviceName of an unknown device = %q, want 8:16", got)
	}
}

func TestDetectCgroupHierarchy(t *testing.T) {
	touch := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v2 := t.TempDir()
	touch(filepath.Join(v2, "fs/cgroup/cgroup.controllers"))
	if h, err := DetectCgroupHierarchy(v2); err != nil || h.V1CPU || h.Root != filepath.Join(v2, "fs/cgroup") {
		t.Errorf("v2 host: %+v, %v", h, err)
	}
	hybrid := t.TempDir()
	touch(filepath.Join(hybrid, "fs/cgroup/unified/cgroup.controllers"))
	touch(filepath.Join(hybrid, "fs/cgroup/cpu,cpuacct/cgroup.procs"))
	if h, err := DetectCgroupHierarchy(hybrid); err != nil || !h.V1CPU || h.Root != filepath.Join(hybrid, "fs/cgroup/cpu,cpuacct") {
		t.Errorf("hybrid host: %+v, %v", h, err)
	}
	if _, err := DetectCgroupHierarchy(t.TempDir()); err == nil {
		t.Error("no cgroupfs: want an error")
	}
}

func TestCgroupResolver(t *testing.T) {
	root := t.TempDir()
	leaf := filepath.Join(root, "kubepods", "pod1", "ctr")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	r := NewCgroupResolver(root)
	if err := r.Rescan(); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{root: "/", leaf: "/kubepods/pod1/ctr"} {
		id, err := CgroupID(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := r.Path(id); !ok || got != want {
			t.Errorf("Path(%d) = %q, %v; want %q", id, got, ok, want)
		}
	}
	if err := NewCgroupResolver(filepath.Join(root, "missing")).Rescan(); err == nil {
		t.Error("missing root: want an error")
	}
}

func TestHistogramSub(t *testing.T) {
	var prev, cur Histogram
	prev.Buckets[3], prev.Count, prev.SumNs = 2, 2, 20_000
	cur.Buckets[3], cur.Buckets[5], cur.Count, cur.SumNs = 3, 1, 4, 90_000
	d := cur.Sub(prev)
	if d.Count != 2 || d.SumNs != 70_000 || d.Buckets[3] != 1 || d.Buckets[5] != 1 {
		t.Errorf("delta = %+v", d)
	}
	if got := d.TrimmedBuckets(); len(got) != 6 || got[5] != 1 {
		t.Errorf("trimmed buckets = %v, want 6 with the last = 1", got)
	}
	// The entry was deleted and recreated: everything in cur is new.
	if d := prev.Sub(cur); d != prev {
		t.Errorf("delta after a reset = %+v, want %+v", d, prev)
	}
}

func TestTracepointArgs(t *testing.T) {
	proto := func(n int) btf.Type {
		fp := &btf.FuncProto{Return: &btf.Void{}}
		for range n {
			fp.Params = append(fp.Params, btf.FuncParam{Type: &btf.Pointer{Target: &btf.Void{}}})
		}
		return &btf.Typedef{Name: "btf_trace_block_rq_issue", Type: &btf.Pointer{Target: fp}}
	}
	// 5.11+: (void *data, struct request *rq); before: (void *data, struct request_queue *q, struct request *rq).
	if got := tracepointArgs(proto(2)); got != 1 {
		t.Errorf("new block_rq_issue prototype: %d args, want 1", got)
	}
	if got := tracepointArgs(proto(3)); got != 2 {
		t.Errorf("old block_rq_issue prototype: %d args, want 2", got)
	}
	if got := tracepointArgs(&btf.Int{Name: "int", Size: 4}); got != -1 {
		t.Errorf("not a typedef: %d, want -1", got)
	}
}

func TestHaveSchedInfo(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		body string
		ok   bool
	}{
		"counting":   {"6321170 126543160 5\n", true},
		"no slices":  {"0 0 0\n", false},
		"short":      {"12\n", false},
		"not a file": {"", false},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if c.body != "" {
				if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := haveSchedInfo(p); (err == nil) != c.ok {
				t.Errorf("haveSchedInfo(%q) = %v, want ok %v", c.body, err, c.ok)
			}
		})
	}
	if err := haveSchedInfo("/proc/thread-self/schedstat"); err != nil {
		t.Logf("this kernel: %v (the run-queue probe falls back to raw_tp)", err)
	}
}
