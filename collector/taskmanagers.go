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
	"time"

	"golang.org/x/sys/unix"
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
	// mainClassBytes are mainClasses as bytes, for the substring check on raw command lines.
	mainClassBytes [][]byte
	defaultPort    int
	scan           bool
	static         []StaticTaskManager
	self           int
	// known caches what was learnt about a pid: the command line, config file and cgroup of a
	// JVM do not change while it lives. An exec() that turns a wrapper script into the JVM keeps
	// the pid, so only TaskManagers are cached, and the command line is compared on every scan.
	known map[int]*tmProcess
	// cmdBuf is the scan's read buffer for command lines, kept between scans, so a read is
	// three system calls and no allocation.
	cmdBuf []byte
	// others are the processes whose command line named no TaskManager, with when to read it
	// again (see recheckAt): reading every process's command line every interval was most of
	// the discovery's cost on a node where nearly every process is something else.
	others map[int]otherProcess
	listed map[int]struct{}
	now    func() time.Time
}

// otherProcess is a process that was not a TaskManager when its command line was last read.
type otherProcess struct {
	firstSeen, next time.Time
}

// A process becomes a TaskManager by exec (a wrapper script ending in `exec java ...`, as
// Flink's own scripts and images do), which keeps the pid and changes the command line. That
// happens within seconds of the process starting, so a process first seen less than
// youngProcess ago has its command line read on every scan; an older one only every
// settledRecheck (spread over the following quarter by pid, so they do not all come due in one
// scan), which bounds how late a process that execs a TaskManager long after it started, or
// a pid reused between two scans, is found.
const (
	youngProcess   = time.Minute
	settledRecheck = time.Minute
)

// recheckAt is when to read pid's command line again after a read at now found no TaskManager.
func recheckAt(pid int, firstSeen, now time.Time) time.Time {
	if now.Sub(firstSeen) < youngProcess {
		return now
	}
	return now.Add(settledRecheck + time.Duration(pid%16)*settledRecheck/64)
}

type tmProcess struct {
	cmdline []byte
	tm      *tmwardenv1.TaskManager
	// unresolved says why the TaskManager's metrics endpoint is not known (a /proc entry the
	// agent may not read, a port range none of whose ports listens yet). Such a TaskManager is
	// reported without an endpoint, inspected again every round, and keeps the collector
	// degraded: an endpoint is never guessed.
	unresolved string
}

// discoveryCaps are the capabilities discovery needs for TaskManagers of another user: reading
// their environ and fd entries is a DAC check against the owner (CAP_DAC_READ_SEARCH), and their
// ns, root, cwd, environ and fd links are ptrace-mode reads (CAP_SYS_PTRACE). docs/security.md
// explains the choice.
var discoveryCaps = []struct {
	name string
	bit  uint
}{{"CAP_SYS_PTRACE", 19}, {"CAP_DAC_READ_SEARCH", 2}}

// privilegeHint names the fix for a denied read: the discovery capabilities the agent lacks
// (from its own CapEff), or, when it holds both, what else can deny it.
func privilegeHint(selfStatus string) string {
	const where = " (Helm chart: the agent container's capabilities.add; systemd: AmbientCapabilities= and " +
		"CapabilityBoundingSet= in tmwarden-agent.service)"
	eff, err := readCapEff(selfStatus)
	if err != nil {
		return "the agent needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read another user's process" + where
	}
	var missing []string
	for _, c := range discoveryCaps {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) == 0 {
		return "the agent holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, so a security module (AppArmor, SELinux) " +
			"or procfs mounted with hidepid denies it"
	}
	return "the agent lacks " + strings.Join(missing, " and ") + ", needed to read another user's process" + where
}

// readCapEff reads the effective capability mask from a /proc/PID/status file.
func readCapEff(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("%s: no CapEff line", path)
}

// accessProblem describes a failed read of a TaskManager's /proc entry; permission errors
// stay recognisable (errors.Is fs.ErrPermission) so that the fix is named once.
func accessProblem(what string, err error) error {
	return fmt.Errorf("cannot %s: %w", what, err)
}

// describeUnresolved joins the reasons and adds the fix when a permission was missing.
func (c *taskManagerCollector) describeUnresolved(errs []error) string {
	parts := make([]string, 0, len(errs)+1)
	denied := false
	for _, err := range errs {
		parts = append(parts, err.Error())
		denied = denied || errors.Is(err, fs.ErrPermission)
	}
	if denied {
		// The agent's own status: /proc/self of the procfs it runs under, not the host's mount.
		parts = append(parts, privilegeHint("/proc/self/status"))
	}
	return strings.Join(parts, "; ")
}

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
		others:      map[int]otherProcess{},
		now:         time.Now,
	}
	for _, m := range c.mainClasses {
		c.mainClassBytes = append(c.mainClassBytes, []byte(m))
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
		now        = c.now()
	)
	// The pids of this listing, to forget the others that exited (kept between scans).
	if c.listed == nil {
		c.listed = make(map[int]struct{}, len(names))
	}
	listed := c.listed
	clear(listed)
	for _, name := range names {
		if ctx.Err() != nil {
			return out, append(problems, "scan cut short: "+ctx.Err().Error()), nil
		}
		pid, err := strconv.Atoi(name)
		if err != nil || pid == c.self {
			continue
		}
		listed[pid] = struct{}{}
		o, other := c.others[pid]
		if other && now.Before(o.next) {
			continue
		}
		cmd, err := readProcFile(filepath.Join(c.proc, name, "cmdline"), &c.cmdBuf)
		if err != nil {
			if !vanished(err) {
				unreadable++
				if firstErr == nil {
					firstErr = err
				}
			}
			continue
		}
		if k := c.known[pid]; k != nil && bytes.Equal(k.cmdline, cmd) && k.unresolved == "" {
			seen[pid] = true
			// A copy: later collectors fill in the report's TaskManagers, and the report may
			// still be in the send buffer when the next round runs.
			out = append(out, proto.Clone(k.tm).(*tmwardenv1.TaskManager))
			continue
		}
		if !other {
			o.firstSeen = now
		}
		// Most processes are not JVMs running a TaskManager main class: a substring check
		// spares splitting their command lines into strings.
		if !mentionsAny(cmd, c.mainClassBytes) {
			c.others[pid] = otherProcess{firstSeen: o.firstSeen, next: recheckAt(pid, o.firstSeen, now)}
			continue
		}
		args := splitCmdline(cmd)
		class, idx := findMainClass(args, c.mainClasses)
		if idx < 0 {
			c.others[pid] = otherProcess{firstSeen: o.firstSeen, next: recheckAt(pid, o.firstSeen, now)}
			continue
		}
		delete(c.others, pid)
		// A TaskManager whose endpoint is still unknown is inspected again in full: a port
		// range gets bound late, and a fixed capability set takes effect after a restart.
		p, err := c.inspect(pid, args, class, idx)
		if err != nil {
			if vanished(err) {
				problems = append(problems, fmt.Sprintf("TaskManager pid %d exited while it was being read", pid))
			} else {
				problems = append(problems, fmt.Sprintf("TaskManager pid %d: %v", pid, err))
			}
			continue
		}
		p.cmdline = bytes.Clone(cmd)
		c.known[pid] = p
		seen[pid] = true
		if p.unresolved != "" {
			problems = append(problems, fmt.Sprintf("TaskManager pid %d (uid %d) is not scraped: %s", pid, procOwner(c.proc, pid), p.unresolved))
		}
		out = append(out, proto.Clone(p.tm).(*tmwardenv1.TaskManager))
	}
	for pid := range c.known {
		if !seen[pid] {
			delete(c.known, pid)
		}
	}
	for pid := range c.others {
		if _, ok := listed[pid]; !ok {
			delete(c.others, pid)
		}
	}
	if unreadable > 0 {
		problems = append(problems, fmt.Sprintf("cannot read the command line of %d processes (first: %v); TaskManagers among them are missing", unreadable, firstErr))
	}
	return out, problems, nil
}

// readProcFile reads a small procfs file whole into *buf (grown as needed, kept by the caller)
// with plain open, read and close: os.ReadFile also stats the file and registers it with the
// poller, which doubles the system calls of a scan that reads every process's command line.
// The result aliases *buf.
func readProcFile(path string, buf *[]byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if cap(*buf) == 0 {
		*buf = make([]byte, 0, 4096)
	}
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b))
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			*buf = b
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			*buf = b
			return b, nil
		}
		b = b[:len(b)+n]
	}
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

	// Reading another user's environment, root, cwd, fd and ns entries is a ptrace-mode access
	// (CAP_SYS_PTRACE); listing its fd directory is a DAC check (CAP_DAC_READ_SEARCH).
	var unresolved []error
	env := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(pidDir, "environ")); err == nil {
		env = parseEnviron(b)
	} else if !vanished(err) {
		unresolved = append(unresolved, accessProblem("read its environment", err))
	}

	conf := map[string]string{}
	var confErr error
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
		dir := filepath.Join(pidDir, "root", confDir)
		if !path.IsAbs(confDir) {
			dir = filepath.Join(pidDir, "cwd", confDir)
		}
		conf, confErr = readFlinkConf(dir)
	}
	for k, v := range jvm.dynamic {
		conf[k] = v // dynamic properties override the file, as in Flink
	}

	tm.ResourceId = firstNonEmpty(conf["taskmanager.resource-id"], env["_FLINK_CONTAINER_ID"], env["_FLINK_POD_NAME"])
	ranges := prometheusPorts(conf)
	if confErr != nil && len(ranges) == 0 {
		// Without the file the port is unknown (the command line did not name one either).
		unresolved = append(unresolved, accessProblem("read its Flink configuration in "+confDir, confErr))
	}
	port := c.defaultPort
	if len(ranges) > 0 {
		port = ranges[0].lo
	}

	host, err := c.hostOf(pid, env)
	if err != nil {
		unresolved = append(unresolved, err)
	}
	if len(ranges) > 1 || len(ranges) == 1 && ranges[0].lo != ranges[0].hi {
		// Several TaskManagers on one host share a range; each bound the first free port in
		// it, found among its own listening sockets.
		if p, err := boundPort(pidDir, ranges); err != nil {
			unresolved = append(unresolved, err)
		} else {
			port = p
		}
	}
	p := &tmProcess{tm: tm}
	if len(unresolved) > 0 {
		p.unresolved = c.describeUnresolved(unresolved)
		tm.ScrapeError = "metrics endpoint unknown: " + p.unresolved
	} else {
		tm.MetricsEndpoint = net.JoinHostPort(host, strconv.Itoa(port))
	}

	if tm.PodUid != "" {
		tm.PodName = firstNonEmpty(env["_FLINK_POD_NAME"], env["POD_NAME"])
		if tm.PodName == "" && host != "" && host != "127.0.0.1" {
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

// hostOf finds where the JVM's reporter is reachable from the agent: loopback when it shares
// the agent's network namespace, else its pod address (Flink's _POD_IP_ADDRESS, POD_IP) or the
// local address of its network namespace.
func (c *taskManagerCollector) hostOf(pid int, env map[string]string) (string, error) {
	mine, err := os.Readlink(filepath.Join(c.proc, "self", "ns", "net"))
	if err != nil {
		return "", fmt.Errorf("cannot read the agent's own network namespace: %w", err)
	}
	theirs, err := os.Readlink(filepath.Join(c.proc, strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		return "", accessProblem("tell its network namespace", err)
	}
	if mine == theirs {
		return "127.0.0.1", nil
	}
	if ip := firstNonEmpty(env["_POD_IP_ADDRESS"], env["POD_IP"]); ip != "" {
		return ip, nil
	}
	// /proc/PID/net shows the JVM's network namespace to everyone.
	f, err := os.Open(filepath.Join(c.proc, strconv.Itoa(pid), "net", "fib_trie"))
	if err != nil {
		return "", accessProblem("read the addresses of its network namespace", err)
	}
	defer f.Close()
	ips, err := parseFibTrieLocal(f)
	if err != nil {
		return "", fmt.Errorf("reading the addresses of its network namespace: %w", err)
	}
	if len(ips) == 0 {
		return "", errors.New("its network namespace has no address the agent can reach (no POD_IP in its environment, no local IPv4 address)")
	}
	return ips[0], nil
}

// procOwner is the uid owning /proc/PID, for messages; -1 when unknown.
func procOwner(proc string, pid int) int64 {
	fi, err := os.Stat(filepath.Join(proc, strconv.Itoa(pid)))
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Uid)
	}
	return -1
}

// boundPort finds which port of the configured ranges the JVM listens on, by matching its
// socket file descriptors against the listening sockets of its network namespace.
func boundPort(pidDir string, ranges []portRange) (int, error) {
	ports, err := listeningPorts(pidDir)
	if err != nil {
		return 0, accessProblem("match its sockets to find which port of "+formatRanges(ranges)+" it bound", err)
	}
	for _, r := range ranges {
		for port := r.lo; port <= r.hi; port++ {
			if ports[port] {
				return port, nil
			}
		}
	}
	return 0, fmt.Errorf("none of its ports %s is listening yet (PrometheusReporter not started, or not enabled)", formatRanges(ranges))
}

func formatRanges(rs []portRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.Itoa(r.lo)
		if r.hi != r.lo {
			parts[i] += "-" + strconv.Itoa(r.hi)
		}
	}
	return strings.Join(parts, ",")
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
// The table lists every socket of the network namespace, thousands on a busy node, and it is
// read every interval while a TaskManager's port is unresolved: lines are taken in place
// (bufio.Reader.ReadSlice) and split without allocating, and only listening ones are decoded.
func parseProcNetTCPListen(r io.Reader, listen map[uint64]int) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("proc net tcp: line longer than %d bytes", br.Size())
		}
		if len(bytes.TrimSpace(line)) > 0 && !first { // the first line is the header
			if perr := addListeningSocket(line, listen); perr != nil {
				return perr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// addListeningSocket reads one /proc/net/tcp line: "sl local rem st ... uid timeout inode".
func addListeningSocket(line []byte, listen map[uint64]int) error {
	var f [10][]byte
	n := 0
	for i := 0; i < len(line) && n < len(f); {
		for i < len(line) && asciiSpace(line[i]) {
			i++
		}
		start := i
		for i < len(line) && !asciiSpace(line[i]) {
			i++
		}
		if i > start {
			f[n] = line[start:i]
			n++
		}
	}
	if n < len(f) {
		return fmt.Errorf("proc net tcp: short line %q", bytes.TrimSpace(line))
	}
	if string(f[3]) != "0A" { // TCP_LISTEN
		return nil
	}
	_, portHex, ok := bytes.Cut(f[1], []byte(":"))
	if !ok {
		return fmt.Errorf("proc net tcp: bad local address %q", f[1])
	}
	port, err := strconv.ParseUint(string(portHex), 16, 16)
	if err != nil {
		return fmt.Errorf("proc net tcp: bad port in %q: %w", f[1], err)
	}
	inode, err := strconv.ParseUint(string(f[9]), 10, 64)
	if err != nil {
		return fmt.Errorf("proc net tcp: bad inode %q: %w", f[9], err)
	}
	listen[inode] = int(port)
	return nil
}

func asciiSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

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
// mentionsAny reports whether the raw command line contains one of the class names at all.
func mentionsAny(cmd []byte, classes [][]byte) bool {
	for _, c := range classes {
		if bytes.Contains(cmd, c) {
			return true
		}
	}
	return false
}

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
// YAML) wins over the legacy flink-conf.yaml, as in Flink. Missing or malformed files give an
// empty map (the configuration is an optional source of the port and resource id); a file the
// agent may not open is an error, because the port it names would otherwise be guessed.
func readFlinkConf(dir string) (map[string]string, error) {
	for _, name := range []string{"config.yaml", "flink-conf.yaml"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return map[string]string{}, err
			}
			continue
		}
		parse := parseFlinkConfigYAML
		if name == "flink-conf.yaml" {
			parse = parseLegacyFlinkConf
		}
		m, err := parse(f)
		f.Close()
		if err == nil {
			return m, nil
		}
	}
	return map[string]string{}, nil
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
