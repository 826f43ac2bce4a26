// Package flinksim stands in for a Flink cluster where no JVM runs (tests, the demo): it serves
// TaskManager /metrics and JobManager REST endpoints in the formats of ../shared/reference/flink.
// A small keyed-pipeline model with injectable slowness and skew drives the numbers (see
// computeRates).
package flinksim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"time"
)

// Flink versions the stand-in can imitate; they differ in metric names and REST fields.
const (
	Version120 = "1.20.1"
	Version20  = "2.0.0"
)

// Config describes the simulated cluster.
type Config struct {
	// Version is Version120 (buffers_* gauges, REST `host`) or Version20 (the default).
	Version      string
	TaskManagers []TaskManagerSpec
	Jobs         []JobSpec
	// CheckpointInterval is how often the model completes a periodic checkpoint (default 10 s).
	CheckpointInterval time.Duration
	// Now replaces the clock, for deterministic tests.
	Now func() time.Time
}

// TaskManagerSpec places one TaskManager on a named node.
type TaskManagerSpec struct {
	Node  string
	Slots int
}

// JobSpec is a linear pipeline; vertex i feeds vertex i+1 through a keyBy.
type JobSpec struct {
	Name     string
	Vertices []VertexSpec
	// Rate is the records per second the sources are offered (over all source subtasks).
	Rate float64
}

// VertexSpec is one job vertex. The first vertex of a job is its source.
type VertexSpec struct {
	Name        string
	Parallelism int
	// Capacity is the records per second one subtask processes when 100% busy at speed 1.
	Capacity float64
	// BytesPerRecord sizes the byte rates (default 200).
	BytesPerRecord float64
}

// TaskManagerInfo is what a caller needs to reach one simulated TaskManager.
type TaskManagerInfo struct {
	// ID is the Flink ResourceID (unsanitised, as REST shows it).
	ID   string
	Node string
	// Host is the TaskManager's RPC address as Flink reports it (a made-up IP per node).
	Host     string
	DataPort int
	// MetricsAddr is the real loopback host:port of its /metrics endpoint ("" before Start).
	MetricsAddr string
}

type taskManager struct {
	info  TaskManagerInfo
	slots int
	speed float64
	// gone makes the metrics endpoint drop connections, as a TaskManager that died.
	gone bool
	// gc counters advance with time.
	gcCount, gcTimeMs float64
	cpuTimeNs         float64
	startedAt         time.Time
}

type subtask struct {
	index   int
	tm      *taskManager
	attempt int
	weight  float64 // share of the keyed input relative to peers (1 = even)
	start   time.Time

	// derived each step
	inRate, outRate, busy, bp, idle, inPool, outPool float64
	// cumulative
	recIn, recOut, bytesIn, bytesOut float64
	accBusy, accIdle, accBP          float64
	pending                          float64
}

type vertex struct {
	id, name    string
	parallelism int
	capacity    float64
	bytesPerRec float64
	subtasks    []*subtask
}

type job struct {
	id, name  string
	execGraph string
	rate      float64
	vertices  []*vertex
	start     time.Time
	// rateNow is the job's current throughput in records per second.
	rateNow float64

	checkpoints checkpointState
}

// Cluster is a running simulated Flink cluster. All methods are safe for concurrent use.
type Cluster struct {
	mu      sync.Mutex
	cfg     Config
	version string
	now     func() time.Time
	last    time.Time
	tms     []*taskManager
	jobs    []*job

	servers []*server
	restURL string
	stop    func()
}

// New builds the model without starting servers; Start does both.
func New(cfg Config) (*Cluster, error) {
	if len(cfg.TaskManagers) == 0 {
		return nil, fmt.Errorf("flinksim: no TaskManagers configured")
	}
	c := &Cluster{cfg: cfg, version: cfg.Version, now: cfg.Now}
	if c.version == "" {
		c.version = Version20
	}
	if c.version != Version120 && c.version != Version20 {
		return nil, fmt.Errorf("flinksim: unsupported version %q (want %q or %q)", c.version, Version120, Version20)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.cfg.CheckpointInterval <= 0 {
		c.cfg.CheckpointInterval = 10 * time.Second
	}
	start := c.now()
	c.last = start
	nodeIdx := map[string]int{}
	perNode := map[string]int{}
	for i, s := range cfg.TaskManagers {
		if s.Node == "" {
			return nil, fmt.Errorf("flinksim: TaskManager %d has no node name", i)
		}
		if s.Slots <= 0 {
			s.Slots = 2
		}
		if _, ok := nodeIdx[s.Node]; !ok {
			nodeIdx[s.Node] = len(nodeIdx)
		}
		perNode[s.Node]++
		ip := fmt.Sprintf("10.0.%d.%d", 1+nodeIdx[s.Node]/250, 10+nodeIdx[s.Node]%250)
		rpc := 36000 + i
		id := fmt.Sprintf("%s:%d-%s", ip, rpc, hexID("tm", s.Node, fmt.Sprint(i))[:6])
		c.tms = append(c.tms, &taskManager{
			info:  TaskManagerInfo{ID: id, Node: s.Node, Host: ip, DataPort: 40000 + i},
			slots: s.Slots, speed: 1, startedAt: start,
		})
	}
	free := 0
	for _, tm := range c.tms {
		free += tm.slots
	}
	for ji, js := range cfg.Jobs {
		if len(js.Vertices) == 0 {
			return nil, fmt.Errorf("flinksim: job %q has no vertices", js.Name)
		}
		j := &job{
			id: hexID("job", js.Name, fmt.Sprint(ji)), name: js.Name, rate: js.Rate, start: start,
			execGraph: hexID("eg", js.Name, fmt.Sprint(ji)),
		}
		j.checkpoints.next = 1
		j.checkpoints.lastPeriodic = start
		maxPar := 0
		for vi, vs := range js.Vertices {
			if vs.Parallelism <= 0 {
				return nil, fmt.Errorf("flinksim: job %q vertex %q: parallelism must be positive", js.Name, vs.Name)
			}
			if vs.Capacity <= 0 {
				return nil, fmt.Errorf("flinksim: job %q vertex %q: capacity must be positive", js.Name, vs.Name)
			}
			v := &vertex{
				id: hexID("vertex", j.id, vs.Name, fmt.Sprint(vi)), name: vs.Name,
				parallelism: vs.Parallelism, capacity: vs.Capacity, bytesPerRec: vs.BytesPerRecord,
			}
			if v.bytesPerRec <= 0 {
				v.bytesPerRec = 200
			}
			for i := 0; i < vs.Parallelism; i++ {
				v.subtasks = append(v.subtasks, &subtask{index: i, weight: 1, start: start})
			}
			maxPar = max(maxPar, vs.Parallelism)
			j.vertices = append(j.vertices, v)
		}
		// Slot sharing: subtask i of every vertex shares one slot, so a job needs maxPar slots.
		if maxPar > free {
			return nil, fmt.Errorf("flinksim: job %q needs %d slots, %d free", js.Name, maxPar, free)
		}
		free -= maxPar
		c.jobs = append(c.jobs, j)
	}
	c.place()
	c.step(start)
	return c, nil
}

// place assigns slots round-robin over TaskManagers so every vertex spreads across nodes.
func (c *Cluster) place() {
	used := make(map[*taskManager]int)
	for _, j := range c.jobs {
		maxPar := 0
		for _, v := range j.vertices {
			maxPar = max(maxPar, v.parallelism)
		}
		slotTM := make([]*taskManager, maxPar)
		next := 0
		for s := 0; s < maxPar; s++ {
			for tries := 0; tries < len(c.tms); tries++ {
				tm := c.tms[next%len(c.tms)]
				next++
				if used[tm] < tm.slots {
					used[tm]++
					slotTM[s] = tm
					break
				}
			}
		}
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				st.tm = slotTM[st.index]
			}
		}
	}
}

func hexID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// advance moves the model to now; callers hold c.mu.
func (c *Cluster) advance() time.Time {
	now := c.now()
	if now.After(c.last) {
		c.step(now)
	}
	return now
}

// step integrates counters over [c.last, now] with the rates of the current configuration,
// then recomputes the rates.
func (c *Cluster) step(now time.Time) {
	dt := now.Sub(c.last).Seconds()
	c.last = now
	for _, tm := range c.tms {
		busy := 0.0
		for _, j := range c.jobs {
			for _, v := range j.vertices {
				for _, st := range v.subtasks {
					if st.tm == tm {
						busy += st.busy / 1000
					}
				}
			}
		}
		// Slow machines also spend more time in GC in this model, as a contended CPU does.
		gcMsPerSec := 5 + 40*(1-tm.speed)
		tm.gcTimeMs += gcMsPerSec * dt
		tm.gcCount += (0.5 + 2*(1-tm.speed)) * dt
		tm.cpuTimeNs += busy * 1e9 * dt
	}
	for _, j := range c.jobs {
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				st.recIn += st.inRate * dt
				st.recOut += st.outRate * dt
				st.bytesIn += st.inRate * v.bytesPerRec * dt
				st.bytesOut += st.outRate * v.bytesPerRec * dt
				st.accBusy += st.busy * dt
				st.accIdle += st.idle * dt
				st.accBP += st.bp * dt
			}
		}
		// Offered but unprocessed records pile up in Kafka.
		src := j.vertices[0]
		srcPar := float64(len(src.subtasks))
		for _, st := range src.subtasks {
			st.pending = math.Max(1000, st.pending+(j.rate-j.rateNow)/srcPar*dt)
		}
		c.computeRates(j)
		j.checkpoints.advance(c, j, now)
	}
}

// computeRates applies the model. Every job is a chain of vertices joined by keyBy (all-to-all)
// edges, and one slow subtask throttles the whole job, leaving its peers idle and its upstream
// back-pressured, as in a real keyed pipeline. Subtask i of vertex v gets T·w_i/W_v of the
// job's throughput T, so T is the smallest capacity·speed·W_v/w_i over all subtasks, capped by
// the offered rate. Sources split their input evenly.
func (c *Cluster) computeRates(j *job) {
	total := j.rate
	bottleneck := -1
	weights := make([]float64, len(j.vertices))
	for vi, v := range j.vertices {
		for _, st := range v.subtasks {
			weights[vi] += c.weight(vi, st)
		}
		for _, st := range v.subtasks {
			if lim := v.capacity * st.tm.speed * weights[vi] / c.weight(vi, st); lim < total {
				total, bottleneck = lim, vi
			}
		}
	}
	j.rateNow = total
	for vi, v := range j.vertices {
		for _, st := range v.subtasks {
			share := total * c.weight(vi, st) / weights[vi]
			st.inRate, st.outRate = share, share
			if vi == 0 {
				st.inRate = 0 // Flink counts no task input records for sources
			}
			if vi == len(j.vertices)-1 {
				st.outRate = 0 // the sink emits to no downstream task
			}
			st.busy = math.Min(1000, 1000*share/(v.capacity*st.tm.speed))
			rest := 1000 - st.busy
			st.bp, st.idle = 0, rest
			st.inPool, st.outPool = 0.05+0.2*st.busy/1000, 0.05
			if bottleneck >= 0 && vi < bottleneck {
				// Upstream of the bottleneck the task waits on full output buffers.
				st.bp, st.idle = rest*0.97, rest*0.03
				st.outPool = 1
			}
			if bottleneck >= 0 && vi == bottleneck && st.busy > 990 {
				st.inPool = 1
			}
			if vi == 0 {
				st.inPool = math.NaN() // sources have no network input
			}
		}
	}
}

func (c *Cluster) weight(vi int, st *subtask) float64 {
	if vi == 0 {
		return 1
	}
	return st.weight
}

// SetNodeSlowness sets the speed of every TaskManager on node: 1 is normal, 0.25 processes a
// quarter as many records per busy second (and shows more GC), as a CPU-starved machine does.
func (c *Cluster) SetNodeSlowness(node string, speed float64) error {
	return c.setSpeed(func(tm *taskManager) bool { return tm.info.Node == node }, speed, "node "+node)
}

// SetTaskManagerSlowness is SetNodeSlowness for one TaskManager (by ResourceID).
func (c *Cluster) SetTaskManagerSlowness(tmID string, speed float64) error {
	return c.setSpeed(func(tm *taskManager) bool { return tm.info.ID == tmID }, speed, "TaskManager "+tmID)
}

func (c *Cluster) setSpeed(match func(*taskManager) bool, speed float64, what string) error {
	if !(speed > 0 && speed <= 10) {
		return fmt.Errorf("flinksim: speed %v out of range (0, 10]", speed)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	found := false
	for _, tm := range c.tms {
		if match(tm) {
			tm.speed = speed
			found = true
		}
	}
	if !found {
		return fmt.Errorf("flinksim: no %s", what)
	}
	for _, j := range c.jobs {
		c.computeRates(j)
	}
	return nil
}

// SetSkew gives one subtask weight× the keyed input of its peers (data skew, not slowness).
func (c *Cluster) SetSkew(jobName, vertexName string, subtaskIndex int, weight float64) error {
	if !(weight > 0) {
		return fmt.Errorf("flinksim: skew weight must be positive, got %v", weight)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advance()
	for _, j := range c.jobs {
		if j.name != jobName {
			continue
		}
		for _, v := range j.vertices {
			if v.name == vertexName && subtaskIndex >= 0 && subtaskIndex < len(v.subtasks) {
				v.subtasks[subtaskIndex].weight = weight
				c.computeRates(j)
				return nil
			}
		}
	}
	return fmt.Errorf("flinksim: no subtask %s/%s#%d", jobName, vertexName, subtaskIndex)
}

// MoveTaskManagerTasks reschedules every subtask running on TaskManager fromID to TaskManager
// toID (as after an eviction and restart), bumping attempt numbers so the series change like a
// real failover.
func (c *Cluster) MoveTaskManagerTasks(fromID, toID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	from, to := c.tmByID(fromID), c.tmByID(toID)
	if from == nil || to == nil {
		return fmt.Errorf("flinksim: unknown TaskManager %q or %q", fromID, toID)
	}
	now := c.advance()
	for _, j := range c.jobs {
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				if st.tm == from {
					st.tm = to
					st.attempt++
					st.start = now
				}
			}
		}
		c.computeRates(j)
	}
	return nil
}

// SetTaskManagerGone makes a TaskManager's /metrics endpoint fail (connection closed mid-body)
// until it is set back.
func (c *Cluster) SetTaskManagerGone(tmID string, gone bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := c.tmByID(tmID)
	if tm == nil {
		return fmt.Errorf("flinksim: unknown TaskManager %q", tmID)
	}
	tm.gone = gone
	return nil
}

func (c *Cluster) tmByID(id string) *taskManager {
	for _, tm := range c.tms {
		if tm.info.ID == id {
			return tm
		}
	}
	return nil
}

// TaskManagers lists the TaskManagers with their addresses.
func (c *Cluster) TaskManagers() []TaskManagerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]TaskManagerInfo, len(c.tms))
	for i, tm := range c.tms {
		out[i] = tm.info
	}
	return out
}

// Nodes lists the node names in the order their TaskManagers were configured.
func (c *Cluster) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, tm := range c.tms {
		if !seen[tm.info.Node] {
			seen[tm.info.Node] = true
			out = append(out, tm.info.Node)
		}
	}
	return out
}

// TaskManagersOn lists the TaskManagers placed on node, as an agent there would discover them.
func (c *Cluster) TaskManagersOn(node string) []TaskManagerInfo {
	var out []TaskManagerInfo
	for _, tm := range c.TaskManagers() {
		if tm.Node == node {
			out = append(out, tm)
		}
	}
	return out
}

// JobID returns a job's id by name, for tests and the demo (ids are derived from the names).
func (c *Cluster) JobID(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range c.jobs {
		if j.name == name {
			return j.id, true
		}
	}
	return "", false
}

// Placement is where one subtask runs now.
type Placement struct {
	JobID, JobName, VertexID, VertexName string
	SubtaskIndex, Attempt                int
	TaskManagerID, Node                  string
	// ExecutionGraphID prefixes the subtask's task_attempt_id label.
	ExecutionGraphID string
}

// Placements lists every subtask's TaskManager and node.
func (c *Cluster) Placements() []Placement {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Placement
	for _, j := range c.jobs {
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				out = append(out, Placement{
					JobID: j.id, JobName: j.name, VertexID: v.id, VertexName: v.name,
					SubtaskIndex: st.index, Attempt: st.attempt, TaskManagerID: st.tm.info.ID, Node: st.tm.info.Node,
					ExecutionGraphID: j.execGraph,
				})
			}
		}
	}
	return out
}
