package detect

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

// quietHostReport is a node's report with every host signal at an ordinary level: one
// TaskManager (in its own cgroup, without subtasks) and a small neighbour.
func quietHostReport(n int) *tmwardenv1.Report {
	return &tmwardenv1.Report{Sequence: 1, CollectedAt: timestamppb.New(t0), IntervalSeconds: 5,
		Host: &tmwardenv1.HostSignals{NumCpus: 8,
			Cpu:    &tmwardenv1.CpuShares{User: 0.3, Idle: 0.686, Iowait: 0.003, Steal: 0.001},
			Memory: &tmwardenv1.Memory{TotalBytes: 64 << 30, AvailableBytes: 30 << 30, MajorFaultsPerSecond: 2},
			Disks:  []*tmwardenv1.DiskStats{{Device: "nvme0n1", AwaitMs: 1, Utilization: 0.1}},
			Tcp:    &tmwardenv1.TcpStats{RetransmitsPerSecond: 1, OutSegmentsPerSecond: 1000},
			Pressure: &tmwardenv1.Pressure{Available: true, Cpu: &tmwardenv1.PressureStat{SomeShare: 0.01},
				Io: &tmwardenv1.PressureStat{SomeShare: 0.01}, Memory: &tmwardenv1.PressureStat{SomeShare: 0.005}}},
		TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: fmt.Sprintf("tm-%d", n), Cgroup: "/kubepods/tm", Host: fmt.Sprintf("10.0.0.%d", n)}},
		Cgroups: []*tmwardenv1.CgroupStats{{Path: "/kubepods/tm", TaskManager: true, CpuUsageCores: 2, ThrottledShare: 0.01},
			{Path: "/system.slice/sshd.service", SystemdUnit: "sshd.service", CpuUsageCores: 0.05}},
		Histograms: []*tmwardenv1.LatencyHistogram{
			{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: "/kubepods/tm", Count: 1000, SumMicroseconds: 20000, Buckets: make([]uint64, 20)},
			{Kind: tmwardenv1.LatencyHistogram_KIND_RUNQUEUE, Target: "/system.slice/sshd.service", Count: 100, SumMicroseconds: 2000, Buckets: make([]uint64, 20)}},
	}
}

// raiseHost raises one host signal on node-0 of a quiet fleet, through the report as an agent
// would send it. Signals of threads waiting for a CPU count only with something taking it (and a
// busy neighbour or CPU used outside the TaskManagers only with threads waiting or no idle CPU),
// so those raise steal or the run queue too.
var raiseHost = map[model.Signal]func(fleet []*tmwardenv1.Report){
	model.SignalRunqMean: func(f []*tmwardenv1.Report) {
		f[0].Histograms[1].SumMicroseconds = 100 * 5000
		stealOn(f[0])
	},
	model.SignalTMRunqMean: func(f []*tmwardenv1.Report) {
		f[0].Histograms[0].SumMicroseconds = 1000 * 2000
		stealOn(f[0])
	},
	model.SignalTMThrottled: func(f []*tmwardenv1.Report) { f[0].Cgroups[0].ThrottledShare = 0.6 },
	model.SignalBusiestNeighbourCPU: func(f []*tmwardenv1.Report) {
		f[0].Cgroups[1].CpuUsageCores = 2
		f[0].Histograms[0].SumMicroseconds = 1000 * 2000
	},
	model.SignalSteal: func(f []*tmwardenv1.Report) { stealOn(f[0]) },
	model.SignalOtherCPU: func(f []*tmwardenv1.Report) {
		f[0].Host.Cpu.User, f[0].Host.Cpu.Idle = 0.9, 0.086
		f[0].Histograms[0].SumMicroseconds = 1000 * 2000
	},
	model.SignalPSICPU: func(f []*tmwardenv1.Report) {
		f[0].Host.Pressure.Cpu.SomeShare = 0.6
		stealOn(f[0])
	},
	model.SignalDiskAwait:    func(f []*tmwardenv1.Report) { f[0].Host.Disks[0].AwaitMs = 200 },
	model.SignalIOWait:       func(f []*tmwardenv1.Report) { f[0].Host.Cpu.Iowait, f[0].Host.Cpu.Idle = 0.3, 0.389 },
	model.SignalPSIIO:        func(f []*tmwardenv1.Report) { f[0].Host.Pressure.Io.SomeShare = 0.6 },
	model.SignalRetransRate:  func(f []*tmwardenv1.Report) { f[0].Host.Tcp.RetransmitsPerSecond = 400 },
	model.SignalRetransRatio: func(f []*tmwardenv1.Report) { f[0].Host.Tcp.OutSegmentsPerSecond = 10 },
	model.SignalInboundRetrans: func(f []*tmwardenv1.Report) {
		// Every other node retransmits to node-0's TaskManager: 500 segments in 5 s each.
		for _, r := range f[1:] {
			r.Retransmits = append(r.Retransmits, &tmwardenv1.TcpRetransmits{RemoteAddress: "10.0.0.0:6121", Retransmits: 500})
		}
	},
	model.SignalMajorFaults: func(f []*tmwardenv1.Report) { f[0].Host.Memory.MajorFaultsPerSecond = 5000 },
	model.SignalSwapIn:      func(f []*tmwardenv1.Report) { f[0].Host.Memory.SwapInPagesPerSecond = 2000 },
	model.SignalPSIMemory:   func(f []*tmwardenv1.Report) { f[0].Host.Pressure.Memory.SomeShare = 0.5 },
}

func stealOn(r *tmwardenv1.Report) { r.Host.Cpu.Steal, r.Host.Cpu.Idle = 0.3, 0.387 }

// hostRound digests a fleet of six quiet nodes, edited by raise, and evaluates one round.
func hostRound(raise func([]*tmwardenv1.Report)) Round {
	fleet := make([]*tmwardenv1.Report, 6)
	for n := range fleet {
		fleet[n] = quietHostReport(n)
	}
	if raise != nil {
		raise(fleet)
	}
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	for n, r := range fleet {
		m.Observe(node(n), t0, r)
	}
	v := m.View()
	defer v.Release()
	return NewPeer(DefaultPeerConfig()).Evaluate(v, t0)
}

// TestEveryHostSignalIsDigestedAndCompared walks model.HostSignals: each row, raised in one
// node's report among quiet peers, must come out of the model and the detector as evidence
// naming it, with the node's value above the peers' median. A row whose value is never derived
// from the report, or that detection does not compare, fails here; a new row needs a way to
// raise it in raiseHost.
func TestEveryHostSignalIsDigestedAndCompared(t *testing.T) {
	if r := hostRound(nil); len(r.Findings) > 0 || len(r.Verdicts) > 0 {
		t.Fatalf("the quiet fleet must show nothing, got findings %+v verdicts %+v", r.Findings, r.Verdicts)
	}
	for i, row := range model.HostSignals {
		sig := model.Signal(i)
		t.Run(row.Name, func(t *testing.T) {
			raise, ok := raiseHost[sig]
			if !ok {
				t.Fatalf("no way to raise %s in a report: add it to raiseHost", row.Name)
			}
			r := hostRound(raise)
			f, ok := finding(r, node(0), FindingHostOnly)
			if !ok {
				t.Fatalf("raising %s on %s gave no host finding: %+v", row.Name, node(0), r.Findings)
			}
			i := slices.IndexFunc(f.Evidence, func(ev Evidence) bool { return ev.Signal == row.Name })
			if i < 0 {
				t.Fatalf("raising %s gave evidence without it: %+v", row.Name, f.Evidence)
			}
			if ev := f.Evidence[i]; ev.Kind != "host" || ev.Value <= ev.PeerMedian+row.Floor || ev.Value <= row.Ratio*ev.PeerMedian {
				t.Fatalf("evidence for %s is not above the peers by the row's floor and ratio: %+v", row.Name, ev)
			}
			for n := 1; n < 6; n++ {
				if f, ok := finding(r, node(n), FindingHostOnly); ok {
					t.Fatalf("raising %s on %s also flagged %s: %+v", row.Name, node(0), node(n), f)
				}
			}
		})
	}
}

// TestEveryHostSignalHasACause: the resource of every row names a cause.
func TestEveryHostSignalHasACause(t *testing.T) {
	for _, row := range model.HostSignals {
		if int(row.Resource) >= len(resourceCause) || resourceCause[row.Resource] == "" {
			t.Errorf("%s: resource %d names no cause in resourceCause", row.Name, row.Resource)
		}
	}
}
