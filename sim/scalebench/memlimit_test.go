package main

import "testing"

func TestSizedMemoryLimit(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		chart int64
		nodes int
		want  int64
	}{
		{2 * gib, 1_000, 2 * gib},
		{2 * gib, 10_000, 2 * gib},
		{2 * gib, 30_000, 6 * gib},
		{2 * gib, 12_000, 3 * gib}, // 2.4 GiB, rounded up
		{1536 << 20, 20_000, 3 * gib},
	} {
		if got := sizedMemoryLimit(tc.chart, tc.nodes); got != tc.want {
			t.Errorf("chart %d MiB, %d nodes: %d MiB, want %d MiB", tc.chart>>20, tc.nodes, got>>20, tc.want>>20)
		}
	}
}

func TestChartMemoryLimitAsItShips(t *testing.T) {
	b, err := chartMemoryLimit("../../packaging/helm/tmwarden/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b <= 0 {
		t.Fatalf("the chart's coordinator memory limit is %d bytes", b)
	}
}
