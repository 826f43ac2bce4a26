package collector

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// flinkMainClasses are the entry points of Flink's TaskManager JVMs: standalone, native
// Kubernetes and YARN.
var flinkMainClasses = []string{
	"org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
	"org.apache.flink.kubernetes.taskmanager.KubernetesTaskExecutorRunner",
	"org.apache.flink.yarn.YarnTaskExecutorRunner",
}

// taskManagerCollector finds the Flink TaskManager JVMs on this node in procfs and adds the
// configured static targets. Later collectors (the Flink scrape, cgroups) start from its list.
type taskManagerCollector struct {
	proc        string
	mainClasses []string
	defaultPort int
	scan        bool
	static      []StaticTaskManager
	self        int
	// known caches what was learnt about a pid: the command line, config file and cgroup of a
	// JVM do not change while it lives. An exec() that turns a wrapper script into the JVM keeps
	// the pid, so only TaskManagers are cached, and the command line is compared on every scan.
	known map[int]*tmProcess
}

type tmProcess struct {
	cmdline []byte
	tm      *tmwardenv1.TaskManager
	// portRange is set when the configured port was a range: the JVM bound the first free port
	// in it, which is looked up among its listening sockets until found.
	portRange []portRange
	resolved  bool
	attempts  int
}

// maxPortLookups bounds how many rounds a port range is looked up among the JVM's sockets; a
// reporter that never binds (not enabled) then keeps the range's first port.
const maxPortLookups = 12

type portRange struct{ lo, hi int }

func newTaskManagerCollector(o Options) (Collector, error) {
	cfg := o.Config.TaskManagers
	c := &taskManagerCollector{
		proc:        procRoot(o.Config.Paths),
		mainClasses: append(slices.Clone(flinkMainClasses), cfg.ExtraMainClasses...),
		defaultPort: cfg.DefaultPort,
		scan:        cfg.ScanProc == nil || *cfg.ScanProc,
		static:      cfg.Static,
		self:        os.Getpid(),
		known:       map[int]*tmProcess{},
	}
	if c.defaultPort <= 0 {
		c.defaultPort = 9249
	}
	for i, s := range cfg.Static {
		if _, _, err := net.SplitHostPort(s.Endpoint); err != nil {
			return nil, fmt.Errorf("collectors.taskmanagers.static[%d]: endpoint %q: %w", i, s.Endpoint, err)
		}
	}
	return c, nil
}

func (c *taskManagerCollector) Collect(ctx context.Context, r *tmwardenv1.Report) error {
	var problems []string
	var tms []*tmwardenv1.TaskManager
	if c.scan {
		found, probs, err := c.scanProc(ctx)
		if err != nil {
			if len(c.static) == 0 {
				return err
			}
			problems = append(problems, err.Error())
		}
		problems = append(problems, probs...)
		tms = found
	}
	tms = mergeStatic(tms, c.static)
	r.TaskManagers = append(r.TaskManagers, tms...)
	if len(problems) > 0 {
		return Degradedf("taskmanagers: %s", strings.Join(problems, "; "))
	}
	return nil
}

// scanProc walks procfs once. Processes that exit between the directory listing and reading
// their files are normal and skipped; files that cannot be read for other reasons (permissions,
// hidepid) are reported, because then TaskManagers may be missing.
func (c *taskManagerCollector) scanProc(ctx context.Context) ([]*tmwardenv1.TaskManager, []string, error) {
	d, err := os.Open(c.proc)
	if err != nil {
		return nil, nil, fmt.Errorf("listing processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("listing processes in %s: %w", c.proc, err)
	}
	var (
		out        []*tmwardenv1.TaskManager
		problems   []string
		unreadable int
		firstErr   error
		seen       = make(map[int]bool, len(c.known))
	)
	for _, name := range names {
		if ctx.Err() != nil {
			return out, append(problems, "scan cut short: "+ctx.Err().Error()), nil
		}
		pid, err := strconv.Atoi(name)
		if err != nil || pid == c.self {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(c.proc, name, "cmdline"))
		if err != nil {
			if !vanished(err) {
				unreadable++
				if firstErr == nil {
					firstErr = err
				}
			}
			continue
		}
		if k := c.known[pid]; k != nil && bytes.Equal(k.cmdline, cmd) {
			seen[pid] = true
			if !k.resolved {
				c.resolvePort(pid, k)
			}
			// A copy: later collectors fill in the report's TaskManagers, and the report may
			// still be in the send buffer when the next round runs.
			out = append(out, proto.Clone(k.tm).(*tmwardenv1.TaskManager))
			continue
		}
		args := splitCmdline(cmd)
		class, idx := findMainClass(args, c.mainClasses)
		if idx < 0 {
			continue
		}
		p, err := c.inspect(pid, args, class, idx)
		if err != nil {
			if vanished(err) {
				problems = append(problems, fmt.Sprintf("TaskManager pid %d exited while it was being read", pid))
			} else {
				problems = append(problems, fmt.Sprintf("TaskManager pid %d: %v", pid, err))
			}
			continue
		}
		p.cmdline = cmd
		c.known[pid] = p
		seen[pid] = true
		out = append(out, proto.Clone(p.tm).(*tmwardenv1.TaskManager))
	}
	for pid := range c.known {
		if !seen[pid] {
			delete(c.known, pid)
		}
	}
	if unreadable > 0 {
		problems = append(problems, fmt.Sprintf("cannot read the command line of %d processes (first: %v); TaskManagers among them are missing", unreadable, firstErr))
	}
	return out, problems, nil
}

// vanished reports whether err means the process is gone (ENOENT on its files, ESRCH on reads).
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// inspect learns everything about one TaskManager JVM. A missing cgroup file means the process
// exited; the other sources (environment, Flink config files) are optional.
func (c *taskManagerCollector) inspect(pid int, args []string, class string, idx int) (*tmProcess, error) {
	pidDir := filepath.Join(c.proc, strconv.Itoa(pid))
	jvm := parseTaskManagerArgs(args, idx)
	tm := &tmwardenv1.TaskManager{Pid: int32(pid), MainClass: class, FlinkVersion: jvm.flinkVersion}

	cg, err := os.ReadFile(filepath.Join(pidDir, "cgroup"))
	if err != nil {
		return nil, fmt.Errorf("reading cgroup: %w", err)
	}
	lines, err := parseProcCgroup(bytes.NewReader(cg))
	if err != nil {
		return nil, fmt.Errorf("pid %d cgroup: %w", pid, err)
	}
	tm.Cgroup = primaryCgroup(lines)
	for _, l := range lines {
		if tm.ContainerId == "" || tm.PodUid == "" {
			id, uid := containerFromCgroup(l.Path)
			tm.ContainerId = orDefault(tm.ContainerId, id)
			tm.PodUid = orDefault(tm.PodUid, uid)
		}
	}

	env := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(pidDir, "environ")); err == nil {
		env = parseEnviron(b)
	}

	conf := map[string]string{}
	confDir := jvm.configDir
	if confDir == "" {
		confDir = env["FLINK_CONF_DIR"]
	}
	if confDir == "" && jvm.logFile != "" {
		confDir = path.Join(path.Dir(path.Dir(jvm.logFile)), "conf")
	}
	if confDir != "" {
		// The JVM's paths are inside its mount namespace: /proc/PID/root reaches them, and
		// /proc/PID/cwd the relative ones (YARN starts TaskManagers with --configDir .).
		if path.IsAbs(confDir) {
			conf = readFlinkConf(filepath.Join(pidDir, "root", confDir))
		} else {
			conf = readFlinkConf(filepath.Join(pidDir, "cwd", confDir))
		}
	}
	for k, v := range jvm.dynamic {
		conf[k] = v // dynamic properties override the file, as in Flink
	}

	tm.ResourceId = firstNonEmpty(conf["taskmanager.resource-id"], env["_FLINK_CONTAINER_ID"], env["_FLINK_POD_NAME"])
	ranges := prometheusPorts(conf)
	port := c.defaultPort
	if len(ranges) > 0 {
		port = ranges[0].lo
	}
	p := &tmProcess{tm: tm, resolved: len(ranges) == 0 || (len(ranges) == 1 && ranges[0].lo == ranges[0].hi)}
	if !p.resolved {
		p.portRange = ranges
	}

	host := "127.0.0.1"
	if !c.sameNetNS(pid) {
		if ip := firstNonEmpty(env["_POD_IP_ADDRESS"], env["POD_IP"]); ip != "" {
			host = ip
		} else if f, err := os.Open(filepath.Join(pidDir, "net", "fib_trie")); err == nil {
			ips, _ := parseFibTrieLocal(f)
			f.Close()
			if len(ips) > 0 {
				host = ips[0]
			}
		}
	}
	tm.MetricsEndpoint = net.JoinHostPort(host, strconv.Itoa(port))
	if !p.resolved {
		c.resolvePort(pid, p)
	}

	if tm.PodUid != "" {
		tm.PodName = firstNonEmpty(env["_FLINK_POD_NAME"], env["POD_NAME"])
		if tm.PodName == "" && host != "127.0.0.1" {
			tm.PodName = env["HOSTNAME"] // the pod's own hostname unless it runs in the host network
		}
		tm.PodNamespace = env["POD_NAMESPACE"]
		if tm.PodNamespace == "" {
			if b, err := os.ReadFile(filepath.Join(pidDir, "root", "var/run/secrets/kubernetes.io/serviceaccount/namespace")); err == nil {
				tm.PodNamespace = strings.TrimSpace(string(b))
			}
		}
	}
	return p, nil
}

func orDefault(have, found string) string {
	if have != "" {
		return have
	}
	return found
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sameNetNS reports whether pid shares the agent's network namespace, where the reporter is
// reachable on loopback. When it cannot tell (no permission), it assumes so.
func (c *taskManagerCollector) sameNetNS(pid int) bool {
	mine, err1 := os.Readlink(filepath.Join(c.proc, "self", "ns", "net"))
	theirs, err2 := os.Readlink(filepath.Join(c.proc, strconv.Itoa(pid), "ns", "net"))
	return err1 != nil || err2 != nil || mine == theirs
}

// resolvePort finds which port of a configured range the JVM listens on, by matching its
// socket file descriptors against the listening sockets of its network namespace.
func (c *taskManagerCollector) resolvePort(pid int, p *tmProcess) {
	if p.attempts++; p.attempts > maxPortLookups {
		p.resolved = true
		return
	}
	ports, err := listeningPorts(filepath.Join(c.proc, strconv.Itoa(pid)))
	if err != nil {
		return
	}
	for _, r := range p.portRange {
		for port := r.lo; port <= r.hi; port++ {
			if ports[port] {
				host, _, _ := net.SplitHostPort(p.tm.MetricsEndpoint)
				p.tm.MetricsEndpoint = net.JoinHostPort(host, strconv.Itoa(port))
				p.resolved = true
				return
			}
		}
	}
}

// listeningPorts returns the TCP ports the process in pidDir listens on.
func listeningPorts(pidDir string) (map[int]bool, error) {
	listen := map[uint64]int{}
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(pidDir, "net", name))
		if err != nil {
			continue
		}
		err = parseProcNetTCPListen(f, listen)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	fds, err := os.ReadDir(filepath.Join(pidDir, "fd"))
	if err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(pidDir, "fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		inode, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]"), 10, 64)
		if err != nil {
			continue
		}
		if port, ok := listen[inode]; ok {
			out[port] = true
		}
	}
	return out, nil
}

// parseProcNetTCPListen adds the listening sockets of /proc/net/tcp{,6} to listen as inode → port.
func parseProcNetTCPListen(r io.Reader, listen map[uint64]int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			return fmt.Errorf("proc net tcp: short line %q", sc.Text())
		}
		if f[3] != "0A" { // TCP_LISTEN
			continue
		}
		_, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			return fmt.Errorf("proc net tcp: bad local address %q", f[1])
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			return fmt.Errorf("proc net tcp: bad port in %q: %w", f[1], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return fmt.Errorf("proc net tcp: bad inode %q: %w", f[9], err)
		}
		listen[inode] = int(port)
	}
	return sc.Err()
}

// splitCmdline splits /proc/PID/cmdline (NUL-separated, usually NUL-terminated).
func splitCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// findMainClass returns the main class and its index. It matches whole arguments only, so a
// shell wrapper whose single `-c` argument mentions the class is not mistaken for the JVM.
func findMainClass(args, classes []string) (string, int) {
	if len(args) == 0 || !strings.HasSuffix(path.Base(args[0]), "java") {
		// Only the JVM itself: a `timeout`/`nice` wrapper that passes the class along is not it.
		return "", -1
	}
	for i, a := range args {
		if slices.Contains(classes, a) {
			return a, i
		}
	}
	return "", -1
}

// tmArgs is what a TaskManager's command line says about it.
type tmArgs struct {
	configDir    string
	logFile      string
	flinkVersion string
	// dynamic holds Flink configuration given on the command line: `-D key=value` program
	// arguments and `-Dkey=value` (both spellings are accepted by Flink's parser).
	dynamic map[string]string
}

var flinkDistJar = regexp.MustCompile(`flink-dist(?:_[0-9.]+)?-([0-9][0-9A-Za-z.\-]*?)\.jar`)

// parseTaskManagerArgs reads the JVM options before the main class and Flink's program
// arguments after it.
func parseTaskManagerArgs(args []string, mainIdx int) tmArgs {
	t := tmArgs{dynamic: map[string]string{}}
	for i := 1; i < mainIdx; i++ {
		a := args[i]
		switch {
		case a == "-cp" || a == "-classpath" || a == "--class-path":
			if i+1 < mainIdx {
				if m := flinkDistJar.FindStringSubmatch(args[i+1]); m != nil {
					t.flinkVersion = m[1]
				}
				i++
			}
		case strings.HasPrefix(a, "-Dlog.file="):
			t.logFile = strings.TrimPrefix(a, "-Dlog.file=")
		case strings.HasPrefix(a, "-D"):
			// JVM system properties: Flink's scripts pass a few settings this way too.
			if k, v, ok := strings.Cut(a[2:], "="); ok && isFlinkKey(k) {
				t.dynamic[k] = v
			}
		}
	}
	for i := mainIdx + 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--configDir" || a == "-c":
			if i+1 < len(args) {
				t.configDir = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--configDir="):
			t.configDir = strings.TrimPrefix(a, "--configDir=")
		case a == "-D":
			if i+1 < len(args) {
				if k, v, ok := strings.Cut(args[i+1], "="); ok {
					t.dynamic[k] = v
				}
				i++
			}
		case strings.HasPrefix(a, "-D"):
			if k, v, ok := strings.Cut(a[2:], "="); ok {
				t.dynamic[k] = v
			}
		}
	}
	return t
}

// isFlinkKey keeps JVM system properties that are Flink settings and drops JVM/log4j ones.
func isFlinkKey(k string) bool {
	return strings.HasPrefix(k, "taskmanager.") || strings.HasPrefix(k, "metrics.")
}

// readFlinkConf loads the Flink configuration directory: config.yaml (Flink 1.19+, standard
// YAML) wins over the legacy flink-conf.yaml, as in Flink. Unreadable files give an empty map:
// the configuration is an optional source of the port and resource id.
func readFlinkConf(dir string) map[string]string {
	if f, err := os.Open(filepath.Join(dir, "config.yaml")); err == nil {
		defer f.Close()
		if m, err := parseFlinkConfigYAML(f); err == nil {
			return m
		}
	}
	if f, err := os.Open(filepath.Join(dir, "flink-conf.yaml")); err == nil {
		defer f.Close()
		if m, err := parseLegacyFlinkConf(f); err == nil {
			return m
		}
	}
	return map[string]string{}
}

// parseLegacyFlinkConf reads flink-conf.yaml the way Flink's GlobalConfiguration does: one
// "key: value" per line, '#' starts a comment, everything else is ignored.
func parseLegacyFlinkConf(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "" || v == "" {
			continue
		}
		out[k] = strings.Trim(v, `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading flink-conf.yaml: %w", err)
	}
	return out, nil
}

// parseFlinkConfigYAML reads config.yaml, where keys may be nested ("metrics: reporter: ...")
// or flat ("metrics.reporter.prom.port"); both are flattened to dotted keys.
func parseFlinkConfigYAML(r io.Reader) (map[string]string, error) {
	var doc map[string]any
	if err := yaml.NewDecoder(r).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing config.yaml: %w", err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, sub := range t {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, sub)
			}
		case nil:
		case []any:
			parts := make([]string, 0, len(t))
			for _, e := range t {
				parts = append(parts, fmt.Sprint(e))
			}
			out[prefix] = strings.Join(parts, ";")
		default:
			out[prefix] = fmt.Sprint(t)
		}
	}
	walk("", doc)
	return out, nil
}

var promFactoryClasses = []string{
	"org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
	"org.apache.flink.metrics.prometheus.PrometheusReporter", // pre-1.11 `class` key
}

// prometheusPorts finds the PrometheusReporter port setting in a flattened Flink
// configuration: the reporter named "prom" by convention, or any reporter whose factory is the
// PrometheusReporter's (not the push gateway's). Nil means not configured.
func prometheusPorts(conf map[string]string) []portRange {
	names := []string{"prom"}
	for k, v := range conf {
		rest, ok := strings.CutPrefix(k, "metrics.reporter.")
		if !ok {
			continue
		}
		name, key, ok := strings.Cut(rest, ".")
		if ok && (key == "factory.class" || key == "class") && slices.Contains(promFactoryClasses, v) && name != "prom" {
			names = append(names, name)
		}
	}
	slices.Sort(names[1:])
	for _, n := range names {
		if spec, ok := conf["metrics.reporter."+n+".port"]; ok {
			if rs, err := parsePortSpec(spec); err == nil {
				return rs
			}
		}
	}
	return nil
}

// parsePortSpec reads Flink's port syntax: "9249", "9249-9259", or a comma list of both.
func parsePortSpec(s string) ([]portRange, error) {
	var out []portRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil || a <= 0 || a > 65535 {
			return nil, fmt.Errorf("port spec %q: bad port %q", s, lo)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(strings.TrimSpace(hi))
			if err != nil || b < a || b > 65535 {
				return nil, fmt.Errorf("port spec %q: bad range %q", s, part)
			}
		}
		out = append(out, portRange{a, b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("port spec %q: empty", s)
	}
	return out, nil
}

// parseEnviron splits /proc/PID/environ.
func parseEnviron(b []byte) map[string]string {
	out := map[string]string{}
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte("=")); ok && len(k) > 0 {
			out[string(k)] = string(v)
		}
	}
	return out
}

// parseFibTrieLocal returns the local (non-loopback) IPv4 addresses of a network namespace
// from /proc/PID/net/fib_trie: an address line "|-- 10.0.0.5" followed by "/32 host LOCAL".
func parseFibTrieLocal(r io.Reader) ([]string, error) {
	var out []string
	var last string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if ip, ok := strings.CutPrefix(line, "|-- "); ok {
			last = ip
			continue
		}
		if strings.HasPrefix(line, "/32 host LOCAL") && last != "" {
			if a := net.ParseIP(last); a != nil && !a.IsLoopback() && !slices.Contains(out, last) {
				out = append(out, last)
			}
		}
	}
	return out, sc.Err()
}

// mergeStatic adds the configured targets. A target whose port matches a discovered JVM's
// metrics port on loopback or on the JVM's address is the same TaskManager: its resource id
// fills in, no duplicate is added.
func mergeStatic(tms []*tmwardenv1.TaskManager, static []StaticTaskManager) []*tmwardenv1.TaskManager {
	for _, s := range static {
		sh, sp, _ := net.SplitHostPort(s.Endpoint)
		merged := false
		for _, tm := range tms {
			th, tp, _ := net.SplitHostPort(tm.MetricsEndpoint)
			if sp != tp || !(sh == th || isLoopbackHost(sh) && isLoopbackHost(th)) {
				continue
			}
			if s.ResourceID != "" {
				tm.ResourceId = s.ResourceID
			}
			merged = true
			break
		}
		if !merged {
			tms = append(tms, &tmwardenv1.TaskManager{ResourceId: s.ResourceID, MetricsEndpoint: s.Endpoint})
		}
	}
	return tms
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
