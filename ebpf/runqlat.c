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

// runq_task holds, in each thread itself (task-local storage: no hash lookup, no bound on
// threads, gone with the thread), the kernel's own run-queue figures for it as of its last
// switch-out. Used by the tp_btf program, which gets typed task pointers.
//
// The kernel already times every wait on a run queue (CONFIG_SCHED_INFO: sched_info.run_delay
// grows by each wait when the thread gets a CPU, pcount counts those arrivals). Reading the
// growth of run_delay when a thread is switched out gives the wait before the slice it just
// ran, so the probe needs no wakeup programs and no clock reads of its own: one program per
// context switch, one task-storage lookup, one histogram update.
struct runq_ts {
	u64 run_delay;
	u64 pcount;
	// The thread's cgroup id, cached with the css_set it was read from: following the cgroup
	// pointers on every switch costs more than the rest of the program, and a thread's css_set
	// only changes when it moves between cgroups.
	u64 cset;
	u64 cgid;
	// The slot of runq_hists holding the cgroup's histogram, found when the css_set changed.
	u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct runq_ts);
} runq_task SEC(".maps");

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
	// key like any other. A thread's cached slot is good while the slot's owner is its cgroup:
	// user space zeroes the slot when it forgets the cgroup, and the slot may go to another.
	u64 owner;
	struct hist h;
};

// runq_hists holds the histograms in slots, so that a context switch indexes an array (the
// verifier inlines the lookup) with the slot cached in the thread's storage instead of hashing
// the cgroup id: the hash lookup was the costliest step of the switch path.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
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

// cgroup_slot returns the histogram of a cgroup, giving it a free slot on first sight. NULL
// when every slot is taken: that event is dropped rather than counted under another cgroup.
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
		} else {
			h = bpf_map_lookup_elem(&runq_hists, &slot);
			if (!h)
				return NULL;
			// Forget zeroed the slot; this drops what a forgotten cgroup's last threads may
			// have added to it since.
			__builtin_memset(&h->h, 0, sizeof(h->h));
		}
	}
	h = bpf_map_lookup_elem(&runq_hists, &slot);
	if (!h)
		return NULL;
	// Also done by whoever finds the slot in runq_slots before its claimer marked it.
	if (h->owner != cgid + 1)
		h->owner = cgid + 1;
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
		hist_add(&h->h, delta);
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
	struct runq_ts *s;
	struct css_set *cset;
	struct runq_hist *h;
	u64 delay, pcount, seen;
	u32 slot;

	if (!prev->pid)
		return 0;
	s = bpf_task_storage_get(&runq_task, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	pcount = prev->sched_info.pcount;
	seen = s->pcount;
	// Nothing new since the last switch-out: the thread did not wait for this slice (it never
	// left the CPU's queue accounting, e.g. a yield with nothing else runnable).
	if (pcount == seen)
		return 0;
	delay = prev->sched_info.run_delay;
	s->pcount = pcount;
	if (!seen) {
		// First sight of the thread: its run_delay holds every wait since it started.
		s->run_delay = delay;
		return 0;
	}
	delay -= s->run_delay;
	s->run_delay += delay;
	if ((s64)delay < 0)
		return 0;
	cset = prev->cgroups;
	if ((u64)cset != s->cset) {
		s->cgid = btf_cgroup_id(cset);
		s->cset = (u64)cset;
		s->slot = MAX_CGROUPS;
	}
	h = bpf_map_lookup_elem(&runq_hists, &s->slot);
	if (!h || h->owner != s->cgid + 1) {
		h = cgroup_slot(s->cgid, &slot);
		if (!h)
			return 0;
		s->slot = slot;
	}
	hist_add(&h->h, delay);
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
