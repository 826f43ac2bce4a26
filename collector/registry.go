package collector

import (
	"fmt"
	"sort"
)

// table lists every collector, in the order the agent runs them each interval. Later rows may
// read what earlier rows put into the report (the Flink scrape reads the discovered TaskManagers).
// Adding a collector is one new file and one row here.
var table = []Registration{
	{Name: "host", DefaultEnabled: true, Help: "CPU, load, memory, disks, network and TCP from /proc via gopsutil", New: newHostCollector},
	{Name: "pressure", DefaultEnabled: true, Help: "machine-wide PSI for cpu, memory and io (some and full)", New: newPressureCollector},
	{Name: "taskmanagers", DefaultEnabled: true, Help: "Flink TaskManager JVMs found in /proc, plus static targets", New: newTaskManagerCollector},
	{Name: "flink", DefaultEnabled: true, Help: "per-subtask and JVM metrics scraped from each TaskManager's PrometheusReporter", New: newFlinkCollector},
	{Name: "cgroups", DefaultEnabled: true, Help: "CPU, throttling, memory and PSI of the TaskManagers' cgroups (v1 and v2)", New: newCgroupCollector},
	{Name: "neighbours", DefaultEnabled: true, Help: "CPU used by the node's other cgroups (pods, systemd units, leaf cgroups), to name a neighbour taking the CPU", New: newNeighbourCollector},
	{Name: "ebpf_runqueue", DefaultEnabled: true, Help: "eBPF run-queue latency histogram per cgroup (sched_switch; sched_wakeup too in the raw_tp fallback)", New: newEBPFRunQueueCollector},
	{Name: "ebpf_blockio", DefaultEnabled: true, Help: "eBPF block-IO latency histogram per disk (block_rq_issue/block_rq_complete)", New: newEBPFBlockIOCollector},
	{Name: "ebpf_tcpretrans", DefaultEnabled: true, Help: "eBPF TCP retransmits per remote address (tcp_retransmit_skb)", New: newEBPFTCPRetransCollector},
}

// Registrations returns the collector table in run order.
func Registrations() []Registration {
	out := make([]Registration, len(table))
	copy(out, table)
	return out
}

// Names returns every registered collector name, sorted.
func Names() []string {
	names := make([]string, 0, len(table))
	for _, r := range table {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}

// ValidateEnabled rejects names in the enabled map that no collector has.
func ValidateEnabled(c Config) error {
	known := map[string]bool{}
	for _, r := range table {
		known[r.Name] = true
	}
	for name := range c.Enabled {
		if !known[name] {
			return fmt.Errorf("collectors.enabled: unknown collector %q (known: %v)", name, Names())
		}
	}
	return nil
}

// New builds the named collector from the table (the demo assembles simulated nodes this way).
func New(name string, o Options) (Collector, error) {
	for _, r := range table {
		if r.Name == name {
			return r.New(o)
		}
	}
	return nil, fmt.Errorf("unknown collector %q (known: %v)", name, Names())
}
