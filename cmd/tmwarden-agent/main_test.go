package main

import "testing"

func TestAgentRunsOnOneProcUnlessGOMAXPROCSSaysOtherwise(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if got := maxProcs(getenv); got != 1 {
		t.Errorf("without GOMAXPROCS: %d, want 1", got)
	}
	env["GOMAXPROCS"] = "4"
	if got := maxProcs(getenv); got != 0 {
		t.Errorf("with GOMAXPROCS=4: %d, want 0 (the runtime's reading of the variable)", got)
	}
}
