//go:build !race

package runner

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tmwarden/tmwarden/sim/scenario"
)

// TestCoordinatorPathScoresLikeTheModelPath replays small scenarios (a node fault, skew beside
// a fault, agents restarting) through a whole coordinator: its detector must score as the
// model-only replay does, and its decision engine must decide migrations only for truly slow
// nodes. Left out of race builds like TestAllPublicScenarios: under the race detector it took
// 440 s at load 16, 4.6 s without at load 11; the coordinator's own packages are raced in theirs.
func TestCoordinatorPathScoresLikeTheModelPath(t *testing.T) {
	for _, name := range []string{"cpu-contention-10.yaml", "skew-plus-disk-10.yaml", "steal-after-restart-10.yaml"} {
		t.Run(name, func(t *testing.T) {
			sc, err := scenario.LoadFile(filepath.Join("..", "scenarios", name))
			if err != nil {
				t.Skipf("scenario %s not shipped: %v", name, err)
			}
			direct, err := Run(context.Background(), sc, Options{Detectors: []string{"tmwarden"}})
			if err != nil {
				t.Fatal(err)
			}
			through, err := Run(context.Background(), sc, Options{Detectors: []string{"tmwarden"}, ThroughCoordinator: true})
			if err != nil {
				t.Fatal(err)
			}
			d, c := direct.Detectors[0], through.Detectors[0]
			if d.Precision != c.Precision || d.Recall != c.Recall || d.TTDMedianS != c.TTDMedianS {
				t.Errorf("model path %+v, coordinator path %+v: want the same detection scores", d, c)
			}
			if c.FalseMigrations != 0 {
				t.Errorf("the coordinator's decision engine decided %d migrations for nodes that were not slow", c.FalseMigrations)
			}
		})
	}
}
