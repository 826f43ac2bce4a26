// Package topology keeps the coordinator's map job → vertex → subtask → TaskManager → node,
// joined from agent reports (which TaskManagers run on which node, and the subtasks each one's
// metrics show) and JobManager REST data (each subtask's TaskManager id and host).
// It is pure: callers feed it observations and read snapshots; it does no IO.
package topology

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
)

// Key identifies a subtask across attempts (attempt ids change on every failover).
type Key struct {
	JobID    string `json:"jobId"`
	VertexID string `json:"vertexId"`
	Index    int    `json:"subtaskIndex"`
}

// RESTJob is one job as the JobManager REST API describes it (see FromREST).
type RESTJob struct {
	ID, Name, State string
	Vertices        []RESTVertex
}

// RESTVertex is one job vertex with its subtasks.
type RESTVertex struct {
	ID, Name    string
	Parallelism int
	Subtasks    []RESTSubtask
}

// RESTSubtask is where REST says a subtask runs.
type RESTSubtask struct {
	Index, Attempt int
	Status         string
	// TaskManagerID is REST's taskmanager-id, unsanitised.
	TaskManagerID string
	// Host is the 1.x host field or the host part of the 2.x endpoint.
	Host string
}

// RESTTaskManager is one entry of GET /taskmanagers.
type RESTTaskManager struct {
	ID string
	// RPCHost is the host of the RPC address, the value of the PrometheusReporter's host label.
	RPCHost string
}

// Options tune a Topology.
type Options struct {
	// StaleAfter drops an agent's or REST's placement of a subtask not confirmed for this long.
	// Default 1 minute.
	StaleAfter time.Duration
	// MaxMoves is how many recent moves the snapshot keeps. Default 200.
	MaxMoves int
}

// Placement is where one subtask runs, as resolved from all sources.
type Placement struct {
	Key
	JobName    string `json:"jobName,omitempty"`
	VertexName string `json:"vertexName,omitempty"`
	Attempt    int    `json:"attempt"`
	// TaskManagerID is the sanitised ResourceID (the form the PrometheusReporter uses).
	TaskManagerID string `json:"taskManagerId,omitempty"`
	Host          string `json:"host,omitempty"`
	// Node is "" while no agent has reported the TaskManager.
	Node string `json:"node,omitempty"`
	// Source says which sides agree on this placement: "rest", "agent" or "rest+agent".
	Source string `json:"source"`
	// Since is when the subtask was first seen on this TaskManager.
	Since time.Time `json:"since"`
}

// Move is a subtask changing TaskManager (a failover, rescale or a migration).
type Move struct {
	Key
	FromTaskManager string    `json:"fromTaskManager"`
	FromNode        string    `json:"fromNode,omitempty"`
	ToTaskManager   string    `json:"toTaskManager"`
	ToNode          string    `json:"toNode,omitempty"`
	At              time.Time `json:"at"`
}

// placement is a Placement as the topology keeps one per subtask: without the Key (the map's)
// and with its source as a number, 112 bytes where a Placement takes 208. At 10,000 nodes x 20
// subtasks the placements were the largest part of the topology (41.6 MB of 113), and what the
// heap holds counts about twice in the coordinator's RSS (the garbage collector lets the heap grow
// to twice what is live).
type placement struct {
	jobName, vertexName string
	tm, host, node      string
	since               time.Time
	attempt             int32
	source              source
}

// source is Placement.Source: which sides agree on a placement.
type source uint8

const (
	sourceREST source = iota + 1
	sourceAgent
	sourceBoth
)

func (s source) String() string {
	switch s {
	case sourceREST:
		return "rest"
	case sourceAgent:
		return "agent"
	case sourceBoth:
		return "rest+agent"
	}
	return ""
}

// full is the Placement of the subtask k.
func (p *placement) full(k Key) Placement {
	return Placement{Key: k, JobName: p.jobName, VertexName: p.vertexName, Attempt: int(p.attempt), TaskManagerID: p.tm,
		Host: p.host, Node: p.node, Source: p.source.String(), Since: p.since}
}

type agentTM struct {
	node, host, rawID string
	// rawHost is the host as the report spelled it, for comparing the next report unsanitised.
	rawHost string
	seen    time.Time
}

type agentSubtask struct {
	tm, node, jobName, vertexName string
	attempt                       int
	seen                          time.Time
}

type restSubtask struct {
	RESTSubtask
	seen time.Time
}

type restVertex struct {
	id, name    string
	parallelism int
}

type restJob struct {
	id, name, state string
	vertices        []restVertex
	seen            time.Time
}

// Topology is the joined model. All methods are safe for concurrent use.
type Topology struct {
	mu   sync.RWMutex
	opts Options

	tms       map[string]*agentTM // sanitised resource id → agent view
	hostNode  map[string]string   // sanitised host → node (from agent reports)
	nodeTMs   map[string][]string // node → sanitised resource ids in its last report
	agentSubs map[Key]*agentSubtask
	nodeSubs  map[string][]Key // node → keys its last report showed
	restJobs  map[string]*restJob
	restSubs  map[Key]*restSubtask
	restByTM  map[string]map[Key]bool    // sanitised id → keys REST places there
	restTMs   map[string]RESTTaskManager // sanitised id → REST view

	current map[Key]*placement
	// onNode indexes current by each placement's node, so a node's placements (Residents,
	// OnNode) are found without walking every subtask of the fleet; place keeps it.
	// A node's keys are a slice, not a set: a node places some tens of subtasks, and a set per
	// node cost more (18.3 MiB at 10,000 nodes x 20 subtasks, the slices 14.2 MiB).
	onNode map[string][]Key
	moves  []Move
	last   time.Time

	// confirmed is each node's confirmCache. A change to the maps marks stale only the caches
	// that hold what changed (invalidate): one node's new placement leaves the fleet's others
	// valid, where a counter over the whole topology made every report after it look its node's
	// entries up again.
	confirmed map[string]*confirmCache
	// refills counts confirmReport's lookups of a node's entries anew (its cache was stale or
	// absent), so tests can tell which reports a change made pay for it.
	refills uint64

	// fullOnly turns confirmReport off, so a test can hold its result against the full path's.
	fullOnly bool
}

// New returns an empty Topology.
func New(o Options) *Topology {
	if o.StaleAfter <= 0 {
		o.StaleAfter = time.Minute
	}
	if o.MaxMoves <= 0 {
		o.MaxMoves = 200
	}
	return &Topology{
		opts: o, tms: map[string]*agentTM{}, hostNode: map[string]string{}, nodeTMs: map[string][]string{},
		agentSubs: map[Key]*agentSubtask{}, nodeSubs: map[string][]Key{}, restJobs: map[string]*restJob{},
		restSubs: map[Key]*restSubtask{}, restByTM: map[string]map[Key]bool{}, restTMs: map[string]RESTTaskManager{},
		current: map[Key]*placement{}, onNode: map[string][]Key{}, confirmed: map[string]*confirmCache{},
	}
}

func sanitize(s string) string { return promscrape.SanitizeLabelValue(s) }

// ObserveReport takes one node's report. The report lists every TaskManager on the node, so
// TaskManagers and subtasks the node reported before and not now are gone from it.
func (t *Topology) ObserveReport(node string, r *tmwardenv1.Report, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.observeReport(node, r, at)
}

// Place is ObserveReport that also answers, for every subtask of the report in report order,
// whether the topology places the subtask where the report says it ran: on this node, on the
// TaskManager that listed it. It appends the answers to dst. Detection (coordinator/model) keeps
// a subtask's figures only from where it is placed, so it asks here instead of keeping a
// placement of its own; a TaskManager still showing a subtask that moved (an older attempt, or
// one the JobManager placed elsewhere since) is not where it runs.
func (t *Topology) Place(node string, r *tmwardenv1.Report, at time.Time, dst []bool) []bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.observeReport(node, r, at)
	ids := t.nodeTMs[node]
	// A report that only confirmed the node's last one left its placements in the node's cache,
	// in report order, valid while none of them changed since: no map lookups.
	if c := t.confirmed[node]; c != nil && !c.stale && len(c.tms) == len(r.GetTaskManagers()) {
		n := 0
		for i, tm := range r.GetTaskManagers() {
			for range tm.GetSubtasks() {
				p := c.cur[n]
				dst = append(dst, p != nil && p.node == node && p.tm == ids[i])
				n++
			}
		}
		return dst
	}
	for _, tm := range r.GetTaskManagers() {
		id := sanitize(tm.GetResourceId())
		for _, st := range tm.GetSubtasks() {
			placed := false
			if id != "" {
				k := Key{JobID: st.GetJobId(), VertexID: st.GetVertexId(), Index: int(st.GetSubtaskIndex())}
				p := t.current[k]
				placed = p != nil && p.node == node && p.tm == id && t.placementFresh(k)
			}
			dst = append(dst, placed)
		}
	}
	return dst
}

func (t *Topology) observeReport(node string, r *tmwardenv1.Report, at time.Time) {
	t.touch(at)
	// Reports repeat the same placements every interval: when this one shows exactly what the
	// node's last one did, only confirm it (no maps built, nothing removed and re-added).
	if !t.fullOnly && t.confirmReport(node, r, at) {
		return
	}
	t.invalidate(node)
	affected := map[Key]bool{}
	touchedTMs := map[string]bool{}
	for _, id := range t.nodeTMs[node] {
		if tm := t.tms[id]; tm != nil && tm.node == node {
			delete(t.tms, id)
			touchedTMs[id] = true
		}
	}
	// Subtasks this node reported last time: forget them unless this report has them again.
	listed := make(map[Key]bool, len(t.nodeSubs[node]))
	for _, tm := range r.GetTaskManagers() {
		if sanitize(tm.GetResourceId()) == "" {
			continue
		}
		for _, st := range tm.GetSubtasks() {
			listed[Key{JobID: st.GetJobId(), VertexID: st.GetVertexId(), Index: int(st.GetSubtaskIndex())}] = true
		}
	}
	for _, k := range t.nodeSubs[node] {
		if s := t.agentSubs[k]; s != nil && s.node == node && !listed[k] {
			delete(t.agentSubs, k)
			affected[k] = true
		}
	}
	var ids []string
	// Sized to the report, which a node repeats every interval: grown by append, a node's 20
	// keys took 32 keys' room.
	keys := make([]Key, 0, len(listed))
	for _, tm := range r.GetTaskManagers() {
		id := sanitize(tm.GetResourceId())
		host := sanitize(tm.GetHost())
		if prev, ok := t.hostNode[host]; host != "" && prev != node {
			// A new host mapping can place REST subtasks known only by host; it is rare (a
			// TaskManager appearing), so re-resolving them all is cheap enough.
			if ok {
				t.invalidate(prev) // its cache skips the host check
			}
			t.hostNode[host] = node
			for k := range t.restSubs {
				affected[k] = true
			}
		}
		if id == "" {
			continue // not identified yet (scrape failed and discovery had no id)
		}
		ids = append(ids, id)
		touchedTMs[id] = true
		if old := t.tms[id]; old != nil && old.node != node {
			t.invalidate(old.node) // its cache holds the entry replaced here
		}
		t.tms[id] = &agentTM{node: node, host: host, rawID: tm.GetResourceId(), rawHost: tm.GetHost(), seen: at}
		for _, st := range tm.GetSubtasks() {
			k := Key{JobID: st.GetJobId(), VertexID: st.GetVertexId(), Index: int(st.GetSubtaskIndex())}
			// A TaskManager can briefly show a subtask that already moved; the newest attempt wins.
			if prev := t.agentSubs[k]; prev != nil && prev.attempt > int(st.GetAttemptNumber()) {
				continue
			}
			// Reports repeat the same placements every interval: update in place, allocate only
			// for subtasks new to the map.
			as := t.agentSubs[k]
			if as == nil {
				as = &agentSubtask{}
				t.agentSubs[k] = as
			}
			*as = agentSubtask{tm: id, node: node, jobName: st.GetJobName(), vertexName: st.GetVertexName(),
				attempt: int(st.GetAttemptNumber()), seen: at}
			keys = append(keys, k)
			affected[k] = true
		}
	}
	t.nodeTMs[node] = ids
	t.nodeSubs[node] = keys
	// Subtasks REST places on this node's TaskManagers (old or new) may resolve differently now.
	for id := range touchedTMs {
		for k := range t.restByTM[id] {
			affected[k] = true
		}
	}
	for k := range affected {
		t.resolve(k, at)
	}
	// place appended the node's keys one at a time, into room for half as many again.
	if keys := t.onNode[node]; cap(keys) > len(keys) {
		t.onNode[node] = slices.Clone(keys)
	}
}

// confirmReport handles a report that repeats the node's last one: the same TaskManagers (ids
// and hosts, still this node's) listing the same subtasks in the same order, each still placed
// by this node with the same attempt and names. It marks them seen at `at` and re-resolves them,
// which is what the full path ends in for such a report, and reports whether it applied.
// Anything else (a TaskManager or subtask that came, went or moved, another node claiming one,
// an unidentified TaskManager) takes the full path.
func (t *Topology) confirmReport(node string, r *tmwardenv1.Report, at time.Time) bool {
	ids, keys := t.nodeTMs[node], t.nodeSubs[node]
	tms := r.GetTaskManagers()
	if len(tms) != len(ids) || len(ids) == 0 {
		return false
	}
	// The node's entries in the maps, from its cache while none of them changed since it was
	// filled (invalidate), else looked up and cached anew: at fleet scale these lookups, a few
	// cache misses each, were most of the cost of a report.
	c := t.confirmed[node]
	cached := c != nil && !c.stale && len(c.tms) == len(ids) && len(c.subs) == len(keys)
	if !cached {
		t.refills++
		// A stale cache of the right size is filled again in place; it stays stale until the
		// report is confirmed.
		if c == nil || len(c.tms) != len(ids) || len(c.subs) != len(keys) {
			c = &confirmCache{stale: true, tms: make([]*agentTM, len(ids)), subs: make([]*agentSubtask, len(keys)),
				rest: make([]*restSubtask, len(keys)), cur: make([]*placement, len(keys))}
		}
	}
	n := 0
	for i, tm := range tms {
		if !cached {
			c.tms[i] = t.tms[ids[i]]
		}
		a := c.tms[i]
		if a == nil || a.node != node || a.rawID != tm.GetResourceId() || a.rawHost != tm.GetHost() ||
			(!cached && a.host != "" && t.hostNode[a.host] != node) {
			return false
		}
		for _, st := range tm.GetSubtasks() {
			if n == len(keys) {
				return false
			}
			k := keys[n]
			if k.Index != int(st.GetSubtaskIndex()) || k.VertexID != st.GetVertexId() || k.JobID != st.GetJobId() {
				return false
			}
			if !cached {
				c.subs[n], c.rest[n], c.cur[n] = t.agentSubs[k], t.restSubs[k], t.current[k]
			}
			as := c.subs[n]
			if as == nil || as.node != node || as.tm != ids[i] || as.attempt != int(st.GetAttemptNumber()) ||
				as.jobName != st.GetJobName() || as.vertexName != st.GetVertexName() {
				return false
			}
			n++
		}
	}
	if n != len(keys) {
		return false
	}
	for _, a := range c.tms {
		a.seen = at
	}
	for _, as := range c.subs {
		as.seen = at
	}
	// Fresher sightings can change a resolution (an agent seen after REST's poll wins; REST's
	// view may have gone stale), and so can REST's subtasks on these TaskManagers. A placement
	// that changes here marks the cache stale again (place): it is filled anew next time.
	c.stale = false
	t.confirmed[node] = c
	tmOf := func(id string) *agentTM {
		for i, tid := range ids {
			if tid == id {
				return c.tms[i]
			}
		}
		return t.tms[id]
	}
	for i, k := range keys {
		c.cur[i] = t.place(k, c.rest[i], c.subs[i], c.cur[i], tmOf, at)
	}
	for _, id := range ids {
		for k := range t.restByTM[id] {
			t.resolve(k, at)
		}
	}
	return true
}

// confirmCache is one node's entries in the topology's maps, in the order of its last report,
// valid until invalidate marks it stale.
type confirmCache struct {
	stale bool
	tms   []*agentTM
	subs  []*agentSubtask
	rest  []*restSubtask
	cur   []*placement
}

// invalidate marks node's confirmCache stale: an entry it holds changed, or may have. A cache
// can confirm a report only through entries its own node still owns (an agent TaskManager or
// subtask whose node is this one, a host this node maps), and each of those changes only in
// that node's full path, in another node's full path taking it over (which invalidates the
// previous owner), in place (which invalidates the subtask's owner) or with REST's view (which
// invalidates every cache).
func (t *Topology) invalidate(node string) {
	if c := t.confirmed[node]; c != nil {
		c.stale = true
	}
}

// invalidateAll marks every node's confirmCache stale: REST's view changed, whose entries every
// cache holds.
func (t *Topology) invalidateAll() {
	for _, c := range t.confirmed {
		c.stale = true
	}
}

// ForgetNode drops a node (its agent disconnected for good).
func (t *Topology) ForgetNode(node string, at time.Time) {
	t.ObserveReport(node, &tmwardenv1.Report{}, at)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.confirmed, node)
	delete(t.nodeTMs, node)
	delete(t.nodeSubs, node)
	for h, n := range t.hostNode {
		if n == node {
			delete(t.hostNode, h)
		}
	}
}

// ObserveREST takes a complete REST view: the running jobs with their vertices and subtasks,
// and the registered TaskManagers. Jobs missing from it are gone.
func (t *Topology) ObserveREST(jobs []RESTJob, tms []RESTTaskManager, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.invalidateAll()
	t.touch(at)
	t.restTMs = make(map[string]RESTTaskManager, len(tms))
	for _, tm := range tms {
		t.restTMs[sanitize(tm.ID)] = tm
	}
	affected := map[Key]bool{}
	for k := range t.restSubs {
		affected[k] = true
	}
	t.restJobs = make(map[string]*restJob, len(jobs))
	t.restSubs = map[Key]*restSubtask{}
	t.restByTM = map[string]map[Key]bool{}
	for _, j := range jobs {
		t.putRESTJob(j, at, affected)
	}
	for k := range affected {
		t.resolve(k, at)
	}
}

// ObserveRESTJob updates one job (e.g. polled alone after a migration) without touching the rest.
func (t *Topology) ObserveRESTJob(j RESTJob, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.invalidateAll()
	t.touch(at)
	affected := map[Key]bool{}
	if old := t.restJobs[j.ID]; old != nil {
		for _, v := range old.vertices {
			for i := 0; i < v.parallelism; i++ {
				k := Key{JobID: j.ID, VertexID: v.id, Index: i}
				if rs := t.restSubs[k]; rs != nil {
					delete(t.restByTM[sanitize(rs.TaskManagerID)], k)
					delete(t.restSubs, k)
					affected[k] = true
				}
			}
		}
	}
	t.putRESTJob(j, at, affected)
	for k := range affected {
		t.resolve(k, at)
	}
}

func (t *Topology) putRESTJob(j RESTJob, at time.Time, affected map[Key]bool) {
	rj := &restJob{id: j.ID, name: j.Name, state: j.State, seen: at}
	for _, v := range j.Vertices {
		par := max(v.Parallelism, len(v.Subtasks))
		rj.vertices = append(rj.vertices, restVertex{id: v.ID, name: v.Name, parallelism: par})
		for _, s := range v.Subtasks {
			if s.TaskManagerID == "" {
				continue // not deployed yet
			}
			k := Key{JobID: j.ID, VertexID: v.ID, Index: s.Index}
			t.restSubs[k] = &restSubtask{RESTSubtask: s, seen: at}
			id := sanitize(s.TaskManagerID)
			if t.restByTM[id] == nil {
				t.restByTM[id] = map[Key]bool{}
			}
			t.restByTM[id][k] = true
			affected[k] = true
		}
	}
	t.restJobs[j.ID] = rj
}

func (t *Topology) touch(at time.Time) {
	if at.After(t.last) {
		t.last = at
	}
}

func (t *Topology) fresh(seen time.Time) bool {
	return t.last.Sub(seen) <= t.opts.StaleAfter
}

// nodeFor finds the node of a TaskManager: by its id in agent reports, else by its RPC host
// (REST /taskmanagers), else by the host REST shows for the subtask.
func (t *Topology) nodeFor(tmID, subtaskHost string) (node, host string) {
	if tm := t.tms[tmID]; tm != nil {
		return tm.node, tm.host
	}
	if rt, ok := t.restTMs[tmID]; ok && rt.RPCHost != "" {
		h := sanitize(rt.RPCHost)
		if n, ok := t.hostNode[h]; ok {
			return n, h
		}
	}
	h := sanitize(subtaskHost)
	return t.hostNode[h], h
}

// resolve recomputes one subtask's placement and records a move when its TaskManager changed.
func (t *Topology) resolve(k Key, at time.Time) {
	t.place(k, t.restSubs[k], t.agentSubs[k], t.current[k], func(id string) *agentTM { return t.tms[id] }, at)
}

// place is resolve with the subtask's entries at hand: REST's (t.restSubs[k]), the agent's
// (t.agentSubs[k]), the current placement (t.current[k]) and a lookup of agent TaskManagers.
// It returns the placement now current. An unchanged placement (the common case: every report
// confirms most of them) allocates nothing; a changed one invalidates the cache of the node
// whose report places the subtask, the one cache that can hold it and still confirm a report.
func (t *Topology) place(k Key, rs *restSubtask, as *agentSubtask, old *placement, tmOf func(string) *agentTM, at time.Time) *placement {
	var p placement
	if rs != nil && !t.fresh(rs.seen) {
		rs = nil
	}
	if as != nil && !t.fresh(as.seen) {
		as = nil
	}
	switch {
	case rs != nil:
		id := sanitize(rs.TaskManagerID)
		node, host := t.nodeFor(id, rs.Host)
		p = placement{attempt: int32(rs.Attempt), tm: id, host: host, node: node, source: sourceREST}
		if as != nil {
			switch {
			case as.tm == id:
				p.source = sourceBoth
			case as.seen.After(rs.seen):
				// The agent saw the subtask elsewhere after REST was polled: it moved since.
				p = agentPlacement(as, tmOf(as.tm))
			}
			p.jobName, p.vertexName = as.jobName, as.vertexName
		}
	case as != nil:
		p = agentPlacement(as, tmOf(as.tm))
	default:
		if old != nil {
			delete(t.current, k)
			t.unindex(k, old.node)
			t.invalidatePlacer(k)
		}
		return nil
	}
	if rj := t.restJobs[k.JobID]; rj != nil {
		p.jobName = rj.name
		for _, v := range rj.vertices {
			if v.id == k.VertexID {
				p.vertexName = v.name
			}
		}
	}
	if old != nil && samePlacement(old, &p) {
		return old // unchanged: keep the old value and its Since
	}
	p.since = at
	if old != nil && old.tm == p.tm {
		p.since = old.since
	}
	if old != nil && old.tm != p.tm {
		t.moves = append(t.moves, Move{Key: k, FromTaskManager: old.tm, FromNode: old.node,
			ToTaskManager: p.tm, ToNode: p.node, At: at})
		if len(t.moves) > t.opts.MaxMoves {
			t.moves = slices.Delete(t.moves, 0, len(t.moves)-t.opts.MaxMoves)
		}
	}
	np := p // only a changed placement reaches the heap
	t.current[k] = &np
	if old == nil || old.node != np.node {
		if old != nil {
			t.unindex(k, old.node)
		}
		t.onNode[np.node] = append(t.onNode[np.node], k)
	}
	t.invalidatePlacer(k)
	return &np
}

// unindex drops k from node's entry in onNode.
func (t *Topology) unindex(k Key, node string) {
	keys := t.onNode[node]
	if i := slices.Index(keys, k); i >= 0 {
		keys[i] = keys[len(keys)-1]
		keys = keys[:len(keys)-1]
	}
	if len(keys) == 0 {
		delete(t.onNode, node)
	} else {
		t.onNode[node] = keys
	}
}

// invalidatePlacer invalidates the cache of the node an agent report places k on. Another node's
// cache may still hold k (a subtask that moved away from it), but it can no longer confirm a
// report with it: its own node is not the one the entry names.
func (t *Topology) invalidatePlacer(k Key) {
	if as := t.agentSubs[k]; as != nil {
		t.invalidate(as.node)
	}
}

func samePlacement(a, b *placement) bool {
	return a.tm == b.tm && a.node == b.node && a.source == b.source && a.attempt == b.attempt &&
		a.host == b.host && a.jobName == b.jobName && a.vertexName == b.vertexName
}

func agentPlacement(as *agentSubtask, tm *agentTM) placement {
	p := placement{attempt: int32(as.attempt), tm: as.tm, node: as.node, source: sourceAgent,
		jobName: as.jobName, vertexName: as.vertexName}
	if tm != nil {
		p.host = tm.host
	}
	return p
}

// Locate returns where a subtask runs.
func (t *Topology) Locate(k Key) (Placement, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p, ok := t.current[k]
	if !ok || !t.placementFresh(k) {
		return Placement{}, false
	}
	return p.full(k), true
}

// placementFresh re-checks staleness at read time, since nothing may have been observed since.
func (t *Topology) placementFresh(k Key) bool {
	if rs := t.restSubs[k]; rs != nil && t.fresh(rs.seen) {
		return true
	}
	if as := t.agentSubs[k]; as != nil && t.fresh(as.seen) {
		return true
	}
	return false
}

// NodeOf returns the node a TaskManager (raw or sanitised ResourceID) was last reported on.
func (t *Topology) NodeOf(taskManagerID string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tm := t.tms[sanitize(taskManagerID)]
	if tm == nil {
		return "", false
	}
	return tm.node, true
}

// Peers returns the placements of every subtask of a vertex, sorted by index: the group the
// detector compares a subtask with.
func (t *Topology) Peers(jobID, vertexID string) []Placement {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Placement
	for k, p := range t.current {
		if k.JobID == jobID && k.VertexID == vertexID && t.placementFresh(k) {
			out = append(out, p.full(k))
		}
	}
	slices.SortFunc(out, func(a, b Placement) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// OnNode returns the placements of every subtask running on node.
func (t *Topology) OnNode(node string) []Placement {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Placement
	for _, k := range t.onNode[node] {
		if t.placementFresh(k) {
			out = append(out, t.current[k].full(k))
		}
	}
	sortPlacements(out)
	return out
}

func sortPlacements(ps []Placement) {
	slices.SortFunc(ps, func(a, b Placement) int {
		return cmp.Or(cmp.Compare(a.JobID, b.JobID), cmp.Compare(a.VertexID, b.VertexID), cmp.Compare(a.Index, b.Index))
	})
}

// Snapshot is the whole topology, ready to serve as JSON.
type Snapshot struct {
	At           time.Time         `json:"at"`
	Jobs         []JobView         `json:"jobs"`
	Nodes        []NodeView        `json:"nodes"`
	TaskManagers []TaskManagerView `json:"taskManagers"`
	// Unplaced counts subtasks whose TaskManager no agent has reported (no node known).
	Unplaced int    `json:"unplaced"`
	Moves    []Move `json:"recentMoves"`
}

// JobView is one job with its vertices.
type JobView struct {
	ID       string       `json:"id"`
	Name     string       `json:"name,omitempty"`
	State    string       `json:"state,omitempty"`
	Vertices []VertexView `json:"vertices"`
}

// VertexView is one vertex with its subtasks' placements.
type VertexView struct {
	ID          string      `json:"id"`
	Name        string      `json:"name,omitempty"`
	Parallelism int         `json:"parallelism"`
	Subtasks    []Placement `json:"subtasks"`
}

// NodeView lists a node's TaskManagers and how many subtasks run there.
type NodeView struct {
	Name         string   `json:"name"`
	TaskManagers []string `json:"taskManagers"`
	Subtasks     int      `json:"subtasks"`
}

// TaskManagerView is one TaskManager known from agents or REST.
type TaskManagerView struct {
	ID       string    `json:"id"`
	RawID    string    `json:"rawId,omitempty"`
	Node     string    `json:"node,omitempty"`
	Host     string    `json:"host,omitempty"`
	Subtasks int       `json:"subtasks"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
}

// Snapshot copies the current topology.
func (t *Topology) Snapshot() Snapshot {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Snapshot{At: t.last, Jobs: []JobView{}, Nodes: []NodeView{}, TaskManagers: []TaskManagerView{}, Moves: slices.Clone(t.moves)}
	if s.Moves == nil {
		s.Moves = []Move{}
	}
	jobs := map[string]*JobView{}
	vertices := map[[2]string]bool{}
	for _, rj := range t.restJobs {
		j := &JobView{ID: rj.id, Name: rj.name, State: rj.state}
		jobs[rj.id] = j
		for _, v := range rj.vertices {
			j.Vertices = append(j.Vertices, VertexView{ID: v.id, Name: v.name, Parallelism: v.parallelism})
		}
	}
	tmCount := map[string]int{}
	nodeCount := map[string]int{}
	for k, p := range t.current {
		if !t.placementFresh(k) {
			continue
		}
		j := jobs[k.JobID]
		if j == nil {
			j = &JobView{ID: k.JobID, Name: p.jobName}
			jobs[k.JobID] = j
		}
		vk := [2]string{k.JobID, k.VertexID}
		if !vertices[vk] {
			vertices[vk] = true
			if !slices.ContainsFunc(j.Vertices, func(v VertexView) bool { return v.ID == k.VertexID }) {
				j.Vertices = append(j.Vertices, VertexView{ID: k.VertexID, Name: p.vertexName})
			}
		}
		tmCount[p.tm]++
		if p.node == "" {
			s.Unplaced++
		} else {
			nodeCount[p.node]++
		}
	}
	byVertex := map[[2]string][]Placement{}
	for k, p := range t.current {
		if t.placementFresh(k) {
			vk := [2]string{k.JobID, k.VertexID}
			byVertex[vk] = append(byVertex[vk], p.full(k))
		}
	}
	for _, j := range jobs {
		for i := range j.Vertices {
			v := &j.Vertices[i]
			v.Subtasks = byVertex[[2]string{j.ID, v.ID}]
			slices.SortFunc(v.Subtasks, func(a, b Placement) int { return cmp.Compare(a.Index, b.Index) })
			if v.Parallelism == 0 {
				v.Parallelism = len(v.Subtasks)
			}
			if v.Subtasks == nil {
				v.Subtasks = []Placement{}
			}
		}
		s.Jobs = append(s.Jobs, *j)
	}
	slices.SortFunc(s.Jobs, func(a, b JobView) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })

	seenTM := map[string]bool{}
	for id, tm := range t.tms {
		seenTM[id] = true
		s.TaskManagers = append(s.TaskManagers, TaskManagerView{ID: id, RawID: tm.rawID, Node: tm.node, Host: tm.host, Subtasks: tmCount[id], LastSeen: tm.seen})
	}
	for id, rt := range t.restTMs {
		if !seenTM[id] {
			s.TaskManagers = append(s.TaskManagers, TaskManagerView{ID: id, RawID: rt.ID, Host: sanitize(rt.RPCHost), Subtasks: tmCount[id]})
		}
	}
	slices.SortFunc(s.TaskManagers, func(a, b TaskManagerView) int { return cmp.Compare(a.ID, b.ID) })
	for node, ids := range t.nodeTMs {
		s.Nodes = append(s.Nodes, NodeView{Name: node, TaskManagers: slices.Sorted(slices.Values(ids)), Subtasks: nodeCount[node]})
	}
	slices.SortFunc(s.Nodes, func(a, b NodeView) int { return strings.Compare(a.Name, b.Name) })
	for i := range s.Nodes {
		if s.Nodes[i].TaskManagers == nil {
			s.Nodes[i].TaskManagers = []string{}
		}
	}
	return s
}

// MovesSince returns the recent moves that happened after the given time, oldest first.
func (t *Topology) MovesSince(after time.Time) []Move {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []Move
	for _, m := range t.moves {
		if m.At.After(after) {
			out = append(out, m)
		}
	}
	return out
}

// Residents returns the Flink jobs with a subtask placed on node and the TaskManagers (raw
// ResourceIDs, as the agent reported them) on it: everything a migration of the node touches.
// Decisions learn a node's jobs and TaskManagers here, never from a verdict's evidence, which
// names only what looked slow and is capped.
func (t *Topology) Residents(node string) (jobs, taskManagers []string) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, k := range t.onNode[node] {
		if t.placementFresh(k) && !slices.Contains(jobs, k.JobID) {
			jobs = append(jobs, k.JobID)
		}
	}
	for _, id := range t.nodeTMs[node] {
		raw := id
		if tm := t.tms[id]; tm != nil && tm.rawID != "" {
			raw = tm.rawID
		}
		if !slices.Contains(taskManagers, raw) {
			taskManagers = append(taskManagers, raw)
		}
	}
	slices.Sort(jobs)
	slices.Sort(taskManagers)
	return jobs, taskManagers
}
