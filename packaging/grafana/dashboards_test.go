// Package grafana holds tmwarden's Grafana dashboards; its test keeps every panel's queries
// on metric and label names tmwarden really exports.
package grafana

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/encoding/protojson"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/telemetry"
)

// exported returns the metric names (histograms with their _bucket/_sum/_count series) and
// label names the Prometheus endpoint really serves for every instrument in
// telemetry.Instruments, recorded with the attributes its description lists.
func exported(t *testing.T) (metrics, labels map[string]bool) {
	t.Helper()
	p, err := telemetry.New("tmwarden-test", "test")
	if err != nil {
		t.Fatal(err)
	}
	m := p.Meters.Meter("dashboards")
	b, err := os.ReadFile("../../telemetry/testdata/report.json")
	if err != nil {
		t.Fatal(err)
	}
	rep := &tmwardenv1.Report{}
	if err := protojson.Unmarshal(b, rep); err != nil {
		t.Fatal(err)
	}
	if err := telemetry.RegisterReportMetrics(m, func() *tmwardenv1.Report { return rep }); err != nil {
		t.Fatal(err)
	}
	reportNames := map[string]bool{}
	for _, in := range telemetry.Instruments {
		if strings.HasPrefix(in.Name, "system.") {
			reportNames[in.Name] = true
		}
	}
	attrRE := regexp.MustCompile(`\[([^\]]+)\]`)
	ctx := context.Background()
	for _, in := range telemetry.Instruments {
		if reportNames[in.Name] || strings.HasPrefix(in.Name, "tmwarden.pressure") || strings.HasPrefix(in.Name, "tmwarden.runqueue") ||
			strings.HasPrefix(in.Name, "tmwarden.blockio") || in.Name == telemetry.MetricTCPRetransmits || in.Name == telemetry.MetricTaskManagers ||
			in.Name == telemetry.MetricSubtasks || strings.HasPrefix(in.Name, "tmwarden.taskmanager.") ||
			in.Name == telemetry.MetricCacheCapacity || in.Name == telemetry.MetricCacheUsage || in.Name == telemetry.MetricCacheObjects ||
			in.Name == telemetry.MetricCacheHitRatio {
			continue // registered by RegisterReportMetrics above
		}
		var kv []attribute.KeyValue
		if mm := attrRE.FindStringSubmatch(in.Description); mm != nil {
			for _, a := range strings.Split(mm[1], ",") {
				a = strings.TrimSpace(a)
				k, v, _ := strings.Cut(a, "=")
				v, _, _ = strings.Cut(v, "|")
				kv = append(kv, attribute.String(k, v+"x"))
			}
		}
		opts := []metric.RecordOption{metric.WithAttributes(kv...)}
		unit := metric.WithUnit(in.Unit)
		var err error
		switch in.Kind {
		case telemetry.Counter:
			var c metric.Float64Counter
			if c, err = m.Float64Counter(in.Name, unit); err == nil {
				c.Add(ctx, 1, metric.WithAttributes(kv...))
			}
		case telemetry.UpDownCounter:
			var c metric.Float64UpDownCounter
			if c, err = m.Float64UpDownCounter(in.Name, unit); err == nil {
				c.Add(ctx, 1, metric.WithAttributes(kv...))
			}
		case telemetry.Histogram:
			var h metric.Float64Histogram
			if h, err = m.Float64Histogram(in.Name, unit); err == nil {
				h.Record(ctx, 1, opts...)
			}
		default:
			var g metric.Float64Gauge
			if g, err = m.Float64Gauge(in.Name, unit); err == nil {
				g.Record(ctx, 1, opts...)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", in.Name, err)
		}
	}
	rec := httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	metrics, labels = map[string]bool{}, map[string]bool{"le": true, "node": true, "job": true, "instance": true}
	for name, f := range fams {
		metrics[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			metrics[name+"_bucket"], metrics[name+"_sum"], metrics[name+"_count"] = true, true, true
		}
		for _, s := range f.Metric {
			for _, l := range s.Label {
				labels[l.GetName()] = true
			}
		}
	}
	for _, in := range telemetry.Instruments {
		found := false
		for name := range metrics {
			if strings.HasPrefix(name, strings.ReplaceAll(in.Name, ".", "_")) {
				found = true
			}
		}
		if !found {
			t.Errorf("instrument %s is not served on /metrics", in.Name)
		}
	}
	return metrics, labels
}

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var (
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	selectorRE = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
	stringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	varRE      = regexp.MustCompile(`\$\{?[a-zA-Z_]+\}?`)
	byRE       = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
	matcherRE  = regexp.MustCompile(`{([^}]*)}`)
	matchKeyRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

func TestDashboards(t *testing.T) {
	metrics, labels := exported(t)
	files, err := filepath.Glob("*.json")
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least four dashboards, found %v (%v)", files, err)
	}
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title are required", f)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s: uid %s also used by %s", f, d.UID, other)
		}
		uids[d.UID] = f
		ids := map[int]bool{}
		queries := 0
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if ids[p.ID] {
					t.Errorf("%s: panel id %d used twice", f, p.ID)
				}
				ids[p.ID] = true
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", f, p.Title)
				}
				for _, tg := range p.Targets {
					queries++
					checkExpr(t, f+": "+p.Title, tg.Expr, metrics, labels)
				}
			}
		}
		walk(d.Panels)
		if queries == 0 {
			t.Errorf("%s: no queries", f)
		}
	}
}

func checkExpr(t *testing.T, where, expr string, metrics, labels map[string]bool) {
	t.Helper()
	if strings.TrimSpace(expr) == "" {
		t.Errorf("%s: empty expr", where)
		return
	}
	clean := varRE.ReplaceAllString(stringRE.ReplaceAllString(expr, `""`), "")
	usesKnown := false
	for _, m := range selectorRE.FindAllStringSubmatch(clean, -1) {
		name := m[1]
		if promqlWords[name] {
			continue
		}
		if !metrics[name] {
			t.Errorf("%s: selector %s is not a metric tmwarden exports", where, name)
		}
	}
	for _, id := range identRE.FindAllString(clean, -1) {
		switch {
		case metrics[id]:
			usesKnown = true
		case strings.HasPrefix(id, "tmwarden_") || strings.HasPrefix(id, "system_"):
			if !labels[id] {
				t.Errorf("%s: %s is neither an exported metric nor a label", where, id)
			}
		}
	}
	var used []string
	for _, m := range byRE.FindAllStringSubmatch(clean, -1) {
		for _, l := range strings.Split(m[1], ",") {
			used = append(used, strings.TrimSpace(l))
		}
	}
	for _, m := range matcherRE.FindAllStringSubmatch(clean, -1) {
		for _, k := range matchKeyRE.FindAllStringSubmatch(m[1], -1) {
			used = append(used, k[1])
		}
	}
	for _, l := range used {
		if l != "" && !labels[l] {
			t.Errorf("%s: label %s is not on any exported series", where, l)
		}
	}
	if !usesKnown {
		t.Errorf("%s: query %q uses no tmwarden metric", where, expr)
	}
}

var promqlWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
