package ebpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
)

// RunQueueProbe is the name the run-queue probe reports its status under.
const RunQueueProbe = "runqueue"

// RunQueueOptions configures the run-queue probe.
type RunQueueOptions struct {
	// CgroupV1CPU keys the histograms by the v1 cpu hierarchy's cgroup ids instead of the
	// unified hierarchy's; see CgroupHierarchy.
	CgroupV1CPU bool
}

// RunQueue is the loaded run-queue latency probe: a histogram per cgroup of the time threads
// waited for a CPU after becoming runnable.
type RunQueue struct {
	p     *probe
	hists *ebpf.Map
}

// LoadRunQueue loads and attaches the run-queue probe. The error is a *LoadError saying why
// the probe is unavailable.
func LoadRunQueue(opts RunQueueOptions) (*RunQueue, error) {
	spec, err := loadRunqlat()
	if err != nil {
		return nil, &LoadError{Probe: RunQueueProbe, Reason: err.Error(), Err: err}
	}
	// The tp_btf program reads the waits the kernel already timed (sched_info) when a thread
	// is switched out, so it needs no wakeup programs; the raw_tp fallback times waits itself,
	// from wakeup (or preemption) to switch-in.
	hooks := []hook{
		{tracepoint: "sched_switch", tpBTF: runqlatProgTpSchedSwitch, raw: runqlatProgRawSchedSwitch, required: true},
		{tracepoint: "sched_wakeup", raw: runqlatProgRawSchedWakeup, required: true},
		// Without it, the first wait of a new thread goes uncounted: a small loss.
		{tracepoint: "sched_wakeup_new", raw: runqlatProgRawSchedWakeupNew},
	}
	p, err := loadProbe(RunQueueProbe, spec, hooks, loadOptions{
		configure: func(cs *ebpf.CollectionSpec) error {
			return cs.Variables[runqlatVarCgroupV1Cpu].Set(opts.CgroupV1CPU)
		},
		// The tp_btf program keeps each thread's figures in task-local storage (Linux 5.11+)
		// and reads the kernel's run-queue accounting, which must be on.
		tpBTFNeeds: func() error {
			if err := features.HaveMapType(ebpf.TaskStorage); err != nil {
				return err
			}
			return haveSchedInfo("/proc/thread-self/schedstat")
		},
	})
	if err != nil {
		return nil, err
	}
	return &RunQueue{p: p, hists: p.coll.Maps[runqlatMapRunqHists]}, nil
}

// Status says how the probe is attached.
func (r *RunQueue) Status() Status { return r.p.status }

// Read returns the cumulative histogram of every cgroup seen so far, by cgroup id.
func (r *RunQueue) Read() (map[uint64]Histogram, error) {
	out := map[uint64]Histogram{}
	var id uint64
	var v runqlatHist
	it := r.hists.Iterate()
	for it.Next(&id, &v) {
		out[id] = kernelHistogram(v.Slots, v.SumNs)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read run-queue histograms: %w", err)
	}
	return out, nil
}

// Forget drops the histograms of cgroups that no longer exist, so the bounded map keeps room
// for new ones.
func (r *RunQueue) Forget(ids ...uint64) error {
	var errs []error
	for _, id := range ids {
		if err := r.hists.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("forget cgroup %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Close detaches the probe and frees its maps.
func (r *RunQueue) Close() error { return r.p.close() }

// haveSchedInfo says whether the kernel times run-queue waits per thread (CONFIG_SCHED_INFO):
// then the calling thread's schedstat (run time, run-queue wait, slices run) counts at least the
// slice it is running now.
func haveSchedInfo(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("no per-thread run-queue accounting (CONFIG_SCHED_INFO): %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return fmt.Errorf("no per-thread run-queue accounting: %s reads %q", path, strings.TrimSpace(string(b)))
	}
	if n, err := strconv.ParseUint(f[2], 10, 64); err != nil || n == 0 {
		return fmt.Errorf("no per-thread run-queue accounting: %s counts no slices (%q)", path, strings.TrimSpace(string(b)))
	}
	return nil
}
