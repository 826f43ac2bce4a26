package ebpf

// Slots is the number of log2 buckets in a kernel histogram (see include/hist.h).
const Slots = 27

// Histogram is a cumulative log2 latency histogram read from a kernel map.
// Buckets[i] counts latencies in [2^i, 2^(i+1)) microseconds; bucket 0 also holds those under
// 1 us and the last bucket everything above.
type Histogram struct {
	Buckets [Slots]uint64
	Count   uint64
	SumNs   uint64
}

// kernelHistogram builds a Histogram from a kernel map value, which leaves the count out.
func kernelHistogram(slots [Slots]uint64, sumNs uint64) Histogram {
	h := Histogram{Buckets: slots, SumNs: sumNs}
	for _, n := range slots {
		h.Count += n
	}
	return h
}

// Sub returns the events counted since prev. When a counter went backwards the entry was
// deleted and recreated in between, so everything in h is new.
func (h Histogram) Sub(prev Histogram) Histogram {
	if h.Count < prev.Count || h.SumNs < prev.SumNs {
		return h
	}
	d := Histogram{Count: h.Count - prev.Count, SumNs: h.SumNs - prev.SumNs}
	for i := range h.Buckets {
		if h.Buckets[i] < prev.Buckets[i] {
			return h
		}
		d.Buckets[i] = h.Buckets[i] - prev.Buckets[i]
	}
	return d
}

// TrimmedBuckets returns the buckets without the empty tail, as sent in the report.
func (h Histogram) TrimmedBuckets() []uint64 {
	n := len(h.Buckets)
	for n > 0 && h.Buckets[n-1] == 0 {
		n--
	}
	out := make([]uint64, n)
	copy(out, h.Buckets[:n])
	return out
}
