package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func runSim(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newSimCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestSimRunJSON(t *testing.T) {
	file := filepath.Join("..", "..", "sim", "scenarios", "cpu-contention-10.yaml")
	out, err := runSim(t, "run", "--scenario", file, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Scenarios []struct {
			Name      string  `json:"name"`
			Nodes     int     `json:"nodes"`
			DurationS float64 `json:"duration_s"`
			Detectors []struct {
				Name      string  `json:"name"`
				Precision float64 `json:"precision"`
				Recall    float64 `json:"recall"`
			} `json:"detectors"`
		} `json:"scenarios"`
		Totals struct {
			Detectors []struct {
				Name string `json:"name"`
			} `json:"detectors"`
		} `json:"totals"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if len(res.Scenarios) != 1 || res.Scenarios[0].Name != "cpu-contention-10" || res.Scenarios[0].Nodes != 10 || res.Scenarios[0].DurationS != 1800 {
		t.Fatalf("scenario header wrong: %+v", res.Scenarios)
	}
	if d := res.Scenarios[0].Detectors; len(d) != 3 || d[0].Name != "tmwarden" || d[0].Recall != 1 || d[0].Precision != 1 {
		t.Fatalf("detectors: %+v", d)
	}
	if len(res.Totals.Detectors) != 3 {
		t.Fatalf("totals: %+v", res.Totals)
	}
}

func TestSimRunTableAndErrors(t *testing.T) {
	file := filepath.Join("..", "..", "sim", "scenarios", "gc-storm-20.yaml")
	out, err := runSim(t, "run", "--scenario", file, "--detector", "tmwarden")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "gc-storm-20") || !strings.Contains(out, "TOTAL") || strings.Contains(out, "host-threshold") {
		t.Fatalf("table:\n%s", out)
	}
	if _, err := runSim(t, "run"); err == nil || !strings.Contains(err.Error(), "exactly one of") {
		t.Fatalf("want a usage error, got %v", err)
	}
	if _, err := runSim(t, "run", "--scenario", file, "-o", "yaml"); err == nil {
		t.Fatal("want an error for -o yaml")
	}
	bad := filepath.Join("..", "..", "sim", "scenario", "testdata", "unknown-node.yaml")
	if _, err := runSim(t, "run", "--scenario", bad); err == nil || !strings.Contains(err.Error(), "line 16") {
		t.Fatalf("want the loader's error with its line, got %v", err)
	}
}
