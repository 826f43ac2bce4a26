package localstate

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tmwarden/tmwarden/telemetry"
)

// meterFor returns a gateway option recording into a manual reader, and a function reading
// back every int64 point as metric name -> attribute value ("result" or "source", "" for none).
func meterFor(t *testing.T) (Option, func() map[string]map[string]int64) {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	read := func() map[string]map[string]int64 {
		var rm metricdata.ResourceMetrics
		if err := r.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				var pts []metricdata.DataPoint[int64]
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					pts = d.DataPoints
				case metricdata.Gauge[int64]:
					pts = d.DataPoints
				}
				for _, p := range pts {
					v, _ := p.Attributes.Value(attribute.Key("result"))
					if v.AsString() == "" {
						v, _ = p.Attributes.Value(attribute.Key("source"))
					}
					if out[m.Name] == nil {
						out[m.Name] = map[string]int64{}
					}
					out[m.Name][v.AsString()] = p.Value
				}
			}
		}
		return out
	}
	return WithMeter(mp.Meter("test")), read
}

// TestCacheMetricsCountReadsAndBytes reads an object through the gateway twice: a miss loaded
// from the upstream, then a hit from disk; the request and served-bytes counters say so, byte
// for byte.
func TestCacheMetricsCountReadsAndBytes(t *testing.T) {
	up := startUpstream(t, 0)
	opt, read := meterFor(t)
	_, c := startGateway(t, testConfig(t, up), opt)
	data := randomBytes(t, 3<<20+17)
	key := ckptKey("metrics/sst-1")
	putObject(t, up.client, key, data)

	if got := getObject(t, c, key, ""); len(got) != len(data) {
		t.Fatalf("first read: %d bytes", len(got))
	}
	m := read()
	if got := m[telemetry.MetricCacheRequests]; got[resultMiss] != 1 || got[resultHit] != 0 {
		t.Fatalf("after a first read: requests %v, want one miss", got)
	}
	if got := m[telemetry.MetricCacheBytesServed]; got[sourceUpstream] != int64(len(data)) || got[sourceLocal] != 0 {
		t.Fatalf("after a first read: served %v, want %d bytes from the upstream", got, len(data))
	}
	// The fill may still be committing after the last byte went out.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := getObject(t, c, key, "bytes=0-1023"); len(got) != 1024 {
			t.Fatalf("ranged read: %d bytes", len(got))
		}
		if read()[telemetry.MetricCacheRequests][resultHit] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no hit after the object was loaded: %v", read())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The server counts served bytes as its handler's copy returns, which can be after the
	// client has the last byte: wait for the count rather than read it once.
	m = read()
	for m[telemetry.MetricCacheBytesServed][sourceLocal] < 1024 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		m = read()
	}
	req := m[telemetry.MetricCacheRequests]
	if req[resultHit] != 1 {
		t.Fatalf("requests %v, want exactly one hit", req)
	}
	served := m[telemetry.MetricCacheBytesServed]
	if served[sourceLocal] != 1024 || served[sourceUpstream] != int64(len(data))+1024*(req[resultPartial]) {
		t.Fatalf("served %v after %v, want 1024 local bytes and the first read's from the upstream", served, req)
	}
	if _, ok := m[telemetry.MetricPrefetchPending]; !ok {
		t.Fatalf("no %s series: %v", telemetry.MetricPrefetchPending, m)
	}
}

// TestCacheMetricsFollowPrefetches: a prefetch from a slow upstream shows its bytes as pending
// while it runs, a read of the object meanwhile is a partial one, and at the end the fetched
// counter has every byte and nothing is pending. A second gateway then prefetches the same
// objects from the first one's gateway: fetched from the peer, served from the first's disk.
func TestCacheMetricsFollowPrefetches(t *testing.T) {
	const rate = 2 << 20
	up := startUpstream(t, rate)
	optA, readA := meterFor(t)
	cfgA := testConfig(t, up)
	cfgA.FetchChunkBytes = 512 << 10
	cfgA.Peer = PeerConfig{AccessKey: peerAccess, SecretKey: peerSecret}
	a, ca := startGateway(t, cfgA, optA)
	big := randomBytes(t, 6<<20) // three seconds at the upstream's rate
	small := randomBytes(t, 64<<10)
	keys := []string{ckptKey("chk-3/big"), ckptKey("chk-3/small")}
	putObject(t, up.client, keys[0], big)
	putObject(t, up.client, keys[1], small)
	total := int64(len(big) + len(small))

	id := a.StartPrefetch(PrefetchRequest{Bucket: testBucket, Prefix: ckptKey("chk-3/")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := a.fills.running(testBucket, keys[0]); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prefetch never started loading the big object")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pending := readA()[telemetry.MetricPrefetchPending][""]
	if pending <= 0 || pending > total {
		t.Fatalf("pending %d bytes while the prefetch runs, want between 1 and %d", pending, total)
	}
	if got := getObject(t, ca, keys[0], ""); len(got) != len(big) {
		t.Fatalf("read during the prefetch: %d bytes", len(got))
	}
	for {
		st, _ := a.PrefetchStatusOf(id)
		if st.State == "succeeded" {
			break
		}
		if st.State == "failed" || time.Now().After(deadline.Add(30*time.Second)) {
			t.Fatalf("prefetch: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := readA()
	if got := m[telemetry.MetricCacheRequests]; got[resultPartial] != 1 || got[resultMiss] != 0 {
		t.Fatalf("requests %v: the read joined the prefetch's load, want one partial", got)
	}
	if got := m[telemetry.MetricPrefetchBytes]; got[sourceUpstream] != total || got[sourcePeer] != 0 {
		t.Fatalf("prefetch fetched %v, want %d bytes from the upstream", got, total)
	}
	if got := m[telemetry.MetricPrefetchPending][""]; got != 0 {
		t.Fatalf("%d bytes still pending after the prefetch succeeded", got)
	}
	if got := m[telemetry.MetricCacheBytesServed][sourceUpstream]; got != int64(len(big)) {
		t.Fatalf("served %d bytes of the loading object, want %d", got, len(big))
	}

	optB, readB := meterFor(t)
	cfgB := testConfig(t, up)
	cfgB.Peer = cfgA.Peer
	b, _ := startGateway(t, cfgB, optB)
	localBefore := readA()[telemetry.MetricCacheBytesServed][sourceLocal]
	if st, err := b.Prefetch(context.Background(), PrefetchRequest{Bucket: testBucket, Keys: keys, SourcePeer: a.Addr()}, nil); err != nil || st.State != "succeeded" {
		t.Fatalf("peer prefetch: %v %+v", err, st)
	}
	if got := readB()[telemetry.MetricPrefetchBytes]; got[sourcePeer] != total || got[sourceUpstream] != 0 {
		t.Fatalf("B fetched %v, want %d bytes from the peer", got, total)
	}
	// A counts a hit's bytes when its sendfile returns, which can be after B has them all.
	servedA := func() int64 { return readA()[telemetry.MetricCacheBytesServed][sourceLocal] - localBefore }
	for wait := time.Now().Add(30 * time.Second); servedA() < total && time.Now().Before(wait); {
		time.Sleep(20 * time.Millisecond)
	}
	if got := servedA(); got != total {
		t.Fatalf("A served %d bytes from its disk to the peer, want %d", got, total)
	}
	// Prefetching what is cached fetches nothing more.
	if _, err := b.Prefetch(context.Background(), PrefetchRequest{Bucket: testBucket, Keys: keys, SourcePeer: a.Addr()}, nil); err != nil {
		t.Fatal(err)
	}
	if got := readB()[telemetry.MetricPrefetchBytes][sourcePeer]; got != total {
		t.Fatalf("B fetched %d bytes after a second prefetch of cached objects, want still %d", got, total)
	}
}
