package topology_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

// The topology keeps every subtask of the fleet, and what the coordinator's heap holds counts
// about twice in its RSS (the garbage collector lets the heap grow to twice what is live). At
// fleet scale (make bench-scale, 10,000 nodes x 20 subtasks) it was the largest part of the live
// heap. This holds the heap one subtask costs, with the reports make bench-scale sends (one
// TaskManager of 20 subtasks per node, four jobs of five vertices), under 580 bytes: it was 658
// while each placement was kept as a whole Placement and the node's key lists grew by append.
func TestHeapPerSubtask(t *testing.T) {
	const nodes, subtasks = 2000, 20
	names := make([]string, nodes)
	reports := make([]*tmwardenv1.Report, nodes)
	for i := range nodes {
		names[i] = fmt.Sprintf("node-%05d", i)
		tm := &tmwardenv1.TaskManager{ResourceId: names[i] + "-tm", Host: names[i]}
		for s := range subtasks {
			job, vertex := s%4, (s/4)%5
			tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{JobId: fmt.Sprintf("job%02d", job),
				VertexId: fmt.Sprintf("job%02d-v%d", job, vertex), SubtaskIndex: int32(i)})
		}
		reports[i] = &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{tm}}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	top := topology.New(topology.Options{})
	at := time.Unix(1_000_000, 0)
	var placed []bool
	for i := range 3 * nodes { // every node's first report, then two that confirm it
		at = at.Add(time.Millisecond)
		placed = top.Place(names[i%nodes], reports[i%nodes], at, placed[:0])
	}
	placed = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(top)
	runtime.KeepAlive(reports)
	perSubtask := float64(after.HeapAlloc-before.HeapAlloc) / (nodes * subtasks)
	t.Logf("%.0f bytes of heap per subtask", perSubtask)
	if perSubtask > 580 {
		t.Errorf("the topology holds %.0f bytes of heap per subtask, want at most 580", perSubtask)
	}
}
