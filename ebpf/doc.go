// Package ebpf loads tmwarden's CO-RE kernel probes (run-queue latency per cgroup, block-IO
// latency per disk, TCP retransmits per remote address) and reads their in-kernel aggregates.
// Each probe checks the kernel's features first and, when it cannot load, says why instead of
// failing, so the agent keeps running on its /proc-based signals.
package ebpf
