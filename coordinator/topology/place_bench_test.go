package topology_test

import (
	"fmt"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator/topology"
)

// BenchmarkPlace is Topology.Place at fleet scale: 3,000 nodes, each one TaskManager with 20
// subtasks of its own (four jobs of five vertices, as sim/scalebench reports), reporting in turn,
// one report per op, after every node's first report. "steady" repeats every node's placements;
// "churn-1in100" has one report in a hundred fail a subtask over to a new attempt (a full-path
// report, as a failover, a node joining or a TaskManager restarting is), the others repeating
// theirs: what a change on one node costs the reports of all the others.
func BenchmarkPlace(b *testing.B) {
	const nodes, subtasks = 3000, 20
	for _, bc := range []struct {
		name  string
		every int // one report in every this many changes its node's placements; 0: none
	}{{"steady", 0}, {"churn-1in100", 100}} {
		b.Run(bc.name, func(b *testing.B) {
			top := topology.New(topology.Options{})
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
			at := time.Unix(1_000_000, 0)
			var placed []bool
			for i := range 2 * nodes {
				placed = top.Place(names[i%nodes], reports[i%nodes], at, placed[:0])
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				n := i % nodes
				if bc.every > 0 && i%bc.every == 0 {
					reports[n].TaskManagers[0].Subtasks[i%subtasks].AttemptNumber++
				}
				at = at.Add(time.Millisecond)
				placed = top.Place(names[n], reports[n], at, placed[:0])
			}
		})
	}
}

// BenchmarkResidents is Topology.Residents, which the decisions ask for each node with a verdict
// every round, at 3,000 nodes x 20 subtasks: the node's jobs and TaskManagers.
func BenchmarkResidents(b *testing.B) {
	const nodes, subtasks = 3000, 20
	top := topology.New(topology.Options{})
	at := time.Unix(1_000_000, 0)
	for i := range nodes {
		name := fmt.Sprintf("node-%05d", i)
		tm := &tmwardenv1.TaskManager{ResourceId: name + "-tm", Host: name}
		for s := range subtasks {
			job, vertex := s%4, (s/4)%5
			tm.Subtasks = append(tm.Subtasks, &tmwardenv1.SubtaskMetrics{JobId: fmt.Sprintf("job%02d", job),
				VertexId: fmt.Sprintf("job%02d-v%d", job, vertex), SubtaskIndex: int32(i)})
		}
		top.ObserveReport(name, &tmwardenv1.Report{TaskManagers: []*tmwardenv1.TaskManager{tm}}, at)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if jobs, _ := top.Residents(fmt.Sprintf("node-%05d", i%nodes)); len(jobs) != 4 {
			b.Fatalf("%d jobs, want 4", len(jobs))
		}
	}
}
