// Command probebench measures what tmwarden's eBPF probes cost a context-switch-heavy workload:
// a pipe ping-pong between two threads pinned to one CPU, timed with every probe detached, with
// tmwarden's probes attached, with empty programs attached to exactly the hooks tmwarden's
// probes attached (same tracepoints, same attach type: the floor any probe there pays for being
// called) and with bpftrace running the equivalent run-queue histogram. The four configurations
// run in every trial, their order reversed from one trial to the next, so drift on a shared
// machine hits them alike; each trial's costs are taken against its own detached run.
// It needs root and prints medians and interquartile ranges with the load average beside them,
// then a summary with every way the cost has been stated side by side, each labelled: issue 17's
// figure (the increment over detached of the fastest trials, as the bench measured when the issue
// was filed), the medians' increment, the whole cost of an event with the programs attached, this
// bench's per-trial increment, and the programs' own run time from the kernel's BPF statistics.
// `make bench-probes` runs it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tmwarden/tmwarden/ebpf"
)

// busyRate is the context-switch rate of a busy TaskManager core the slowdown is quoted at.
const busyRate = 20000

// bpftraceScript is runqlat.bt from the bpftrace tools, keyed by cgroup like tmwarden's probe.
// bpftrace's cgroup builtin is the cgroup of the thread switching out, not in; the cost is the
// same kind of work: one hash lookup and delete plus a histogram update per switch.
const bpftraceScript = `
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new { @qtime[args->pid] = nsecs; }
tracepoint:sched:sched_switch {
  if (args->prev_state == 0) { @qtime[args->prev_pid] = nsecs; }
  $ns = @qtime[args->next_pid];
  if ($ns) { @usecs[cgroup] = hist((nsecs - $ns) / 1000); }
  delete(@qtime[args->next_pid]);
}
END { clear(@qtime); clear(@usecs); }
`

func main() {
	roundTrips := flag.Int("roundtrips", 20000, "ping-pong round trips per trial")
	trials := flag.Int("trials", 31, "trials; each runs every configuration once")
	withBpftrace := flag.Bool("bpftrace", true, "also measure bpftrace running the equivalent run-queue histogram in every trial")
	fifo := flag.Bool("fifo", true, "run the ping-pong threads SCHED_FIFO, so the machine's other work cannot take their CPU mid-trial (false: SCHED_OTHER, as before)")
	clock := flag.String("clock", "cpu", "what a trial is timed by: cpu (the two threads' CPU time from schedstat: other work on the CPU and the host's steal left out) or wall")
	flag.IntVar(&statsTrials, "stats-trials", statsTrials, "trials per configuration with the kernel's BPF statistics on (the programs' own run time; the median is reported)")
	flag.Parse()
	if *clock != "cpu" && *clock != "wall" {
		fmt.Fprintln(os.Stderr, "probebench: -clock is cpu or wall")
		os.Exit(2)
	}
	byCPU = *clock == "cpu"
	if err := run(*roundTrips, *trials, *withBpftrace, *fifo); err != nil {
		fmt.Fprintln(os.Stderr, "probebench:", err)
		os.Exit(1)
	}
}

// statsTrials is the number of trials per configuration run with the kernel's BPF statistics on.
var statsTrials = 5

// byCPU times trials by the ping-pong threads' CPU time instead of the wall clock.
var byCPU = true

// pingPongFIFO is whether the ping-pong threads run SCHED_FIFO (81ddec8's bench ran them
// SCHED_OTHER, which -fifo=false restores).
var pingPongFIFO = true

func policyName() string {
	if pingPongFIFO {
		return "SCHED_FIFO"
	}
	return "SCHED_OTHER"
}

// sample is one timed run of the ping-pong.
type sample struct {
	perTrip  float64 // ns per round trip by the chosen clock
	wallTrip float64 // ns per round trip, wall clock
	cpuTrip  float64 // CPU time of the two threads per round trip, ns
	switches float64 // context switches per round trip
	events   float64 // scheduler events (switches + wakeups) per round trip
}

// config is one way of running the ping-pong.
type config int

const (
	detached config = iota // nothing attached
	floor                  // empty programs on tmwarden's hooks
	probes                 // tmwarden's probes
	bpftrace               // bpftrace's runqlat
)

var configNames = [...]string{"probes detached", "empty programs (floor)", "tmwarden probes", "bpftrace runqlat"}

func run(n, trials int, withBpftrace, fifo bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to load eBPF probes")
	}
	cpu, err := firstCPU()
	if err != nil {
		return err
	}
	pingPongFIFO = fifo
	policy := policyName()
	clock := "the wall clock"
	if byCPU {
		clock = "the two threads' CPU time"
	}
	fmt.Printf("workload: pipe ping-pong between two %s threads pinned to CPU %d, %d round trips per trial, %d trials, costs by %s\n", policy, cpu, n, trials, clock)
	fmt.Printf("load average before: %s\n", loadAvg())

	// The floor is taken on what tmwarden actually attached on this kernel: its hooks and their
	// attach type (tp_btf, or the raw_tp fallback), whatever the loader chose.
	ps, statuses, hooks, err := attachProbes()
	if err != nil {
		return err
	}
	closeAll(ps)
	for _, st := range statuses {
		fmt.Println("probe", st)
	}
	var hookNames []string
	for _, h := range hooks {
		hookNames = append(hookNames, h.Mode+"/"+h.Tracepoint)
	}
	fmt.Printf("floor: an empty program on each of %s\n", strings.Join(hookNames, ", "))

	configs := []config{detached, floor, probes}
	var btPath string
	if withBpftrace {
		var why string
		if btPath, why = bpftraceReady(); why != "" {
			fmt.Printf("bpftrace: not measured: %s\n", why)
		} else {
			configs = append(configs, bpftrace)
		}
	}
	if _, err := pingPong(cpu, n/4, fifo); err != nil { // warm up
		return err
	}

	// Within a trial the attached runs sit between detached ones (detached, A, detached, B,
	// detached, C, detached), and each is taken against the mean of its two neighbours: a
	// baseline measured moments before and after it.
	runs := make([][]sample, len(configNames))
	baseline := make([][]float64, len(configNames))
	attachedConfigs := configs[1:]
	for i := range trials {
		order := slices.Clone(attachedConfigs)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		before, err := pingPong(cpu, n, fifo)
		if err != nil {
			return err
		}
		runs[detached] = append(runs[detached], before)
		for _, c := range order {
			s, err := runConfig(c, cpu, n, fifo, hooks, btPath)
			if err != nil {
				return fmt.Errorf("%s: %w", configNames[c], err)
			}
			after, err := pingPong(cpu, n, fifo)
			if err != nil {
				return err
			}
			runs[detached] = append(runs[detached], after)
			runs[c] = append(runs[c], s)
			baseline[c] = append(baseline[c], (before.perTrip+after.perTrip)/2)
			before = after
		}
	}
	fmt.Printf("load average after the trials: %s\n\n", loadAvg())

	fmt.Printf("%-24s %14s %16s %14s %16s %14s %12s\n", "configuration", "cpu ns/trip", "(IQR)", "wall ns/trip", "(IQR)", "switches/trip", "events/trip")
	for _, c := range configs {
		dc := dist(field(runs[c], func(s sample) float64 { return s.cpuTrip }))
		dw := dist(field(runs[c], func(s sample) float64 { return s.wallTrip }))
		fmt.Printf("%-24s %14.0f %16s %14.0f %16s %14.2f %12.2f\n", configNames[c], dc.median, dc.iqr(0), dw.median, dw.iqr(0),
			dist(field(runs[c], func(s sample) float64 { return s.switches })).median,
			dist(field(runs[c], func(s sample) float64 { return s.events })).median)
	}

	// Each trial's cost of a configuration: its run against the detached runs beside it, per
	// scheduler event of that run.
	cost := func(c config) []float64 {
		out := make([]float64, trials)
		for i := range trials {
			out[i] = (runs[c][i].perTrip - baseline[c][i]) / runs[c][i].events
		}
		return out
	}
	fmt.Println()
	fmt.Printf("%-24s %14s %16s %14s %12s\n", "cost per trial", "ns/event", "(IQR)", "ns/switch", "% of a core")
	costs := map[config]distribution{}
	for _, c := range configs[1:] {
		d := dist(cost(c))
		costs[c] = d
		perSwitch := d.median * runs[c][0].events / runs[c][0].switches
		fmt.Printf("%-24s %14.1f %16s %14.1f %12.2f\n", configNames[c], d.median, d.iqr(1), perSwitch, 100*perSwitch*busyRate/1e9)
	}
	fmt.Printf("(%% of a core: at %d context switches/s per core)\n\n", busyRate)

	// The goal is stated per trial: tmwarden's cost over the floor's, both against the same
	// trial's detached run. A trial whose floor cost is not positive (noise above the floor's
	// own cost) counts as an infinite ratio: it can only push the median up.
	ratios := func(c config) distribution {
		f, o := cost(floor), cost(c)
		out := make([]float64, trials)
		for i := range trials {
			out[i] = math.Inf(1)
			if f[i] > 0 {
				out[i] = o[i] / f[i]
			}
		}
		return dist(out)
	}
	r := ratios(probes)
	fmt.Printf("tmwarden / floor per scheduler event, median of %d trials: %.2fx (IQR %s; goal <= 1.25x); ratio of the medians %.2fx; %d trials with no floor above noise\n",
		trials, r.median, r.iqr(2), costs[probes].median/costs[floor].median, r.infinite())
	if slices.Contains(configs, bpftrace) {
		b := ratios(bpftrace)
		fmt.Printf("bpftrace / floor per scheduler event, median of %d trials: %.2fx (IQR %s); bpftrace costs %.1fx tmwarden (medians, %.0f ns vs %.0f ns)\n",
			trials, b.median, b.iqr(2), costs[bpftrace].median/costs[probes].median, costs[bpftrace].median, costs[probes].median)
	}

	// The programs' own run time, beside the trials: what the probes' work costs apart from
	// the call into them, which the floor measures. One trial is at the mercy of the host (a
	// preempted vCPU inflates every run it lands in), so the configurations alternate over
	// statsTrials trials and the medians are kept.
	fmt.Println()
	perRun, perEvent := map[config][]float64{}, map[config][]float64{}
	for i := range statsTrials {
		order := slices.Clone(configs[1:])
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			pr, err := measureProgramRuns(c, cpu, n, fifo, hooks, btPath)
			if err != nil {
				fmt.Printf("%s: no BPF statistics: %v\n", configNames[c], err)
				continue
			}
			perRun[c] = append(perRun[c], pr.perRun())
			perEvent[c] = append(perEvent[c], pr.perEvent())
			if i == 0 {
				fmt.Printf("%s: programs' own run time in the first trial: %s\n", configNames[c], strings.Join(pr.perProg, ", "))
			}
		}
	}
	progEvent := map[config]float64{}
	for _, c := range configs[1:] {
		if len(perRun[c]) == 0 {
			continue
		}
		r, e := dist(perRun[c]), dist(perEvent[c])
		progEvent[c] = e.median
		fmt.Printf("%s: programs' own run time, median of %d trials: %.1f ns per run (IQR %s), %.1f ns per scheduler event (IQR %s)\n",
			configNames[c], len(perRun[c]), r.median, r.iqr(1), e.median, e.iqr(1))
	}

	fmt.Println()
	printSummary(trials, configs, runs, costs, ratios, progEvent)
	return nil
}

// printSummary sets the bench's figures side by side, one line per way of measuring, each
// labelled with what it is. Issue 17's figure (1.52x: 230 ns against 151 ns, bpftrace 974 ns)
// came from this bench as it was when the issue was filed (81ddec8): the fastest attached
// trial less the fastest detached one, by the wall clock, per scheduler event (context
// switches plus wakeups) - an increment over detached, not the whole cost of an event with
// programs attached. That whole cost is printed too, as its own line.
func printSummary(trials int, configs []config, runs [][]sample, costs map[config]distribution, ratios func(config) distribution, progEvent map[config]float64) {
	wall := func(s sample) float64 { return s.wallTrip }
	chosen := func(s sample) float64 { return s.perTrip }
	events := func(s sample) float64 { return s.events }
	// fastestIncrement: the fastest trial's wall time less the fastest detached trial's, per
	// scheduler event of the attached trial (81ddec8's report).
	fastestIncrement := func(c config) float64 {
		fast := func(c config) sample {
			return slices.MinFunc(runs[c], func(a, b sample) int { return cmpFloat(a.wallTrip, b.wallTrip) })
		}
		a := fast(c)
		return (a.wallTrip - fast(detached).wallTrip) / a.events
	}
	// medianIncrement: the median wall time less the detached median, per scheduler event
	// (553081c's report, the same trials unpaired).
	medianIncrement := func(c config) float64 {
		return (dist(field(runs[c], wall)).median - dist(field(runs[detached], wall)).median) / dist(field(runs[c], events)).median
	}
	// whole: the median of each run's time per scheduler event with the programs attached,
	// the workload's own cost included.
	whole := func(c config) float64 {
		out := make([]float64, len(runs[c]))
		for i, s := range runs[c] {
			out[i] = chosen(s) / s.events
		}
		return dist(out).median
	}
	clock := "wall clock"
	if byCPU {
		clock = "threads' CPU time"
	}
	bt := slices.Contains(configs, bpftrace)
	type line struct {
		label string
		value func(config) float64
		ratio func(config) (float64, string) // nil: the ratio of the values
	}
	lines := []line{
		{fmt.Sprintf("A  issue 17's figure: increment over detached, fastest trial of each, wall clock, per sched event (the formula of the bench at 81ddec8, when the issue was filed, on this run's %s trials)", policyName()), fastestIncrement, nil},
		{"B  increment over detached, median trial of each, wall clock, per sched event (the formula of the bench at 553081c)", medianIncrement, nil},
		{fmt.Sprintf("C  whole cost per sched event with the programs attached, workload included (%s; not an increment, not the issue's figure)", clock), whole, nil},
		{fmt.Sprintf("D  increment over the detached runs beside each run, per sched event (%s; ratio: median of the %d per-trial ratios; this bench's goal figure)", clock, trials),
			func(c config) float64 { return costs[c].median },
			func(c config) (float64, string) {
				r := ratios(c)
				return r.median, fmt.Sprintf("IQR %s, %d trials with no floor above noise", r.iqr(2), r.infinite())
			}},
		{fmt.Sprintf("E  programs' own run time per sched event, kernel BPF statistics (median of %d trials with statistics on; every run on the machine counted, two clock reads per run included; per run: the lines above)", statsTrials),
			func(c config) float64 {
				if v, ok := progEvent[c]; ok {
					return v
				}
				return math.NaN()
			}, nil},
	}
	fmt.Printf("ns per scheduler event (%d trials; sched event = context switch or wakeup)\n", trials)
	fmt.Printf("%10s %10s %10s %16s %16s\n", "floor", "tmwarden", "bpftrace", "tmwarden/floor", "bpftrace/floor")
	for _, l := range lines {
		fmt.Println(l.label)
		v := map[config]float64{}
		for _, c := range []config{floor, probes, bpftrace} {
			v[c] = math.NaN()
			if c != bpftrace || bt {
				v[c] = l.value(c)
			}
		}
		rt, rb, note := ratio(v[probes], v[floor]), ratio(v[bpftrace], v[floor]), ""
		if l.ratio != nil {
			rt, note = l.ratio(probes)
			if bt {
				rb, _ = l.ratio(bpftrace)
			}
		}
		fmt.Printf("%10s %10s %10s %16s %16s  %s\n", orNA(v[floor], "%.1f"), orNA(v[probes], "%.1f"), orNA(v[bpftrace], "%.1f"), orNA(rt, "%.2fx"), orNA(rb, "%.2fx"), note)
	}
	fmt.Println("goal (issue 17): tmwarden <= 1.25x the floor")
}

// runConfig attaches what the configuration needs, runs the ping-pong once and detaches.
func runConfig(c config, cpu, n int, fifo bool, hooks []ebpf.Hook, btPath string) (sample, error) {
	if c == detached {
		return pingPong(cpu, n, fifo)
	}
	return withConfig(c, hooks, btPath, func() (sample, error) { return pingPong(cpu, n, fifo) })
}

// withConfig attaches what the configuration needs, calls measure and detaches.
func withConfig(c config, hooks []ebpf.Hook, btPath string, measure func() (sample, error)) (sample, error) {
	switch c {
	case floor:
		cs, err := attachEmpty(hooks)
		if err != nil {
			return sample{}, err
		}
		defer closeAll(cs)
	case probes:
		cs, _, _, err := attachProbes()
		if err != nil {
			return sample{}, err
		}
		defer closeAll(cs)
	case bpftrace:
		stop, err := startBpftrace(btPath)
		if err != nil {
			return sample{}, err
		}
		defer stop()
	}
	return measure()
}

// programRuns is what the kernel's BPF statistics counted for the programs of one
// configuration over one ping-pong: the programs' own run time, without the cost of calling them.
type programRuns struct {
	runs    uint64
	runtime time.Duration
	perProg []string
	events  float64 // the ping-pong's scheduler events over the trial
}

// perRun is the programs' mean run time per run, in ns.
func (pr programRuns) perRun() float64 {
	if pr.runs == 0 {
		return math.NaN()
	}
	return float64(pr.runtime.Nanoseconds()) / float64(pr.runs)
}

// perEvent is the programs' run time per scheduler event of the ping-pong, in ns: comparable
// between configurations that run a program on every event (bpftrace: switches and wakeups)
// and those that run one on switches alone (tmwarden's tp_btf probe). Runs for other threads'
// events on the machine during the trial count too, alike for every configuration.
func (pr programRuns) perEvent() float64 {
	if pr.events == 0 {
		return math.NaN()
	}
	return float64(pr.runtime.Nanoseconds()) / pr.events
}

// measureProgramRuns runs the ping-pong once in configuration c with the kernel's run-time
// statistics on (they cost every program two clock reads, so the timed trials run without
// them) and sums the statistics of the programs c loaded.
func measureProgramRuns(c config, cpu, n int, fifo bool, hooks []ebpf.Hook, btPath string) (programRuns, error) {
	stats, err := cebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return programRuns{}, fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer stats.Close()
	before, err := programIDs()
	if err != nil {
		return programRuns{}, err
	}
	var out programRuns
	_, err = withConfig(c, hooks, btPath, func() (sample, error) {
		after, err := programIDs()
		if err != nil {
			return sample{}, err
		}
		var progs []*cebpf.Program
		defer func() {
			for _, p := range progs {
				p.Close()
			}
		}()
		for _, id := range after {
			if slices.Contains(before, id) {
				continue
			}
			p, err := cebpf.NewProgramFromID(id)
			if err != nil {
				continue // not ours: another process's program came and went
			}
			progs = append(progs, p)
		}
		read := func() ([]cebpf.ProgramStats, error) {
			var ss []cebpf.ProgramStats
			for _, p := range progs {
				st, err := p.Stats()
				if err != nil {
					return nil, err
				}
				ss = append(ss, *st)
			}
			return ss, nil
		}
		s0, err := read()
		if err != nil {
			return sample{}, err
		}
		s, err := pingPong(cpu, n, fifo)
		if err != nil {
			return s, err
		}
		s1, err := read()
		if err != nil {
			return sample{}, err
		}
		for i, p := range progs {
			runs, rt := s1[i].RunCount-s0[i].RunCount, s1[i].Runtime-s0[i].Runtime
			if runs == 0 {
				continue
			}
			name := "(empty)"
			if info, err := p.Info(); err == nil && info.Name != "" {
				name = info.Name
			}
			out.runs += runs
			out.runtime += rt
			out.perProg = append(out.perProg, fmt.Sprintf("%s %.1f ns x %d", name, float64(rt.Nanoseconds())/float64(runs), runs))
		}
		out.events = s.events * float64(n)
		return s, nil
	})
	return out, err
}

// programIDs lists the BPF programs loaded on the machine.
func programIDs() ([]cebpf.ProgramID, error) {
	var ids []cebpf.ProgramID
	var id cebpf.ProgramID
	for {
		next, err := cebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list BPF programs: %w", err)
		}
		ids = append(ids, next)
		id = next
	}
}

// ratio is a/b, or NaN where b is no cost (noise above the floor's own).
func ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}

// orNA formats v, or says n/a where there is no figure (not measured, or no cost to divide by).
func orNA(v float64, format string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func field(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// distribution is a sorted set of figures with its median and quartiles.
type distribution struct {
	sorted               []float64
	median, lower, upper float64
}

func dist(v []float64) distribution {
	s := slices.Clone(v)
	slices.Sort(s)
	return distribution{sorted: s, median: quantile(s, 0.5), lower: quantile(s, 0.25), upper: quantile(s, 0.75)}
}

// quantile interpolates linearly between the closest ranks of sorted.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[i]
	}
	lo, hi := sorted[i], sorted[i+1]
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return hi
	}
	return lo + (pos-float64(i))*(hi-lo)
}

func (d distribution) iqr(decimals int) string {
	return fmt.Sprintf("%.*f-%.*f", decimals, d.lower, decimals, d.upper)
}

func (d distribution) infinite() int {
	n := 0
	for _, v := range d.sorted {
		if math.IsInf(v, 1) {
			n++
		}
	}
	return n
}

// loadAvg is /proc/loadavg's three averages: the machine is shared, and the figures mean
// little without it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// attachProbes loads and attaches tmwarden's three probes as the agent does.
func attachProbes() ([]io.Closer, []ebpf.Status, []ebpf.Hook, error) {
	hier, _ := ebpf.DetectCgroupHierarchy("/sys")
	rq, err := ebpf.LoadRunQueue(ebpf.RunQueueOptions{CgroupV1CPU: hier.V1CPU})
	if err != nil {
		return nil, nil, nil, err
	}
	bio, err := ebpf.LoadBlockIO()
	if err != nil {
		rq.Close()
		return nil, nil, nil, err
	}
	tr, err := ebpf.LoadTCPRetransmits()
	if err != nil {
		rq.Close()
		bio.Close()
		return nil, nil, nil, err
	}
	hooks := slices.Concat(rq.Hooks(), bio.Hooks(), tr.Hooks())
	return []io.Closer{rq, bio, tr}, []ebpf.Status{rq.Status(), bio.Status(), tr.Status()}, hooks, nil
}

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// attachEmpty attaches a program that does nothing to each hook, with the hook's attach type.
func attachEmpty(hooks []ebpf.Hook) ([]io.Closer, error) {
	var out []io.Closer
	ret0 := asm.Instructions{asm.LoadImm(asm.R0, 0, asm.DWord), asm.Return()}
	for _, h := range hooks {
		var spec *cebpf.ProgramSpec
		switch h.Mode {
		case ebpf.ModeTPBTF:
			spec = &cebpf.ProgramSpec{Type: cebpf.Tracing, AttachType: cebpf.AttachTraceRawTp, AttachTo: h.Tracepoint, License: "GPL", Instructions: ret0}
		case ebpf.ModeRawTP:
			spec = &cebpf.ProgramSpec{Type: cebpf.RawTracepoint, License: "GPL", Instructions: ret0}
		default:
			closeAll(out)
			return nil, fmt.Errorf("hook %s: unknown attach mode %q", h.Tracepoint, h.Mode)
		}
		prog, err := cebpf.NewProgramWithOptions(spec, cebpf.ProgramOptions{LogDisabled: true})
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("load empty %s/%s program: %w", h.Mode, h.Tracepoint, err)
		}
		var l link.Link
		if h.Mode == ebpf.ModeTPBTF {
			l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: cebpf.AttachTraceRawTp})
		} else {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.Tracepoint, Program: prog})
		}
		if err != nil {
			prog.Close()
			closeAll(out)
			return nil, fmt.Errorf("attach empty %s/%s program: %w", h.Mode, h.Tracepoint, err)
		}
		out = append(out, l, prog)
	}
	return out, nil
}

// bpftraceReady finds bpftrace and the tracefs it needs, or says why it cannot run here.
func bpftraceReady() (string, string) {
	path, err := exec.LookPath("bpftrace")
	if err != nil {
		return "", "bpftrace is not installed (apt-get install bpftrace)"
	}
	// bpftrace resolves tracepoints through tracefs, which minimal hosts do not mount.
	if _, err := os.Stat("/sys/kernel/tracing/events/sched"); err != nil {
		if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
			return "", fmt.Sprintf("tracefs is not mounted and mounting it failed: %v", err)
		}
		fmt.Println("mounted tracefs on /sys/kernel/tracing for bpftrace")
	}
	return path, ""
}

// startBpftrace runs the script and returns once bpftrace says its probes are attached.
func startBpftrace(path string) (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, path, "-e", bpftraceScript)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start bpftrace: %w", err)
	}
	sc := bufio.NewScanner(out)
	attached := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "Attaching") {
			attached = true
			break
		}
	}
	// Keep draining so bpftrace never blocks on a full pipe; the goroutine ends with the pipe.
	go io.Copy(io.Discard, out)
	if !attached {
		cancel()
		cmd.Wait()
		return nil, errors.New("bpftrace exited before attaching its probes")
	}
	// bpftrace prints "Attaching" just before it attaches; give it a moment to finish.
	time.Sleep(500 * time.Millisecond)
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		cancel()
	}, nil
}

// pingPong bounces one byte n times between two threads pinned to cpu through two pipes, so
// every hop is a wakeup and a context switch, and returns the time per round trip together
// with the switches the two threads actually made.
func pingPong(cpu, n int, fifo bool) (sample, error) {
	var ab, ba [2]int
	if err := unix.Pipe2(ab[:], unix.O_CLOEXEC); err != nil {
		return sample{}, err
	}
	defer unix.Close(ab[0])
	defer unix.Close(ab[1])
	if err := unix.Pipe2(ba[:], unix.O_CLOEXEC); err != nil {
		return sample{}, err
	}
	defer unix.Close(ba[0])
	defer unix.Close(ba[1])

	type result struct {
		vol, invol uint64
		elapsed    time.Duration
		cpu        time.Duration
		err        error
	}
	side := func(in, out int, first bool, ready chan<- struct{}, res chan<- result) {
		// Never unlocked: the pinned thread exits with the goroutine.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			res <- result{err: err}
			return
		}
		if fifo {
			// Equal FIFO priorities: a wakeup does not preempt the waker, so each hop is still
			// one wakeup and one voluntary switch, as under SCHED_OTHER.
			if err := unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 10}, 0); err != nil {
				res <- result{err: fmt.Errorf("SCHED_FIFO: %w", err)}
				return
			}
		}
		v0, i0, err := threadSwitches()
		if err != nil {
			res <- result{err: err}
			return
		}
		c0, err := threadCPUTime()
		if err != nil {
			res <- result{err: err}
			return
		}
		ready <- struct{}{}
		buf := []byte{0}
		start := time.Now()
		for range n {
			if first {
				if _, err = unix.Write(out, buf); err == nil {
					_, err = unix.Read(in, buf)
				}
			} else {
				if _, err = unix.Read(in, buf); err == nil {
					_, err = unix.Write(out, buf)
				}
			}
			if err != nil {
				res <- result{err: err}
				return
			}
		}
		elapsed := time.Since(start)
		c1, err := threadCPUTime()
		if err != nil {
			res <- result{err: err}
			return
		}
		v1, i1, err := threadSwitches()
		res <- result{vol: v1 - v0, invol: i1 - i0, elapsed: elapsed, cpu: c1 - c0, err: err}
	}
	ready := make(chan struct{}, 2)
	resA, resB := make(chan result, 1), make(chan result, 1)
	go side(ab[0], ba[1], false, ready, resB)
	<-ready
	go side(ba[0], ab[1], true, ready, resA)
	a, b := <-resA, <-resB
	<-ready
	if a.err != nil || b.err != nil {
		return sample{}, fmt.Errorf("ping-pong: %w", errors.Join(a.err, b.err))
	}
	switches := float64(a.vol+a.invol+b.vol+b.invol) / float64(n)
	// Every voluntary switch (a thread blocking on its pipe) is undone by one wakeup.
	wakeups := float64(a.vol+b.vol) / float64(n)
	s := sample{
		wallTrip: float64(a.elapsed.Nanoseconds()) / float64(n),
		cpuTrip:  float64((a.cpu + b.cpu).Nanoseconds()) / float64(n),
		switches: switches,
		events:   switches + wakeups,
	}
	s.perTrip = s.wallTrip
	if byCPU {
		s.perTrip = s.cpuTrip
	}
	return s, nil
}

// threadCPUTime is the calling thread's time on a CPU so far (schedstat's first field), which
// leaves out the time other work held the CPU and, on a guest with steal accounting, the time
// the host did.
func threadCPUTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("schedstat reads %q", b)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(ns), nil
}

// threadSwitches reads the calling thread's context-switch counters.
func threadSwitches() (vol, invol uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/status", unix.Gettid()))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k {
		case "voluntary_ctxt_switches":
			vol, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		case "nonvoluntary_ctxt_switches":
			invol, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
		if err != nil {
			return 0, 0, fmt.Errorf("thread status: %w", err)
		}
	}
	return vol, invol, sc.Err()
}

func firstCPU() (int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, err
	}
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			return cpu, nil
		}
	}
	return 0, errors.New("no CPU in the affinity mask")
}
