package telemetry

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// promText serves /metrics in the Prometheus text format straight from the OTel SDK's reader,
// byte for byte what the OTel Prometheus exporter served through client_golang's registry
// (TestPromTextMatchesTheExporter holds it to that). The exporter builds a Desc and a const
// metric per data point on every scrape (name validation, label sorting, hashing), the registry
// then checks and sorts them, and expfmt escapes every label value again: for the agent's ~450
// lines that was a third of its CPU outside the Flink scrape (make bench-node). Here each
// series' label text is rendered once, when the series first appears, and a scrape only
// appends values. The SDK stays the metrics API, and the exporter stays registered for the
// formats this does not write (protobuf, when a scraper asks for native histograms): both read
// the same ManualReader.
type promText struct {
	reader   sdkmetric.Reader
	runtime  prometheus.Gatherer // the Go runtime and process collectors
	fallback http.Handler        // promhttp over the exporter and runtime, for the other formats
	metric   otlptranslator.MetricNamer
	label    otlptranslator.LabelNamer

	mu     sync.Mutex
	rm     metricdata.ResourceMetrics
	buf    bytes.Buffer
	target []byte                    // the target_info family, rendered on the first scrape
	names  map[nameKey]string        // OTel name, unit and kind to the Prometheus name
	meta   map[string]familyMeta     // the first type and help seen per name, as the exporter keeps
	series map[seriesKey]*seriesText // rendered label text, dropped when a scrape lacks the series
	fams   map[string]*textFamily
	order  []string
	gen    uint64
	gz     *gzip.Writer
}

type nameKey struct {
	name, unit string
	kind       otlptranslator.MetricType
}

type familyMeta struct {
	typ  string
	help string
}

type seriesKey struct {
	scope instrumentation.Scope
	name  string
	attrs attribute.Distinct
}

// seriesText is one series' rendered text up to its value: "name{labels} ", and for a
// histogram one such prefix per bucket line and for _sum and _count.
type seriesText struct {
	gen     uint64
	values  []string // label values in label-name order: the registry sorts series by them
	prefix  []byte
	buckets [][]byte
	bounds  []float64
	sum     []byte
	count   []byte
}

type textFamily struct {
	gen    uint64 // the last scrape that had the family
	meta   familyMeta
	points []textPoint
}

type textPoint struct {
	s     *seriesText
	value float64
	hist  *histPoint
}

type histPoint struct {
	counts []uint64
	sum    float64
	count  uint64
}

func newPromText(reader sdkmetric.Reader, runtime prometheus.Gatherer, fallback http.Handler) *promText {
	return &promText{
		reader: reader, runtime: runtime, fallback: fallback,
		// The exporter's defaults (otelprom.New without translation options).
		metric: otlptranslator.NewMetricNamer("", otlptranslator.UnderscoreEscapingWithSuffixes),
		label:  otlptranslator.LabelNamer{UTF8Allowed: false},
		names:  map[nameKey]string{}, meta: map[string]familyMeta{}, series: map[seriesKey]*seriesText{},
		fams: map[string]*textFamily{},
	}
}

func (p *promText) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultAcceptedFormats()...)
	if format.FormatType() != expfmt.TypeTextPlain {
		p.fallback.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Reset()
	p.render(r.Context(), &p.buf)
	h := w.Header()
	h.Add("Vary", "Accept")
	h.Add("Vary", "Accept-Encoding")
	h.Set("Content-Type", string(format))
	if contentEncoding(r.Header) == "gzip" {
		h.Set("Content-Encoding", "gzip")
		if p.gz == nil {
			p.gz = gzip.NewWriter(w)
		} else {
			p.gz.Reset(w)
		}
		_, _ = p.gz.Write(p.buf.Bytes())
		_ = p.gz.Close()
		return
	}
	h.Set("Content-Length", strconv.Itoa(p.buf.Len()))
	_, _ = w.Write(p.buf.Bytes())
}

// contentEncoding picks identity or gzip from Accept-Encoding as promhttp does (its offers in
// its order, the highest q winning, an earlier offer on a tie).
func contentEncoding(h http.Header) string {
	best, bestQ := "identity", -1.0
	for _, offer := range []string{"identity", "gzip"} {
		for _, line := range h.Values("Accept-Encoding") {
			for part := range strings.SplitSeq(line, ",") {
				value, params, _ := strings.Cut(part, ";")
				value = strings.ToLower(strings.TrimSpace(value))
				q := 1.0
				if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
					if f, err := strconv.ParseFloat(v, 64); err == nil {
						q = f
					}
				}
				if q > bestQ && (value == "*" || value == offer) {
					best, bestQ = offer, q
				}
			}
		}
	}
	if bestQ == 0 {
		return "identity"
	}
	return best
}

const bridgeScopeName = "go.opentelemetry.io/contrib/bridges/prometheus"

// render writes every family, sorted by name as the registry sorts them.
func (p *promText) render(ctx context.Context, out *bytes.Buffer) {
	p.gen++
	for _, f := range p.fams {
		f.points = f.points[:0]
	}
	p.order = p.order[:0]
	otel := true
	if err := p.reader.Collect(ctx, &p.rm); err != nil {
		slog.Debug("collecting metrics for /metrics", "err", err)
		// As the exporter: a reader shut down or not registered yet serves no OTel families;
		// after another error (a callback's) what was collected is served.
		if errors.Is(err, sdkmetric.ErrReaderShutdown) || errors.Is(err, sdkmetric.ErrReaderNotRegistered) {
			otel = false
			p.rm = metricdata.ResourceMetrics{}
		}
	}
	if otel {
		if p.target == nil {
			p.target = p.renderTarget()
		}
		p.order = append(p.order, "target_info")
	}
	for _, sm := range p.rm.ScopeMetrics {
		if sm.Scope.Name == bridgeScopeName {
			continue
		}
		var scopeKeys, scopeValues []string
		for _, m := range sm.Metrics {
			var kind otlptranslator.MetricType
			var typ string
			switch d := m.Data.(type) {
			case metricdata.Histogram[int64], metricdata.Histogram[float64]:
				kind, typ = otlptranslator.MetricTypeHistogram, "histogram"
			case metricdata.Sum[int64]:
				kind, typ = sumKind(d.IsMonotonic)
			case metricdata.Sum[float64]:
				kind, typ = sumKind(d.IsMonotonic)
			case metricdata.Gauge[int64], metricdata.Gauge[float64]:
				kind, typ = otlptranslator.MetricTypeGauge, "gauge"
			default:
				continue // exponential histograms and summaries: the agent and coordinator record none
			}
			nk := nameKey{name: m.Name, unit: m.Unit, kind: kind}
			name, ok := p.names[nk]
			if !ok {
				n, err := p.metric.Build(otlptranslator.Metric{Name: m.Name, Unit: m.Unit, Type: kind})
				if err != nil {
					continue
				}
				name, p.names[nk] = n, n
			}
			meta, seen := p.meta[name]
			if !seen {
				meta = familyMeta{typ: typ, help: m.Description}
				p.meta[name] = meta
			} else if meta.typ != typ {
				continue // the exporter drops a second instrument of another type under one name
			}
			if scopeKeys == nil {
				scopeKeys, scopeValues = p.scopeLabels(sm.Scope)
			}
			f := p.fams[name]
			if f == nil {
				f = &textFamily{}
				p.fams[name] = f
			}
			if f.gen != p.gen {
				f.gen = p.gen
				p.order = append(p.order, name)
			}
			f.meta = meta
			switch d := m.Data.(type) {
			case metricdata.Histogram[int64]:
				addHistogram(p, f, sm.Scope, name, d.DataPoints, scopeKeys, scopeValues)
			case metricdata.Histogram[float64]:
				addHistogram(p, f, sm.Scope, name, d.DataPoints, scopeKeys, scopeValues)
			case metricdata.Sum[int64]:
				addValues(p, f, sm.Scope, name, d.DataPoints, scopeKeys, scopeValues)
			case metricdata.Sum[float64]:
				addValues(p, f, sm.Scope, name, d.DataPoints, scopeKeys, scopeValues)
			case metricdata.Gauge[int64]:
				addValues(p, f, sm.Scope, name, d.DataPoints, scopeKeys, scopeValues)
			case metricdata.Gauge[float64]:
				addValues(p, f, sm.Scope, name, d.DataPoints, scopeKeys, scopeValues)
			}
		}
	}
	for k, s := range p.series {
		if s.gen != p.gen {
			delete(p.series, k)
		}
	}
	var runtime []*dto.MetricFamily
	if p.runtime != nil {
		runtime, _ = p.runtime.Gather() // what it could gather, as promhttp's ContinueOnError
	}
	slices.Sort(p.order)
	// Merge the runtime's families (sorted by Gather) into the OTel ones by name.
	ri := 0
	for _, name := range p.order {
		for ri < len(runtime) && runtime[ri].GetName() < name {
			_, _ = expfmt.MetricFamilyToText(out, runtime[ri])
			ri++
		}
		if name == "target_info" {
			out.Write(p.target)
			continue
		}
		if f := p.fams[name]; len(f.points) > 0 { // the registry leaves out a family without series
			f.write(out, name)
		}
	}
	for ; ri < len(runtime); ri++ {
		_, _ = expfmt.MetricFamilyToText(out, runtime[ri])
	}
	// p.rm is kept: the SDK reuses its slices on the next Collect.
}

func sumKind(monotonic bool) (otlptranslator.MetricType, string) {
	if monotonic {
		return otlptranslator.MetricTypeMonotonicCounter, "counter"
	}
	return otlptranslator.MetricTypeNonMonotonicCounter, "gauge"
}

// renderTarget renders target_info: the resource's attributes as labels, value 1.
func (p *promText) renderTarget() []byte {
	var b bytes.Buffer
	keys, values := p.attrLabels(p.rm.Resource.Set())
	labels := sortedLabels(keys, values)
	b.WriteString("# HELP target_info Target metadata\n# TYPE target_info gauge\n")
	b.Write(seriesPrefix("target_info", labels, "", 0))
	b.WriteString("1\n")
	return b.Bytes()
}

// attrLabels are an attribute set's label names and values as the exporter translates them:
// names made valid, and values of attributes whose names collide joined with ";" in order.
func (p *promText) attrLabels(set *attribute.Set) (keys, values []string) {
	var byKey map[string][]string
	for it := set.Iter(); it.Next(); {
		kv := it.Attribute()
		k, err := p.label.Build(string(kv.Key))
		if err != nil {
			continue
		}
		if byKey == nil {
			byKey = map[string][]string{}
		}
		byKey[k] = append(byKey[k], kv.Value.String())
	}
	for k, vs := range byKey {
		slices.Sort(vs)
		keys, values = append(keys, k), append(values, strings.Join(vs, ";"))
	}
	return keys, values
}

// scopeLabels are the otel_scope_* labels every series of a scope carries.
func (p *promText) scopeLabels(s instrumentation.Scope) (keys, values []string) {
	keys = []string{"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}
	values = []string{s.Name, s.Version, s.SchemaURL}
	ak, av := p.attrLabels(&s.Attributes)
	for i, k := range ak {
		switch k {
		case "name", "version", "schema_url":
			continue
		}
		keys, values = append(keys, "otel_scope_"+k), append(values, av[i])
	}
	return keys, values
}

// seriesFor finds one data point's series, and for a new one also returns its labels (sorted
// by name, as the registry writes them) for the caller to render its text.
func (p *promText) seriesFor(scope instrumentation.Scope, name string, attrs attribute.Set, scopeKeys, scopeValues []string) (*seriesText, []labelPair) {
	k := seriesKey{scope: scope, name: name, attrs: attrs.Equivalent()}
	if s := p.series[k]; s != nil {
		s.gen = p.gen
		return s, nil
	}
	keys, values := p.attrLabels(&attrs)
	labels := sortedLabels(append(keys, scopeKeys...), append(values, scopeValues...))
	s := &seriesText{gen: p.gen, values: make([]string, len(labels))}
	for i, l := range labels {
		s.values[i] = l.value
	}
	p.series[k] = s
	return s, labels
}

func addValues[N int64 | float64](p *promText, f *textFamily, scope instrumentation.Scope, name string, dps []metricdata.DataPoint[N], sk, sv []string) {
	for _, dp := range dps {
		s, labels := p.seriesFor(scope, name, dp.Attributes, sk, sv)
		if labels != nil {
			s.prefix = seriesPrefix(name, labels, "", 0)
		}
		f.points = append(f.points, textPoint{s: s, value: float64(dp.Value)})
	}
}

func addHistogram[N int64 | float64](p *promText, f *textFamily, scope instrumentation.Scope, name string, dps []metricdata.HistogramDataPoint[N], sk, sv []string) {
	for _, dp := range dps {
		s, labels := p.seriesFor(scope, name, dp.Attributes, sk, sv)
		if labels == nil && !slices.Equal(s.bounds, dp.Bounds) {
			// The same series with other bounds (a view changed them): render it again.
			delete(p.series, seriesKey{scope: scope, name: name, attrs: dp.Attributes.Equivalent()})
			s, labels = p.seriesFor(scope, name, dp.Attributes, sk, sv)
		}
		if labels != nil {
			s.bounds = slices.Clone(dp.Bounds)
			s.buckets = s.buckets[:0]
			for _, b := range dp.Bounds {
				s.buckets = append(s.buckets, seriesPrefix(name+"_bucket", labels, "le", b))
			}
			s.buckets = append(s.buckets, seriesPrefix(name+"_bucket", labels, "le", math.Inf(1)))
			s.sum = seriesPrefix(name+"_sum", labels, "", 0)
			s.count = seriesPrefix(name+"_count", labels, "", 0)
		}
		f.points = append(f.points, textPoint{s: s, hist: &histPoint{counts: dp.BucketCounts, sum: float64(dp.Sum), count: dp.Count}})
	}
}

type labelPair struct{ name, value string }

func sortedLabels(keys, values []string) []labelPair {
	out := make([]labelPair, len(keys))
	for i := range keys {
		out[i] = labelPair{keys[i], values[i]}
	}
	slices.SortFunc(out, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
	return out
}

var labelValueEscaper = strings.NewReplacer("\\", `\\`, "\n", `\n`, "\"", `\"`)

// seriesPrefix renders "name{labels} " as expfmt writes a sample, with an extra label (le)
// when extra is not empty.
func seriesPrefix(name string, labels []labelPair, extra string, extraValue float64) []byte {
	var b bytes.Buffer
	b.WriteString(name)
	if len(labels) > 0 || extra != "" {
		sep := byte('{')
		for _, l := range labels {
			b.WriteByte(sep)
			b.WriteString(l.name)
			b.WriteString(`="`)
			_, _ = labelValueEscaper.WriteString(&b, l.value)
			b.WriteByte('"')
			sep = ','
		}
		if extra != "" {
			b.WriteByte(sep)
			b.WriteString(extra)
			b.WriteString(`="`)
			b.Write(appendFloat(nil, extraValue))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	return b.Bytes()
}

// appendFloat formats a value as expfmt's writeFloat does.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

var helpEscaper = strings.NewReplacer("\\", `\\`, "\n", `\n`)

// write writes the family with its series sorted by label values, as the registry sorts them.
func (f *textFamily) write(out *bytes.Buffer, name string) {
	slices.SortStableFunc(f.points, func(a, b textPoint) int {
		return cmp.Or(cmp.Compare(len(a.s.values), len(b.s.values)), slices.Compare(a.s.values, b.s.values))
	})
	out.WriteString("# HELP ")
	out.WriteString(name)
	out.WriteByte(' ')
	_, _ = helpEscaper.WriteString(out, f.meta.help)
	out.WriteString("\n# TYPE ")
	out.WriteString(name)
	out.WriteByte(' ')
	out.WriteString(f.meta.typ)
	out.WriteByte('\n')
	var num [32]byte
	line := func(prefix []byte, v float64) {
		out.Write(prefix)
		out.Write(appendFloat(num[:0], v))
		out.WriteByte('\n')
	}
	for _, pt := range f.points {
		if pt.hist == nil {
			line(pt.s.prefix, pt.value)
			continue
		}
		cum := uint64(0)
		for i := range pt.s.bounds {
			cum += pt.hist.counts[i]
			line(pt.s.buckets[i], float64(cum))
		}
		line(pt.s.buckets[len(pt.s.bounds)], float64(pt.hist.count))
		line(pt.s.sum, pt.hist.sum)
		line(pt.s.count, float64(pt.hist.count))
	}
}
