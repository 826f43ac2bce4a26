package detect

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/model"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

// TestPeerFleetGrowingRoundByRound: the Peer keeps its per-node evaluations from round to round
// (evalBuf); a fleet that grows by one node a round, as nodes join, must have every node
// evaluated each round. A buffer grown by its capacity rather than its length indexed past its
// end once the fleet reached a size between the two.
func TestPeerFleetGrowingRoundByRound(t *testing.T) {
	m := model.New(model.DefaultConfig(), topology.New(topology.Options{}))
	p := NewPeer(DefaultPeerConfig())
	for round := 1; round <= 20; round++ {
		at := t0.Add(time.Duration(round) * 5 * time.Second)
		for n := range round {
			name := fmt.Sprintf("node-%02d", n)
			r := &tmwardenv1.Report{Sequence: uint64(round - n), CollectedAt: timestamppb.New(at), IntervalSeconds: 5,
				Host: &tmwardenv1.HostSignals{NumCpus: 16, Cpu: &tmwardenv1.CpuShares{User: 0.3, Idle: 0.7}}}
			tm := &tmwardenv1.TaskManager{ResourceId: name + "-tm", Host: name}
			for s := range 4 {
				tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{JobId: "job", VertexId: fmt.Sprintf("v%d", s), SubtaskIndex: int32(n),
					BusyMsPerSecond: 400, RecordsInPerSecond: 1000, RecordsOutPerSecond: 1000})
			}
			r.TaskManagers = []*tmwardenv1.TaskManager{tm}
			m.Observe(name, at, r)
		}
		v := m.View()
		got := p.Evaluate(v, at)
		v.Release()
		if got.Fleet.Reporting != round {
			t.Fatalf("round %d: %d nodes reporting, want %d", round, got.Fleet.Reporting, round)
		}
	}
}
