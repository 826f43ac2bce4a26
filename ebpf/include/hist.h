/* SPDX-License-Identifier: GPL-2.0 */
/* Shared log2 latency histogram for the tmwarden probes. The layout is mirrored in Go (Histogram). */
#ifndef __TMWARDEN_HIST_H
#define __TMWARDEN_HIST_H

/* 27 log2 slots of microseconds: the last one holds everything from 2^26 us (about 67 s) up. */
#define MAX_SLOTS 27

/* The event count is the sum of the slots; user space adds them up, which saves the kernel one
 * atomic add per event. */
struct hist {
	__u64 slots[MAX_SLOTS];
	__u64 sum_ns;
};

static __always_inline __u64 log2_u32(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u64 log2_u64(__u64 v)
{
	__u32 hi = v >> 32;

	if (hi)
		return log2_u32(hi) + 32;
	return log2_u32(v);
}

/* hist_slot is log2(delta_ns / 1000) (microseconds), capped to the last slot, without the
 * division: a 64-bit divide is the slowest instruction on the probes' path. The slot is the
 * largest k with 1000 * 2^k <= delta_ns; with L = log2(delta_ns) that is L - 9 or L - 10, since
 * 2^9 < 1000 < 2^10, and one comparison tells which. Below 2 us it is slot 0, as log2 of 0 and
 * of 1 are. */
static __always_inline __u64 hist_slot(__u64 delta_ns)
{
	__u64 l, k;

	if (delta_ns < 2000)
		return 0;
	l = log2_u64(delta_ns);
	k = l - 9;
	if (delta_ns < (1000ULL << k))
		k--;
	if (k >= MAX_SLOTS)
		k = MAX_SLOTS - 1;
	return k;
}

/* hist_add counts one latency with atomic adds, so all CPUs share one value per key instead of
 * a per-CPU copy: per-CPU values would multiply the map's memory by the number of CPUs. */
static __always_inline void hist_add(struct hist *h, __u64 delta_ns)
{
	__u64 slot = hist_slot(delta_ns);

	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, delta_ns);
}

/* hist_add_cpu counts one latency in a histogram only this CPU writes (a per-CPU map value), with
 * plain adds: no other CPU shares its cache lines, and the scheduler's tracepoints run with
 * interrupts off, so no other run of the program on this CPU comes in the middle of an add. */
static __always_inline void hist_add_cpu(struct hist *h, __u64 delta_ns)
{
	h->slots[hist_slot(delta_ns)]++;
	h->sum_ns += delta_ns;
}

/* hist_lookup_or_init returns the histogram for key, creating a zeroed one on first use. It
 * returns NULL when the map is full: that event is dropped rather than evicting another key. */
static __always_inline struct hist *hist_lookup_or_init(void *map, const void *key)
{
	struct hist *h = bpf_map_lookup_elem(map, key);

	if (h)
		return h;
	struct hist zero;
	__builtin_memset(&zero, 0, sizeof(zero));
	bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

#endif /* __TMWARDEN_HIST_H */
