// Package grafana holds tmwarden's Grafana dashboards; its test runs the system and checks
// every query of every dashboard against what the live /metrics endpoints export.
package grafana

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/tmwarden/tmwarden/demo"
	"github.com/tmwarden/tmwarden/demo/demotest"
	"github.com/tmwarden/tmwarden/localstate"
	"github.com/tmwarden/tmwarden/localstate/s3test"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Resolved at start: the in-process S3 upstream (versitygw's posix backend) changes the
// working directory.
var (
	dashboardDir, _ = filepath.Abs(".")
	scrapeConfig, _ = filepath.Abs("../prometheus/tmwarden-scrape.yaml")
)

// series is one scraped sample's metric name and labels, target labels included.
type series struct {
	name   string
	labels map[string]string
}

// live is everything the running system exports, by metric name.
type live map[string][]series

// TestDashboardsAgainstTheLiveSystem runs tmwarden the way the demo does, with more switched on:
// a coordinator in auto mode with the bare-metal (drain) actuator, seven simulated nodes whose
// real agents scrape Flink stand-in TaskManagers (sim/flink, Flink 1.20's PrometheusReporter
// format; Flink itself cannot run here) and run a state cache each in front of a real S3
// upstream, and the real agent on this machine. After the demo's fault (a noisy neighbour on
// node-2) the coordinator migrates node-2 (its subtasks restart on node-1) and the state warmer
// has node-1 prefetch the job's checkpoint from node-2's cache. Then the coordinator's and every
// agent's /metrics are scraped, each target given the labels the shipped Prometheus scrape
// configuration gives it (packaging/prometheus: job, instance, and the node label the
// dashboards filter on), and every query of every dashboard is parsed with Prometheus's PromQL
// parser: a metric, a label, or a label value it asks for that no live series has fails the
// test, as does a metric the telemetry catalogue declares that nothing records.
func TestDashboardsAgainstTheLiveSystem(t *testing.T) {
	up := s3test.Start(t, "flink-state")
	run := demotest.Start(t, demo.Options{
		// Seven simulated nodes: the demo's lost agent (node-7) stays under the breaker's
		// unreachable share, so the migration goes ahead.
		// The fault comes after the stand-in's first checkpoints (one every 10 s) have completed
		// and their files are in the caches: a job that moves before its first checkpoint has no
		// state to warm, and the warmer rightly asks for nothing.
		SimNodes: 7, Interval: time.Second, FaultAfter: 25 * time.Second, Mode: "auto", Actuator: "baremetal",
		StateCache:   &localstate.UpstreamConfig{Endpoint: up.Endpoint, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey},
		AgentMetrics: true,
	})
	targets := scrapeTargets(t, run)

	// Generous: detection, confirmation, the drain, the Flink poll that sees the subtasks move
	// and the prefetch all take report rounds, and this machine may be shared and loaded.
	var got live
	deadline := time.Now().Add(10 * time.Minute)
	for {
		got = scrape(t, targets)
		migrated := got.has("tmwarden_migrations_total", map[string]string{"outcome": "succeeded", "mode": "auto"})
		// The warmer fetches from the drained node's cache when it still holds the checkpoint
		// and from the upstream otherwise; either records the prefetch series the panels query.
		prefetched := len(got["tmwarden_cache_prefetch_fetched_bytes_total"]) > 0
		if migrated && prefetched {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 minutes: migration succeeded %v, prefetch %v; decisions: %v\nthe coordinator's events:\n%s\ncommands:\n%s",
				migrated, prefetched, got.values("tmwarden_decisions_total"),
				apiText(run.HTTPAddr, "/api/v1/events"), apiText(run.HTTPAddr, "/api/v1/commands"))
		}
		time.Sleep(2 * time.Second)
	}
	// Once more after the migration, so that series that appear with it are in.
	got = scrape(t, targets)

	for _, in := range telemetry.Instruments {
		if !got.hasPrefix(strings.ReplaceAll(in.Name, ".", "_")) {
			t.Errorf("the catalogue declares %s, but no live /metrics exports it", in.Name)
		}
	}
	checkDashboards(t, got)
}

// target is one scrape target with the labels the scrape configuration gives it.
type target struct {
	url    string
	labels map[string]string
}

// scrapeConfigJob is the part of a Prometheus scrape job that decides a target's labels.
type scrapeConfigJob struct {
	JobName        string             `yaml:"job_name"`
	RelabelConfigs []*relabel.Config  `yaml:"relabel_configs"`
	StaticConfigs  []struct{}         `yaml:"static_configs"`
	FileSDConfigs  []map[string][]any `yaml:"file_sd_configs"`
}

// scrapeTargets turns the demo's endpoints into targets as Prometheus would with the shipped
// scrape configuration: the agents as the file_sd entries it documents (address and node
// label), the coordinator as its static target; then job, instance and the relabel rules.
func scrapeTargets(t *testing.T, run demo.Running) []target {
	t.Helper()
	b, err := os.ReadFile(scrapeConfig)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []scrapeConfigJob
	if err := yaml.Unmarshal(b, &jobs); err != nil {
		t.Fatalf("%s: %v", scrapeConfig, err)
	}
	byName := map[string]scrapeConfigJob{}
	for _, j := range jobs {
		for _, rc := range j.RelabelConfigs {
			if err := rc.Validate(model.UTF8Validation); err != nil {
				t.Fatalf("%s: job %s: %v", scrapeConfig, j.JobName, err)
			}
		}
		byName[j.JobName] = j
	}
	agentJob, ok1 := byName["tmwarden-agent"]
	coordJob, ok2 := byName["tmwarden-coordinator"]
	if !ok1 || !ok2 || len(agentJob.FileSDConfigs) == 0 || len(coordJob.StaticConfigs) == 0 {
		t.Fatalf("%s: want a tmwarden-agent job with file_sd_configs and a tmwarden-coordinator job with static_configs", scrapeConfig)
	}
	relabelled := func(j scrapeConfigJob, addr string, extra map[string]string) target {
		lb := labels.NewBuilder(labels.FromMap(extra))
		lb.Set(model.AddressLabel, addr)
		lb.Set(model.JobLabel, j.JobName)
		if !relabel.ProcessBuilder(lb, j.RelabelConfigs...) {
			t.Fatalf("job %s drops target %s", j.JobName, addr)
		}
		if lb.Get(model.InstanceLabel) == "" {
			lb.Set(model.InstanceLabel, lb.Get(model.AddressLabel))
		}
		out := map[string]string{}
		lb.Labels().Range(func(l labels.Label) {
			if !strings.HasPrefix(l.Name, model.ReservedLabelPrefix) {
				out[l.Name] = l.Value
			}
		})
		return target{url: "http://" + lb.Get(model.AddressLabel) + "/metrics", labels: out}
	}
	ts := []target{relabelled(coordJob, run.HTTPAddr, nil)}
	for node, addr := range run.AgentHTTP {
		tg := relabelled(agentJob, addr, map[string]string{"node": node})
		if tg.labels["node"] != node {
			t.Fatalf("agent target %s gets node label %q, want %q", addr, tg.labels["node"], node)
		}
		ts = append(ts, tg)
	}
	if len(run.AgentHTTP) < 8 {
		t.Fatalf("the demo serves %d agents' metrics, want this machine's and seven simulated", len(run.AgentHTTP))
	}
	return ts
}

// scrape reads every target's /metrics, attaching its target labels (a series' own label of
// the same name wins only with honor_labels, which the configuration does not set).
func scrape(t *testing.T, targets []target) live {
	t.Helper()
	out := live{}
	for _, tg := range targets {
		resp, err := http.Get(tg.url)
		if err != nil {
			// The demo takes one agent away (its node goes unreachable): a target that is down,
			// as Prometheus would record it. The others must be up (checked by the caller).
			continue
		}
		tp := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := tp.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("parse %s: %v", tg.url, err)
		}
		for name, f := range fams {
			for _, m := range f.Metric {
				ls := map[string]string{}
				for _, l := range m.Label {
					ls[l.GetName()] = l.GetValue()
				}
				for k, v := range tg.labels {
					if old, ok := ls[k]; ok {
						ls["exported_"+k] = old
					}
					ls[k] = v
				}
				switch f.GetType().String() {
				case "HISTOGRAM":
					for _, suffix := range []string{"_sum", "_count"} {
						out[name+suffix] = append(out[name+suffix], series{name + suffix, ls})
					}
					for _, b := range m.GetHistogram().GetBucket() {
						bl := map[string]string{"le": fmt.Sprint(b.GetUpperBound())}
						for k, v := range ls {
							bl[k] = v
						}
						out[name+"_bucket"] = append(out[name+"_bucket"], series{name + "_bucket", bl})
					}
				default:
					out[name] = append(out[name], series{name, ls})
				}
			}
		}
	}
	return out
}

func (l live) has(name string, want map[string]string) bool {
	for _, s := range l[name] {
		ok := true
		for k, v := range want {
			ok = ok && s.labels[k] == v
		}
		if ok {
			return true
		}
	}
	return false
}

func (l live) hasPrefix(p string) bool {
	for name := range l {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (l live) values(name string) []map[string]string {
	var out []map[string]string
	for _, s := range l[name] {
		out = append(out, s.labels)
	}
	return out
}

// hasLabel says whether some series of name carries label.
func (l live) hasLabel(name, label string) bool {
	for _, s := range l[name] {
		if _, ok := s.labels[label]; ok {
			return true
		}
	}
	return false
}

// query is one PromQL expression of a dashboard, with the text templates that name its labels.
type query struct {
	where, expr string
	legends     []string // legendFormat / textFormat
}

var (
	// Grafana's variables: $__rate_interval is a duration, the others stand for label values.
	rateVarRE  = regexp.MustCompile(`\$__rate_interval|\$\{__rate_interval\}|\$__interval|\$\{__interval\}`)
	varRE      = regexp.MustCompile(`\$\{?[a-zA-Z_]+\}?`)
	legendRE   = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	labelValRE = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
)

// varValue marks a label value that came from a dashboard variable: any live value will do.
const varValue = "TMWARDEN_DASHBOARD_VARIABLE"

func checkDashboards(t *testing.T, got live) {
	files, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want at least four dashboards, found %v (%v)", files, err)
	}
	p := parser.NewParser(parser.Options{})
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		name := filepath.Base(f)
		uid, _ := d["uid"].(string)
		if title, _ := d["title"].(string); uid == "" || title == "" {
			t.Errorf("%s: uid and title are required", name)
		}
		if other, dup := uids[uid]; dup {
			t.Errorf("%s: uid %s also used by %s", name, uid, other)
		}
		uids[uid] = name
		var qs []query
		var labelValues []string
		collect(d, name, &qs, &labelValues)
		if len(qs) == 0 {
			t.Errorf("%s: no queries", name)
		}
		for _, lv := range labelValues {
			m := labelValRE.FindStringSubmatch(strings.TrimSpace(lv))
			if m == nil {
				t.Errorf("%s: variable query %q is not label_values(metric, label)", name, lv)
				continue
			}
			if !got.hasLabel(m[1], m[2]) {
				t.Errorf("%s: variable %q: no live %s series has a %s label", name, lv, m[1], m[2])
			}
		}
		for _, q := range qs {
			checkQuery(t, p, got, q)
		}
	}
}

// collect finds every query in a dashboard: panel targets and annotations ("expr", with their
// legendFormat or textFormat) and template variables (label_values).
func collect(v any, where string, qs *[]query, labelValues *[]string) {
	switch v := v.(type) {
	case map[string]any:
		if title, ok := v["title"].(string); ok {
			where = where + ": " + title
		} else if n, ok := v["name"].(string); ok {
			where = where + ": " + n
		}
		if expr, ok := v["expr"].(string); ok {
			q := query{where: where, expr: expr}
			for _, k := range []string{"legendFormat", "textFormat", "titleFormat"} {
				if s, ok := v[k].(string); ok {
					q.legends = append(q.legends, s)
				}
			}
			*qs = append(*qs, q)
		}
		if v["type"] == "query" {
			if q, ok := v["query"].(map[string]any); ok {
				if s, ok := q["query"].(string); ok {
					*labelValues = append(*labelValues, s)
				}
			} else if s, ok := v["query"].(string); ok {
				*labelValues = append(*labelValues, s)
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			collect(v[k], where, qs, labelValues)
		}
	case []any:
		for _, x := range v {
			collect(x, where, qs, labelValues)
		}
	}
}

func checkQuery(t *testing.T, p parser.Parser, got live, q query) {
	t.Helper()
	if strings.TrimSpace(q.expr) == "" {
		t.Errorf("%s: empty query", q.where)
		return
	}
	text := varRE.ReplaceAllString(rateVarRE.ReplaceAllString(q.expr, "5m"), varValue)
	expr, err := p.ParseExpr(text)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
		return
	}
	var all []string // every metric the query selects
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := n.Name
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
			all = append(all, name)
			if len(got[name]) == 0 {
				t.Errorf("%s: %q selects %s, which no live /metrics exports", q.where, q.expr, name)
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					continue
				}
				if !got.hasLabel(name, m.Name) {
					t.Errorf("%s: %q filters %s on label %s, which no live %s series has", q.where, q.expr, name, m.Name, name)
					continue
				}
				// A fixed value the panel asks for must be one the system exports.
				if (m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp) && !strings.Contains(m.Value, varValue) && m.Value != "" {
					found := false
					for _, s := range got[name] {
						if v, ok := s.labels[m.Name]; ok && m.Matches(v) {
							found = true
							break
						}
					}
					if !found {
						t.Errorf("%s: %q asks for %s{%s}, which no live series has", q.where, q.expr, name, m)
					}
				}
			}
		case *parser.AggregateExpr:
			sel := selectors(n.Expr)
			for _, l := range n.Grouping {
				if !anyHasLabel(got, sel, l) {
					t.Errorf("%s: %q groups by %s, which no live series of %v has", q.where, q.expr, l, sel)
				}
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				sel := append(selectors(n.LHS), selectors(n.RHS)...)
				for _, l := range append(append([]string{}, n.VectorMatching.MatchingLabels...), n.VectorMatching.Include...) {
					if !anyHasLabel(got, sel, l) {
						t.Errorf("%s: %q matches on %s, which no live series of %v has", q.where, q.expr, l, sel)
					}
				}
			}
		}
		return nil
	})
	for _, lf := range q.legends {
		for _, m := range legendRE.FindAllStringSubmatch(lf, -1) {
			if !anyHasLabel(got, all, m[1]) {
				t.Errorf("%s: legend %q names label %s, which no live series of %v has", q.where, lf, m[1], all)
			}
		}
	}
}

func selectors(e parser.Expr) []string {
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

func anyHasLabel(got live, names []string, label string) bool {
	for _, n := range names {
		if got.hasLabel(n, label) {
			return true
		}
	}
	return false
}

// apiText is a coordinator API answer as text, for a failure message.
func apiText(addr, path string) string {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b)
}
