package runner

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tmwarden/tmwarden/sim/scenario"
)

// TestScenarioGlob scores the scenario files TMWARDEN_SCENARIOS names (a glob) with the model
// alone, and prints the table: for exploring a detector change on a few scenarios quickly.
func TestScenarioGlob(t *testing.T) {
	glob := os.Getenv("TMWARDEN_SCENARIOS")
	if glob == "" {
		t.Skip("set TMWARDEN_SCENARIOS to a glob of scenario files")
	}
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("glob %q: %v (%d files)", glob, err, len(files))
	}
	var scs []*scenario.Scenario
	for _, f := range files {
		sc, err := scenario.LoadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		scs = append(scs, sc)
	}
	res, err := RunAll(context.Background(), scs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res.WriteTable(os.Stdout)
}
