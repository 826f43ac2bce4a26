package collector

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector/collectortest"
)

func tmFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/taskmanagers", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFindMainClass(t *testing.T) {
	for _, tc := range []struct {
		fixture, want string
	}{
		{"cmdline-standalone", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"},
		{"cmdline-kubernetes", "org.apache.flink.kubernetes.taskmanager.KubernetesTaskExecutorRunner"},
		{"cmdline-yarn", "org.apache.flink.yarn.YarnTaskExecutorRunner"},
		{"cmdline-wrapper", ""},    // the shell that execs the JVM mentions the class inside one argument
		{"cmdline-jobmanager", ""}, // a Flink JVM, but not a TaskManager
	} {
		args := splitCmdline(tmFixture(t, tc.fixture))
		got, idx := findMainClass(args, flinkMainClasses)
		if got != tc.want || (tc.want != "" && args[idx] != tc.want) {
			t.Errorf("%s: main class %q at %d, want %q", tc.fixture, got, idx, tc.want)
		}
	}
	if _, idx := findMainClass(nil, flinkMainClasses); idx != -1 {
		t.Error("an empty command line (kernel thread) matched")
	}
}

func TestParseTaskManagerArgs(t *testing.T) {
	args := splitCmdline(tmFixture(t, "cmdline-kubernetes"))
	_, idx := findMainClass(args, flinkMainClasses)
	a := parseTaskManagerArgs(args, idx)
	if a.configDir != "/opt/flink/conf" || a.flinkVersion != "2.0.0" || a.dynamic["taskmanager.resource-id"] != "orders-taskmanager-1-3" {
		t.Errorf("kubernetes args = %+v", a)
	}
	if _, ok := a.dynamic["log4j.configuration"]; ok {
		t.Error("a log4j JVM property was taken for Flink configuration")
	}

	args = splitCmdline(tmFixture(t, "cmdline-yarn"))
	_, idx = findMainClass(args, flinkMainClasses)
	a = parseTaskManagerArgs(args, idx)
	if a.configDir != "." || a.dynamic["metrics.reporter.prom.port"] != "9260-9270" || !strings.HasSuffix(a.logFile, "taskmanager.log") {
		t.Errorf("yarn args = %+v", a)
	}

	args = splitCmdline(tmFixture(t, "cmdline-standalone"))
	_, idx = findMainClass(args, flinkMainClasses)
	a = parseTaskManagerArgs(args, idx)
	if a.flinkVersion != "1.20.0" || a.dynamic["taskmanager.cpu.cores"] != "2.0" {
		t.Errorf("standalone args = %+v", a)
	}
}

func TestParseFlinkConf(t *testing.T) {
	f, _ := os.Open("testdata/taskmanagers/flink-conf.yaml")
	defer f.Close()
	legacy, err := parseLegacyFlinkConf(f)
	if err != nil {
		t.Fatal(err)
	}
	if legacy["metrics.reporter.prom.port"] != "9251" || legacy["taskmanager.numberOfTaskSlots"] != "4" {
		t.Errorf("flink-conf.yaml = %v", legacy)
	}
	if got := prometheusPorts(legacy); !slices.Equal(got, []portRange{{9251, 9251}}) {
		t.Errorf("legacy prometheus port = %v, want 9251 (the commented-out line ignored)", got)
	}

	g, _ := os.Open("testdata/taskmanagers/config.yaml")
	defer g.Close()
	conf, err := parseFlinkConfigYAML(g)
	if err != nil {
		t.Fatal(err)
	}
	if conf["taskmanager.resource-id"] != "worker7-tm0" || conf["jobmanager.rpc.address"] != "jobmanager" {
		t.Errorf("config.yaml = %v", conf)
	}
	// The reporter is not named "prom" here, and the push gateway reporter must not be taken.
	if got := prometheusPorts(conf); !slices.Equal(got, []portRange{{9300, 9310}}) {
		t.Errorf("config.yaml prometheus ports = %v, want 9300-9310 of reporter pm", got)
	}

	if _, err := parseFlinkConfigYAML(strings.NewReader("metrics: [unclosed\n")); err == nil || !strings.Contains(err.Error(), "config.yaml") {
		t.Errorf("malformed config.yaml: err = %v", err)
	}
	if got := prometheusPorts(map[string]string{}); got != nil {
		t.Errorf("no reporter configured gave %v", got)
	}
}

func TestParsePortSpec(t *testing.T) {
	for spec, want := range map[string][]portRange{
		"9249":             {{9249, 9249}},
		"9249-9259":        {{9249, 9259}},
		" 9250-9252,9300 ": {{9250, 9252}, {9300, 9300}},
	} {
		got, err := parsePortSpec(spec)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parsePortSpec(%q) = %v, %v; want %v", spec, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "9259-9249", "70000", "0", "9249-x"} {
		if _, err := parsePortSpec(bad); err == nil {
			t.Errorf("parsePortSpec(%q) accepted", bad)
		}
	}
}

func TestContainerFromCgroup(t *testing.T) {
	const cid = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	const cid2 = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
	for _, tc := range []struct {
		fixture, primary, container, pod string
	}{
		{"cgroup-v2-systemd-containerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d2c5d0e_7a4b_4e3b_9f7a_2f0c5e1d9a11.slice/cri-containerd-" + cid + ".scope", cid, "7d2c5d0e-7a4b-4e3b-9f7a-2f0c5e1d9a11"},
		{"cgroup-v1-cgroupfs-docker", "/kubepods/besteffort/pod3e2c7a4d-1b2c-4d5e-8f9a-0b1c2d3e4f5a/" + cid2, cid2, "3e2c7a4d-1b2c-4d5e-8f9a-0b1c2d3e4f5a"},
		{"cgroup-v2-systemd-crio", "", cid, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"},
		{"cgroup-v2-crio-conmon", "", "", "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"},
		{"cgroup-v1-yarn", "/hadoop-yarn/container_e01_1700000000000_0001_01_000002", "container_e01_1700000000000_0001_01_000002", ""},
		{"cgroup-v2-docker", "/system.slice/docker-" + cid2 + ".scope", cid2, ""},
		{"cgroup-v2-systemd-service", "/system.slice/flink-taskmanager.service", "", ""},
	} {
		lines, err := parseProcCgroup(strings.NewReader(string(tmFixture(t, tc.fixture))))
		if err != nil {
			t.Errorf("%s: %v", tc.fixture, err)
			continue
		}
		p := primaryCgroup(lines)
		if tc.primary != "" && p != tc.primary {
			t.Errorf("%s: primary cgroup %q, want %q", tc.fixture, p, tc.primary)
		}
		id, pod := containerFromCgroup(p)
		if id != tc.container || pod != tc.pod {
			t.Errorf("%s: container %q pod %q, want %q %q", tc.fixture, id, pod, tc.container, tc.pod)
		}
	}
	if _, err := parseProcCgroup(strings.NewReader(string(tmFixture(t, "cgroup-bad")))); err == nil || !strings.Contains(err.Error(), "id:controllers:path") {
		t.Errorf("bad cgroup file: err = %v", err)
	}
}

func TestParseFibTrieAndListeners(t *testing.T) {
	ips, err := parseFibTrieLocal(strings.NewReader(string(tmFixture(t, "fib_trie"))))
	if err != nil || !slices.Equal(ips, []string{"10.244.3.17"}) {
		t.Errorf("fib_trie local addresses = %v, %v; want [10.244.3.17]", ips, err)
	}
	listen := map[uint64]int{}
	for _, f := range []string{"net-tcp", "net-tcp6"} {
		if err := parseProcNetTCPListen(strings.NewReader(string(tmFixture(t, f))), listen); err != nil {
			t.Fatal(err)
		}
	}
	want := map[uint64]int{48211: 9300, 48190: 6666, 48212: 9301}
	if fmt.Sprint(listen) != fmt.Sprint(want) {
		t.Errorf("listening sockets = %v, want %v (the established one left out)", listen, want)
	}
	if err := parseProcNetTCPListen(strings.NewReader("header\n 0: 00000000:ZZZZ 00000000:0000 0A 0 0 0 0 0 0 1\n"), listen); err == nil {
		t.Error("a bad port parsed")
	}
}

// fakeProc builds a procfs tree from the fixtures: one directory per process with the files
// discovery reads, so the whole collector runs without privileges or real JVMs.
type fakeProc struct {
	t    *testing.T
	root string
}

func (f fakeProc) file(pid int, name string, content []byte) {
	f.t.Helper()
	p := filepath.Join(f.root, strconv.Itoa(pid), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f fakeProc) link(pid int, name, target string) {
	f.t.Helper()
	p := filepath.Join(f.root, strconv.Itoa(pid), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

const hostNetNS, podNetNS = "net:[4026531840]", "net:[4026532999]"

func buildFakeProc(t *testing.T) fakeProc {
	f := fakeProc{t: t, root: t.TempDir()}
	f.link(1, "ns/net", hostNetNS)
	if err := os.Symlink("1", filepath.Join(f.root, "self")); err != nil {
		t.Fatal(err)
	}
	f.file(1, "cmdline", []byte("/sbin/init\x00"))
	f.file(1, "cgroup", []byte("0::/init.scope\n"))

	// 100: standalone TaskManager in the host network, port from flink-conf.yaml.
	f.file(100, "cmdline", tmFixture(t, "cmdline-standalone"))
	f.file(100, "cgroup", tmFixture(t, "cgroup-v2-systemd-service"))
	f.file(100, "root/opt/flink/conf/flink-conf.yaml", tmFixture(t, "flink-conf.yaml"))
	f.link(100, "ns/net", hostNetNS)

	// 200: native Kubernetes TaskManager in a pod network; the pod IP comes from Flink's env.
	f.file(200, "cmdline", tmFixture(t, "cmdline-kubernetes"))
	f.file(200, "cgroup", tmFixture(t, "cgroup-v2-systemd-containerd"))
	f.file(200, "environ", tmFixture(t, "environ-kubernetes"))
	f.file(200, "root/var/run/secrets/kubernetes.io/serviceaccount/namespace", []byte("streaming\n"))
	f.link(200, "ns/net", podNetNS)

	// 300: YARN TaskManager with a port range; it listens on 9262 of 9260-9270.
	f.file(300, "cmdline", tmFixture(t, "cmdline-yarn"))
	f.file(300, "cgroup", tmFixture(t, "cgroup-v1-yarn"))
	f.file(300, "environ", tmFixture(t, "environ-yarn"))
	f.file(300, "cwd/flink-conf.yaml", tmFixture(t, "flink-conf.yaml"))
	f.file(300, "net/tcp", []byte("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"+
		"   0: 00000000:242E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5555 1 0 100 0 0 10 0\n"))
	f.link(300, "fd/7", "socket:[5555]")
	f.link(300, "fd/8", "/dev/null")
	f.link(300, "ns/net", hostNetNS)

	// 400 and 401: a wrapper shell and a JobManager, not TaskManagers; 402: a kernel thread.
	f.file(400, "cmdline", tmFixture(t, "cmdline-wrapper"))
	f.file(401, "cmdline", tmFixture(t, "cmdline-jobmanager"))
	f.file(402, "cmdline", nil)

	// 500: a TaskManager that exited after its command line was read (no cgroup file).
	f.file(500, "cmdline", tmFixture(t, "cmdline-standalone"))

	// 800: cri-o pod without Flink's env; the address comes from its network namespace.
	f.file(800, "cmdline", tmFixture(t, "cmdline-kubernetes"))
	f.file(800, "cgroup", tmFixture(t, "cgroup-v2-systemd-crio"))
	f.file(800, "net/fib_trie", tmFixture(t, "fib_trie"))
	f.link(800, "ns/net", podNetNS)
	return f
}

func newFakeTMCollector(t *testing.T, proc string, mod func(*Config)) *taskManagerCollector {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Paths.ProcFS = proc
	if mod != nil {
		mod(&cfg)
	}
	c, err := newTaskManagerCollector(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*taskManagerCollector)
}

func byPid(tms []*tmwardenv1.TaskManager) map[int32]*tmwardenv1.TaskManager {
	m := map[int32]*tmwardenv1.TaskManager{}
	for _, tm := range tms {
		m[tm.Pid] = tm
	}
	return m
}

func TestTaskManagerDiscoveryOnFixtureProc(t *testing.T) {
	f := buildFakeProc(t)
	c := newFakeTMCollector(t, f.root, func(cfg *Config) {
		cfg.TaskManagers.Static = []StaticTaskManager{
			{Endpoint: "localhost:9251", ResourceID: "worker7-tm0"}, // the standalone JVM at pid 100
			{Endpoint: "10.0.0.9:9249", ResourceID: "remote-tm"},
		}
	})
	r := &tmwardenv1.Report{}
	err := c.Collect(context.Background(), r)
	if !IsDegraded(err) || !strings.Contains(err.Error(), "TaskManager pid 500 exited") || strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("Collect = %v, want degraded naming only the TaskManager that exited mid-read", err)
	}
	got := byPid(r.TaskManagers)
	if len(r.TaskManagers) != 5 {
		t.Fatalf("found %d TaskManagers, want 4 JVMs and 1 static target: %v", len(r.TaskManagers), r.TaskManagers)
	}

	want := map[int32]*tmwardenv1.TaskManager{
		100: {Pid: 100, ResourceId: "worker7-tm0", MainClass: "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
			Cgroup: "/system.slice/flink-taskmanager.service", MetricsEndpoint: "127.0.0.1:9251", FlinkVersion: "1.20.0"},
		200: {Pid: 200, ResourceId: "orders-taskmanager-1-3", MainClass: "org.apache.flink.kubernetes.taskmanager.KubernetesTaskExecutorRunner",
			Cgroup:      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d2c5d0e_7a4b_4e3b_9f7a_2f0c5e1d9a11.slice/cri-containerd-4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b.scope",
			ContainerId: "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
			PodUid:      "7d2c5d0e-7a4b-4e3b-9f7a-2f0c5e1d9a11", PodName: "orders-taskmanager-1-3", PodNamespace: "streaming",
			MetricsEndpoint: "10.244.3.17:9249", FlinkVersion: "2.0.0"},
		300: {Pid: 300, ResourceId: "container_e01_1700000000000_0001_01_000002", MainClass: "org.apache.flink.yarn.YarnTaskExecutorRunner",
			Cgroup: "/hadoop-yarn/container_e01_1700000000000_0001_01_000002", ContainerId: "container_e01_1700000000000_0001_01_000002",
			MetricsEndpoint: "127.0.0.1:9262"},
		800: {Pid: 800, ResourceId: "orders-taskmanager-1-3", MainClass: "org.apache.flink.kubernetes.taskmanager.KubernetesTaskExecutorRunner",
			Cgroup:          "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/crio-4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b.scope",
			ContainerId:     "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
			PodUid:          "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
			MetricsEndpoint: "10.244.3.17:9249", FlinkVersion: "2.0.0"},
		0: {ResourceId: "remote-tm", MetricsEndpoint: "10.0.0.9:9249"},
	}
	for pid, w := range want {
		if g := got[pid]; !proto.Equal(g, w) {
			t.Errorf("pid %d:\n got %v\nwant %v", pid, g, w)
		}
	}

	// Second round: cached JVMs are reported again; the wrapper has exec'd into a TaskManager
	// under the same pid and is found; pid 300 exited.
	f.file(400, "cmdline", tmFixture(t, "cmdline-standalone"))
	f.file(400, "cgroup", tmFixture(t, "cgroup-v2-docker"))
	f.link(400, "ns/net", hostNetNS)
	for _, pid := range []string{"300", "500"} {
		if err := os.RemoveAll(filepath.Join(f.root, pid)); err != nil {
			t.Fatal(err)
		}
	}
	// The flink collector fills in what it scraped; the next round must not carry it over.
	got[200].Subtasks = append(got[200].Subtasks, &tmwardenv1.SubtaskMetrics{JobId: "j"})
	r = &tmwardenv1.Report{}
	if err := c.Collect(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	got = byPid(r.TaskManagers)
	if got[400] == nil || got[400].ContainerId == "" || got[300] != nil || got[200] == nil {
		t.Errorf("second round: %v", r.TaskManagers)
	}
	if len(got[200].GetSubtasks()) != 0 {
		t.Error("the second round's TaskManager carries the first round's scrape")
	}
	if _, ok := c.known[300]; ok {
		t.Error("the exited pid is still cached")
	}
}

// A process that was not a TaskManager is not read again every round once it has run a while,
// but one that execs a TaskManager is still found: at once while it is young (a wrapper
// script's exec, the usual case), within settledRecheck and a quarter once it is older; and a
// new process under a pid that was listed before is read as new.
func TestTaskManagerDiscoveryFindsLateExecs(t *testing.T) {
	f := buildFakeProc(t)
	c := newFakeTMCollector(t, f.root, nil)
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	round := func() map[int32]*tmwardenv1.TaskManager {
		t.Helper()
		r := &tmwardenv1.Report{}
		if err := c.Collect(context.Background(), r); err != nil && !IsDegraded(err) {
			t.Fatal(err)
		}
		return byPid(r.TaskManagers)
	}
	round()
	// The wrapper (400) and the JobManager (401) run for two minutes, scanned every 5 s.
	for end := now.Add(2 * time.Minute); now.Before(end); now = now.Add(5 * time.Second) {
		round()
	}
	// Now the wrapper execs a TaskManager under its pid: found by the settled re-read.
	f.file(400, "cmdline", tmFixture(t, "cmdline-standalone"))
	f.file(400, "cgroup", tmFixture(t, "cgroup-v2-docker"))
	f.link(400, "ns/net", hostNetNS)
	found := time.Duration(-1)
	for waited := time.Duration(0); waited <= settledRecheck*5/4+5*time.Second; waited += 5 * time.Second {
		if round()[400] != nil {
			found = waited
			break
		}
		now = now.Add(5 * time.Second)
	}
	if found < 0 {
		t.Fatalf("a process that exec'd a TaskManager after %s was not found within %s", 2*time.Minute, settledRecheck*5/4)
	}

	// 401 exits and its pid is reused by a TaskManager between two scans: read at once.
	if err := os.RemoveAll(filepath.Join(f.root, "401")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(5 * time.Second)
	round()
	f.file(401, "cmdline", tmFixture(t, "cmdline-standalone"))
	f.file(401, "cgroup", tmFixture(t, "cgroup-v2-docker"))
	f.link(401, "ns/net", hostNetNS)
	now = now.Add(5 * time.Second)
	if round()[401] == nil {
		t.Error("a TaskManager under a pid that was free in the previous scan was not found")
	}
}

func TestTaskManagerDiscoveryDegradesOnUnreadableProcesses(t *testing.T) {
	f := buildFakeProc(t)
	// A cmdline that cannot be read for a reason other than the process exiting.
	if err := os.MkdirAll(filepath.Join(f.root, "600", "cmdline"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newFakeTMCollector(t, f.root, nil)
	r := &tmwardenv1.Report{}
	err := c.Collect(context.Background(), r)
	if !IsDegraded(err) || !strings.Contains(err.Error(), "command line of 1 processes") {
		t.Fatalf("Collect = %v, want degraded counting 1 unreadable process", err)
	}
	if len(r.TaskManagers) != 4 {
		t.Errorf("found %d TaskManagers, want the 4 readable ones", len(r.TaskManagers))
	}
}

func TestTaskManagerDiscoveryWithoutProcfs(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-proc")
	c := newFakeTMCollector(t, missing, nil)
	err := c.Collect(context.Background(), &tmwardenv1.Report{})
	if err == nil || IsDegraded(err) {
		t.Fatalf("Collect = %v, want a failure: nothing usable", err)
	}
	c = newFakeTMCollector(t, missing, func(cfg *Config) {
		cfg.TaskManagers.Static = []StaticTaskManager{{Endpoint: "127.0.0.1:9249"}}
	})
	r := &tmwardenv1.Report{}
	if err := c.Collect(context.Background(), r); !IsDegraded(err) || len(r.TaskManagers) != 1 {
		t.Fatalf("Collect = %v with %d TaskManagers, want degraded with the static one", err, len(r.TaskManagers))
	}
	off := false
	c = newFakeTMCollector(t, missing, func(cfg *Config) {
		cfg.TaskManagers.ScanProc = &off
		cfg.TaskManagers.Static = []StaticTaskManager{{Endpoint: "127.0.0.1:9249"}}
	})
	if err := c.Collect(context.Background(), &tmwardenv1.Report{}); err != nil {
		t.Fatalf("static only: %v", err)
	}
}

func TestTaskManagerConfigRejectsBadStaticEndpoint(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TaskManagers.Static = []StaticTaskManager{{Endpoint: "no-port"}}
	if _, err := newTaskManagerCollector(Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "static[0]") {
		t.Fatalf("err = %v, want one naming static[0]", err)
	}
}

// TestTaskManagerHelperProcess is not a test: it is the stand-in JVM that the discovery test
// starts with argv[0] "java" and a Flink TaskManager command line. It listens where told and
// waits for its stdin to close.
func TestTaskManagerHelperProcess(t *testing.T) {
	addr := os.Getenv("TMWARDEN_TM_HELPER_LISTEN")
	if addr == "" {
		t.Skip("helper process for TestTaskManagerDiscoveryRealProcess")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	defer ln.Close()
	if os.Getenv("TMWARDEN_TM_HELPER_SPIN") != "" {
		go func() { // a busy JVM; ends with the process
			for x := 0; ; x++ {
				_ = x * x
			}
		}()
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// startFakeTaskManager starts the helper with a TaskManager's command line. A real Flink JVM
// cannot run here; procfs shows the helper exactly as it would show one.
func startFakeTaskManager(t *testing.T, listen string, flinkArgs ...string) *exec.Cmd {
	return startFakeTaskManagerEnv(t, listen, nil, flinkArgs...)
}

func startFakeTaskManagerEnv(t *testing.T, listen string, env []string, flinkArgs ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Args = append([]string{"java", "-test.run=^TestTaskManagerHelperProcess$", "--"}, flinkArgs...)
	cmd.Env = append(os.Environ(), "TMWARDEN_TM_HELPER_LISTEN="+listen, "_FLINK_CONTAINER_ID=container_e07_1_0002_01_000009")
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper did not start: %q %v", line, err)
	}
	return cmd
}

// freePortRange finds n consecutive free loopback ports.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for base := 30000 + os.Getpid()%20000; base < 65000; base += n {
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func TestTaskManagerDiscoveryRealProcess(t *testing.T) {
	collectortest.HoldTaskManagerDiscovery(t)
	base := freePortRange(t, 5)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+2))
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "flink-conf.yaml"), []byte(
		fmt.Sprintf("taskmanager.resource-id: real-tm-1\nmetrics.reporter.prom.port: %d-%d\n", base, base+4)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := startFakeTaskManager(t, listen,
		"-classpath", "/opt/flink/lib/flink-dist-1.20.1.jar",
		"org.apache.flink.yarn.YarnTaskExecutorRunner", "--configDir", conf)

	c := newFakeTMCollector(t, "/proc", nil)
	r := &tmwardenv1.Report{}
	err := c.Collect(context.Background(), r)
	if err != nil && !IsDegraded(err) {
		t.Fatal(err)
	}
	tm := byPid(r.TaskManagers)[int32(cmd.Process.Pid)]
	if tm == nil {
		t.Fatalf("the helper (pid %d) was not discovered; found %v", cmd.Process.Pid, r.TaskManagers)
	}
	if tm.ResourceId != "real-tm-1" || tm.MetricsEndpoint != listen || tm.FlinkVersion != "1.20.1" || tm.Cgroup == "" {
		t.Errorf("discovered %v; want resource id real-tm-1 from the config file and endpoint %s (the bound port of the range)", tm, listen)
	}

	// The JVM exits: the next round no longer reports it, and nothing breaks.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	r = &tmwardenv1.Report{}
	if err := c.Collect(context.Background(), r); err != nil && !IsDegraded(err) {
		t.Fatal(err)
	}
	if byPid(r.TaskManagers)[int32(cmd.Process.Pid)] != nil {
		t.Error("an exited TaskManager is still reported")
	}
}

func BenchmarkTaskManagerScan(b *testing.B) {
	c, err := newTaskManagerCollector(Options{Config: DefaultConfig()})
	if err != nil {
		b.Fatal(err)
	}
	// One op is one round: the clock moves by the default interval, so the processes settle
	// as they do on a node (see recheckAt).
	tc := c.(*taskManagerCollector)
	now := time.Now()
	tc.now = func() time.Time { return now }
	ctx := context.Background()
	entries, _ := os.ReadDir("/proc")
	b.ReportMetric(float64(len(entries)), "proc-entries")
	for b.Loop() {
		_ = c.Collect(ctx, &tmwardenv1.Report{})
		now = now.Add(5 * time.Second)
	}
}
