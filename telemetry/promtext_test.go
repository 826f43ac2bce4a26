package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// promTextPair is promText beside what it replaced (promhttp over the OTel exporter and the
// runtime's registry), both reading one MeterProvider.
type promTextPair struct {
	mp             *sdkmetric.MeterProvider
	fast, exporter http.Handler
}

func newPromTextPair(t *testing.T) promTextPair {
	t.Helper()
	// A fixed stand-in for the Go runtime's collectors (whose figures move between two
	// scrapes), named to sort before, between and after the OTel families.
	runtimeReg := prometheus.NewRegistry()
	for _, name := range []string{"aaa_runtime", "system_aaa", "zzz_runtime"} {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "runtime stand-in"})
		g.Set(3)
		runtimeReg.MustRegister(g)
	}
	otelReg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(otelReg))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "tmwarden-test"), attribute.String("host.name", "n\"1\\"),
		attribute.Int("k8s.x", 3))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	fallback := promhttp.HandlerFor(prometheus.Gatherers{runtimeReg, otelReg}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return promTextPair{mp: mp, fast: newPromText(exp, runtimeReg, fallback), exporter: fallback}
}

func scrape(t *testing.T, h http.Handler, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header = header
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestPromTextMatchesTheExporter holds /metrics in the text format to what the OTel Prometheus
// exporter served through promhttp: the same bytes and headers for every kind of instrument
// the processes record, label names the exporter must translate or merge, values that need
// escaping, two scopes sharing a name, and series that come and go between scrapes.
func TestPromTextMatchesTheExporter(t *testing.T) {
	p := newPromTextPair(t)
	ctx := context.Background()
	agent := p.mp.Meter("github.com/tmwarden/tmwarden/agent")
	other := p.mp.Meter("other/scope", metric.WithInstrumentationVersion("v1.2"), metric.WithSchemaURL("https://example.com/s"),
		metric.WithInstrumentationAttributes(attribute.String("team", "a b"), attribute.String("name", "reserved")))

	bytesSent, _ := agent.Int64Counter("tmwarden.bytes", metric.WithUnit("By"), metric.WithDescription("bytes\nsent \\ here"))
	cpu, _ := agent.Float64Counter("tmwarden.collector.cpu_time", metric.WithUnit("s"))
	pending, _ := agent.Int64UpDownCounter("tmwarden.pending", metric.WithUnit("{report}"))
	dur, _ := agent.Float64Histogram("tmwarden.collector.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.001, 0.01, 0.5, 1, 10))
	intHist, _ := other.Int64Histogram("tmwarden.sizes", metric.WithUnit("By"))
	ratio, _ := agent.Int64Gauge("tmwarden.share", metric.WithUnit("1"))
	// The same help: with two, the exporter keeps the first it sees, and the SDK hands the
	// scopes over in no fixed order.
	shared, _ := other.Float64Counter("tmwarden.bytes", metric.WithUnit("By"), metric.WithDescription("bytes\nsent \\ here"))
	var round int
	_, _ = agent.Float64ObservableGauge("system.cpu.utilization", metric.WithUnit("1"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(0.25, metric.WithAttributes(attribute.String("cpu.mode", "idle")))
			o.Observe(1e-7, metric.WithAttributes(attribute.String("cpu.mode", "user")))
			if round%2 == 0 { // a series that comes and goes
				o.Observe(123456789, metric.WithAttributes(attribute.String("cpu.mode", "steal")))
			}
			return nil
		}))
	_, _ = other.Int64ObservableGauge("tmwarden.nothing")

	for round = range 4 {
		bytesSent.Add(ctx, int64(100*round+1), metric.WithAttributes(attribute.String("peer", `q"uo\te`+"\nx"), attribute.Bool("ok", true)))
		bytesSent.Add(ctx, 7, metric.WithAttributes(attribute.String("peer", "a b"), attribute.Bool("ok", false)))
		bytesSent.Add(ctx, 7, metric.WithAttributes(attribute.String("peer", "a"), attribute.Bool("ok", false)))
		cpu.Add(ctx, 0.1*float64(round+1), metric.WithAttributes(attribute.String("collector", "flink")))
		cpu.Add(ctx, 0, metric.WithAttributes(attribute.String("collector", "host")))
		pending.Add(ctx, int64(round-2))
		for _, v := range []float64{0.0005, 0.003, 0.7, 20, float64(round)} {
			dur.Record(ctx, v, metric.WithAttributes(attribute.String("collector", "flink"), attribute.Int("round", round)))
		}
		intHist.Record(ctx, int64(1000*round), metric.WithAttributes(attribute.String("a.b", "1"), attribute.String("a_b", "0"),
			attribute.StringSlice("list", []string{"x", "y"})))
		ratio.Record(ctx, -1, metric.WithAttributes(attribute.Float64("f", 1.5)))
		shared.Add(ctx, 2.5)

		for _, accept := range []string{"", "text/plain", "*/*", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"} {
			for _, enc := range []string{"", "gzip", "gzip;q=0.5, identity", "*", "gzip;q=0"} {
				h := http.Header{}
				if accept != "" {
					h.Set("Accept", accept)
				}
				if enc != "" {
					h.Set("Accept-Encoding", enc)
				}
				wantResp, want := scrape(t, p.exporter, h)
				gotResp, got := scrape(t, p.fast, h)
				if got != want {
					t.Fatalf("round %d, Accept %q, Accept-Encoding %q: promText wrote\n%s\nthe exporter\n%s", round, accept, enc, got, want)
				}
				for _, k := range []string{"Content-Type", "Content-Encoding", "Vary"} {
					if g, w := gotResp.Header.Values(k), wantResp.Header.Values(k); strings.Join(g, "|") != strings.Join(w, "|") {
						t.Errorf("round %d, Accept %q, Accept-Encoding %q: %s %q, the exporter's %q", round, accept, enc, k, g, w)
					}
				}
			}
		}
	}
	_, body := scrape(t, p.fast, nil)
	for _, want := range []string{"# HELP target_info Target metadata", `tmwarden_collector_duration_seconds_bucket{collector="flink",`,
		`a_b="0;1"`, `list="[\"x\",\"y\"]"`, "aaa_runtime 3", "zzz_runtime 3"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestPromTextLeavesOtherFormatsToTheExporter: a scraper asking for the protobuf format (for
// native histograms) gets it from promhttp, as before.
func TestPromTextLeavesOtherFormatsToTheExporter(t *testing.T) {
	p := newPromTextPair(t)
	c, _ := p.mp.Meter("m").Int64Counter("requests")
	c.Add(context.Background(), 1)
	h := http.Header{}
	h.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3")
	resp, body := scrape(t, p.fast, h)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/vnd.google.protobuf") {
		t.Fatalf("Content-Type %q, want the protobuf format", ct)
	}
	_, want := scrape(t, p.exporter, h)
	if body != want {
		t.Fatalf("protobuf body differs from promhttp's")
	}
}

// BenchmarkMetricsHandler serves /metrics (text format) for a set shaped like the agent's
// (9 collectors' histograms, states and counters, ~300 OTel series), through promText and
// through promhttp over the OTel exporter, side by side. Measured: see the commit message.
func BenchmarkMetricsHandler(b *testing.B) {
	t := &testing.T{}
	p := newPromTextPair(t)
	ctx := context.Background()
	m := p.mp.Meter("github.com/tmwarden/tmwarden/agent")
	dur, _ := m.Float64Histogram("tmwarden.collector.duration", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	cpu, _ := m.Float64Counter("tmwarden.collector.cpu_time", metric.WithUnit("s"))
	state, _ := m.Int64Gauge("tmwarden.collector.state")
	for c := range 9 {
		col := attribute.String("collector", "c"+string(rune('a'+c)))
		dur.Record(ctx, 0.003*float64(c), metric.WithAttributes(col))
		cpu.Add(ctx, 0.001, metric.WithAttributes(col))
		for s := range 4 {
			state.Record(ctx, int64(s%2), metric.WithAttributes(col, attribute.Int("state", s)))
		}
	}
	_, _ = m.Float64ObservableGauge("system.network.io", metric.WithUnit("By"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			for i := range 100 {
				o.Observe(float64(i)*1e6, metric.WithAttributes(attribute.Int("device", i), attribute.String("direction", "receive")))
			}
			return nil
		}))
	for _, h := range []struct {
		name string
		h    http.Handler
	}{{"promText", p.fast}, {"exporter", p.exporter}} {
		b.Run(h.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.h.ServeHTTP(rec, req)
			}
		})
	}
}

// TestPromTextAfterShutdown: once the meter provider is shut down, /metrics serves what the
// exporter served then (the runtime's families only), not the last OTel figures.
func TestPromTextAfterShutdown(t *testing.T) {
	p := newPromTextPair(t)
	c, _ := p.mp.Meter("m").Int64Counter("requests")
	c.Add(context.Background(), 1)
	if _, body := scrape(t, p.fast, nil); !strings.Contains(body, "requests_total") {
		t.Fatalf("before shutdown /metrics lacks requests_total:\n%s", body)
	}
	if err := p.mp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, got := scrape(t, p.fast, nil)
	_, want := scrape(t, p.exporter, nil)
	if got != want || strings.Contains(got, "requests_total") {
		t.Fatalf("after shutdown promText wrote\n%s\nthe exporter\n%s", got, want)
	}
}
