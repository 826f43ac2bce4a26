// Command probebench measures what tmwarden's eBPF probes cost a context-switch-heavy workload:
// a pipe ping-pong between two threads pinned to one CPU, timed with every probe detached, with
// every probe attached, and with bpftrace running the equivalent run-queue histogram.
// It needs root and prints figures and ratios (medians and fastest trials, the load average
// beside them); `make bench-probes` runs it.
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
	trials := flag.Int("trials", 31, "trials per configuration (the fastest is reported, the median beside it)")
	withBpftrace := flag.Bool("bpftrace", true, "also measure bpftrace running the equivalent run-queue histogram")
	flag.Parse()
	if err := run(*roundTrips, *trials, *withBpftrace); err != nil {
		fmt.Fprintln(os.Stderr, "probebench:", err)
		os.Exit(1)
	}
}

// sample is one timed trial.
type sample struct {
	perTrip  float64 // ns per round trip
	switches float64 // context switches per round trip
	events   float64 // probe events (switches + wakeups) per round trip
	median   float64 // median ns per round trip over the trials, when summarized
}

func run(n, trials int, withBpftrace bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to load eBPF probes")
	}
	cpu, err := firstCPU()
	if err != nil {
		return err
	}
	fmt.Printf("workload: pipe ping-pong between two threads pinned to CPU %d, %d round trips per trial, %d trials\n", cpu, n, trials)
	if _, err := pingPong(cpu, n/4); err != nil { // warm up
		return err
	}

	// Detached and attached trials alternate, so drift on a shared machine hits both alike.
	var detached, attached, empty, emptySwitch []sample
	for range trials {
		s, err := pingPong(cpu, n)
		if err != nil {
			return err
		}
		detached = append(detached, s)

		floor, err := attachEmpty(schedHooks...)
		if err != nil {
			return err
		}
		s, err = pingPong(cpu, n)
		closeAll(floor)
		if err != nil {
			return err
		}
		empty = append(empty, s)

		floor, err = attachEmpty("sched_switch")
		if err != nil {
			return err
		}
		s, err = pingPong(cpu, n)
		closeAll(floor)
		if err != nil {
			return err
		}
		emptySwitch = append(emptySwitch, s)

		probes, statuses, err := attachAll()
		if err != nil {
			return err
		}
		s, err = pingPong(cpu, n)
		closeAll(probes)
		if err != nil {
			return err
		}
		attached = append(attached, s)
		if len(attached) == 1 {
			for _, st := range statuses {
				fmt.Println("probe", st)
			}
		}
	}

	det, att, emp, empSw := summarize(detached), summarize(attached), summarize(empty), summarize(emptySwitch)
	fmt.Printf("load average during the trials: %s\n", loadAvg())
	fmt.Println()
	fmt.Printf("%-26s %12s %12s %14s %14s\n", "configuration", "ns/roundtrip", "(median)", "switches/trip", "events/trip")
	printRow("probes detached", det)
	printRow("empty programs attached", emp)
	printRow("empty on sched_switch", empSw)
	printRow("tmwarden probes attached", att)
	report("empty programs (floor)", det, emp)
	report("empty on sched_switch only", det, empSw)
	report("tmwarden probes", det, att)
	// The goal is stated on medians: each configuration's median trial, per scheduler event
	// of the run with tmwarden's probes (the same workload, so the same events).
	floorMed := (emp.median - det.median) / att.events
	oursMed := (att.median - det.median) / att.events
	floorMin := (emp.perTrip - det.perTrip) / att.events
	oursMin := (att.perTrip - det.perTrip) / att.events
	if floorMed <= 0 || oursMed <= 0 {
		fmt.Printf("\nper scheduler event, median of %d trials: no figure, the detached trials' median is not below the attached ones' (other work on the machine moved the medians; see the load average)\n", trials)
	} else {
		fmt.Printf("\nper scheduler event, median of %d trials: floor (empty programs on sched_switch, sched_wakeup, sched_wakeup_new) %.0f ns, tmwarden %.0f ns: %.2fx the floor (goal <= 1.25x)\n",
			trials, floorMed, oursMed, ratio(oursMed, floorMed))
	}
	fmt.Printf("per scheduler event, fastest trial: floor %.0f ns, tmwarden %.0f ns: %.2fx the floor\n", floorMin, oursMin, ratio(oursMin, floorMin))
	// tmwarden's run-queue probe needs sched_switch alone (tp_btf mode); an empty program there
	// is the floor of any probe built that way.
	swMed := (empSw.median - det.median) / att.events
	swMin := (empSw.perTrip - det.perTrip) / att.events
	fmt.Printf("against one empty program on sched_switch alone: median %.0f ns (tmwarden %.2fx), fastest %.0f ns (tmwarden %.2fx)\n",
		swMed, ratio(oursMed, swMed), swMin, ratio(oursMin, swMin))

	if !withBpftrace {
		return nil
	}
	// bpftrace takes a second or two to start, so it gets fewer trials.
	bt, why := bpftraceRun(cpu, n, min(trials, 11))
	if why != "" {
		fmt.Printf("\nbpftrace: not measured: %s\n", why)
		return nil
	}
	fmt.Println()
	printRow("probes detached (again)", bt.detached)
	printRow("bpftrace runqlat attached", bt.attached)
	report("bpftrace", bt.detached, bt.attached)
	ours := (att.median - det.median) / att.events
	theirs := (bt.attached.median - bt.detached.median) / bt.attached.events
	if ours > 0 {
		fmt.Printf("\nbpftrace costs %.1fx tmwarden's probes per scheduler event, medians (%.0f ns vs %.0f ns)\n", theirs/ours, theirs, ours)
	} else {
		fmt.Printf("\ntmwarden's probe cost is below the noise of this run; bpftrace: %.0f ns per event\n", theirs)
	}
	fmt.Printf("load average after bpftrace's trials: %s\n", loadAvg())
	return nil
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
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

func printRow(name string, s sample) {
	fmt.Printf("%-26s %12.0f %12.0f %14.2f %14.2f\n", name, s.perTrip, s.median, s.switches, s.events)
}

// report prints the slowdown, the cost per scheduler event and what it means for a core doing
// busyRate context switches per second.
func report(name string, det, att sample) {
	extra := att.perTrip - det.perTrip
	perEvent := extra / att.events
	perSwitch := extra / att.switches
	fmt.Printf("%s: ping-pong slowdown %.1f%% (%.0f ns per round trip), %.0f ns per scheduler event, %.0f ns per context switch (with its wakeup)\n",
		name, 100*extra/det.perTrip, extra, perEvent, perSwitch)
	fmt.Printf("%s: at %d context switches/s per core: %.2f%% of a core\n", name, busyRate, 100*perSwitch*busyRate/1e9)
}

func attachAll() ([]io.Closer, []ebpf.Status, error) {
	hier, _ := ebpf.DetectCgroupHierarchy("/sys")
	rq, err := ebpf.LoadRunQueue(ebpf.RunQueueOptions{CgroupV1CPU: hier.V1CPU})
	if err != nil {
		return nil, nil, err
	}
	bio, err := ebpf.LoadBlockIO()
	if err != nil {
		rq.Close()
		return nil, nil, err
	}
	tr, err := ebpf.LoadTCPRetransmits()
	if err != nil {
		rq.Close()
		bio.Close()
		return nil, nil, err
	}
	return []io.Closer{rq, bio, tr}, []ebpf.Status{rq.Status(), bio.Status(), tr.Status()}, nil
}

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// schedHooks are the tracepoints a run-queue latency probe conventionally uses (bpftrace's
// runqlat, tmwarden's raw_tp fallback): the floor the goal is stated against.
var schedHooks = []string{"sched_switch", "sched_wakeup", "sched_wakeup_new"}

// attachEmpty attaches programs that do nothing to the given scheduler tracepoints: the floor
// any tp_btf probe there pays for being called.
func attachEmpty(tps ...string) ([]io.Closer, error) {
	var out []io.Closer
	for _, tp := range tps {
		prog, err := cebpf.NewProgramWithOptions(&cebpf.ProgramSpec{
			Type:         cebpf.Tracing,
			AttachType:   cebpf.AttachTraceRawTp,
			AttachTo:     tp,
			License:      "GPL",
			Instructions: asm.Instructions{asm.LoadImm(asm.R0, 0, asm.DWord), asm.Return()},
		}, cebpf.ProgramOptions{LogDisabled: true})
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("load empty %s program: %w", tp, err)
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: cebpf.AttachTraceRawTp})
		if err != nil {
			prog.Close()
			closeAll(out)
			return nil, fmt.Errorf("attach empty %s program: %w", tp, err)
		}
		out = append(out, l, prog)
	}
	return out, nil
}

type bpftraceResult struct{ detached, attached sample }

// bpftraceRun measures with bpftrace attached, alternating with detached trials. It returns why
// when bpftrace cannot run here.
func bpftraceRun(cpu, n, trials int) (bpftraceResult, string) {
	path, err := exec.LookPath("bpftrace")
	if err != nil {
		return bpftraceResult{}, "bpftrace is not installed (apt-get install bpftrace)"
	}
	// bpftrace resolves tracepoints through tracefs, which minimal hosts do not mount.
	if _, err := os.Stat("/sys/kernel/tracing/events/sched"); err != nil {
		if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
			return bpftraceResult{}, fmt.Sprintf("tracefs is not mounted and mounting it failed: %v", err)
		}
		fmt.Println("mounted tracefs on /sys/kernel/tracing for bpftrace")
	}
	var res bpftraceResult
	var det, att []sample
	for range trials {
		s, err := pingPong(cpu, n)
		if err != nil {
			return res, err.Error()
		}
		det = append(det, s)
		stop, err := startBpftrace(path)
		if err != nil {
			return res, err.Error()
		}
		s, err = pingPong(cpu, n)
		stop()
		if err != nil {
			return res, err.Error()
		}
		att = append(att, s)
	}
	return bpftraceResult{summarize(det), summarize(att)}, ""
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
func pingPong(cpu, n int) (sample, error) {
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
		v0, i0, err := threadSwitches()
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
		v1, i1, err := threadSwitches()
		res <- result{vol: v1 - v0, invol: i1 - i0, elapsed: elapsed, err: err}
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
	return sample{
		perTrip:  float64(a.elapsed.Nanoseconds()) / float64(n),
		switches: switches,
		events:   switches + wakeups,
	}, nil
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

// summarize keeps the fastest trial: on a shared machine other work only ever adds time, so the
// fastest trial is the closest to the workload's own cost. The median goes along for reference.
func summarize(ss []sample) sample {
	best := slices.MinFunc(ss, func(a, b sample) int { return cmpFloat(a.perTrip, b.perTrip) })
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = s.perTrip
	}
	slices.Sort(v)
	best.median = v[len(v)/2]
	return best
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
