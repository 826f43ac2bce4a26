package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/sys/unix"

	"github.com/tmwarden/tmwarden/packaging/helm/helmrender"
	"github.com/tmwarden/tmwarden/packaging/releasebin"
)

// moduleRoot is the module root, two levels up from this package, resolved at start: the
// in-process S3 upstream (versitygw's posix backend) changes the working directory.
var moduleRoot, moduleRootErr = filepath.Abs("../..")

func repoRoot(t *testing.T) string {
	t.Helper()
	if moduleRootErr != nil {
		t.Fatal(moduleRootErr)
	}
	return moduleRoot
}

// requireRoot skips, saying why, where the harness cannot arrange users, capabilities and
// network namespaces.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test starts processes as other users, with chosen capabilities, in network namespaces")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux setpriv, iproute2 ip): %v", tool, err)
		}
	}
}

// workDir is a directory every user can read and traverse: the TaskManager stand-ins and the
// agent run as other users, and t.TempDir() is private to root.
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "h13-deploytest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// build puts a command of this module into dir/out: tmwarden's own binaries as the release
// builds them (releasebin: built once per `make test`), anything else (the TaskManager
// stand-in) compiled with the release's settings. dir is readable by the other users the
// processes run as; the build directory need not be.
func build(t *testing.T, dir, pkg, out string) string {
	t.Helper()
	if name := filepath.Base(pkg); strings.HasPrefix(pkg, "./cmd/") && slices.Contains(releasebin.Binaries, name) {
		bin := filepath.Join(dir, out)
		b, err := os.ReadFile(filepath.Join(releasebin.Dir(t), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return bin
	}
	return releasebin.Build(t, pkg, dir, out)
}

// helmTemplate renders the chart with the pinned helm and returns its documents.
func helmTemplate(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	return helmrender.Template(t, repoRoot(t), args...)
}

func findDoc(t *testing.T, docs []map[string]any, kind, name string) map[string]any {
	t.Helper()
	return helmrender.Find(t, docs, kind, name)
}

// dig walks nested maps and lists (list indices as ints).
func dig(v any, path ...any) any { return helmrender.Dig(v, path...) }

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// privileges is how a process is started: user, group and capabilities.
type privileges struct {
	uid, gid int
	// caps are capability names without the CAP_ prefix, upper case (BPF, SYS_PTRACE).
	caps []string
	// ambient: a non-root user only holds capabilities after exec as ambient ones (systemd's
	// AmbientCapabilities=); root gets its bounding set.
	ambient   bool
	noNewPriv bool
}

func (p privileges) without(capName string) privileges {
	p.caps = slices.DeleteFunc(slices.Clone(p.caps), func(c string) bool { return c == capName })
	return p
}

// setprivArgs turns privileges into a setpriv command line prefix.
func (p privileges) setprivArgs() []string {
	list := "-all"
	for _, c := range p.caps {
		list += ",+" + strings.ToLower(c)
	}
	args := []string{"setpriv", "--reuid", strconv.Itoa(p.uid), "--regid", strconv.Itoa(p.gid), "--clear-groups",
		"--bounding-set", list}
	if p.ambient {
		args = append(args, "--inh-caps", list, "--ambient-caps", list)
	} else {
		args = append(args, "--inh-caps", "-all")
	}
	if p.noNewPriv {
		args = append(args, "--no-new-privs")
	}
	return args
}

// capMask is the CapEff bit mask of the named capabilities.
func capMask(t *testing.T, caps []string) uint64 {
	t.Helper()
	bits := map[string]uint{"DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "SYS_PTRACE": unix.CAP_SYS_PTRACE,
		"SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "PERFMON": unix.CAP_PERFMON, "BPF": unix.CAP_BPF,
		"NET_ADMIN": unix.CAP_NET_ADMIN, "SYS_ADMIN": unix.CAP_SYS_ADMIN}
	var m uint64
	for _, c := range caps {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("capability %s: unknown to the harness", c)
		}
		m |= 1 << b
	}
	return m
}

// effectiveCaps reads CapEff of a running process.
func effectiveCaps(t *testing.T, pid int) uint64 {
	t.Helper()
	return procCaps(t, strconv.Itoa(pid), "CapEff")
}

// grantable drops from p the capabilities this test process cannot pass on (outside its own
// bounding set, as CAP_SYS_RESOURCE is in some containers), and says so.
func (p privileges) grantable(t *testing.T) privileges {
	t.Helper()
	have := procCaps(t, "self", "CapBnd")
	var keep []string
	for _, c := range p.caps {
		if capMask(t, []string{c})&have == 0 {
			t.Logf("CAP_%s is outside this machine's bounding set: the agent runs without it here", c)
			continue
		}
		keep = append(keep, c)
	}
	p.caps = keep
	return p
}

func procCaps(t *testing.T, pid, field string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s*([0-9a-f]+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /proc/%s/status", field, pid)
	}
	v, err := strconv.ParseUint(string(m[1]), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// standIn is a running TaskManager stand-in (sim/tmstandin).
type standIn struct {
	pid  int
	port int
}

// startStandIn starts the stand-in with a TaskManager's command line as the given user, in
// netns when not empty, with env added. Its executable is named java, like a JVM's.
func startStandIn(t *testing.T, java string, netns string, uid int, env []string, tmArgs ...string) standIn {
	t.Helper()
	var argv []string
	if netns != "" {
		argv = append(argv, "ip", "netns", "exec", netns)
	}
	argv = append(argv, "setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(uid), "--clear-groups",
		"--inh-caps", "-all", "--bounding-set", "-all", "env")
	argv = append(argv, env...)
	argv = append(argv, java)
	argv = append(argv, tmArgs...)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "listening "))
	if err != nil || perr != nil {
		t.Fatalf("stand-in did not start: %q %v\n%s", line, err, stderr.String())
	}
	// ip netns exec, setpriv and env all exec in place: the pid is the stand-in's.
	return standIn{pid: cmd.Process.Pid, port: port}
}

// agentRun is a running agent.
type agentRun struct {
	pid  int
	addr string
}

var listenLine = regexp.MustCompile(`"msg":"agent http listening".*?"addr":"([^"]+)"`)

// startAgent starts the agent binary with the configuration file under p.
func startAgent(t *testing.T, bin string, p privileges, config string, flags ...string) agentRun {
	t.Helper()
	return startAgentWrapped(t, nil, bin, p, config, flags...)
}

// startAgentWrapped is startAgent behind a wrapper command (a mount namespace) that execs the rest.
func startAgentWrapped(t *testing.T, wrapper []string, bin string, p privileges, config string, flags ...string) agentRun {
	t.Helper()
	argv := append(slices.Clone(wrapper), p.setprivArgs()...)
	argv = append(argv, bin, "--config="+config, "--http-addr=127.0.0.1:0")
	argv = append(argv, flags...)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NODE_NAME=h13-node")
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var logs syncBuffer
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := listenLine.FindSubmatch(sc.Bytes()); m != nil {
				select {
				case addrc <- string(m[1]):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cancel()
			<-exited
		}
		pw.Close()
		cancel()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	select {
	case addr := <-addrc:
		return agentRun{pid: cmd.Process.Pid, addr: addr}
	case err := <-exited:
		exited <- err // for the cleanup
		time.Sleep(100 * time.Millisecond)
		t.Fatalf("the agent exited before serving: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent did not start serving within a minute")
	}
	return agentRun{}
}

// debugStatus is the part of the agent's /debug/status the tests read.
type debugStatus struct {
	Collectors []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"collectors"`
	LastReport *struct {
		TaskManagers []struct {
			Pid             int    `json:"pid"`
			MetricsEndpoint string `json:"metricsEndpoint"`
			ScrapeError     string `json:"scrapeError"`
			Subtasks        []any  `json:"subtasks"`
		} `json:"taskManagers"`
	} `json:"last_report"`
}

func (s debugStatus) collector(name string) (state, reason string) {
	for _, c := range s.Collectors {
		if c.Name == name {
			return c.State, c.Reason
		}
	}
	return "", ""
}

// waitStatus polls /debug/status until ok accepts it; on timeout it fails with the last one.
func waitStatus(t *testing.T, a agentRun, what string, ok func(debugStatus) bool) debugStatus {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last []byte
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + a.addr + "/debug/status")
		if err == nil {
			last, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			var st debugStatus
			if json.Unmarshal(last, &st) == nil && ok(st) {
				return st
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: last /debug/status:\n%s", what, last)
	return debugStatus{}
}

// syncBuffer is a bytes.Buffer safe for one writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// podNetwork is a network namespace joined to the host by a veth pair, as a pod's is.
type podNetwork struct {
	name, hostIP, podIP string
}

func newPodNetwork(t *testing.T) podNetwork {
	t.Helper()
	n := os.Getpid() % 100000
	name := fmt.Sprintf("h13-%d", n)
	subnet := 1 + n%250
	p := podNetwork{name: name, hostIP: fmt.Sprintf("10.213.%d.1", subnet), podIP: fmt.Sprintf("10.213.%d.2", subnet)}
	host, peer := fmt.Sprintf("h13-%dh", n), fmt.Sprintf("h13-%dp", n)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	run("netns", "add", name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", host).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	run("link", "add", host, "type", "veth", "peer", "name", peer)
	run("link", "set", peer, "netns", name)
	run("addr", "add", p.hostIP+"/30", "dev", host)
	run("link", "set", host, "up")
	run("-n", name, "addr", "add", p.podIP+"/30", "dev", peer)
	run("-n", name, "link", "set", peer, "up")
	run("-n", name, "link", "set", "lo", "up")
	return p
}

// freePortRange finds n consecutive free ports on every address.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for base := 20000 + os.Getpid()%30000; base < 65000; base += n {
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(p)))
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

// coordRun is a running coordinator: the release binary with a store in a private directory,
// on loopback ports it chose itself.
type coordRun struct {
	grpc, http string
	bin        string // tmwardenctl, beside it
}

var serveLine = regexp.MustCompile(`"msg":"coordinator serving".*?"grpc":"([^"]+)".*?"http":"([^"]+)"`)

// startCoordinator starts the coordinator binary as the release builds it and waits until it
// serves. It is not what these tests examine, so it runs with the test's own privileges.
func startCoordinator(t *testing.T, dir string) coordRun {
	t.Helper()
	bin := build(t, dir, "./cmd/tmwarden-coordinator", "tmwarden-coordinator")
	ctl := build(t, dir, "./cmd/tmwardenctl", "tmwardenctl")
	data, err := os.MkdirTemp(dir, "coordinator-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(data, "coordinator.yaml")
	body := fmt.Sprintf("data_dir: %s\ngrpc_addr: 127.0.0.1:0\nhttp_addr: 127.0.0.1:0\nlog_level: info\n", filepath.Join(data, "store"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	var logs syncBuffer
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if m := serveLine.FindSubmatch(sc.Bytes()); m != nil {
				select {
				case addrs <- [2]string{string(m[1]), string(m[2])}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("coordinator log:\n%s", logs.String())
		}
	})
	select {
	case a := <-addrs:
		return coordRun{grpc: a[0], http: a[1], bin: ctl}
	case err := <-exited:
		exited <- err // for the cleanup
		t.Fatalf("the coordinator exited before serving: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the coordinator did not serve within a minute:\n%s", logs.String())
	}
	return coordRun{}
}

// poll calls ok every half second until it returns true or 90 s have passed; then it fails
// with what ok last said was missing.
func poll(t *testing.T, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		done, why := ok()
		if done {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %s", what, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// statusPageCollectors loads the coordinator's status page on a node's drill-down in headless
// Chromium (the page renders the API's record with JavaScript: --dump-dom after the page's
// fetches) and returns its collectors table as name -> [state, reason].
func statusPageCollectors(chromium, url string) (map[string][2]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir, err := os.MkdirTemp("", "h13-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+dataDir, "--virtual-time-budget=3000", "--dump-dom", url)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("chromium --dump-dom %s: %w\n%s", url, err, errb.String())
	}
	doc, err := html.Parse(&out)
	if err != nil {
		return nil, fmt.Errorf("parsing the dumped DOM: %w", err)
	}
	rows := map[string][2]string{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "tr" {
			for _, a := range n.Attr {
				if a.Key == "data-collector" {
					var cells []string
					for c := n.FirstChild; c != nil; c = c.NextSibling {
						if c.Type == html.ElementNode && c.Data == "td" {
							cells = append(cells, domText(c))
						}
					}
					if len(cells) == 3 {
						rows[a.Val] = [2]string{cells[1], cells[2]}
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return rows, nil
}

func domText(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(domText(c))
	}
	return b.String()
}
