package ebpf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
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
	p *probe
	// hists holds the histograms in slots; slots maps a cgroup id to its slot; free holds the
	// slots no cgroup holds (see runqlat.c).
	hists, slots, free *ebpf.Map
	// cpus is the number of possible CPUs, each with its copy of every histogram; capacity is
	// the number of slots.
	cpus, capacity int
	// epoch is the tp_btf program's cset_epoch (nil in raw_tp mode, which caches nothing), and
	// epochs what Read last set it to.
	epoch  *ebpf.Variable
	epochs atomic.Uint32
}

// maxRunQueueSlots is the most cgroups the probe counts at once (MAX_CGROUPS in runqlat.c).
const maxRunQueueSlots = 4096

// runQueueBudget is the kernel memory the per-CPU histograms may take: 16 MiB holds all 4096
// slots up to 17 CPUs, 1129 at 64 and 564 at 128, each more than a node's containers and units.
// Past 144 CPUs the floor (minRunQueueSlots) takes more: 29 MiB at 256.
const runQueueBudget = 16 << 20

// minRunQueueSlots is the fewest cgroups the probe counts at once on any machine: a node at
// Kubernetes' default of 110 pods, a few containers each, and its systemd units.
const minRunQueueSlots = 512

// runQueueSlots is how many cgroups the probe counts at once on a machine with cpus possible
// CPUs: every CPU keeps its own copy of each slot's histogram.
func runQueueSlots(cpus int) int {
	n := runQueueBudget / (cpus * int(unsafe.Sizeof(runqlatRunqHist{})))
	return min(maxRunQueueSlots, max(minRunQueueSlots, n))
}

// LoadRunQueue loads and attaches the run-queue probe. The error is a *LoadError saying why
// the probe is unavailable.
func LoadRunQueue(opts RunQueueOptions) (*RunQueue, error) {
	spec, err := loadRunqlat()
	if err != nil {
		return nil, &LoadError{Probe: RunQueueProbe, Reason: err.Error(), Err: err}
	}
	// The tp_btf program reads the wait the kernel already timed (sched_info) of the thread
	// switching in, so it needs no wakeup programs; the raw_tp fallback times waits itself,
	// from wakeup (or preemption) to switch-in.
	hooks := []hook{
		{tracepoint: "sched_switch", tpBTF: runqlatProgTpSchedSwitch, raw: runqlatProgRawSchedSwitch, required: true},
		{tracepoint: "sched_wakeup", raw: runqlatProgRawSchedWakeup, required: true},
		// Without it, the first wait of a new thread goes uncounted: a small loss.
		{tracepoint: "sched_wakeup_new", raw: runqlatProgRawSchedWakeupNew},
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, &LoadError{Probe: RunQueueProbe, Reason: fmt.Sprintf("count the possible CPUs: %v", err), Err: err}
	}
	slots := runQueueSlots(cpus)
	p, err := loadProbe(RunQueueProbe, spec, hooks, loadOptions{
		configure: func(cs *ebpf.CollectionSpec) error {
			for _, m := range []string{runqlatMapRunqHists, runqlatMapRunqSlots, runqlatMapRunqFree} {
				if ms := cs.Maps[m]; ms != nil {
					ms.MaxEntries = uint32(slots)
				}
			}
			return cs.Variables[runqlatVarCgroupV1Cpu].Set(opts.CgroupV1CPU)
		},
		// The tp_btf program reads the kernel's run-queue accounting, which must be on, and
		// reaches the run queue's clock through the thread's group scheduling entity.
		tpBTFNeeds: func() error {
			if err := haveSchedInfo("/proc/thread-self/schedstat"); err != nil {
				return err
			}
			return haveGroupRunQueue()
		},
		// Every slot starts free: the programs take one for each cgroup they see.
		loaded: func(coll *ebpf.Collection) error {
			free := coll.Maps[runqlatMapRunqFree]
			if n := free.MaxEntries(); n != uint32(slots) {
				return fmt.Errorf("free-slot queue holds %d, want %d", n, slots)
			}
			for slot := range uint32(slots) {
				if err := free.Update(nil, slot, ebpf.UpdateAny); err != nil {
					return fmt.Errorf("free slot %d: %w", slot, err)
				}
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	m := p.coll.Maps
	return &RunQueue{p: p, hists: m[runqlatMapRunqHists], slots: m[runqlatMapRunqSlots], free: m[runqlatMapRunqFree],
		epoch: p.coll.Variables[runqlatVarCsetEpoch], cpus: cpus, capacity: slots}, nil
}

// Status says how the probe is attached.
func (r *RunQueue) Status() Status { return r.p.status }

// Hooks lists the tracepoints the probe's programs are attached to.
func (r *RunQueue) Hooks() []Hook { return slices.Clone(r.p.hooks) }

// Read returns the cumulative histogram of every cgroup seen so far, by cgroup id.
func (r *RunQueue) Read() (map[uint64]Histogram, error) {
	out := map[uint64]Histogram{}
	var id uint64
	var slot uint32
	copies := make([]runqlatRunqHist, r.cpus)
	it := r.slots.Iterate()
	for it.Next(&id, &slot) {
		if err := r.hists.Lookup(slot, &copies); err != nil {
			return nil, fmt.Errorf("read run-queue histogram of cgroup %d: %w", id, err)
		}
		var sum [Slots]uint64
		var sumNs uint64
		owned := false
		for _, v := range copies {
			// A CPU that has not counted for this cgroup since it got the slot holds
			// nothing of it (zeroes, or what it counted for the slot's last owner).
			if v.Owner != id+1 {
				continue
			}
			owned = true
			for i, n := range v.H.Slots {
				sum[i] += n
			}
			sumNs += v.H.SumNs
		}
		if owned {
			out[id] = kernelHistogram(sum, sumNs)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read run-queue histograms: %w", err)
	}
	// A css_set freed since the last read may be reused for another cgroup: the per-CPU
	// caches then look every css_set up again (see cset_slot in runqlat.c).
	if r.epoch != nil {
		if err := r.epoch.Set(r.epochs.Add(1)); err != nil {
			return nil, fmt.Errorf("renew run-queue cgroup caches: %w", err)
		}
	}
	return out, nil
}

// Forget drops the histograms of cgroups that no longer exist and frees their slots for new
// cgroups. A thread still in a forgotten cgroup starts its histogram over in a new slot.
func (r *RunQueue) Forget(ids ...uint64) error {
	var errs []error
	for _, id := range ids {
		var slot uint32
		if err := r.slots.Lookup(id, &slot); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			errs = append(errs, fmt.Errorf("forget cgroup %d: %w", id, err))
			continue
		}
		if err := r.slots.Delete(id); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue // forgotten meanwhile by another caller
		} else if err != nil {
			errs = append(errs, fmt.Errorf("forget cgroup %d: %w", id, err))
			continue
		}
		// Zeroing the owner makes the CPUs that cached the slot look their cgroup up again.
		if err := r.hists.Update(slot, make([]runqlatRunqHist, r.cpus), ebpf.UpdateExist); err != nil {
			errs = append(errs, fmt.Errorf("forget cgroup %d: clear slot %d: %w", id, slot, err))
			continue
		}
		if err := r.free.Update(nil, slot, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("forget cgroup %d: free slot %d: %w", id, slot, err))
		}
	}
	return errors.Join(errs...)
}

// Close detaches the probe and frees its maps.
func (r *RunQueue) Close() error { return r.p.close() }

// haveGroupRunQueue says whether a thread's scheduling entity leads to its CPU's run queue
// (sched_entity.cfs_rq, cfs_rq.rq: CONFIG_FAIR_GROUP_SCHED), the tp_btf program's way to the run
// queue's clock.
func haveGroupRunQueue() error {
	kspec, err := btfCache().Kernel()
	if err != nil {
		return err
	}
	for _, f := range []struct{ typ, member string }{{"sched_entity", "cfs_rq"}, {"cfs_rq", "rq"}} {
		var s *btf.Struct
		if err := kspec.TypeByName(f.typ, &s); err != nil {
			return fmt.Errorf("no struct %s in the kernel's BTF: %w", f.typ, err)
		}
		if !slices.ContainsFunc(s.Members, func(m btf.Member) bool { return m.Name == f.member }) {
			return fmt.Errorf("the kernel's struct %s has no %s (CONFIG_FAIR_GROUP_SCHED off)", f.typ, f.member)
		}
	}
	return nil
}

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
