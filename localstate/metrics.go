package localstate

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/tmwarden/tmwarden/telemetry"
)

// Option configures a Gateway beyond its Config.
type Option func(*Gateway)

// WithMeter records the gateway's own metrics (reads, bytes served, prefetch progress) with m.
// Without it they are not recorded; the cache's size and hit ratio go out with the agent's
// report either way (telemetry.RegisterReportMetrics).
func WithMeter(m metric.Meter) Option { return func(g *Gateway) { g.meter = m } }

// Read results and byte sources, as recorded in the result and source attributes.
const (
	resultHit     = "hit"     // served from the cache's disk
	resultMiss    = "miss"    // not cached: this read started loading it
	resultPartial = "partial" // being loaded already (a prefetch or another read): served as it lands

	sourceLocal    = "local"
	sourceUpstream = "upstream"
	sourcePeer     = "peer"
)

// cacheMetrics are recorded where the work happens: a read when it is answered, bytes as the
// client takes them, prefetched bytes as they land. pending is what the pending gauge reports.
type cacheMetrics struct {
	requests, served, prefetched metric.Int64Counter
	pending                      atomic.Int64
	reg                          metric.Registration

	results map[string]metric.AddOption // result attribute sets, built once
	sources map[string]metric.AddOption // source attribute sets, built once
}

func (g *Gateway) initMetrics() error {
	m := g.meter
	if m == nil {
		m = noop.NewMeterProvider().Meter("")
	}
	cm := &g.metrics
	cm.results, cm.sources = map[string]metric.AddOption{}, map[string]metric.AddOption{}
	for _, r := range []string{resultHit, resultMiss, resultPartial} {
		cm.results[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))
	}
	for _, s := range []string{sourceLocal, sourceUpstream, sourcePeer} {
		cm.sources[s] = metric.WithAttributeSet(attribute.NewSet(attribute.String("source", s)))
	}
	var errs [5]error
	cm.requests, errs[0] = m.Int64Counter(telemetry.MetricCacheRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Gateway reads by result: hit (from disk), miss (loading started by this read), partial (joined a load under way)."))
	cm.served, errs[1] = m.Int64Counter(telemetry.MetricCacheBytesServed, metric.WithUnit("By"),
		metric.WithDescription("Bytes the gateway served to readers, by where they came from: local disk, the upstream, a peer's gateway."))
	cm.prefetched, errs[2] = m.Int64Counter(telemetry.MetricPrefetchBytes, metric.WithUnit("By"),
		metric.WithDescription("Bytes prefetches fetched into the cache, by source (peer or upstream)."))
	var pending metric.Int64ObservableGauge
	pending, errs[3] = m.Int64ObservableGauge(telemetry.MetricPrefetchPending, metric.WithUnit("By"),
		metric.WithDescription("Bytes running prefetches still have to fetch."))
	if errs[3] == nil {
		cm.reg, errs[4] = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveInt64(pending, max(cm.pending.Load(), 0))
			return nil
		}, pending)
	}
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("state cache metrics: %w", err)
	}
	return nil
}

func (cm *cacheMetrics) request(result string) {
	cm.requests.Add(context.Background(), 1, cm.results[result])
}

// servedBy returns what counts n bytes served from source.
func (cm *cacheMetrics) servedBy(source string) func(int64) {
	opt := cm.sources[source]
	return func(n int64) {
		if n > 0 {
			cm.served.Add(context.Background(), n, opt)
		}
	}
}

func (cm *cacheMetrics) fetched(source string, n int64) {
	if n > 0 {
		cm.prefetched.Add(context.Background(), n, cm.sources[source])
	}
}

func (cm *cacheMetrics) close() {
	if cm.reg != nil {
		_ = cm.reg.Unregister()
	}
}

// sourceOf names where a client's bytes come from: the upstream or a peer's gateway.
func (g *Gateway) sourceOf(c *s3.Client) string {
	if c == g.upstream {
		return sourceUpstream
	}
	return sourcePeer
}
