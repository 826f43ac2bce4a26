//go:build ignore

// SPDX-License-Identifier: GPL-2.0
// TCP retransmits: a counter per remote address, aggregated in the kernel.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define AF_INET 2
#define AF_INET6 10
#define MAX_REMOTES 4096

char LICENSE[] SEC("license") = "GPL";

struct retrans_key {
	u16 family;
	u8 pad[6];
	u8 daddr[16];
};

// retrans_counts holds the cumulative retransmits per (family, remote address).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_REMOTES);
	__type(key, struct retrans_key);
	__type(value, u64);
} retrans_counts SEC(".maps");

static __always_inline void on_retransmit(const struct sock *sk)
{
	struct retrans_key key;
	u64 one = 1, *cnt;

	__builtin_memset(&key, 0, sizeof(key));
	key.family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (key.family == AF_INET)
		BPF_CORE_READ_INTO(&key.daddr, sk, __sk_common.skc_daddr);
	else if (key.family == AF_INET6)
		BPF_CORE_READ_INTO(&key.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	else
		return;

	cnt = bpf_map_lookup_elem(&retrans_counts, &key);
	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
		return;
	}
	// A racing CPU may have created the entry meanwhile; then add to it.
	if (bpf_map_update_elem(&retrans_counts, &key, &one, BPF_NOEXIST) == 0)
		return;
	cnt = bpf_map_lookup_elem(&retrans_counts, &key);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
}

// The socket is the first argument on every kernel; later ones (skb, and err since 6.14) differ.

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tp_tcp_retransmit_skb, const struct sock *sk)
{
	on_retransmit(sk);
	return 0;
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(raw_tcp_retransmit_skb, const struct sock *sk)
{
	on_retransmit(sk);
	return 0;
}
