//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// Run-queue latency: the time a task waits between becoming runnable (wakeup, or preemption while
// still runnable) and getting a CPU, as a log2 histogram per cgroup, aggregated in the kernel.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "hist.h"

#define TASK_RUNNING 0
#define MAX_QUEUED 16384
#define MAX_CGROUPS 4096

char LICENSE[] SEC("license") = "GPL";

// cgroup_v1_cpu keys the histograms by the task's cgroup in the v1 cpu hierarchy instead of the
// unified (v2) one: on hybrid hosts every task sits in the v2 root, and the cpu controller's
// hierarchy is where the container runtime places pods. Set by the loader before load.
const volatile bool cgroup_v1_cpu = false;

// The tp_btf program keeps no state per thread. The kernel already times every wait on a run
// queue (CONFIG_SCHED_INFO): a thread that becomes runnable gets sched_info.last_queued from its
// run queue's clock, and when it gets a CPU the kernel adds clock - last_queued to its
// run_delay, right after the sched_switch tracepoint. So at sched_switch the wait of the thread
// switching in is the run queue's clock less its last_queued: the kernel's own figure, read
// with a few loads, with no wakeup programs, no clock read and no per-thread storage lookup.
//
// The run queue is reached from the thread itself: with CONFIG_FAIR_GROUP_SCHED (which the
// cgroup cpu controller needs) every thread's sched_entity points at its group's cfs_rq on the
// CPU it was placed on, whatever its scheduling class, and that cfs_rq at the CPU's rq. The
// thread switching in was placed on this CPU. The loader checks these fields exist, and falls
// back to raw_tp where they do not.

// CSET_CACHE entries per CPU map a process's css_set to its cgroup's histogram slot: following
// the cgroup pointers (three or four dependent loads, often cache misses) and hashing the cgroup
// id cost more than the rest of the program, and one CPU switches among a few processes at a
// time. An entry is indexed by the process id (the verifier allows no arithmetic on the css_set
// pointer) and holds while the thread's css_set is the one it was filled from: the threads of a
// process share their cgroups.
#define CSET_CACHE 64

struct cset_slot {
	u64 cset;
	u64 cgid;
	u32 slot;
	// epoch is cset_epoch when the entry was filled: a css_set freed and reused for another
	// cgroup must not keep the old one's slot, so user space bumps the epoch on every read and
	// entries older than that are looked up again.
	u32 epoch;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CSET_CACHE);
	__type(key, u32);
	__type(value, struct cset_slot);
} runq_cset_cache SEC(".maps");

// cset_epoch is bumped by user space each time it reads the histograms (see cset_slot.epoch).
volatile u32 cset_epoch;

// runq_start holds the enqueue time by thread id for the raw_tp fallback, whose untyped
// arguments cannot index task storage.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_QUEUED);
	__type(key, u32);
	__type(value, u64);
} runq_start SEC(".maps");

// runq_hist is one cgroup's cumulative histogram; user space reads deltas.
struct runq_hist {
	// owner is the cgroup id + 1, so that 0 marks a free slot while id 0 (no cgroup found) is a
	// key like any other. A CPU's cached slot is good while its copy's owner is the cgroup:
	// user space zeroes every copy of the slot when it forgets the cgroup, and the slot may go
	// to another.
	u64 owner;
	struct hist h;
};

// runq_hists holds the histograms in slots, so that a context switch indexes an array (the
// verifier inlines the lookup) with the slot cached per CPU instead of hashing the cgroup id:
// the hash lookup was the costliest step of the switch path. Each CPU counts in its own copy of
// a slot, with plain adds: a TaskManager's cgroup runs on every core, and one shared histogram
// would bounce its cache lines between all of them on every switch. The loader sizes the map so
// that the copies of every CPU fit a memory budget (see runQueueSlots).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CGROUPS);
	__type(key, u32);
	__type(value, struct runq_hist);
} runq_hists SEC(".maps");

// runq_slots maps a cgroup id to its slot in runq_hists; user space lists the cgroups from it.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_CGROUPS);
	__type(key, u64);
	__type(value, u32);
} runq_slots SEC(".maps");

// runq_free holds the slots no cgroup holds: the loader fills it with every slot, and Forget
// gives a cgroup's slot back.
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, MAX_CGROUPS);
	__type(value, u32);
} runq_free SEC(".maps");

// task_struct___o is the layout before 5.14, when state was renamed __state.
struct task_struct___o {
	volatile long state;
} __attribute__((preserve_access_index));

// cgroup_slot returns this CPU's copy of a cgroup's histogram, giving the cgroup a free slot on
// first sight. NULL when every slot is taken: that event is dropped rather than counted under
// another cgroup.
static __always_inline struct runq_hist *cgroup_slot(u64 cgid, u32 *slotp)
{
	struct runq_hist *h;
	u32 slot, *sp;

	sp = bpf_map_lookup_elem(&runq_slots, &cgid);
	if (sp) {
		slot = *sp;
	} else {
		if (bpf_map_pop_elem(&runq_free, &slot) != 0)
			return NULL;
		if (bpf_map_update_elem(&runq_slots, &cgid, &slot, BPF_NOEXIST) != 0) {
			// Another CPU gave the cgroup a slot meanwhile: hand this one back, use that.
			bpf_map_push_elem(&runq_free, &slot, 0);
			sp = bpf_map_lookup_elem(&runq_slots, &cgid);
			if (!sp)
				return NULL;
			slot = *sp;
		}
	}
	h = bpf_map_lookup_elem(&runq_hists, &slot);
	if (!h)
		return NULL;
	// This CPU's copy passes to the cgroup. Forget zeroed it, but this CPU may have counted
	// the forgotten cgroup's last waits in it since: they are dropped.
	if (h->owner != cgid + 1) {
		__builtin_memset(&h->h, 0, sizeof(h->h));
		h->owner = cgid + 1;
	}
	*slotp = slot;
	return h;
}

static __always_inline void record(u64 cgid, u64 delta)
{
	struct runq_hist *h;
	u32 slot;

	if ((s64)delta < 0)
		return;
	h = cgroup_slot(cgid, &slot);
	if (h)
		hist_add_cpu(&h->h, delta);
}

// tp_btf: the arguments are typed kernel pointers, read with plain loads.

static __always_inline u64 btf_cgroup_id(struct css_set *cset)
{
	if (!cgroup_v1_cpu)
		return cset->dfl_cgrp->kn->id;
	// The cpu controller's slot differs between kernel configs: the index is relocated.
	u32 idx = bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id);
	if (idx >= CGROUP_SUBSYS_COUNT)
		return 0;
	struct cgroup_subsys_state *css = cset->subsys[idx];
	if (!css)
		return 0;
	return css->cgroup->kn->id;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(tp_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct cset_slot *c;
	struct css_set *cset;
	struct runq_hist *h;
	u64 queued, delay;
	u32 key, slot, epoch;

	// Not queued: the idle task, or a thread the kernel does not time (it skips the same).
	queued = next->sched_info.last_queued;
	if (!queued)
		return 0;
	delay = next->se.cfs_rq->rq->clock - queued;
	if ((s64)delay < 0)
		return 0;
	cset = next->cgroups;
	key = (u32)next->tgid & (CSET_CACHE - 1);
	c = bpf_map_lookup_elem(&runq_cset_cache, &key);
	if (!c)
		return 0;
	epoch = cset_epoch;
	if (c->cset != (u64)cset || c->epoch != epoch) {
		c->cgid = btf_cgroup_id(cset);
		c->cset = (u64)cset;
		c->epoch = epoch;
		c->slot = MAX_CGROUPS;
	}
	h = bpf_map_lookup_elem(&runq_hists, &c->slot);
	if (!h || h->owner != c->cgid + 1) {
		h = cgroup_slot(c->cgid, &slot);
		if (!h)
			return 0;
		c->slot = slot;
	}
	hist_add_cpu(&h->h, delay);
	return 0;
}

// raw_tp: the fallback where tracing programs cannot be loaded. Same arguments, untyped, read
// through bpf_probe_read_kernel.

static __always_inline long raw_task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___o *)t, state);
}

static __always_inline u64 raw_cgroup_id(struct task_struct *t)
{
	struct css_set *cset = BPF_CORE_READ(t, cgroups);
	struct cgroup_subsys_state *css = NULL;

	if (!cgroup_v1_cpu)
		return BPF_CORE_READ(cset, dfl_cgrp, kn, id);
	u32 idx = bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id);
	if (idx >= CGROUP_SUBSYS_COUNT)
		return 0;
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)cset + bpf_core_field_offset(struct css_set, subsys) + idx * sizeof(void *));
	if (!css)
		return 0;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

static __always_inline void raw_enqueue(struct task_struct *t)
{
	u32 pid = BPF_CORE_READ(t, pid);
	u64 ts;

	if (!pid)
		return;
	ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&runq_start, &pid, &ts, BPF_ANY);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_sched_wakeup, struct task_struct *p)
{
	raw_enqueue(p);
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(raw_sched_wakeup_new, struct task_struct *p)
{
	raw_enqueue(p);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	u32 pid;
	u64 *tsp, ts;

	if (raw_task_state(prev) == TASK_RUNNING)
		raw_enqueue(prev);
	pid = BPF_CORE_READ(next, pid);
	if (!pid)
		return 0;
	tsp = bpf_map_lookup_elem(&runq_start, &pid);
	if (!tsp)
		return 0;
	ts = *tsp;
	bpf_map_delete_elem(&runq_start, &pid);
	record(raw_cgroup_id(next), bpf_ktime_get_ns() - ts);
	return 0;
}
