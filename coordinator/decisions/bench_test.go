package decisions

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/decide"
	"github.com/tmwarden/tmwarden/coordinator/detect"
	"github.com/tmwarden/tmwarden/coordinator/store"
)

// BenchmarkRound10k measures one durable decision round over 10,000 nodes, five of them slow
// with evidence, including the fsynced snapshot of the policy's memory.
func BenchmarkRound10k(b *testing.B) {
	st, err := store.Open(filepath.Join(b.TempDir(), "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	m, err := New(st, testConfig(decide.DryRun), nil)
	if err != nil {
		b.Fatal(err)
	}
	reach := map[string]bool{}
	for i := range 10000 {
		reach[fmt.Sprintf("node-%05d", i)] = true
	}
	var obs []decide.Observation
	for i := range 5 {
		ev := make([]detect.Evidence, 8)
		for j := range ev {
			ev[j] = detect.Evidence{Kind: "subtask", JobID: "job", VertexName: "v", Subtask: j, TPR: 100, PeerMedianTPR: 400, Slowdown: 4}
		}
		obs = append(obs, decide.Observation{Node: fmt.Sprintf("node-%05d", i*1000), Slow: true, Score: 4, Evidence: ev, Jobs: []string{fmt.Sprintf("job%d", i)}})
	}
	now := t0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(5 * time.Second)
		if _, err := m.Round(now, obs, reach); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	snap := m.pol.Snapshot()
	b.ReportMetric(float64(len(snap.Nodes)), "nodes")
}
