package deploytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/tmwarden/tmwarden/api/httpv1"
	"github.com/tmwarden/tmwarden/collector/collectortest"
)

// chartAgentPrivileges reads the agent container's user and capabilities from the rendered
// DaemonSet, and its configuration from the rendered ConfigMap.
func chartAgentPrivileges(t *testing.T, docs []map[string]any) (privileges, map[string]any) {
	t.Helper()
	ds := findDoc(t, docs, "DaemonSet", "t-tmwarden-agent")
	sc := dig(ds, "spec", "template", "spec", "containers", 0, "securityContext")
	if d := strs(dig(sc, "capabilities", "drop")); !slices.Equal(d, []string{"ALL"}) {
		t.Fatalf("the chart does not drop ALL capabilities: %v", d)
	}
	uid, _ := dig(sc, "runAsUser").(int)
	gid, _ := dig(sc, "runAsGroup").(int)
	p := privileges{uid: uid, gid: gid, caps: strs(dig(sc, "capabilities", "add")),
		noNewPriv: dig(sc, "allowPrivilegeEscalation") == false}
	var cfg map[string]any
	body, _ := dig(findDoc(t, docs, "ConfigMap", "t-tmwarden-agent"), "data", "agent.yaml").(string)
	if err := yaml.Unmarshal([]byte(body), &cfg); err != nil {
		t.Fatalf("rendered agent.yaml: %v", err)
	}
	return p, cfg
}

// unitAgentPrivileges reads User=, Group=, AmbientCapabilities=, CapabilityBoundingSet= and
// NoNewPrivileges= from the systemd unit.
func unitAgentPrivileges(t *testing.T) privileges {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "packaging/systemd/tmwarden-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
			keys[k] = v
		}
	}
	ambient := strings.Fields(keys["AmbientCapabilities"])
	if bounding := strings.Fields(keys["CapabilityBoundingSet"]); !slices.Equal(ambient, bounding) {
		t.Fatalf("unit: AmbientCapabilities %v differ from CapabilityBoundingSet %v; the harness runs the intersection only when they agree", ambient, bounding)
	}
	var caps []string
	for _, c := range ambient {
		caps = append(caps, strings.TrimPrefix(c, "CAP_"))
	}
	p := privileges{caps: caps, ambient: true, noNewPriv: keys["NoNewPrivileges"] == "yes"}
	// The package creates the user in its preinstall script (and systemd-sysusers on later
	// boots). Where it does not exist yet, the test runs that very script, as dpkg would, so the
	// agent runs as the user the package makes; only where that cannot run (not root, no
	// useradd) does a free uid stand in: a system user with no other privilege.
	if _, err := user.Lookup(keys["User"]); err != nil && os.Geteuid() == 0 {
		script := filepath.Join(repoRoot(t), "packaging/scripts/preinstall.sh")
		if out, err := exec.Command("sh", script).CombinedOutput(); err != nil {
			t.Logf("the package's preinstall script could not create user %q: %v\n%s", keys["User"], err, out)
		}
	}
	if u, err := user.Lookup(keys["User"]); err == nil {
		p.uid, _ = strconv.Atoi(u.Uid)
		p.gid, _ = strconv.Atoi(u.Gid)
	} else {
		t.Logf("user %q (User= of the unit) does not exist here; uid/gid 61313 stand in for it", keys["User"])
		p.uid, p.gid = 61313, 61313
	}
	if p.uid == 0 {
		t.Fatalf("the unit runs the agent as root")
	}
	return p
}

// writeAgentConfig writes cfg for a run on this machine: the host's /proc and /sys are where
// they are (the chart mounts them at /host/proc and /host/sys, which do not exist here).
func writeAgentConfig(t *testing.T, dir string, cfg map[string]any) string {
	t.Helper()
	if cfg == nil {
		cfg = map[string]any{}
	}
	cols, _ := cfg["collectors"].(map[string]any)
	if cols == nil {
		cols = map[string]any{}
		cfg["collectors"] = cols
	}
	cols["paths"] = map[string]any{"procfs": "/proc", "sysfs": "/sys"}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// agentFlags: reports every second, no coordinator (reports wait in the buffer), and no eBPF
// probes, which this test is not about and which cost seconds of CPU to load on each start.
var agentFlags = []string{"--interval=1s", "--coordinator=127.0.0.1:1",
	"--collector.ebpf_runqueue=false", "--collector.ebpf_blockio=false", "--collector.ebpf_tcpretrans=false"}

// flinkConf writes a Flink configuration directory readable by everyone (as a ConfigMap mount
// or a distribution's conf/ is) with the reporter on a port range.
func flinkConf(t *testing.T, dir, name, ports string) string {
	t.Helper()
	conf := filepath.Join(dir, name)
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "metrics.reporter.prom.factory.class: org.apache.flink.metrics.prometheus.PrometheusReporterFactory\n" +
		"metrics.reporter.prom.port: " + ports + "\n"
	if err := os.WriteFile(filepath.Join(conf, "flink-conf.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// scraped reports whether the status shows each wanted pid at its endpoint, scraped, and both
// discovery and scrape collectors OK.
func scraped(want map[int]string) func(debugStatus) bool {
	return func(st debugStatus) bool {
		if s, _ := st.collector("taskmanagers"); s != "STATE_OK" {
			return false
		}
		if s, _ := st.collector("flink"); s != "STATE_OK" {
			return false
		}
		if st.LastReport == nil {
			return false
		}
		found := 0
		for _, tm := range st.LastReport.TaskManagers {
			if ep, ok := want[tm.Pid]; ok && tm.MetricsEndpoint == ep && tm.ScrapeError == "" && len(tm.Subtasks) > 0 {
				found++
			}
		}
		return found == len(want)
	}
}

// degradedFor waits until discovery is degraded naming the capability, checks that no
// TaskManager of want carries a (guessed) endpoint and that the reason says what is missing.
func degradedFor(t *testing.T, a agentRun, capName string, want map[int]string) {
	t.Helper()
	st := waitStatus(t, a, "taskmanagers degraded naming CAP_"+capName, func(st debugStatus) bool {
		s, r := st.collector("taskmanagers")
		return s == "STATE_DEGRADED" && strings.Contains(r, "lacks CAP_"+capName) && st.LastReport != nil
	})
	_, reason := st.collector("taskmanagers")
	if err := reasonNames(capName, want)(reason); err != nil {
		t.Error(err)
	}
	for _, tm := range st.LastReport.TaskManagers {
		if _, ok := want[tm.Pid]; ok && (tm.MetricsEndpoint != "" || tm.ScrapeError == "") {
			t.Errorf("without CAP_%s, TaskManager pid %d got endpoint %q (scrape error %q); want none and the reason",
				capName, tm.Pid, tm.MetricsEndpoint, tm.ScrapeError)
		}
	}
	// The scrape collector has nothing to scrape for them: degraded too, not OK.
	if s, r := st.collector("flink"); s != "STATE_DEGRADED" || !strings.Contains(r, "not scraped for want of a metrics endpoint") {
		t.Errorf("without CAP_%s the flink collector is %s (%q); want degraded for the TaskManagers it cannot scrape", capName, s, r)
	}
	t.Logf("without CAP_%s: %s", capName, reason)
}

// reasonNames checks a taskmanagers reason: it names the missing capability as the fix, not
// the one the agent holds, and each TaskManager of want.
func reasonNames(capName string, want map[int]string) func(string) error {
	return func(reason string) error {
		var problems []string
		if !strings.Contains(reason, "lacks CAP_"+capName) {
			problems = append(problems, "does not name CAP_"+capName+" as missing")
		}
		for _, other := range []string{"SYS_PTRACE", "DAC_READ_SEARCH"} {
			if other != capName && strings.Contains(reason, "lacks CAP_"+other) {
				problems = append(problems, "names CAP_"+other+" missing, which the agent holds")
			}
		}
		for pid := range want {
			if !strings.Contains(reason, fmt.Sprintf("pid %d", pid)) {
				problems = append(problems, fmt.Sprintf("does not name pid %d", pid))
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("the degraded reason %s: %q", strings.Join(problems, ", "), reason)
		}
		return nil
	}
}

// reasonOnEverySurface checks that the collector's degraded state reaches every place an
// operator looks, with the agent's reason word for word: the agent's /metrics
// (tmwarden_collector_state says degraded, not ok), the node's record in the coordinator's API,
// `tmwardenctl node NAME` (the release binary against that API) and, with statusPage, the
// coordinator's status page in headless Chromium (it renders the same API record; one test
// checking it is enough for the machine's CPU). Each surface must show the
// reason /debug/status gives just before or just after it is read (TaskManagers of other tests
// running on this machine may come and go and change the text between rounds), and that reason
// must pass the caller's check (capability and pids named).
func reasonOnEverySurface(t *testing.T, a agentRun, coord coordRun, node, collector string, check func(reason string) error, statusPage bool) {
	t.Helper()
	poll(t, "tmwarden_collector_state on the agent's /metrics to say "+collector+" is degraded", func() (bool, string) {
		states, err := collectorStates(a)
		if err != nil {
			return false, err.Error()
		}
		got := states[collector]
		return got["degraded"] == 1 && got["ok"] == 0 && len(got) == 4,
			fmt.Sprintf("tmwarden_collector_state{collector=%q} by state: %v", collector, got)
	})
	// sameAsAgent reads the surface between two reads of the agent's reason and accepts what it
	// shows when it is one of them and passes check.
	sameAsAgent := func(read func() (string, string)) func() (bool, string) {
		return func() (bool, string) {
			before := agentReason(a, collector)
			shown, why := read()
			after := agentReason(a, collector)
			if why != "" {
				return false, why
			}
			if shown != before && shown != after {
				return false, fmt.Sprintf("shows %q; the agent's /debug/status says %q", shown, after)
			}
			if err := check(shown); err != nil {
				return false, err.Error()
			}
			return true, ""
		}
	}
	poll(t, "node "+node+"'s record in the coordinator's API to show "+collector+" degraded with the agent's reason", sameAsAgent(func() (string, string) {
		resp, err := http.Get("http://" + coord.http + "/api/v1/nodes/" + node)
		if err != nil {
			return "", err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var d httpv1.NodeDetail
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &d) != nil {
			return "", fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
		}
		for _, c := range d.Collectors {
			if c.Name == collector {
				if c.State != "degraded" {
					return "", fmt.Sprintf("%s is %q: %q", collector, c.State, c.Reason)
				}
				return c.Reason, ""
			}
		}
		return "", fmt.Sprintf("no collector %s in the record: %s", collector, body)
	}))
	poll(t, "`tmwardenctl node "+node+"` to show "+collector+" degraded with the agent's reason", sameAsAgent(func() (string, string) {
		out, err := exec.Command(coord.bin, "--server", "http://"+coord.http, "node", node).CombinedOutput()
		if err != nil {
			return "", fmt.Sprintf("%v: %s", err, out)
		}
		// The collectors table's row: NAME, STATE and the reason as the last column.
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == collector && f[1] == "degraded" {
				_, reason, _ := strings.Cut(strings.TrimSpace(line)[len(collector):], "degraded")
				return strings.TrimSpace(reason), ""
			}
		}
		return "", "no row \"" + collector + "  degraded  REASON\" in:\n" + string(out)
	}))
	if !statusPage {
		return
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Logf("chromium is not installed (make test-deps installs it): the status page is not checked")
		return
	}
	poll(t, "the status page's drill-down of "+node+" to show "+collector+" degraded with the agent's reason", sameAsAgent(func() (string, string) {
		rows, err := statusPageCollectors(chromium, "http://"+coord.http+"/#node/"+node)
		if err != nil {
			return "", err.Error()
		}
		row, ok := rows[collector]
		if !ok || row[0] != "degraded" {
			return "", fmt.Sprintf("collectors table: %q", rows)
		}
		return row[1], ""
	}))
}

// agentReason is the collector's reason in the agent's /debug/status now ("" when unreadable).
func agentReason(a agentRun, collector string) string {
	resp, err := http.Get("http://" + a.addr + "/debug/status")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st debugStatus
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return ""
	}
	_, r := st.collector(collector)
	return r
}

// collectorStates reads tmwarden_collector_state from the agent's /metrics as collector ->
// state -> value.
func collectorStates(a agentRun) (map[string]map[string]float64, error) {
	resp, err := http.Get("http://" + a.addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the agent's /metrics: %w", err)
	}
	out := map[string]map[string]float64{}
	for _, m := range fams["tmwarden_collector_state"].GetMetric() {
		var c, s string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "collector":
				c = l.GetValue()
			case "state":
				s = l.GetValue()
			}
		}
		if out[c] == nil {
			out[c] = map[string]float64{}
		}
		out[c][s] = m.GetGauge().GetValue()
	}
	return out, nil
}

// TestAgentFindsPodTaskManagerUnderChartPrivileges: the pod case. A TaskManager of another
// uid (65534) runs in its own network namespace with POD_IP set, its reporter on a port range;
// the agent runs with exactly the user and capabilities of the rendered chart (no host network,
// so in another network namespace than the TaskManager, as in its own pod). Each capability the
// chart adds for discovery is then removed in turn: the collector must say it is degraded and
// why, never report a guessed endpoint, and say so on every surface an operator reads (the
// agent's /debug/status and /metrics, a real coordinator's API record, `tmwardenctl node`, the
// status page in headless Chromium).
func TestAgentFindsPodTaskManagerUnderChartPrivileges(t *testing.T) {
	collectortest.HoldTaskManagerDiscovery(t)
	requireRoot(t, "setpriv", "ip")
	docs := helmTemplate(t)
	priv, cfg := chartAgentPrivileges(t, docs)
	priv = priv.grantable(t)
	if priv.uid != 0 {
		t.Fatalf("the chart runs the agent as uid %d; this test expects root without capabilities", priv.uid)
	}
	dir := workDir(t)
	agentBin := build(t, dir, "./cmd/tmwarden-agent", "tmwarden-agent")
	java := build(t, dir, "./sim/tmstandin", "flink/bin/java")
	conf := flinkConf(t, dir, "conf", "9250-9260")
	config := writeAgentConfig(t, dir, cfg)

	pod := newPodNetwork(t)
	tm := startStandIn(t, java, pod.name, 65534, []string{"POD_IP=" + pod.podIP, "_FLINK_POD_NAME=orders-taskmanager-1-1"},
		"-Xmx1g", "-classpath", "/opt/flink/lib/flink-dist-2.0.0.jar",
		"org.apache.flink.kubernetes.taskmanager.KubernetesTaskExecutorRunner", "--configDir", conf)
	want := map[int]string{tm.pid: net.JoinHostPort(pod.podIP, strconv.Itoa(tm.port))}

	a := startAgent(t, agentBin, priv, config, agentFlags...)
	if got, wantCaps := effectiveCaps(t, a.pid), capMask(t, priv.caps); got != wantCaps {
		t.Fatalf("agent CapEff %#x, want exactly the chart's %v (%#x)", got, priv.caps, wantCaps)
	}
	waitStatus(t, a, fmt.Sprintf("pid %d found at %s and scraped", tm.pid, want[tm.pid]), scraped(want))

	// Without either capability, the reason reaches every surface: the agents report to a real
	// coordinator, each as its own node.
	coord := startCoordinator(t, dir)
	for _, c := range []string{"SYS_PTRACE", "DAC_READ_SEARCH"} {
		t.Run("without_"+c, func(t *testing.T) {
			node := "h13-pod-without-" + strings.ToLower(strings.ReplaceAll(c, "_", "-"))
			a := startAgent(t, agentBin, priv.without(c), config,
				append(slices.Clone(agentFlags), "--coordinator="+coord.grpc, "--node-name="+node)...)
			degradedFor(t, a, c, want)
			reasonOnEverySurface(t, a, coord, node, "taskmanagers", reasonNames(c, want), true)
		})
	}
}

// TestAgentFindsHostTaskManagersUnderSystemdUnit: the bare-metal case. Two TaskManagers of the
// flink user (9999) on one host share metrics.reporter.prom.port as a range, so they bound its
// first and second port; the agent runs as the unit's user with the unit's capabilities. With
// either discovery capability removed, the collector is degraded with the reason, which reaches
// a real coordinator's API and tmwardenctl unchanged.
func TestAgentFindsHostTaskManagersUnderSystemdUnit(t *testing.T) {
	collectortest.HoldTaskManagerDiscovery(t)
	requireRoot(t, "setpriv")
	priv := unitAgentPrivileges(t).grantable(t)
	dir := workDir(t)
	agentBin := build(t, dir, "./cmd/tmwarden-agent", "tmwarden-agent")
	java := build(t, dir, "./sim/tmstandin", "flink/bin/java")
	base := freePortRange(t, 5)
	conf := flinkConf(t, dir, "conf", fmt.Sprintf("%d-%d", base, base+4))
	config := writeAgentConfig(t, dir, nil)

	want := map[int]string{}
	for i := range 2 {
		tm := startStandIn(t, java, "", 9999, nil,
			"-Xmx1g", "-classpath", "/opt/flink/lib/flink-dist-1.20.1.jar", "-Dlog.file=/opt/flink/log/tm.log",
			"org.apache.flink.runtime.taskexecutor.TaskManagerRunner", "--configDir", conf,
			"-D", fmt.Sprintf("taskmanager.resource-id=host-tm-%d", i))
		want[tm.pid] = net.JoinHostPort("127.0.0.1", strconv.Itoa(tm.port))
	}

	a := startAgent(t, agentBin, priv, config, agentFlags...)
	if got, wantCaps := effectiveCaps(t, a.pid), capMask(t, priv.caps); got != wantCaps {
		t.Fatalf("agent CapEff %#x, want exactly the unit's %v (%#x)", got, priv.caps, wantCaps)
	}
	waitStatus(t, a, fmt.Sprintf("both TaskManagers found at their own ports %v and scraped", want), scraped(want))

	coord := startCoordinator(t, dir)
	for _, c := range []string{"SYS_PTRACE", "DAC_READ_SEARCH"} {
		t.Run("without_"+c, func(t *testing.T) {
			node := "h13-host-without-" + strings.ToLower(strings.ReplaceAll(c, "_", "-"))
			a := startAgent(t, agentBin, priv.without(c), config,
				append(slices.Clone(agentFlags), "--coordinator="+coord.grpc, "--node-name="+node)...)
			degradedFor(t, a, c, want)
			reasonOnEverySurface(t, a, coord, node, "taskmanagers", reasonNames(c, want), false)
		})
	}
}
