package detect

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The median by selection is the median by sorting, value for value: rates with ties, zeros,
// infinities and NaNs, of every length up to 64 and a few fleet-sized ones.
func TestMedianIsSortingsMedian(t *testing.T) {
	bySort := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		m := len(s) / 2
		if len(s)%2 == 1 {
			return s[m]
		}
		return (s[m-1] + s[m]) / 2
	}
	same := func(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }
	rng := rand.New(rand.NewPCG(1, 2))
	pick := []func() float64{
		func() float64 { return rng.Float64() * 1000 },
		func() float64 { return float64(rng.IntN(4)) }, // many ties
		func() float64 { return []float64{0, math.Inf(1), math.Inf(-1), math.NaN(), 1}[rng.IntN(5)] },
	}
	sizes := []int{10_000, 10_001, 30_000}
	for n := 1; n <= 64; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		for trial := range 30 {
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = pick[(trial+i*rng.IntN(2))%len(pick)]()
			}
			if trial%5 == 0 {
				slices.Sort(xs) // sorted and reversed input: the pivot's worst cases
				if trial%10 == 0 {
					slices.Reverse(xs)
				}
			}
			want := bySort(xs)
			if got := median(xs); !same(got, want) {
				t.Fatalf("n=%d trial %d: median %v, sorting gives %v", n, trial, got, want)
			}
		}
	}
	if got := median(nil); got != 0 {
		t.Fatalf("median of nothing: %v, want 0", got)
	}
}
