package model

import (
	"sync"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// Signal is one host signal: an index into HostSignals and into HostDigest.Signals. Rules that
// are about one signal (steal explains a run queue, loss is the node's own) name it by its
// constant, never by its name.
type Signal uint8

// The host signals, in the order detection compares them and lists them as evidence.
const (
	SignalRunqMean Signal = iota
	SignalTMRunqMean
	SignalTMThrottled
	SignalBusiestNeighbourCPU
	SignalSteal
	SignalOtherCPU
	SignalPSICPU
	SignalDiskAwait
	SignalIOWait
	SignalPSIIO
	SignalRetransRate
	SignalRetransRatio
	SignalInboundRetrans
	SignalMajorFaults
	SignalSwapIn
	SignalPSIMemory
	// NumSignals is the number of host signals; HostSignals has exactly one row for each.
	NumSignals
)

// A SignalSet must hold every signal.
var _ [64 - NumSignals]struct{}

// Resource is what a host signal says the node is short of. Detection turns it into the cause it
// names; it is its own type here so that the model does not depend on detection.
type Resource uint8

const (
	// ResourceCPU: the TaskManagers' threads wait for a CPU, or something else takes it.
	ResourceCPU Resource = iota
	// ResourceCPUQuota: the TaskManagers' own CPU quota (CFS throttling) holds them back.
	ResourceCPUQuota
	ResourceDisk
	ResourceNetwork
	ResourceMemory
)

// SignalRow is everything about one host signal: what it is called, how it is read from an
// agent's report, what it points to, and how far above its peers a node must be for it to count.
type SignalRow struct {
	// Name appears as the evidence's signal in verdicts, events and the API.
	Name     string
	Resource Resource
	// digest derives the value from one report; the model calls it for every report.
	digest func(*hostFacts) float64
	// A node is anomalous on the signal when its value exceeds the peer median by Floor and is
	// Ratio times the median: both, so that a quiet cluster's tiny median does not turn noise into
	// anomalies. The score of an anomaly is how many floors it is above the median. Floors and
	// ratios must hold for any fleet; never tune one to a scenario.
	Floor float64
	Ratio float64
}

// HostSignals is the table of host signals, one row per Signal: the model digests every report
// through it (HostDigest.Signals) and detection compares nodes through it. A new host signal is a
// field in the report, the collector filling it, and a row here.
var HostSignals = [NumSignals]SignalRow{
	SignalRunqMean: {"runqueue_mean_us", ResourceCPU, func(f *hostFacts) float64 {
		if f.rqCount == 0 {
			return 0
		}
		return f.rqSum / float64(f.rqCount)
	}, 300, 4},
	// The TaskManagers' own threads' wait for a CPU (their cgroups' run-queue histograms only):
	// a neighbour, steal or a quota delays them, while the node's run queue also counts the
	// neighbours' own waits.
	SignalTMRunqMean: {"tm_runqueue_mean_us", ResourceCPU, func(f *hostFacts) float64 {
		if f.tmRqCount == 0 {
			return 0
		}
		return f.tmRqSum / float64(f.tmRqCount)
	}, 300, 4},
	// The largest share of CFS periods in which a TaskManager's cgroup was throttled.
	SignalTMThrottled: {"tm_cpu_throttled_share", ResourceCPUQuota, func(f *hostFacts) float64 {
		var share float64
		for _, cg := range f.r.GetCgroups() {
			if f.tmCgroups[cg.GetPath()] {
				share = max(share, cg.GetThrottledShare())
			}
		}
		return share
	}, 0.15, 3},
	// The CPU used by the busiest cgroup on the node that is not a TaskManager's: on a machine
	// already full, a neighbour can take the TaskManagers' CPU without the CPU used outside them
	// rising by much, but it shows in that one cgroup.
	SignalBusiestNeighbourCPU: {"busiest_neighbour_cpu_cores", ResourceCPU, func(f *hostFacts) float64 {
		if len(f.neighbours) == 0 {
			return 0
		}
		return f.neighbours[0].CPUCores
	}, 0.5, 3},
	SignalSteal: {"cpu_steal", ResourceCPU, func(f *hostFacts) float64 { return f.h.GetCpu().GetSteal() }, 0.05, 3},
	// The node's busy CPU outside the TaskManagers' cgroups: what neighbours (or the system) took.
	// Unknown (0) without the TaskManagers' own usage, which would make all busy CPU look like a
	// neighbour's.
	SignalOtherCPU: {"other_cpu_cores", ResourceCPU, func(f *hostFacts) float64 {
		if !f.tmCPUMatched {
			return 0
		}
		return max(0, f.cpuBusy*float64(f.numCPUs)-f.tmCPUCores)
	}, 1, 3},
	SignalPSICPU: {"psi_cpu_some", ResourceCPU, func(f *hostFacts) float64 {
		if p := f.h.GetPressure(); p.GetAvailable() {
			return p.GetCpu().GetSomeShare()
		}
		return 0
	}, 0.15, 3},
	SignalDiskAwait: {"disk_await_ms", ResourceDisk, func(f *hostFacts) float64 {
		var await float64
		for _, dk := range f.h.GetDisks() {
			await = max(await, dk.GetAwaitMs())
		}
		return await
	}, 10, 5},
	SignalIOWait: {"cpu_iowait", ResourceDisk, func(f *hostFacts) float64 { return f.h.GetCpu().GetIowait() }, 0.05, 3},
	SignalPSIIO: {"psi_io_some", ResourceDisk, func(f *hostFacts) float64 {
		if p := f.h.GetPressure(); p.GetAvailable() {
			return p.GetIo().GetSomeShare()
		}
		return 0
	}, 0.15, 3},
	SignalRetransRate: {"tcp_retransmits_per_s", ResourceNetwork, func(f *hostFacts) float64 {
		return f.h.GetTcp().GetRetransmitsPerSecond()
	}, 20, 5},
	// Retransmitted over sent segments: loss, independent of how busy the link is.
	SignalRetransRatio: {"tcp_retransmit_ratio", ResourceNetwork, func(f *hostFacts) float64 {
		if out := f.h.GetTcp().GetOutSegmentsPerSecond(); out > 0 {
			return f.h.GetTcp().GetRetransmitsPerSecond() / out
		}
		return 0
	}, 0.005, 5},
	// What other nodes retransmitted to this node's addresses: loss on the way in, which only the
	// senders see. No one report holds it: detection adds it up from all nodes' Sample.RetransTo.
	SignalInboundRetrans: {"tcp_inbound_retransmits_per_s", ResourceNetwork, func(*hostFacts) float64 { return 0 }, 20, 5},
	SignalMajorFaults: {"major_faults_per_s", ResourceMemory, func(f *hostFacts) float64 {
		return f.h.GetMemory().GetMajorFaultsPerSecond()
	}, 300, 5},
	SignalSwapIn: {"swap_in_pages_per_s", ResourceMemory, func(f *hostFacts) float64 {
		return f.h.GetMemory().GetSwapInPagesPerSecond()
	}, 50, 5},
	SignalPSIMemory: {"psi_memory_some", ResourceMemory, func(f *hostFacts) float64 {
		if p := f.h.GetPressure(); p.GetAvailable() {
			return p.GetMemory().GetSomeShare()
		}
		return 0
	}, 0.08, 4},
}

// String is the signal's name.
func (s Signal) String() string { return HostSignals[s].Name }

// SignalSet is a set of host signals; detection keeps the ones a node is anomalous on in it.
type SignalSet uint64

// SignalsOf is the set of the given signals.
func SignalsOf(sigs ...Signal) SignalSet {
	var s SignalSet
	for _, sig := range sigs {
		s = s.With(sig)
	}
	return s
}

// SignalsFor is the set of the signals that point to r.
func SignalsFor(r Resource) SignalSet {
	var s SignalSet
	for i, row := range HostSignals {
		if row.Resource == r {
			s = s.With(Signal(i))
		}
	}
	return s
}

// With returns the set with sig added.
func (s SignalSet) With(sig Signal) SignalSet { return s | 1<<sig }

// Has says whether sig is in the set.
func (s SignalSet) Has(sig Signal) bool { return s&(1<<sig) != 0 }

// hostFacts is what the rows of HostSignals read: one report, and what several rows derive from
// it, computed once per report. Whatever a function value is given escapes to the heap, so the
// facts (with their map) come from factsPool rather than from each report's stack.
type hostFacts struct {
	r *tmwardenv1.Report
	h *tmwardenv1.HostSignals
	// The digest's fields outside the table, filled first.
	numCPUs             uint32
	cpuBusy, tmCPUCores float64
	// tmCgroups are the TaskManagers' cgroup paths; tmCPUMatched says their CPU usage was
	// found (on a valid report).
	tmCgroups    map[string]bool
	tmCPUMatched bool
	// Run-queue histograms, node-wide and of the TaskManagers' cgroups.
	rqCount, tmRqCount uint64
	rqSum, tmRqSum     float64
	// neighbours are the node's other cgroups, busiest first.
	neighbours []CgroupDigest
}

var factsPool = sync.Pool{New: func() any { return &hostFacts{tmCgroups: map[string]bool{}} }}

// newHostFacts returns empty facts for one report; release them when its digest is done.
func newHostFacts(r *tmwardenv1.Report, neighbours []CgroupDigest) *hostFacts {
	f := factsPool.Get().(*hostFacts)
	f.r, f.h, f.neighbours = r, r.GetHost(), neighbours
	return f
}

func (f *hostFacts) release() {
	m := f.tmCgroups
	clear(m)
	*f = hostFacts{tmCgroups: m}
	factsPool.Put(f)
}
