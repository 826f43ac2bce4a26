package scenario

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads, defaults and validates one scenario. name is used in error messages (a file name).
func Load(r io.Reader, name string) (*Scenario, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: read: %w", name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", name, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("scenario %s: empty file", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = withField(root.Content[0], m)
			}
			return nil, fmt.Errorf("scenario %s: %s", name, strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("scenario %s: %s", name, withField(root.Content[0], err.Error()))
	}
	s.File = name
	v := validator{root: root.Content[0], name: name}
	v.run(&s)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return &s, nil
}

var lineMsg = regexp.MustCompile(`^line (\d+): (.*)$`)

// withField adds the field path to a yaml.v3 "line N: ..." message, found by the line.
func withField(root *yaml.Node, msg string) string {
	m := lineMsg.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	var best []any
	var walk func(n *yaml.Node, path []any)
	walk = func(n *yaml.Node, path []any) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := append(slices.Clone(path), n.Content[i].Value)
				if n.Content[i].Line == line {
					best = k
				}
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(slices.Clone(path), i))
			}
		}
	}
	walk(root, nil)
	if best == nil {
		return msg
	}
	return fmt.Sprintf("line %d: %s: %s", line, fieldName(best), m[2])
}

// LoadFile loads one scenario file.
func LoadFile(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open scenario: %w", err)
	}
	defer f.Close()
	return Load(f, path)
}

// LoadDir loads every *.yaml and *.yml file in dir, sorted by file name.
func LoadDir(dir string) ([]*Scenario, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read scenario dir: %w", err)
	}
	var out []*Scenario
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		s, err := LoadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario files in %s", dir)
	}
	return out, nil
}

// NodeName is the name of node i.
func (s *Scenario) NodeName(i int) string { return fmt.Sprintf("%s-%04d", s.Cluster.NamePrefix, i) }

// TaskManagerID is the resource id of TaskManager t on node i.
func (s *Scenario) TaskManagerID(node string, t int) string { return fmt.Sprintf("%s-tm-%d", node, t) }

type validator struct {
	root *yaml.Node
	name string
	errs []error
}

// line finds the line of a path of mapping keys (string) and sequence indices (int); it stops
// at the deepest element present, so a missing field reports its parent's line.
func (v *validator) line(path ...any) int {
	n := v.root
	ln := n.Line
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return ln
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					ln = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return ln
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return ln
			}
			n = n.Content[k]
			ln = n.Line
		}
	}
	return ln
}

func fieldName(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

func (v *validator) errf(path []any, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("scenario %s: line %d: %s: %s", v.name, v.line(path...), fieldName(path), fmt.Sprintf(format, args...)))
}

func p(path ...any) []any { return path }

func (v *validator) run(s *Scenario) {
	if s.Name == "" {
		v.errf(p("name"), "is required")
	}
	if s.Duration <= 0 {
		v.errf(p("duration"), "is required and must be positive")
	}
	if s.Interval == 0 {
		s.Interval = Duration(5 * time.Second)
	}
	if s.Interval < Duration(time.Second) {
		v.errf(p("interval"), "must be at least 1s, got %s", s.Interval.D())
	}
	if s.Noise == nil {
		n := 0.04
		s.Noise = &n
	} else if *s.Noise < 0 || *s.Noise > 0.5 {
		v.errf(p("noise"), "must be in [0, 0.5], got %g", *s.Noise)
	}
	v.cluster(s)
	slotsNeeded := v.jobs(s)
	if total := s.Cluster.Nodes * s.Cluster.TaskManagersPerNode * s.Cluster.SlotsPerTaskManager; slotsNeeded > total {
		v.errf(p("jobs"), "need %d slots but the cluster has %d (nodes × task_managers_per_node × slots_per_task_manager)", slotsNeeded, total)
	}
	if len(v.errs) > 0 {
		return
	}
	v.faults(s)
	v.controls(s)
	if len(v.errs) > 0 {
		return
	}
	v.truth(s)
}

func (v *validator) cluster(s *Scenario) {
	c := &s.Cluster
	if c.Nodes < 1 {
		v.errf(p("cluster", "nodes"), "must be at least 1, got %d", c.Nodes)
	}
	if c.Nodes > 100000 {
		v.errf(p("cluster", "nodes"), "at most 100000, got %d", c.Nodes)
	}
	if c.CPUs == 0 {
		c.CPUs = 16
	}
	if c.MemoryGiB == 0 {
		c.MemoryGiB = 64
	}
	if c.TaskManagersPerNode == 0 {
		c.TaskManagersPerNode = 2
	}
	if c.SlotsPerTaskManager == 0 {
		c.SlotsPerTaskManager = 4
	}
	if c.NamePrefix == "" {
		c.NamePrefix = "node"
	}
	if c.CPUs < 1 {
		v.errf(p("cluster", "cpus"), "must be positive, got %d", c.CPUs)
	}
	if c.TaskManagersPerNode < 1 {
		v.errf(p("cluster", "task_managers_per_node"), "must be positive, got %d", c.TaskManagersPerNode)
	}
	if c.SlotsPerTaskManager < 1 {
		v.errf(p("cluster", "slots_per_task_manager"), "must be positive, got %d", c.SlotsPerTaskManager)
	}
	if c.SpeedJitter < 0 || c.SpeedJitter >= 0.5 {
		v.errf(p("cluster", "speed_jitter"), "must be in [0, 0.5), got %g", c.SpeedJitter)
	}
	if c.Neighbours == nil {
		two := 2
		c.Neighbours = &two
	} else if *c.Neighbours < 0 || *c.Neighbours > 20 {
		v.errf(p("cluster", "neighbours"), "must be in [0, 20], got %d", *c.Neighbours)
	}
	for i, z := range c.Zones {
		if z == "" || slices.Index(c.Zones, z) != i {
			v.errf(p("cluster", "zones", i), "zone names must be distinct and not empty, got %q", z)
		}
	}
	if len(v.errs) > 0 || c.Nodes < 1 {
		return
	}
	// Classes take nodes spread by seed, so a class is not one block of neighbouring names.
	r := rand.New(rand.NewPCG(s.Seed, 0xc1a55))
	free := r.Perm(c.Nodes)
	for ci := range c.Classes {
		cl := &c.Classes[ci]
		path := p("cluster", "classes", ci)
		if cl.Name == "" {
			v.errf(append(path, "name"), "is required")
		}
		if cl.Speed == 0 {
			cl.Speed = 1
		}
		if cl.Speed < 0.2 || cl.Speed > 3 {
			v.errf(append(path, "speed"), "must be in [0.2, 3], got %g", cl.Speed)
		}
		if cl.CPUs == 0 {
			cl.CPUs = c.CPUs
		}
		if cl.MemoryGiB == 0 {
			cl.MemoryGiB = c.MemoryGiB
		}
		if cl.CPUs < 1 || cl.MemoryGiB < 1 {
			v.errf(path, "cpus and memory_gib must be positive")
		}
		if cl.CPUModel == "" {
			cl.CPUModel = "sim " + cl.Name
		}
		n := cl.Count
		if cl.Fraction != 0 {
			if cl.Fraction < 0 || cl.Fraction > 1 || cl.Count != 0 {
				v.errf(append(path, "fraction"), "give a count or a fraction in (0, 1], not both")
				continue
			}
			n = max(1, int(cl.Fraction*float64(c.Nodes)+0.5))
		}
		if n < 1 || n > len(free) {
			v.errf(append(path, "count"), "%d nodes asked, %d left without a class", n, len(free))
			continue
		}
		idx := slices.Clone(free[:n])
		free = free[n:]
		slices.Sort(idx)
		for _, i := range idx {
			cl.Nodes = append(cl.Nodes, s.NodeName(i))
		}
	}
}

func (v *validator) jobs(s *Scenario) int {
	if len(s.Jobs) == 0 {
		v.errf(p("jobs"), "at least one job is required")
	}
	names := map[string]int{}
	slots := 0
	for ji := range s.Jobs {
		j := &s.Jobs[ji]
		if j.Name == "" {
			v.errf(p("jobs", ji, "name"), "is required")
		} else if prev, dup := names[j.Name]; dup {
			v.errf(p("jobs", ji, "name"), "%q is already used by jobs[%d]", j.Name, prev)
		}
		names[j.Name] = ji
		if j.Count == 0 {
			j.Count = 1
		}
		if j.Count < 0 {
			v.errf(p("jobs", ji, "count"), "must be positive, got %d", j.Count)
		}
		if j.Parallelism == 0 {
			j.Parallelism = 4
		}
		if j.Parallelism < 1 {
			v.errf(p("jobs", ji, "parallelism"), "must be positive, got %d", j.Parallelism)
		}
		if j.CheckpointInterval == 0 {
			j.CheckpointInterval = Duration(time.Minute)
		}
		if j.CheckpointInterval < s.Interval {
			v.errf(p("jobs", ji, "checkpoint_interval"), "must be at least the interval %s", s.Interval.D())
		}
		in := &j.Input
		if in.Rate <= 0 {
			v.errf(p("jobs", ji, "input", "rate"), "must be positive, got %g", in.Rate)
		}
		if in.Partitions == 0 {
			in.Partitions = 2 * j.Parallelism
		}
		if in.PartitionSkew < 0 || in.PartitionSkew >= 1 {
			v.errf(p("jobs", ji, "input", "partition_skew"), "must be in [0, 1), got %g", in.PartitionSkew)
		}
		if d := in.Diurnal; d != nil {
			if d.Amplitude < 0 || d.Amplitude >= 1 {
				v.errf(p("jobs", ji, "input", "diurnal", "amplitude"), "must be in [0, 1), got %g", d.Amplitude)
			}
			if d.Period <= 0 {
				v.errf(p("jobs", ji, "input", "diurnal", "period"), "must be positive")
			}
		}
		if b := in.Bursts; b != nil {
			if b.PerHour < 0 || b.Magnitude < 1 || b.Duration <= 0 {
				v.errf(p("jobs", ji, "input", "bursts"), "per_hour must be ≥ 0, magnitude ≥ 1 and duration positive")
			}
		}
		if len(j.Operators) < 2 {
			v.errf(p("jobs", ji, "operators"), "a job needs a source and at least one more operator")
			continue
		}
		maxPar := 0
		ops := map[string]int{}
		for oi := range j.Operators {
			o := &j.Operators[oi]
			path := func(f string) []any { return p("jobs", ji, "operators", oi, f) }
			if o.Name == "" {
				v.errf(path("name"), "is required")
			} else if prev, dup := ops[o.Name]; dup {
				v.errf(path("name"), "%q is already used by operators[%d]", o.Name, prev)
			}
			if o.Parallelism == 0 {
				o.Parallelism = j.Parallelism
			}
			if o.Parallelism < 1 {
				v.errf(path("parallelism"), "must be positive, got %d", o.Parallelism)
			}
			maxPar = max(maxPar, o.Parallelism)
			if o.CostUS == 0 {
				o.CostUS = 50
			}
			if o.CostUS < 0 {
				v.errf(path("cost_us"), "must be positive, got %g", o.CostUS)
			}
			if o.Selectivity == nil {
				one := 1.0
				o.Selectivity = &one
			} else if *o.Selectivity < 0 || *o.Selectivity > 10 {
				v.errf(path("selectivity"), "must be in [0, 10], got %g", *o.Selectivity)
			}
			if o.KeySkew < 0 || o.KeySkew > 10 {
				v.errf(path("key_skew"), "must be in [0, 10], got %g", o.KeySkew)
			}
			if oi == 0 {
				if len(o.Inputs) > 0 || o.Edge != "" {
					v.errf(path("edge"), "the first operator is the Kafka source and has no input edge")
				}
				ops[o.Name] = oi
				continue
			}
			if len(o.Inputs) == 0 {
				o.Inputs = []string{j.Operators[oi-1].Name}
			}
			for ii, in := range o.Inputs {
				up, ok := ops[in]
				if !ok {
					v.errf(p("jobs", ji, "operators", oi, "inputs", ii), "%q is not an operator defined before this one", in)
					continue
				}
				if o.Edge == "" {
					o.Edge = "forward"
					if j.Operators[up].Parallelism != o.Parallelism {
						o.Edge = "rebalance"
					}
				}
				if o.Edge == "forward" && j.Operators[up].Parallelism != o.Parallelism {
					v.errf(path("edge"), "forward edge from %q (parallelism %d) needs the same parallelism, got %d", in, j.Operators[up].Parallelism, o.Parallelism)
				}
			}
			switch o.Edge {
			case "forward", "hash", "rebalance":
			default:
				v.errf(path("edge"), "must be forward, hash or rebalance, got %q", o.Edge)
			}
			if o.KeySkew > 0 && o.Edge != "hash" {
				v.errf(path("key_skew"), "key skew needs a hash (keyBy) edge, got %q", o.Edge)
			}
			ops[o.Name] = oi
		}
		if in.Partitions < j.Operators[0].Parallelism {
			v.errf(p("jobs", ji, "input", "partitions"), "%d partitions leave source subtasks idle (source parallelism %d)", in.Partitions, j.Operators[0].Parallelism)
		}
		slots += maxPar * max(j.Count, 0)
	}
	return slots
}

func (v *validator) inWindow(s *Scenario, path []any, start, dur Duration) {
	if start < 0 || start >= s.Duration {
		v.errf(append(path, "start"), "%s is outside the scenario (duration %s)", start.D(), s.Duration.D())
	}
	if dur <= 0 {
		v.errf(append(path, "duration"), "must be positive")
	} else if start+dur > s.Duration {
		v.errf(append(path, "duration"), "ends at %s, after the scenario ends (%s)", (start + dur).D(), s.Duration.D())
	}
}

func (v *validator) resolveNodes(s *Scenario, path []any, names []string, count int, fraction float64, salt uint64) []string {
	known := func(n string) bool {
		var i int
		if _, err := fmt.Sscanf(strings.TrimPrefix(n, s.Cluster.NamePrefix+"-"), "%d", &i); err != nil {
			return false
		}
		return i >= 0 && i < s.Cluster.Nodes && s.NodeName(i) == n
	}
	for i, n := range names {
		if !known(n) {
			v.errf(append(path, "nodes", i), "unknown node %q (nodes are %s .. %s)", n, s.NodeName(0), s.NodeName(s.Cluster.Nodes-1))
		}
	}
	if fraction < 0 || fraction > 1 {
		v.errf(append(path, "fraction"), "must be in (0, 1], got %g", fraction)
		return nil
	}
	if fraction > 0 {
		count = max(1, int(fraction*float64(s.Cluster.Nodes)+0.5))
	}
	set := b2i(len(names) > 0) + b2i(count > 0)
	if set != 1 {
		v.errf(path, "name the nodes or give a count or fraction (exactly one)")
		return nil
	}
	if count > s.Cluster.Nodes {
		v.errf(append(path, "count"), "%d is more than the %d nodes", count, s.Cluster.Nodes)
		return nil
	}
	if len(names) > 0 {
		return names
	}
	// Picks depend only on the seed and the entry, so adding a fault does not move the others.
	r := rand.New(rand.NewPCG(s.Seed, salt))
	perm := r.Perm(s.Cluster.Nodes)[:count]
	slices.Sort(perm)
	out := make([]string, count)
	for i, idx := range perm {
		out[i] = s.NodeName(idx)
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (v *validator) faults(s *Scenario) {
	type span struct {
		from, to Duration
		fault    int
	}
	busy := map[string][]span{}
	for fi := range s.Faults {
		f := &s.Faults[fi]
		path := p("faults", fi)
		f.Line = v.line(path...)
		if !slices.Contains(FaultKinds, f.Kind) {
			v.errf(append(path, "kind"), "unknown fault kind %q (one of %s)", f.Kind, strings.Join(FaultKinds, ", "))
			continue
		}
		v.inWindow(s, path, f.Start, f.Duration)
		if f.Severity <= 0 || f.Severity >= 1 {
			v.errf(append(path, "severity"), "must be in (0, 1), got %g", f.Severity)
		}
		if f.Ramp < 0 || f.Ramp > f.Duration {
			v.errf(append(path, "ramp"), "must be between 0 and the fault's duration")
		}
		if f.Share == 0 {
			f.Share = 1
		}
		if f.Share <= 0 || f.Share > 1 {
			v.errf(append(path, "share"), "must be in (0, 1], got %g", f.Share)
		}
		if f.Share < 1 && f.Kind == FaultGCStorm {
			v.errf(append(path, "share"), "a gc_storm stalls its whole JVM; share is for node resources")
		}
		if it := f.Intermittent; it != nil && (it.On <= 0 || it.Off <= 0 || it.On < s.Interval) {
			v.errf(append(path, "intermittent"), "on and off must be positive, on at least the interval %s", s.Interval.D())
		}
		switch f.Direction {
		case "":
			if f.Kind == FaultNetworkLoss {
				f.Direction = "send"
			}
		case "send", "receive":
			if f.Kind != FaultNetworkLoss {
				v.errf(append(path, "direction"), "only a network_loss has a direction")
			}
		default:
			v.errf(append(path, "direction"), "must be send or receive, got %q", f.Direction)
		}
		if f.Neighbour != nil && f.Kind != FaultCPUContention {
			v.errf(append(path, "neighbour"), "only a cpu_contention has a neighbour taking the CPU")
		}
		if f.Kind == FaultCPUContention {
			if f.Neighbour == nil {
				f.Neighbour = &Neighbour{}
			}
			nb := f.Neighbour
			if nb.Unit != "" && (nb.Pod != "" || nb.Namespace != "") {
				v.errf(append(path, "neighbour"), "a neighbour is a pod or a systemd unit, not both")
			}
			switch {
			case nb.Unit != "":
				nb.Cgroup = "/system.slice/" + nb.Unit
			default:
				nb.Pod = cmp.Or(nb.Pod, fmt.Sprintf("noisy-%d", fi))
				nb.Namespace = cmp.Or(nb.Namespace, "batch")
				h := fnv.New64a()
				fmt.Fprintf(h, "%s/%s", nb.Namespace, nb.Pod)
				x := h.Sum64()
				nb.PodUID = fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(x>>32), uint16(x>>16), uint16(x), uint16(x>>48)^0x4000, x&0xffffffffffff)
				nb.Cgroup = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(nb.PodUID, "-", "_") + ".slice"
			}
		}
		if f.Zone != "" {
			if !slices.Contains(s.Cluster.Zones, f.Zone) {
				v.errf(append(path, "zone"), "unknown zone %q (cluster.zones: %s)", f.Zone, strings.Join(s.Cluster.Zones, ", "))
				continue
			}
			if len(f.Nodes) > 0 || f.Count > 0 {
				v.errf(append(path, "zone"), "name the nodes, give a count or a zone (exactly one)")
				continue
			}
			for i := range s.Cluster.Nodes {
				if s.Cluster.Zones[i%len(s.Cluster.Zones)] == f.Zone {
					f.Nodes = append(f.Nodes, s.NodeName(i))
				}
			}
		}
		if f.Kind == FaultGCStorm {
			if f.TaskManager == nil {
				v.errf(append(path, "task_manager"), "gc_storm needs the index of the TaskManager on the node")
			} else if *f.TaskManager < 0 || *f.TaskManager >= s.Cluster.TaskManagersPerNode {
				v.errf(append(path, "task_manager"), "index %d is out of range (task_managers_per_node is %d)", *f.TaskManager, s.Cluster.TaskManagersPerNode)
			}
		} else if f.TaskManager != nil {
			v.errf(append(path, "task_manager"), "only a gc_storm targets one TaskManager; %s is a node fault", f.Kind)
		}
		f.Nodes = v.resolveNodes(s, path, f.Nodes, f.Count, 0, 0xfa170000+uint64(fi))
		for _, n := range f.Nodes {
			for _, o := range busy[n] {
				// Two faults of different kinds on one node are two truths (a node can have a
				// bad disk and a noisy neighbour); two of one kind would be one.
				if f.Start < o.to && o.from < f.Start+f.Duration && s.Faults[o.fault].Kind == f.Kind {
					v.errf(path, "overlaps faults[%d] of the same kind on node %s; the ground truth would be ambiguous", o.fault, n)
				}
			}
			busy[n] = append(busy[n], span{f.Start, f.Start + f.Duration, fi})
		}
	}
	for fi, f := range s.Faults {
		for _, n := range f.Nodes {
			e := TruthEntry{Node: n, From: f.SlowFrom(), To: f.Start + f.Duration, Cause: CauseOf(f.Kind), Onset: f.Start}
			if f.Neighbour != nil {
				e.Culprit = f.Neighbour.Cgroup
			}
			if f.Kind == FaultGCStorm && f.TaskManager != nil {
				e.TaskManager = s.TaskManagerID(n, *f.TaskManager)
			}
			_ = fi
			s.Truth = append(s.Truth, e)
		}
	}
	sortTruth(s.Truth)
	s.Negative = len(s.Truth) == 0
}

// SlowSeverity is the severity from which a fault makes its node truly slow: at 0.3 the
// scenarios' faults take roughly a quarter of the affected subtasks' capacity. Only ramped
// faults start below it; one that never reaches it is slow once fully ramped.
const SlowSeverity = 0.3

// SlowFrom is when the fault makes its node (or TaskManager) slow: its start, or for a ramped
// fault the moment its growing severity reaches SlowSeverity.
func (f *Fault) SlowFrom() Duration {
	if f.Ramp <= 0 {
		return f.Start
	}
	return f.Start + Duration(float64(f.Ramp)*min(1, SlowSeverity/f.Severity))
}

// Causes are the ground-truth causes a fault can have, in the order the benchmark prints them.
var Causes = []string{"cpu", "steal", "disk", "network", "memory", "jvm"}

// CauseOf is the ground-truth cause of a fault kind.
func CauseOf(kind string) string {
	switch kind {
	case FaultCPUContention:
		return "cpu"
	case FaultCPUSteal:
		return "steal"
	case FaultSlowDisk:
		return "disk"
	case FaultNetworkLoss:
		return "network"
	case FaultMemoryPressure:
		return "memory"
	case FaultGCStorm:
		return "jvm"
	}
	return ""
}

func sortTruth(t []TruthEntry) {
	slices.SortFunc(t, func(a, b TruthEntry) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		if c := strings.Compare(a.TaskManager, b.TaskManager); c != 0 {
			return c
		}
		return int(a.From - b.From)
	})
}

func (v *validator) controls(s *Scenario) {
	jobs := map[string]*Job{}
	for i := range s.Jobs {
		jobs[s.Jobs[i].Name] = &s.Jobs[i]
	}
	for ci := range s.Controls {
		c := &s.Controls[ci]
		path := p("controls", ci)
		if !slices.Contains(ControlKinds, c.Kind) {
			v.errf(append(path, "kind"), "unknown control kind %q (one of %s)", c.Kind, strings.Join(ControlKinds, ", "))
			continue
		}
		if c.Kind == ControlDataSkew && c.Duration == 0 {
			c.Duration = s.Duration - c.Start
		}
		v.inWindow(s, path, c.Start, c.Duration)
		var job *Job
		if c.Job != "" {
			job = jobs[c.Job]
			if job == nil {
				v.errf(append(path, "job"), "unknown job %q", c.Job)
				continue
			}
		}
		switch c.Kind {
		case ControlDataSkew:
			if job == nil {
				v.errf(append(path, "job"), "data_skew needs the job it skews")
				continue
			}
			found := false
			for _, o := range job.Operators {
				if o.Name == c.Operator {
					found = true
					if o.Edge != "hash" {
						v.errf(append(path, "operator"), "%q is not keyed (edge %q); skew needs a hash edge", c.Operator, o.Edge)
					}
				}
			}
			if !found {
				v.errf(append(path, "operator"), "job %q has no operator %q", c.Job, c.Operator)
			}
			if c.Magnitude < 1 {
				v.errf(append(path, "magnitude"), "the hot key group's input multiplier must be ≥ 1, got %g", c.Magnitude)
			}
			if c.CostFactor == 0 {
				c.CostFactor = 1
			}
			if c.CostFactor < 1 {
				v.errf(append(path, "cost_factor"), "must be ≥ 1, got %g", c.CostFactor)
			}
		case ControlTrafficSpike, ControlUnderProvisioned:
			if c.Magnitude <= 1 {
				v.errf(append(path, "magnitude"), "the rate multiplier must be > 1, got %g", c.Magnitude)
			}
			if c.Kind == ControlUnderProvisioned && job == nil {
				v.errf(append(path, "job"), "under_provisioned needs the job that lacks capacity")
			}
		case ControlClusterSlowdown:
			if c.Magnitude <= 0 || c.Magnitude >= 1 {
				v.errf(append(path, "magnitude"), "the slowdown share must be in (0, 1), got %g", c.Magnitude)
			}
		case ControlPartition, ControlAgentRestart, ControlStaleMetrics, ControlTaskManagerRestart:
			c.Nodes = v.resolveNodes(s, path, c.Nodes, c.Count, c.Fraction, 0xc0170000+uint64(ci))
			if c.Kind == ControlStaleMetrics {
				c.Mode = cmp.Or(c.Mode, "missing")
				if c.Mode != "missing" && c.Mode != "stale" {
					v.errf(append(path, "mode"), "must be missing or stale, got %q", c.Mode)
				}
			}
		case ControlJobFailover:
			if job == nil {
				v.errf(append(path, "job"), "job_failover needs the job that fails over")
			}
		case ControlSlowExternal:
			if job == nil {
				v.errf(append(path, "job"), "slow_external needs the job whose operator talks to the slow system")
				continue
			}
			if !slices.ContainsFunc(job.Operators, func(o Operator) bool { return o.Name == c.Operator }) {
				v.errf(append(path, "operator"), "job %q has no operator %q", c.Job, c.Operator)
			}
			if c.Share == 0 {
				c.Share = 0.25
			}
			if c.Share <= 0 || c.Share > 1 {
				v.errf(append(path, "share"), "must be in (0, 1], got %g", c.Share)
			}
			if c.Magnitude <= 1 {
				v.errf(append(path, "magnitude"), "the cost multiplier of the slowed subtasks must be > 1, got %g", c.Magnitude)
			}
		}
	}
}

func (v *validator) truth(s *Scenario) {
	if len(s.GroundTruth) == 0 {
		return
	}
	key := func(t TruthEntry) TruthEntry { t.Cause, t.Onset = "", 0; return t }
	derived := map[TruthEntry]bool{}
	for _, t := range s.Truth {
		derived[key(t)] = true
	}
	given := map[TruthEntry]bool{}
	for i, t := range s.GroundTruth {
		given[key(t)] = true
		if !derived[key(t)] {
			who := t.Node
			if t.TaskManager != "" {
				who = t.TaskManager
			}
			v.errf(p("ground_truth", i), "%s from %s to %s does not match the fault schedule (derived truth: %s)", who, t.From.D(), t.To.D(), describe(s.Truth))
		}
	}
	for _, t := range s.Truth {
		if !given[key(t)] {
			who := t.Node
			if t.TaskManager != "" {
				who = t.TaskManager
			}
			v.errf(p("ground_truth"), "misses %s from %s to %s, which the faults make slow", who, t.From.D(), t.To.D())
		}
	}
}

func describe(t []TruthEntry) string {
	if len(t) == 0 {
		return "no node is slow"
	}
	parts := make([]string, 0, len(t))
	for _, e := range t {
		who := e.Node
		if e.TaskManager != "" {
			who = e.TaskManager
		}
		parts = append(parts, fmt.Sprintf("%s %s..%s", who, e.From.D(), e.To.D()))
	}
	return strings.Join(parts, ", ")
}
