//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// Block-IO latency: the time from a request's issue to the device until its completion, as a
// log2 histogram per disk, aggregated in the kernel.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "hist.h"

#define MAX_INFLIGHT 10240
#define MAX_DISKS 256
#define MINORBITS 20

char LICENSE[] SEC("license") = "GPL";

// bio_start holds each in-flight request's issue time. LRU, so requests that never complete
// (requeued, aborted) age out instead of filling the map for good.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_INFLIGHT);
	__type(key, u64);
	__type(value, u64);
} bio_start SEC(".maps");

// bio_hists holds one cumulative histogram per disk, keyed by the kernel dev_t (major<<20|minor).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DISKS);
	__type(key, u32);
	__type(value, struct hist);
} bio_hists SEC(".maps");

// request___x covers kernels before 5.17, where the request pointed at its disk directly.
struct request___x {
	struct request_queue *q;
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

static __always_inline u32 request_dev(struct request *rq, bool typed)
{
	struct request___x *r = (void *)rq;
	struct gendisk *disk;

	// tp_btf's request is a typed kernel pointer: its fields are plain loads, where the raw_tp
	// fallback pays a bpf_probe_read_kernel call for each.
	if (typed) {
		if (bpf_core_field_exists(r->rq_disk))
			disk = r->rq_disk;
		else
			disk = rq->q->disk;
		if (!disk)
			return 0;
		return ((u32)disk->major << MINORBITS) | (u32)disk->first_minor;
	}
	if (bpf_core_field_exists(r->rq_disk))
		disk = BPF_CORE_READ(r, rq_disk);
	else
		disk = BPF_CORE_READ(rq, q, disk);
	if (!disk)
		return 0;
	return ((u32)BPF_CORE_READ(disk, major) << MINORBITS) | (u32)BPF_CORE_READ(disk, first_minor);
}

static __always_inline void on_issue(struct request *rq)
{
	u64 key = (u64)rq, ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&bio_start, &key, &ts, BPF_ANY);
}

static __always_inline void on_complete(struct request *rq, bool typed)
{
	u64 key = (u64)rq, *tsp, delta;
	u32 dev;
	struct hist *h;

	tsp = bpf_map_lookup_elem(&bio_start, &key);
	if (!tsp)
		return;
	delta = bpf_ktime_get_ns() - *tsp;
	bpf_map_delete_elem(&bio_start, &key);
	if ((s64)delta < 0)
		return;
	dev = request_dev(rq, typed);
	h = hist_lookup_or_init(&bio_hists, &dev);
	if (h)
		hist_add(h, delta);
}

// block_rq_issue lost its request_queue argument in 5.11; the loader keeps the variant that
// matches the running kernel's btf_trace_block_rq_issue prototype and drops the other.

SEC("tp_btf/block_rq_issue")
int BPF_PROG(tp_block_rq_issue, struct request *rq)
{
	on_issue(rq);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int BPF_PROG(tp_block_rq_issue_old, struct request_queue *q, struct request *rq)
{
	on_issue(rq);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(tp_block_rq_complete, struct request *rq)
{
	on_complete(rq, true);
	return 0;
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(raw_block_rq_issue, struct request *rq)
{
	on_issue(rq);
	return 0;
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(raw_block_rq_issue_old, struct request_queue *q, struct request *rq)
{
	on_issue(rq);
	return 0;
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(raw_block_rq_complete, struct request *rq)
{
	on_complete(rq, false);
	return 0;
}
