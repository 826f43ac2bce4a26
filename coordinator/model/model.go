// Package model is the coordinator's picture of the cluster: each node's latest report digest
// and the host digests of its replayed reports, each subtask's latest figures (job → vertex → subtask, with the TaskManager
// and node the placement source puts it on), and node reachability. Detectors read it; only
// ingest (Observe) writes it, so policy code never touches the wire format of the reports beyond
// what is digested here.
package model

import (
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// Config bounds the model.
type Config struct {
	// Window is how many report intervals a replayed report's host digest is kept after it
	// arrived (Replayed): detection has judged it by then.
	Window int
	// Interval is the expected report interval; reachability and freshness are measured in it.
	Interval time.Duration
	// StaleAfter is how many intervals without a report make a node unreachable.
	StaleAfter int
	// FrozenAfter is how long a busy subtask's figures may stay exactly the same before they
	// count as frozen (View.Frozen). Flink recomputes its rate and busy-time gauges every 5
	// seconds; the same figures for six updates may be a stopped metric reporter, or a perfectly
	// steady pipeline (a rate-limited source, whole-millisecond busy time). Frozen figures are
	// still compared, but a node's speed is not learned from them: figures that may no longer
	// describe the subtask must not become what the node is expected to do.
	FrozenAfter time.Duration
	// Replayed is how many replayed reports' host digests are kept per node (Node.Replayed),
	// the newest, for detection to judge in retrospect what the node went through while its
	// reports could not reach the coordinator.
	Replayed int
}

// DefaultConfig is what the coordinator uses unless configured otherwise. Replayed keeps ten
// minutes of 5-second reports: as far back as detection remembers the fleet (its forget_after).
func DefaultConfig() Config {
	return Config{Window: 12, Interval: 5 * time.Second, StaleAfter: 3, FrozenAfter: 30 * time.Second, Replayed: 120}
}

// ReplayedDigest is what the model keeps of a replayed report: one collected long before it
// arrived, held back by the agent while it could not reach the coordinator (a partition) and
// sent when it could. Its subtasks never enter the index (the window they describe is over),
// and only the host digest is kept, in single precision: a node replays up to its agent's
// buffer at once, and a partition can cut off thousands of nodes.
type ReplayedDigest struct {
	At time.Time
	// arrived is when the report reached the model: it is kept a Window of intervals past that.
	arrived time.Time
	Valid   bool
	CPUBusy float32
	Signals [NumSignals]float32
	// GCTaskManager is the node's JVM that spent the most time per second in GC, GCMsPerSec
	// that time, and TaskManagers how many JVMs reported: a JVM's own fault (a GC storm) shows on
	// no host signal, and the subtasks' figures of the window are not kept.
	GCTaskManager string
	GCMsPerSec    float32
	TaskManagers  int
	// Neighbour is the node's busiest other cgroup, kept only when it used at least
	// NeighbourKeptCores: the neighbour that may have taken the CPU, to be named in retrospect.
	// Kept for every replayed report, the node's cgroups would cost more than the rest of it.
	Neighbour *CgroupDigest
}

// NeighbourKeptCores is the least CPU a replayed report's busiest neighbour must have used to be
// kept (ReplayedDigest.Neighbour): half a core, the least that detection names a culprit for.
const NeighbourKeptCores = 0.5

// HostDigest is the part of HostSignals and the eBPF histograms that detection reads. Rates are
// per second, shares in [0, 1], latencies in microseconds or milliseconds as named.
type HostDigest struct {
	Valid   bool
	NumCPUs uint32
	CPUBusy float64
	// Signals are the values detection compares across nodes, one per row of HostSignals.
	Signals       [NumSignals]float64
	RunqP99US     float64
	BlockIOMeanUS float64
	DiskUtil      float64
	RetransEvents uint64
	// MemAvailableFrac is available over total memory.
	MemAvailableFrac float64
	// TaskManagerCPUCores is the CPU the TaskManagers' cgroups used.
	TaskManagerCPUCores float64
}

// CgroupDigest is one cgroup on the node that is not a TaskManager's (a neighbour pod, a
// systemd unit): how much CPU it used and how long its threads waited for one.
type CgroupDigest struct {
	Path         string
	PodName      string
	PodNamespace string
	PodUID       string
	ContainerID  string
	SystemdUnit  string
	CPUCores     float64
	RunqMeanUS   float64
}

// NodeInfo is what an agent says of its machine in Hello: labels (instance type, pool, zone)
// and what it read itself.
type NodeInfo struct {
	Labels      map[string]string
	CPUModel    string
	NumCPUs     uint32
	MemoryBytes uint64
}

// Class is the node's hardware class: nodes of one class are alike machines. It is built from
// the instance-type and pool labels and the machine the agent read; "" when nothing is known.
func (i NodeInfo) Class() string {
	var parts []string
	for _, k := range ClassLabels {
		if v := i.Labels[k]; v != "" {
			parts = append(parts, v)
		}
	}
	if i.CPUModel != "" {
		parts = append(parts, i.CPUModel)
	}
	if i.NumCPUs > 0 {
		parts = append(parts, strconv.Itoa(int(i.NumCPUs))+"cpu")
	}
	if i.MemoryBytes > 0 {
		// Rounded to GiB: the kernel reserves slightly different amounts on alike machines.
		parts = append(parts, strconv.Itoa(int((i.MemoryBytes+1<<29)>>30))+"GiB")
	}
	return strings.Join(parts, "/")
}

// ClassLabels are the Hello labels that name a hardware class, in the order they appear in
// Class: the well-known Kubernetes node labels and their short forms.
var ClassLabels = []string{"node.kubernetes.io/instance-type", "instance_type", "pool", "node_pool"}

// TaskManagerDigest is one TaskManager JVM as seen in one report.
type TaskManagerDigest struct {
	ResourceID string
	GCMsPerSec float64
	HeapFrac   float64
	Subtasks   int
	// Unscraped: the agent could not read the TaskManager's metrics (its scrape_error), so
	// Subtasks says nothing of the work it runs.
	Unscraped bool
}

// Sample is the digest of one report.
type Sample struct {
	At           time.Time
	Seq          uint64
	Interval     time.Duration
	Host         HostDigest
	TaskManagers []TaskManagerDigest
	// Neighbours are the node's other cgroups, busiest first.
	Neighbours []CgroupDigest
	// RetransTo counts the retransmitted segments by remote host address; Addresses are the
	// node's own (its TaskManagers' hosts), so senders' retransmits can be matched to it.
	RetransTo map[string]float64
	Addresses []string
}

// VertexKey names a vertex of a job.
type VertexKey struct {
	JobID    string
	VertexID string
}

// SubtaskMetrics are the per-subtask rates detection needs.
type SubtaskMetrics struct {
	BusyMs          float64
	BackpressuredMs float64
	IdleMs          float64
	RecordsIn       float64
	RecordsOut      float64
	OutPoolUsage    float64
	IsSource        bool
	KafkaLag        float64
}

// TPR is DS2's true processing rate: records in per second of busy time. ok is false when the
// subtask was too idle for the figure to mean anything.
func (s SubtaskMetrics) TPR(minBusyMs float64) (float64, bool) {
	if math.IsNaN(s.BusyMs) || math.IsNaN(s.RecordsIn) || s.BusyMs < minBusyMs || s.RecordsIn <= 0 {
		return 0, false
	}
	return s.RecordsIn / (s.BusyMs / 1000), true
}

// Subtask is the index entry of one subtask: where it runs and its latest metrics.
type Subtask struct {
	Index   int
	Attempt int
	Node    string
	// NodeIndex is Node's Index, for detectors that keep per-node tables in slices.
	NodeIndex   int
	TaskManager string
	// At is when the subtask's figures were last collected.
	At      time.Time
	Metrics SubtaskMetrics
	// changed is when Metrics last differed from the report before.
	changed time.Time
	vertex  *Vertex
}

// Vertex is one operator chain of one job with its subtasks ordered by index.
type Vertex struct {
	Key      VertexKey
	JobName  string
	Name     string
	Subtasks []*Subtask
	byIndex  map[int]*Subtask
}

// Node is one node's latest digest, its replayed digests and its reachability.
type Node struct {
	Name string
	// Index is below NodeCount and stable until the next Prune renumbers the nodes.
	Index     int
	FirstSeen time.Time
	LastSeen  time.Time
	// LastReportAt is the collected_at of the newest report (late reports do not move it back).
	LastReportAt time.Time
	// Info is what the agent said of its machine in its latest Hello.
	Info NodeInfo
	// class is Info.Class(), kept: every round asks each node's, and Info changes only at Hello.
	class string
	// InstanceStarts counts agent restarts observed as a sequence going back.
	InstanceStarts int
	RestartedAt    time.Time
	lastSeq        uint64
	// latest is the newest collected report's digest. The model keeps no window of older
	// digests: detection keeps what it needs of a node's past itself (streaks, learned
	// speeds, each round's fleet medians), and a window of twelve digests per node that no
	// round read was 42 MB at 10,000 nodes, twice that in heap the garbage collector lets grow.
	latest    Sample
	hasLatest bool
	// last caches the index entries of the previous report's subtasks, in report order: agents
	// send the same subtasks every round, so most reports need no map lookups.
	last []*Subtask
	// replayed are the digests of the reports that arrived late, oldest first (see Replayed).
	replayed []ReplayedDigest
}

// Replayed returns the host digests of the node's reports that arrived more than two intervals
// after they were collected, oldest first: at most Config.Replayed of them, each kept until
// the node's live reports have gone on for a Window of intervals past its arrival. The slice is the
// model's; read it only while the View is held.
func (n *Node) Replayed() []ReplayedDigest { return n.replayed }

// Latest returns the most recently collected sample, if any: late reports replayed after an
// outage do not replace it (their host digests are kept as Replayed).
func (n *Node) Latest() (Sample, bool) {
	return n.latest, n.hasLatest
}

// Placer is the one placement source, coordinator/topology: where every subtask runs, joined
// from the agents' reports and the JobManagers' REST data. The model keeps no placement of its
// own: Observe hands each report to the placer and keeps a subtask's figures only where the
// placer says the subtask runs.
type Placer interface {
	// Place observes node's report and appends, for every subtask of it in report order,
	// whether the subtask is placed on this node and on the TaskManager that listed it.
	Place(node string, r *tmwardenv1.Report, at time.Time, dst []bool) []bool
}

// placedPool holds Place's answers between reports.
var placedPool = sync.Pool{New: func() any { return new([]bool) }}

// Model is safe for concurrent use: ingest writes, evaluation rounds read under the same lock
// through View.
type Model struct {
	mu       sync.RWMutex
	placer   Placer
	cfg      Config
	nodes    map[string]*Node
	vertices map[VertexKey]*Vertex
	// sorted caches are rebuilt only when the key sets change, so rounds iterate in a stable order.
	nodeOrder   []string
	vertexOrder []VertexKey
	dirtyOrder  bool
}

// New returns an empty model that asks placer where subtasks run.
func New(cfg Config, placer Placer) *Model {
	d := DefaultConfig()
	if cfg.Window <= 0 {
		cfg.Window = d.Window
	}
	if cfg.Interval <= 0 {
		cfg.Interval = d.Interval
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = d.StaleAfter
	}
	if cfg.Replayed < 0 {
		cfg.Replayed = 0
	}
	return &Model{cfg: cfg, placer: placer, nodes: map[string]*Node{}, vertices: map[VertexKey]*Vertex{}}
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Observe digests one report from node, received at `at`, after handing it to the placer.
// Reports may arrive late (an agent resending its buffer after an outage): their host digests
// are kept (Replayed), but they never move a subtask back to older figures.
func (m *Model) Observe(node string, at time.Time, r *tmwardenv1.Report) {
	if r == nil {
		return
	}
	// Asked before the model's lock is taken, so ingest of other nodes never waits on both.
	pp := placedPool.Get().(*[]bool)
	*pp = m.placer.Place(node, r, at, (*pp)[:0])
	defer placedPool.Put(pp)
	placed := *pp
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[node]
	if n == nil {
		n = &Node{Name: node, Index: len(m.nodes), FirstSeen: at}
		m.nodes[node] = n
		m.dirtyOrder = true
	}
	if at.After(n.LastSeen) {
		n.LastSeen = at
	}
	collected := at
	if ts := r.GetCollectedAt(); ts != nil {
		collected = ts.AsTime()
	}
	if r.GetSequence() < n.lastSeq {
		n.InstanceStarts++
		n.RestartedAt = at
	}
	n.lastSeq = r.GetSequence()
	interval := m.cfg.Interval
	if r.GetIntervalSeconds() > 0 {
		interval = time.Duration(r.GetIntervalSeconds() * float64(time.Second))
	}
	s := Sample{At: collected, Seq: r.GetSequence(), Interval: interval, Neighbours: digestNeighbours(r)}
	s.Host = digestHost(r, s.Neighbours)
	fresh := !collected.Before(n.LastReportAt)
	if fresh {
		n.LastReportAt = collected
	}
	s.TaskManagers = make([]TaskManagerDigest, 0, len(r.GetTaskManagers()))
	pos := 0
	for _, tm := range r.GetTaskManagers() {
		d := TaskManagerDigest{ResourceID: tm.GetResourceId(), Subtasks: len(tm.GetSubtasks()), Unscraped: tm.GetScrapeError() != ""}
		if j := tm.GetJvm(); j != nil {
			d.GCMsPerSec = j.GetGcTimeMsPerSecond()
			if j.GetHeapMaxBytes() > 0 {
				d.HeapFrac = float64(j.GetHeapUsedBytes()) / float64(j.GetHeapMaxBytes())
			}
		}
		s.TaskManagers = append(s.TaskManagers, d)
		if fresh {
			pos = m.indexSubtasks(n, tm, collected, pos, placed)
		}
	}
	for _, rt := range r.GetRetransmits() {
		host, _, err := net.SplitHostPort(rt.GetRemoteAddress())
		if err != nil || rt.GetRetransmits() == 0 {
			continue
		}
		if s.RetransTo == nil {
			s.RetransTo = map[string]float64{}
		}
		s.RetransTo[host] += float64(rt.GetRetransmits()) / interval.Seconds()
	}
	for _, tm := range r.GetTaskManagers() {
		if h := tm.GetHost(); h != "" && !slices.Contains(s.Addresses, h) {
			s.Addresses = append(s.Addresses, h)
		}
	}
	if fresh {
		n.latest, n.hasLatest = s, true
	}
	m.keepReplayed(n, s, at)
}

// keepReplayed keeps the host digest of a report that arrived more than two intervals after it
// was collected (an agent replaying its buffer), and forgets those that arrived a Window of
// intervals before a live report (detection has judged them by then).
func (m *Model) keepReplayed(n *Node, s Sample, at time.Time) {
	if at.Sub(s.At) <= 2*m.cfg.Interval {
		horizon := at.Add(-time.Duration(m.cfg.Window) * m.cfg.Interval)
		drop := 0
		for drop < len(n.replayed) && n.replayed[drop].arrived.Before(horizon) {
			drop++
		}
		if drop == len(n.replayed) {
			n.replayed = nil
		} else if drop > 0 {
			n.replayed = append(n.replayed[:0], n.replayed[drop:]...)
		}
		return
	}
	if m.cfg.Replayed == 0 {
		return
	}
	if len(n.replayed) == m.cfg.Replayed {
		n.replayed = append(n.replayed[:0], n.replayed[1:]...)
	}
	d := ReplayedDigest{At: s.At, arrived: at, Valid: s.Host.Valid, CPUBusy: float32(s.Host.CPUBusy)}
	for i, v := range s.Host.Signals {
		d.Signals[i] = float32(v)
	}
	if len(s.Neighbours) > 0 && s.Neighbours[0].CPUCores >= NeighbourKeptCores {
		top := s.Neighbours[0]
		d.Neighbour = &top
	}
	d.TaskManagers = len(s.TaskManagers)
	for _, tm := range s.TaskManagers {
		if d.GCTaskManager == "" || float32(tm.GCMsPerSec) > d.GCMsPerSec {
			d.GCTaskManager, d.GCMsPerSec = tm.ResourceID, float32(tm.GCMsPerSec)
		}
	}
	n.replayed = append(n.replayed, d)
}

// Describe records what a node's agent said of its machine (Hello). A node described before
// its first report is created.
func (m *Model) Describe(node string, at time.Time, info NodeInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[node]
	if n == nil {
		n = &Node{Name: node, Index: len(m.nodes), FirstSeen: at}
		m.nodes[node] = n
		m.dirtyOrder = true
	}
	n.Info, n.class = info, info.Class()
}

// Class is the node's hardware class (NodeInfo.Class) from its latest Hello.
func (n *Node) Class() string { return n.class }

// indexSubtasks takes the figures of tm's subtasks that run where the report says (placed, by
// position in the report) into the index.
func (m *Model) indexSubtasks(n *Node, tm *tmwardenv1.TaskManager, at time.Time, pos int, placed []bool) int {
	for _, st := range tm.GetSubtasks() {
		if pos >= len(placed) || !placed[pos] {
			// Not where the subtask runs (a TaskManager still showing one that moved): its
			// figures are not the subtask's. The cache keeps its place in report order.
			if pos == len(n.last) {
				n.last = append(n.last, nil)
			}
			pos++
			continue
		}
		idx := int(st.GetSubtaskIndex())
		var e *Subtask
		if pos < len(n.last) {
			c := n.last[pos]
			if c != nil && c.Index == idx && c.vertex.Key.VertexID == st.GetVertexId() && c.vertex.Key.JobID == st.GetJobId() {
				e = c
			}
		}
		if e == nil {
			e = m.lookup(st, idx)
			if pos < len(n.last) {
				n.last[pos] = e
			} else {
				n.last = append(n.last, e)
			}
		}
		pos++
		if at.Before(e.At) {
			continue
		}
		mt := SubtaskMetrics{
			BusyMs:          st.GetBusyMsPerSecond(),
			BackpressuredMs: st.GetBackpressuredMsPerSecond(),
			IdleMs:          st.GetIdleMsPerSecond(),
			RecordsIn:       st.GetRecordsInPerSecond(),
			RecordsOut:      st.GetRecordsOutPerSecond(),
			OutPoolUsage:    st.GetOutputPoolUsage(),
			IsSource:        st.GetIsSource(),
			KafkaLag:        st.GetKafkaLag(),
		}
		moved := e.Node != n.Name || e.TaskManager != tm.GetResourceId() || e.Attempt != int(st.GetAttemptNumber())
		if mt != e.Metrics || moved || (mt.BusyMs <= 0 && mt.RecordsIn <= 0) {
			e.changed = at
		}
		e.Attempt = int(st.GetAttemptNumber())
		e.Node = n.Name
		e.NodeIndex = n.Index
		e.TaskManager = tm.GetResourceId()
		e.At = at
		e.Metrics = mt
	}
	return pos
}

func (m *Model) lookup(st *tmwardenv1.SubtaskMetrics, idx int) *Subtask {
	k := VertexKey{JobID: st.GetJobId(), VertexID: st.GetVertexId()}
	v := m.vertices[k]
	if v == nil {
		v = &Vertex{Key: k, JobName: st.GetJobName(), Name: st.GetVertexName(), byIndex: map[int]*Subtask{}}
		m.vertices[k] = v
		m.dirtyOrder = true
	}
	e := v.byIndex[idx]
	if e == nil {
		e = &Subtask{Index: idx, vertex: v}
		v.byIndex[idx] = e
		i, _ := slices.BinarySearchFunc(v.Subtasks, idx, func(a *Subtask, t int) int { return a.Index - t })
		v.Subtasks = slices.Insert(v.Subtasks, i, e)
	}
	return e
}

// Prune forgets what has not been reported since before: subtasks of cancelled or rescaled
// jobs, vertices left without subtasks, and nodes that are gone. A long-running coordinator calls
// it now and then so the model stays bounded by the live cluster.
func (m *Model) Prune(before time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range m.vertices {
		v.Subtasks = slices.DeleteFunc(v.Subtasks, func(st *Subtask) bool {
			if st.At.Before(before) {
				delete(v.byIndex, st.Index)
				return true
			}
			return false
		})
		if len(v.Subtasks) == 0 {
			delete(m.vertices, k)
			m.dirtyOrder = true
		}
	}
	for name, n := range m.nodes {
		if n.LastSeen.Before(before) {
			delete(m.nodes, name)
			m.dirtyOrder = true
			continue
		}
		// The cache may point at pruned entries; it is rebuilt from the next report.
		n.last = n.last[:0]
	}
	if m.dirtyOrder {
		// Node indexes must stay below NodeCount: renumber the survivors in name order.
		names := make([]string, 0, len(m.nodes))
		for name := range m.nodes {
			names = append(names, name)
		}
		slices.Sort(names)
		for i, name := range names {
			m.nodes[name].Index = i
		}
		for _, v := range m.vertices {
			for _, st := range v.Subtasks {
				if n := m.nodes[st.Node]; n != nil {
					st.NodeIndex = n.Index
				}
			}
		}
	}
}

// digestHost digests a report's host part: the fields of HostDigest outside the table, then
// every row of HostSignals.
func digestHost(r *tmwardenv1.Report, neighbours []CgroupDigest) HostDigest {
	var d HostDigest
	f := newHostFacts(r, neighbours)
	defer f.release()
	h := f.h
	if h != nil && h.GetCpu() != nil {
		c := h.GetCpu()
		total := c.GetUser() + c.GetSystem() + c.GetIdle() + c.GetIowait() + c.GetSteal() + c.GetIrq() + c.GetSoftirq() + c.GetNice()
		// An agent's first round after a start has no previous counters and sends zero shares.
		d.Valid = total > 0.5
		d.NumCPUs = h.GetNumCpus()
		d.CPUBusy = c.GetUser() + c.GetSystem() + c.GetNice() + c.GetIrq() + c.GetSoftirq()
	}
	if h != nil {
		for _, dk := range h.GetDisks() {
			d.DiskUtil = max(d.DiskUtil, dk.GetUtilization())
		}
		if mem := h.GetMemory(); mem != nil && mem.GetTotalBytes() > 0 {
			d.MemAvailableFrac = float64(mem.GetAvailableBytes()) / float64(mem.GetTotalBytes())
		}
	}
	for _, tm := range r.GetTaskManagers() {
		if tm.GetCgroup() != "" {
			f.tmCgroups[tm.GetCgroup()] = true
		}
	}
	for _, cg := range r.GetCgroups() {
		if cg.GetTaskManager() {
			f.tmCgroups[cg.GetPath()] = true
		}
	}
	var ioCount uint64
	var ioSum float64
	var rqBuckets []uint64
	for _, hg := range r.GetHistograms() {
		switch hg.GetKind() {
		case tmwardenv1.LatencyHistogram_KIND_RUNQUEUE:
			// The root cgroup (or a node-wide histogram) would double count the per-cgroup ones.
			if hg.GetTarget() == "/" && len(r.GetHistograms()) > 1 {
				continue
			}
			f.rqCount += hg.GetCount()
			f.rqSum += hg.GetSumMicroseconds()
			if f.tmCgroups[hg.GetTarget()] {
				f.tmRqCount += hg.GetCount()
				f.tmRqSum += hg.GetSumMicroseconds()
			}
			if len(rqBuckets) < len(hg.GetBuckets()) {
				rqBuckets = append(rqBuckets, make([]uint64, len(hg.GetBuckets())-len(rqBuckets))...)
			}
			for i, b := range hg.GetBuckets() {
				rqBuckets[i] += b
			}
		case tmwardenv1.LatencyHistogram_KIND_BLOCK_IO:
			ioCount += hg.GetCount()
			ioSum += hg.GetSumMicroseconds()
		}
	}
	if f.rqCount > 0 {
		d.RunqP99US = quantileLog2(rqBuckets, f.rqCount, 0.99)
	}
	if ioCount > 0 {
		d.BlockIOMeanUS = ioSum / float64(ioCount)
	}
	for _, rt := range r.GetRetransmits() {
		d.RetransEvents += rt.GetRetransmits()
	}
	if d.Valid && len(r.GetCgroups()) > 0 {
		for _, cg := range r.GetCgroups() {
			if f.tmCgroups[cg.GetPath()] {
				d.TaskManagerCPUCores += cg.GetCpuUsageCores()
				f.tmCPUMatched = true
			}
		}
	}
	f.numCPUs, f.cpuBusy, f.tmCPUCores = d.NumCPUs, d.CPUBusy, d.TaskManagerCPUCores
	for i := range HostSignals {
		d.Signals[i] = HostSignals[i].digest(f)
	}
	return d
}

// digestNeighbours joins the node's non-TaskManager cgroups with their run-queue histograms.
func digestNeighbours(r *tmwardenv1.Report) []CgroupDigest {
	tmCgroups := map[string]bool{}
	for _, tm := range r.GetTaskManagers() {
		if tm.GetCgroup() != "" {
			tmCgroups[tm.GetCgroup()] = true
		}
	}
	var out []CgroupDigest
	for _, cg := range r.GetCgroups() {
		if cg.GetTaskManager() || tmCgroups[cg.GetPath()] {
			continue
		}
		out = append(out, CgroupDigest{Path: cg.GetPath(), PodName: cg.GetPodName(), PodNamespace: cg.GetPodNamespace(),
			PodUID: cg.GetPodUid(), ContainerID: cg.GetContainerId(), SystemdUnit: cg.GetSystemdUnit(), CPUCores: cg.GetCpuUsageCores()})
	}
	if len(out) == 0 {
		return nil
	}
	for _, hg := range r.GetHistograms() {
		if hg.GetKind() != tmwardenv1.LatencyHistogram_KIND_RUNQUEUE || hg.GetCount() == 0 {
			continue
		}
		for i := range out {
			if out[i].Path == hg.GetTarget() {
				out[i].RunqMeanUS = hg.GetSumMicroseconds() / float64(hg.GetCount())
			}
		}
	}
	slices.SortFunc(out, func(a, b CgroupDigest) int {
		switch {
		case a.CPUCores > b.CPUCores:
			return -1
		case a.CPUCores < b.CPUCores:
			return 1
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}

// quantileLog2 reads a quantile off a log2 histogram, interpolating inside the bucket.
func quantileLog2(b []uint64, count uint64, q float64) float64 {
	target := q * float64(count)
	var cum float64
	for i, c := range b {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= target {
			lo := math.Ldexp(1, i)
			frac := (target - cum) / float64(c)
			return lo + frac*lo
		}
		cum += float64(c)
	}
	return math.Ldexp(1, len(b))
}

// View is a read-only look at the model for one evaluation round. It holds the read lock until
// Release, so a round sees one consistent state.
type View struct {
	m *Model
}

// View locks the model for reading; call Release when the round is done.
func (m *Model) View() View {
	// A read lock waits for at most the one writer that holds the lock now; the write lock
	// would queue behind every ingest goroutine waiting in Observe, at fleet scale thousands
	// after a busy moment. The orders change only when nodes or vertices come and go.
	m.mu.RLock()
	if !m.dirtyOrder {
		return View{m: m}
	}
	m.mu.RUnlock()
	m.mu.Lock()
	if m.dirtyOrder {
		m.nodeOrder = m.nodeOrder[:0]
		for k := range m.nodes {
			m.nodeOrder = append(m.nodeOrder, k)
		}
		slices.Sort(m.nodeOrder)
		m.vertexOrder = m.vertexOrder[:0]
		for k := range m.vertices {
			m.vertexOrder = append(m.vertexOrder, k)
		}
		slices.SortFunc(m.vertexOrder, func(a, b VertexKey) int {
			if c := strings.Compare(a.JobID, b.JobID); c != 0 {
				return c
			}
			return strings.Compare(a.VertexID, b.VertexID)
		})
		m.dirtyOrder = false
	}
	m.mu.Unlock()
	m.mu.RLock()
	return View{m: m}
}

// Release ends the round's read lock.
func (v View) Release() { v.m.mu.RUnlock() }

// Config returns the model configuration.
func (v View) Config() Config { return v.m.cfg }

// NodeNames returns every node ever seen, sorted.
func (v View) NodeNames() []string { return v.m.nodeOrder }

// Node returns one node, or nil.
func (v View) Node(name string) *Node { return v.m.nodes[name] }

// Vertices returns every vertex, sorted by job and vertex id.
func (v View) Vertices() []*Vertex {
	out := make([]*Vertex, 0, len(v.m.vertexOrder))
	for _, k := range v.m.vertexOrder {
		out = append(out, v.m.vertices[k])
	}
	return out
}

// NodeCount is the number of nodes ever seen; Node.Index is below it.
func (v View) NodeCount() int { return len(v.m.nodes) }

// Reachable reports whether the node sent a report within StaleAfter intervals of now.
func (v View) Reachable(name string, now time.Time) bool {
	n := v.m.nodes[name]
	if n == nil {
		return false
	}
	return now.Sub(n.LastSeen) <= time.Duration(v.m.cfg.StaleAfter)*v.m.cfg.Interval
}

// Fresh reports whether a subtask's metrics are recent enough to compare with its peers'.
func (v View) Fresh(s *Subtask, now time.Time) bool {
	return !s.At.Before(v.FreshSince(now))
}

// Frozen reports whether a busy subtask's figures have stayed exactly the same for longer than
// Config.FrozenAfter.
func (v View) Frozen(s *Subtask) bool {
	return v.m.cfg.FrozenAfter > 0 && s.At.Sub(s.changed) > v.m.cfg.FrozenAfter
}

// FreshSince is the oldest collection time Fresh accepts at now; loops over many subtasks
// compare with it directly.
func (v View) FreshSince(now time.Time) time.Time {
	return now.Add(-2 * v.m.cfg.Interval)
}
