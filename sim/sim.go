// Package sim is a discrete-time simulator of a Flink cluster: nodes, TaskManagers with slots,
// jobs as operator graphs fed by Kafka-like partitions, backpressure, checkpoints, and scheduled
// faults and negative controls. Every tick it emits the tmwardenv1.Report each node's agent would
// send, so the coordinator's ingest, model and detectors run on it unchanged.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/sim/scenario"
)

// Epoch is simulated time zero.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Deliver receives one report as the coordinator would: from node, received at `at`. The report
// is owned by the simulator and reused on the next tick; a receiver that keeps it must clone it.
type Deliver func(node string, at time.Time, r *tmwardenv1.Report)

const (
	edgeForward = iota
	edgeHash
	edgeRebalance
)

// agentBufferReports is how many reports an agent keeps while it cannot reach the coordinator.
const agentBufferReports = 120

type node struct {
	idx       int
	name      string
	cpus      float64
	baseSpeed float64
	tms       []*taskManager
	class     *scenario.Class
	zone      string
	memGiB    int
	// neighbours are the node's other cgroups: background ones, and a noisy one per
	// cpu_contention fault on the node (by fault index).
	neighbours []*neighbour
	// shares of the node's resources the active faults hit (some cores, one disk, one NIC)
	cpuShare, diskShare, netShare float64
	// netRecvSev: packets to the node are lost (receiver-side network loss)
	netRecvSev float64
	// metricsMode: "" normal, "missing" or "stale" Flink metrics this tick
	metricsMode string

	// effects of faults and controls this tick; faultSev is the strongest node fault's severity
	faultSev                                                                float64
	cpuSpeed, diskSpeed, netSev, memSev, steal, noisyCores, cpuSev, diskSev float64

	// accumulated over the tick
	busyCores, recordsOut, diskWriteBytes float64

	// agent
	seq       uint64
	restarted bool // the agent came back: its first round has no rates
	buffer    []*tmwardenv1.Report
	rep       *reportShape
	uptime    float64
}

// neighbour is a cgroup on a node that is not a TaskManager's.
type neighbour struct {
	path, pod, namespace, uid, unit string
	baseCores, cores                float64
	fault                           int // index of its cpu_contention fault, -1 for background
}

type taskManager struct {
	down     bool
	id       string
	node     *node
	cgroup   string
	subtasks []*subtask
	gcBase   float64
	gcMs     float64
	heapFrac float64
	gcSev    float64
}

type job struct {
	id, name   string
	template   int
	spec       *scenario.Job
	vertices   []*vertex
	partitions []partition
	ckptEvery  int
	bursts     []burst
	rateMult   float64
}

type partition struct {
	share float64
	lag   float64
	owner int
}

type burst struct {
	from, to int
	mag      float64
}

type vertex struct {
	job      *job
	id, name string
	spec     *scenario.Operator
	p        int
	sel      float64
	ioShare  float64
	subtasks []*subtask
	in       []*edge
	out      []*edge
	senders  int
	isSource bool
	isSink   bool
	hot      int // subtask that receives the hottest key group on a hash input
}

type edge struct {
	from, to *vertex
	kind     int
	base     []float64 // natural key-group imbalance, fixed at start
	w        []float64 // current routing weights (hash), sums to 1
	limit    float64   // per-sender share of the tightest downstream allowance per unit weight
	sent     float64   // cumulative, for the conservation check
	got      float64
}

type subtask struct {
	v       *vertex
	idx     int
	tm      *taskManager
	factor  float64 // persistent per-subtask speed spread (state size, JIT luck)
	costMul float64 // hot-key cost factor (data skew control)
	lane    float64 // which part of its node it uses (cores, disk, NIC), for partial faults
	down    bool    // restarting (TaskManager restart, job failover)
	queue   float64
	parts   []int

	capacity, eff, accept, outLimit float64
	processed, out                  float64
	busyMs, bpMs, idleMs            float64
	ckptDelayMs                     float64
	cumIn, cumProcessed             float64
	metric                          *tmwardenv1.SubtaskMetrics
}

// Sim is one scenario being replayed.
type Sim struct {
	sc       *scenario.Scenario
	rng      *rand.Rand
	dt       float64
	interval time.Duration
	tick     int
	ticks    int
	nodes    []*node
	jobs     []*job
	subtasks []*subtask
	noise    float64

	slowdown float64
	arrived  float64 // cumulative records produced into partitions

	// faultNodes and controlNodes resolve the schedule's node names once.
	faultNodes   [][]*node
	controlNodes [][]bool
}

// New builds the cluster and places the jobs. The same scenario and seed build the same cluster.
func New(sc *scenario.Scenario) (*Sim, error) {
	s := &Sim{
		sc:       sc,
		rng:      rand.New(rand.NewPCG(sc.Seed, 0x51a7e)),
		interval: sc.Interval.D(),
		dt:       sc.Interval.D().Seconds(),
		ticks:    int(sc.Duration.D() / sc.Interval.D()),
		noise:    *sc.Noise,
	}
	c := sc.Cluster
	type slotRef struct {
		tm *taskManager
	}
	var slots []slotRef
	classOf := map[string]*scenario.Class{}
	for ci := range c.Classes {
		for _, name := range c.Classes[ci].Nodes {
			classOf[name] = &c.Classes[ci]
		}
	}
	for i := range c.Nodes {
		n := &node{idx: i, name: sc.NodeName(i), cpus: float64(c.CPUs), baseSpeed: 1 + c.SpeedJitter*(2*s.rng.Float64()-1), memGiB: c.MemoryGiB}
		if cl := classOf[n.name]; cl != nil {
			n.class, n.cpus, n.memGiB = cl, float64(cl.CPUs), cl.MemoryGiB
			n.baseSpeed *= cl.Speed
		}
		if len(c.Zones) > 0 {
			n.zone = c.Zones[i%len(c.Zones)]
		}
		n.uptime = 86400 * (1 + 30*s.rng.Float64())
		for k := range *c.Neighbours {
			nb := &neighbour{fault: -1, baseCores: 0.05 + 0.25*s.rng.Float64()}
			if k%2 == 0 {
				nb.pod, nb.namespace = fmt.Sprintf("node-agent-%d-%s", k, n.name), "kube-system"
				nb.uid = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, k)
				nb.path = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(nb.uid, "-", "_") + ".slice"
			} else {
				nb.unit = []string{"containerd.service", "kubelet.service", "sshd.service", "node-exporter.service"}[(k/2)%4]
				nb.path = "/system.slice/" + nb.unit
			}
			n.neighbours = append(n.neighbours, nb)
		}
		for t := range c.TaskManagersPerNode {
			tm := &taskManager{id: sc.TaskManagerID(n.name, t), node: n, gcBase: 4 + 8*s.rng.Float64(), heapFrac: 0.3 + 0.3*s.rng.Float64()}
			tm.cgroup = fmt.Sprintf("/kubepods.slice/kubepods-burstable.slice/%s", tm.id)
			n.tms = append(n.tms, tm)
		}
		s.nodes = append(s.nodes, n)
	}
	// Slots are handed out TaskManager-major across nodes (Flink's evenly-spread-out-slots), so a
	// job's subtasks land on many nodes and a node hosts subtasks of many jobs.
	for sl := range c.SlotsPerTaskManager {
		for t := range c.TaskManagersPerNode {
			for _, n := range s.nodes {
				_ = sl
				slots = append(slots, slotRef{tm: n.tms[t]})
			}
		}
	}
	// Jobs take the next free slots in that order, as a scheduler filling the cluster would.
	cursor := 0
	for ti := range sc.Jobs {
		spec := &sc.Jobs[ti]
		for k := range spec.Count {
			j := s.buildJob(spec, ti, k)
			need := 0
			for _, v := range j.vertices {
				need = max(need, v.p)
			}
			if cursor+need > len(slots) {
				return nil, fmt.Errorf("scenario %s: jobs need more than the cluster's %d slots", sc.Name, len(slots))
			}
			// Slot sharing: subtask i of every vertex shares slot i of the job.
			for i := range need {
				tm := slots[cursor+i].tm
				for _, v := range j.vertices {
					if i < v.p {
						st := v.subtasks[i]
						st.tm = tm
						tm.subtasks = append(tm.subtasks, st)
					}
				}
			}
			cursor += need
			s.jobs = append(s.jobs, j)
		}
	}
	for fi, f := range sc.Faults {
		var ns []*node
		for _, name := range f.Nodes {
			n := s.nodeByName(name)
			ns = append(ns, n)
			if nb := f.Neighbour; nb != nil {
				n.neighbours = append(n.neighbours, &neighbour{path: nb.Cgroup, pod: nb.Pod, namespace: nb.Namespace, uid: nb.PodUID, unit: nb.Unit, fault: fi})
			}
		}
		s.faultNodes = append(s.faultNodes, ns)
	}
	for _, c := range sc.Controls {
		set := make([]bool, len(s.nodes))
		for _, name := range c.Nodes {
			set[s.nodeByName(name).idx] = true
		}
		s.controlNodes = append(s.controlNodes, set)
	}
	for fi, f := range sc.Faults {
		if f.Kind != scenario.FaultGCStorm {
			continue
		}
		for _, name := range f.Nodes {
			if tm := s.nodeByName(name).tms[*f.TaskManager]; len(tm.subtasks) == 0 {
				return nil, fmt.Errorf("scenario %s: line %d: faults[%d].task_manager: %s runs no subtasks, a GC storm there slows nothing", sc.Name, f.Line, fi, tm.id)
			}
		}
	}
	for _, n := range s.nodes {
		n.rep = newReportShape(n)
	}
	return s, nil
}

func (s *Sim) buildJob(spec *scenario.Job, template, k int) *job {
	name := spec.Name
	if spec.Count > 1 {
		name = fmt.Sprintf("%s-%03d", spec.Name, k)
	}
	j := &job{name: name, template: template, spec: spec, rateMult: 1}
	j.id = fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
	j.ckptEvery = max(1, int(spec.CheckpointInterval.D()/s.interval))
	byName := map[string]*vertex{}
	for oi := range spec.Operators {
		op := &spec.Operators[oi]
		v := &vertex{job: j, spec: op, name: op.Name, p: op.Parallelism, sel: *op.Selectivity, isSource: oi == 0}
		v.id = fmt.Sprintf("%016x%016x", s.rng.Uint64(), s.rng.Uint64())
		v.ioShare = 0.03
		if op.State {
			v.ioShare = 0.35
		}
		v.hot = s.rng.IntN(v.p)
		for i := range v.p {
			v.subtasks = append(v.subtasks, &subtask{v: v, idx: i, factor: math.Exp(0.04 * s.rng.NormFloat64()), costMul: 1, lane: s.rng.Float64()})
		}
		for _, in := range op.Inputs {
			up := byName[in]
			e := &edge{from: up, to: v}
			switch op.Edge {
			case "hash":
				e.kind = edgeHash
			case "rebalance":
				e.kind = edgeRebalance
			default:
				e.kind = edgeForward
			}
			if e.kind != edgeForward {
				e.base = make([]float64, v.p)
				for i := range e.base {
					e.base[i] = 1
					if e.kind == edgeHash {
						e.base[i] = math.Exp(0.03 * s.rng.NormFloat64())
					}
				}
				if op.KeySkew > 0 {
					e.base[v.hot] += op.KeySkew
				}
				e.w = make([]float64, v.p)
				setWeights(e, -1, 1)
				v.senders += up.p
			} else {
				v.senders++
			}
			up.out = append(up.out, e)
			v.in = append(v.in, e)
		}
		byName[op.Name] = v
		j.vertices = append(j.vertices, v)
		s.subtasks = append(s.subtasks, v.subtasks...)
	}
	for _, v := range j.vertices {
		v.isSink = len(v.out) == 0
	}
	src := j.vertices[0]
	j.partitions = make([]partition, spec.Input.Partitions)
	total := 0.0
	for i := range j.partitions {
		sh := 1 + spec.Input.PartitionSkew*(2*s.rng.Float64()-1)
		j.partitions[i] = partition{share: sh, owner: i % src.p}
		total += sh
		src.subtasks[i%src.p].parts = append(src.subtasks[i%src.p].parts, i)
	}
	for i := range j.partitions {
		j.partitions[i].share /= total
	}
	if b := spec.Input.Bursts; b != nil && b.PerHour > 0 {
		perTick := b.PerHour * s.dt / 3600
		length := max(1, int(b.Duration.D()/s.interval))
		for t := 0; t < s.ticks; t++ {
			if s.rng.Float64() < perTick {
				j.bursts = append(j.bursts, burst{from: t, to: t + length, mag: 1 + (b.Magnitude-1)*(0.5+0.5*s.rng.Float64())})
			}
		}
	}
	return j
}

// setWeights recomputes the routing weights of a hash edge; hot gets mag times its base share.
func setWeights(e *edge, hot int, mag float64) {
	total := 0.0
	for i, b := range e.base {
		w := b
		if i == hot {
			w *= mag
		}
		e.w[i] = w
		total += w
	}
	for i := range e.w {
		e.w[i] /= total
	}
}

// Scenario returns the scenario being replayed.
func (s *Sim) Scenario() *scenario.Scenario { return s.sc }

// Ticks is the number of ticks in the scenario.
func (s *Sim) Ticks() int { return s.ticks }

// Tick is the number of ticks done.
func (s *Sim) Tick() int { return s.tick }

// Now is the simulated time at the end of the last tick.
func (s *Sim) Now() time.Time { return Epoch.Add(time.Duration(s.tick) * s.interval) }

// NodeInfo is what node i's agent says of its machine in Hello: labels (instance type, pool,
// zone) and the machine it reads itself.
// MachineSpeed is node i's machine's processing speed, fixed for the run: its class's speed
// times its own spread (speed_jitter) around it, the cluster's own machines at 1.
func (s *Sim) MachineSpeed(i int) float64 { return s.nodes[i].baseSpeed }

func (s *Sim) NodeInfo(i int) (labels map[string]string, cpuModel string, cpus uint32, memBytes uint64) {
	n := s.nodes[i]
	labels = map[string]string{"instance_type": "sim-standard", "pool": "flink"}
	cpuModel = "sim standard"
	if n.class != nil {
		labels["instance_type"], cpuModel = n.class.Name, n.class.CPUModel
	}
	if n.zone != "" {
		labels["topology.kubernetes.io/zone"] = n.zone
	}
	return labels, cpuModel, uint32(n.cpus), uint64(n.memGiB) << 30
}

// Nodes returns the node names in order.
func (s *Sim) Nodes() []string {
	out := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.name
	}
	return out
}

// Run replays the whole scenario.
func (s *Sim) Run(deliver Deliver) {
	for s.Step(deliver) {
	}
}

// Step simulates one interval and delivers the reports of its end. It returns false when the
// scenario is over (and then does nothing).
func (s *Sim) Step(deliver Deliver) bool {
	if s.tick >= s.ticks {
		return false
	}
	s.applySchedule()
	s.produce()
	for _, j := range s.jobs {
		s.flowBackward(j)
		s.flowForward(j)
	}
	s.tick++
	s.emit(deliver)
	return true
}

func (s *Sim) elapsed() time.Duration { return time.Duration(s.tick) * s.interval }

// ramp returns a fault's severity at the current tick, 0 when inactive.
func (s *Sim) ramp(start, dur, ramp scenario.Duration, sev float64) float64 {
	t := scenario.Duration(s.elapsed())
	// A tick covers [t, t+interval): a fault that starts inside it affects part of the tick.
	end := t + scenario.Duration(s.interval)
	if end <= start || t >= start+dur {
		return 0
	}
	overlap := float64(min(end, start+dur)-max(t, start)) / float64(s.interval)
	if ramp > 0 {
		in := float64(end-start) / float64(ramp)
		sev *= min(1, in)
	}
	return sev * overlap
}

func (s *Sim) applySchedule() {
	for _, n := range s.nodes {
		n.busyCores, n.recordsOut, n.diskWriteBytes, n.faultSev = 0, 0, 0, 0
		n.cpuSpeed, n.diskSpeed, n.netSev, n.memSev, n.steal, n.noisyCores, n.cpuSev, n.diskSev = 1, 1, 0, 0, 0, 0, 0, 0
		n.cpuShare, n.diskShare, n.netShare, n.netRecvSev, n.metricsMode = 1, 1, 1, 0, ""
		for _, tm := range n.tms {
			tm.gcSev, tm.down = 0, false
		}
		for _, nb := range n.neighbours {
			nb.cores = nb.baseCores * s.jitter(0.2)
			if nb.fault >= 0 {
				nb.cores = 0
			}
		}
	}
	s.slowdown = 0
	for _, j := range s.jobs {
		j.rateMult = 1
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				st.costMul, st.down = 1, false
			}
			for _, e := range v.in {
				if e.kind == edgeHash {
					setWeights(e, -1, 1)
				}
			}
		}
	}
	for fi := range s.sc.Faults {
		f := &s.sc.Faults[fi]
		sev := s.ramp(f.Start, f.Duration, f.Ramp, f.Severity)
		if it := f.Intermittent; it != nil && sev > 0 {
			// On for it.On, off for it.Off, from the fault's start.
			if cyc := (s.elapsed() - f.Start.D()) % (it.On.D() + it.Off.D()); cyc >= it.On.D() {
				sev = 0
			}
		}
		if sev == 0 {
			continue
		}
		for _, n := range s.faultNodes[fi] {
			if f.Kind != scenario.FaultGCStorm {
				n.faultSev = max(n.faultSev, sev)
			}
			switch f.Kind {
			case scenario.FaultCPUContention:
				// The neighbour's cgroup really takes the cores it keeps busy.
				n.cpuSev = max(n.cpuSev, sev*f.Share)
				n.noisyCores += sev * n.cpus * 1.1 * f.Share
				n.cpuSpeed *= 1 - 0.8*sev
				n.cpuShare = f.Share
				for _, nb := range n.neighbours {
					if nb.fault == fi {
						nb.cores = sev * n.cpus * 1.1 * f.Share
					}
				}
			case scenario.FaultCPUSteal:
				n.cpuSev = max(n.cpuSev, sev*f.Share)
				n.steal = 0.5 * sev * f.Share
				n.cpuSpeed *= 1 - 0.8*sev
				n.cpuShare = f.Share
			case scenario.FaultSlowDisk:
				n.diskSev = sev
				// IO latency grows faster than linearly as a device degrades.
				n.diskSpeed = max(0.03, (1-sev)*(1-sev))
				n.diskShare = f.Share
			case scenario.FaultNetworkLoss:
				if f.Direction == "receive" {
					n.netRecvSev = sev * f.Share
					continue
				}
				n.netSev = sev
				n.netShare = f.Share
			case scenario.FaultMemoryPressure:
				n.memSev = sev
				n.cpuSpeed *= 1 - 0.55*sev
				n.diskSpeed *= 1 - 0.3*sev
			case scenario.FaultGCStorm:
				n.tms[*f.TaskManager].gcSev = sev
			}
		}
	}
	for ci := range s.sc.Controls {
		c := &s.sc.Controls[ci]
		on := s.ramp(c.Start, c.Duration, 0, 1) > 0
		if !on {
			continue
		}
		switch c.Kind {
		case scenario.ControlTrafficSpike, scenario.ControlUnderProvisioned:
			for _, j := range s.jobs {
				if c.Job == "" || j.spec.Name == c.Job {
					j.rateMult *= c.Magnitude
				}
			}
		case scenario.ControlClusterSlowdown:
			s.slowdown = c.Magnitude
		case scenario.ControlSlowExternal:
			// The subtasks that write to the slow broker wait on it wherever they run.
			for _, j := range s.jobs {
				if j.spec.Name != c.Job {
					continue
				}
				for _, v := range j.vertices {
					if v.name == c.Operator {
						for _, st := range v.subtasks {
							if float64(st.idx) < c.Share*float64(v.p) {
								st.costMul *= c.Magnitude
							}
						}
					}
				}
			}
		case scenario.ControlStaleMetrics:
			for _, n := range s.nodes {
				if s.controlNodes[ci][n.idx] {
					n.metricsMode = c.Mode
				}
			}
		case scenario.ControlTaskManagerRestart:
			for _, n := range s.nodes {
				if s.controlNodes[ci][n.idx] {
					for _, tm := range n.tms {
						tm.down = true
						for _, st := range tm.subtasks {
							st.down = true
						}
					}
				}
			}
		case scenario.ControlJobFailover:
			for _, j := range s.jobs {
				if j.spec.Name == c.Job {
					for _, st := range j.subtasksAll() {
						st.down = true
					}
				}
			}
		case scenario.ControlDataSkew:
			for _, j := range s.jobs {
				if j.spec.Name != c.Job {
					continue
				}
				for _, v := range j.vertices {
					if v.name != c.Operator {
						continue
					}
					for _, e := range v.in {
						if e.kind == edgeHash {
							setWeights(e, v.hot, c.Magnitude)
						}
					}
					v.subtasks[v.hot].costMul = c.CostFactor
				}
			}
		}
	}
	for _, n := range s.nodes {
		if s.slowdown > 0 {
			n.cpuSpeed *= 1 - s.slowdown
			n.steal += 0.4 * s.slowdown
		}
		for _, tm := range n.tms {
			gc := tm.gcBase*(1+0.1*s.rng.NormFloat64()) + 150*n.memSev + 750*tm.gcSev
			tm.gcMs = min(950, max(0, gc))
		}
	}
}

func (j *job) subtasksAll() []*subtask {
	var out []*subtask
	for _, v := range j.vertices {
		out = append(out, v.subtasks...)
	}
	return out
}

func (s *Sim) nodeByName(name string) *node {
	// Names are prefix-NNNN with NNNN the index; the loader checked them.
	var i int
	fmt.Sscanf(name[len(s.sc.Cluster.NamePrefix)+1:], "%d", &i)
	return s.nodes[i]
}

// produce adds this tick's input to every partition.
func (s *Sim) produce() {
	t := s.elapsed().Seconds()
	for _, j := range s.jobs {
		in := j.spec.Input
		rate := in.Rate * j.rateMult
		if d := in.Diurnal; d != nil {
			rate *= 1 + d.Amplitude*math.Sin(2*math.Pi*(t+d.Phase.D().Seconds())/d.Period.D().Seconds())
		}
		for _, b := range j.bursts {
			if s.tick >= b.from && s.tick < b.to {
				rate *= b.mag
			}
		}
		for i := range j.partitions {
			p := &j.partitions[i]
			add := rate * p.share * s.dt * (1 + 0.02*s.rng.NormFloat64())
			add = max(0, add)
			p.lag += add
			s.arrived += add
		}
	}
}

// capacity is how many records a subtask could process this tick, given its node, its JVM and
// the noise; its operator's state and output decide how disk and network faults weigh in.
func (s *Sim) capacity(st *subtask) float64 {
	n := st.tm.node
	v := st.v
	if st.down {
		return 1e-9
	}
	cpuSpeed, diskSpeed := n.cpuSpeed, n.diskSpeed
	// A partial fault hits the subtasks on its part of the node (some cores, one disk).
	if st.lane >= n.cpuShare {
		cpuSpeed = 1
	}
	if st.lane >= n.diskShare {
		diskSpeed = 1
	}
	cpu := n.baseSpeed * cpuSpeed * st.factor * (1 - st.tm.gcMs/1000)
	cpu *= math.Exp(s.noise * s.rng.NormFloat64())
	cost := v.spec.CostUS * st.costMul * ((1-v.ioShare)/cpu + v.ioShare/(diskSpeed*cpu))
	if v.isSink && n.netSev > 0 && st.lane < n.netShare {
		// A sink's producer flush blocks the task thread: lost packets show up as busy time.
		cost /= 1 - 0.85*n.netSev
	}
	return s.dt * 1e6 / cost
}

// flowBackward computes, sinks first, how much each subtask can take in this tick given its
// own capacity and the room downstream: this is how backpressure reaches upstream.
func (s *Sim) flowBackward(j *job) {
	for vi := len(j.vertices) - 1; vi >= 0; vi-- {
		v := j.vertices[vi]
		for _, e := range v.out {
			if e.kind == edgeForward {
				continue
			}
			// Every sender gets an equal share of each receiver's allowance; the receiver that
			// fills first (the hot key) limits them all, as a keyed exchange does.
			lim := math.Inf(1)
			for i, r := range e.to.subtasks {
				if e.w[i] > 0 {
					lim = min(lim, r.accept/float64(e.to.senders)/e.w[i])
				}
			}
			e.limit = lim
		}
		for _, st := range v.subtasks {
			st.capacity = s.capacity(st)
			outLimit := math.Inf(1)
			for _, e := range v.out {
				if e.kind == edgeForward {
					r := e.to.subtasks[st.idx]
					outLimit = min(outLimit, r.accept/float64(e.to.senders))
				} else {
					outLimit = min(outLimit, e.limit)
				}
			}
			if v.sel > 0 {
				outLimit /= v.sel
			}
			if n := st.tm.node; n.netSev > 0 && !v.isSink && st.lane < n.netShare {
				outLimit = min(outLimit, st.capacity*(1-0.9*n.netSev))
			}
			st.outLimit = outLimit
			st.eff = min(st.capacity, outLimit)
			if st.down {
				st.eff = 0
			}
			// Network buffers hold about one interval of nominal throughput.
			room := max(0, st.capacity-st.queue)
			st.accept = room + st.eff
			if n := st.tm.node; n.netRecvSev > 0 && !v.isSource {
				// Packets to this node are lost: its senders retransmit and get less through.
				st.accept *= 1 - 0.9*n.netRecvSev
			}
		}
	}
}

// flowForward moves records, sources first.
func (s *Sim) flowForward(j *job) {
	ckpt := s.tick%j.ckptEvery == j.ckptEvery-1
	for _, v := range j.vertices {
		for _, st := range v.subtasks {
			var avail float64
			if v.isSource {
				for _, pi := range st.parts {
					avail += j.partitions[pi].lag
				}
			} else {
				avail = st.queue
			}
			n := min(avail, st.eff)
			if v.isSource && avail > 0 {
				f := n / avail
				for _, pi := range st.parts {
					j.partitions[pi].lag -= j.partitions[pi].lag * f
				}
			} else if !v.isSource {
				st.queue -= n
			}
			st.processed = n
			st.cumProcessed += n
			st.out = n * v.sel
			busy := 0.0
			if !st.down {
				busy = 1000 * n / st.capacity
			}
			if ckpt && v.spec.State {
				// The synchronous part of a checkpoint stalls the task thread briefly.
				busy = min(1000, busy+25/st.tm.node.diskSpeed)
				st.tm.node.diskWriteBytes += 64 << 20
			}
			st.busyMs = min(1000, busy)
			rest := 1000 - st.busyMs
			switch {
			case n >= avail-1e-9:
				st.idleMs, st.bpMs = rest, 0
			case st.eff < st.capacity:
				st.idleMs, st.bpMs = 0, rest
			default:
				st.idleMs, st.bpMs = rest, 0
			}
			if v.isSource {
				st.cumIn += n
			}
			st.ckptDelayMs = 0
			if !v.isSource && st.eff > 0 {
				st.ckptDelayMs = min(600000, 1000*st.queue/(st.eff/s.dt))
			}
			for _, e := range v.out {
				if e.kind == edgeForward {
					r := e.to.subtasks[st.idx]
					r.queue += st.out
					r.cumIn += st.out
					e.sent += st.out
					e.got += st.out
				} else {
					e.sent += st.out
				}
			}
			st.tm.node.recordsOut += st.out
		}
		// Hash and rebalance exchanges: every receiver gets its weight of the senders' total.
		for _, e := range v.out {
			if e.kind == edgeForward {
				continue
			}
			var total float64
			for _, st := range v.subtasks {
				total += st.out
			}
			for i, r := range e.to.subtasks {
				d := total * e.w[i]
				r.queue += d
				r.cumIn += d
				e.got += d
			}
		}
	}
}
