package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
)

// FlinkConfig is the `collectors.flink:` section.
type FlinkConfig struct {
	// ScrapeTimeout bounds one TaskManager's scrape, connect to last byte. Default 3s.
	ScrapeTimeout time.Duration `yaml:"scrape_timeout"`
	// MaxConcurrent caps the scrapes in flight at once. Default 8.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxBodyBytes caps one /metrics body; a bigger body is an error. Default 64 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// FilterFamilies asks the reporter (with ?name[]=) for only the families tmwarden reads,
	// which cuts the body and the agent's parse cost several times on busy TaskManagers. Off by
	// default: a reporter behind a proxy that drops the query would then return everything,
	// which still works, but a JVM whose GC collector is not in the known list loses its GC
	// figures before Flink 1.19.
	FilterFamilies bool `yaml:"filter_families"`
}

func (c FlinkConfig) withDefaults() FlinkConfig {
	if c.ScrapeTimeout <= 0 {
		c.ScrapeTimeout = 3 * time.Second
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 8
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 20
	}
	return c
}

// flinkCollector scrapes the PrometheusReporter of every TaskManager the discovery collector
// put into the report, concurrently, and fills in its subtasks and JVM figures. One TaskManager
// failing only sets that TaskManager's scrape_error.
type flinkCollector struct {
	cfg    FlinkConfig
	client *http.Client
	log    *slog.Logger
	// prev keeps each endpoint's last JVM counters for GC rates; only Collect touches it and
	// Collect never runs concurrently with itself.
	prev map[string]jvmSample
	// strs shares each endpoint's subtask identity strings between its scrapes, and so between
	// the reports buffered during a coordinator outage; same owner and lifetime as prev.
	strs map[string]*promscrape.Strings
}

type jvmSample struct {
	at  time.Time
	jvm promscrape.JVM
}

func newFlinkCollector(o Options) (Collector, error) {
	return newFlinkCollectorWith(o.Config.Flink, o.Logger), nil
}

func newFlinkCollectorWith(cfg FlinkConfig, log *slog.Logger) *flinkCollector {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2
	// TaskManagers are on this node: gzip would only cost CPU on both ends of a loopback
	// transfer (a 200-subtask body is about 2 MB to deflate and inflate every interval).
	tr.DisableCompression = true
	// Bodies are megabytes: read them in large pieces, not the default 4 KB (hundreds of
	// read calls per scrape).
	tr.ReadBufferSize = 64 << 10
	return &flinkCollector{
		cfg:    cfg,
		client: &http.Client{Transport: tr},
		log:    log,
		prev:   map[string]jvmSample{},
		strs:   map[string]*promscrape.Strings{},
	}
}

func (f *flinkCollector) Close() error {
	f.client.CloseIdleConnections()
	return nil
}

type scrapeResult struct {
	scrape *promscrape.Scrape
	at     time.Time
	err    error
}

func (f *flinkCollector) Collect(ctx context.Context, r *tmwardenv1.Report) error {
	var targets []*tmwardenv1.TaskManager
	// A TaskManager discovery saw but could not resolve has no endpoint. Its metrics are missing
	// from this round as surely as a failed scrape's, so the collector is degraded for it too
	// (never OK with part of the node's TaskManagers unscraped); why it has no endpoint, and
	// the fix, is the taskmanagers collector's reason and the TaskManager's scrape_error.
	var noEndpoint []string
	for _, tm := range r.GetTaskManagers() {
		switch {
		case tm.GetMetricsEndpoint() != "":
			targets = append(targets, tm)
		case tm.GetResourceId() != "":
			noEndpoint = append(noEndpoint, tm.GetResourceId())
		default:
			noEndpoint = append(noEndpoint, fmt.Sprintf("pid %d", tm.GetPid()))
		}
	}
	unresolved := func(problems []string) error {
		if len(noEndpoint) > 0 {
			problems = append(problems, fmt.Sprintf("%d TaskManager(s) not scraped for want of a metrics endpoint (%s); the taskmanagers collector says why",
				len(noEndpoint), strings.Join(noEndpoint, ", ")))
		}
		if len(problems) == 0 {
			return nil
		}
		return Degradedf("%s", strings.Join(problems, "; "))
	}
	if len(targets) == 0 {
		return unresolved(nil)
	}
	results := make([]scrapeResult, len(targets))
	// One Strings per endpoint and scrape: an endpoint listed twice shares nothing the second time.
	strs := make([]*promscrape.Strings, len(targets))
	taken := make(map[string]bool, len(targets))
	for i, tm := range targets {
		ep := tm.GetMetricsEndpoint()
		if taken[ep] {
			continue
		}
		taken[ep] = true
		if f.strs[ep] == nil {
			f.strs[ep] = &promscrape.Strings{}
		}
		strs[i] = f.strs[ep]
	}
	sem := make(chan struct{}, f.cfg.MaxConcurrent)
	var wg sync.WaitGroup
	for i, tm := range targets {
		wg.Add(1)
		// Each scrape goroutine is owned by this Collect call, which waits for all of them; the
		// per-scrape context ends them on timeout or when ctx is cancelled.
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				results[i].err = fmt.Errorf("scrape %s: %w", tm.GetMetricsEndpoint(), ctx.Err())
				return
			}
			s, err := f.scrape(ctx, tm.GetMetricsEndpoint(), strs[i])
			results[i] = scrapeResult{scrape: s, at: time.Now(), err: err}
		}()
	}
	wg.Wait()

	var failed, fixes []string
	seen := make(map[string]bool, len(targets))
	for i, tm := range targets {
		ep := tm.GetMetricsEndpoint()
		seen[ep] = true
		res := results[i]
		if res.err != nil {
			tm.ScrapeError = res.err.Error()
			tm.Subtasks, tm.Jvm = nil, nil
			failed = append(failed, ep)
			var fe *fixError
			if errors.As(res.err, &fe) && !slices.Contains(fixes, fe.fix) {
				fixes = append(fixes, fe.fix)
			}
			f.log.Debug("flink scrape failed", "endpoint", ep, "err", res.err)
			continue
		}
		f.apply(tm, ep, res)
	}
	for ep := range f.prev {
		if !seen[ep] {
			delete(f.prev, ep)
		}
	}
	for ep := range f.strs {
		if !seen[ep] {
			delete(f.strs, ep)
		}
	}
	var problems []string
	if len(failed) > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d TaskManager scrapes failed (%s); see each TaskManager's scrape_error",
			len(failed), len(targets), strings.Join(failed, ", ")))
		for _, fix := range fixes {
			problems = append(problems, "fix: "+fix)
		}
	}
	return unresolved(problems)
}

func (f *flinkCollector) apply(tm *tmwardenv1.TaskManager, ep string, res scrapeResult) {
	s := res.scrape
	tm.ScrapeError = ""
	tm.Subtasks = s.Subtasks
	var prev *promscrape.JVM
	var elapsed time.Duration
	if p, ok := f.prev[ep]; ok {
		prev, elapsed = &p.jvm, res.at.Sub(p.at)
	}
	tm.Jvm = s.JVM.Stats(prev, elapsed)
	f.prev[ep] = jvmSample{at: res.at, jvm: s.JVM}
	// Discovery may not know the ResourceID (static targets); the scrape does. Both sides of
	// the join use the sanitised form, which is what the reporter's labels carry.
	if tm.ResourceId == "" {
		tm.ResourceId = s.TaskManagerID
	} else if s.TaskManagerID != "" && promscrape.SanitizeLabelValue(tm.ResourceId) != s.TaskManagerID {
		f.log.Warn("TaskManager at endpoint reports another resource id",
			"endpoint", ep, "discovered", tm.ResourceId, "scraped", s.TaskManagerID)
	}
	if tm.Host == "" {
		tm.Host = s.Host
	}
}

// familyQuery is the ?name[]= filter for FilterFamilies, built once.
var familyQuery = func() string {
	q := url.Values{"name[]": promscrape.Families()}
	return q.Encode()
}()

// scrapeURL accepts what discovery and static targets give: "host:port", or a full URL.
func scrapeURL(endpoint string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "http://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("bad metrics endpoint %q: %w", endpoint, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("bad metrics endpoint %q: no host", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	return u.String(), nil
}

func (f *flinkCollector) scrape(ctx context.Context, endpoint string, strs *promscrape.Strings) (*promscrape.Scrape, error) {
	target, err := scrapeURL(endpoint)
	if err != nil {
		return nil, err
	}
	if f.cfg.FilterFamilies {
		target += "?" + familyQuery
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, f.cfg.ScrapeTimeout)
	defer cancel()
	timedOut := func(err error) error {
		if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
			return withFix(fmt.Errorf("scrape %s: no complete answer within %s: %w", target, f.cfg.ScrapeTimeout, err),
				fmt.Sprintf("raise collectors.flink.scrape_timeout (%s) for TaskManagers with many subtasks, "+
					"or let the agent reach the reporter port (a NetworkPolicy or firewall that drops packets looks like this)", f.cfg.ScrapeTimeout))
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", target, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := f.client.Do(req)
	if err != nil {
		if te := timedOut(err); te != nil {
			return nil, te
		}
		return nil, withFix(fmt.Errorf("scrape %s: %w", target, err), connectFix(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, withFix(fmt.Errorf("scrape %s: HTTP %s: %q", target, resp.Status, strings.TrimSpace(string(snippet))), notReporterFix)
	}
	// The body is parsed as it arrives, never held whole: a 200-subtask body is about 2 MB.
	body := &limitedReader{r: resp.Body, left: f.cfg.MaxBodyBytes}
	s, err := promscrape.ParseWith(body, strs)
	if err != nil {
		if body.over {
			return nil, withFix(fmt.Errorf("scrape %s: body larger than %d bytes", target, f.cfg.MaxBodyBytes),
				fmt.Sprintf("raise collectors.flink.max_body_bytes (%d) or turn on collectors.flink.filter_families", f.cfg.MaxBodyBytes))
		}
		if te := timedOut(err); te != nil {
			return nil, te
		}
		err = fmt.Errorf("scrape %s: %w", target, err)
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, err // cut off mid-answer (a TaskManager going away): nothing to configure
		}
		return nil, withFix(err, notReporterFix)
	}
	return s, nil
}

// fixError is a failed scrape with what to change so that it works; the collector's degraded
// reason lists each distinct fix once, and the TaskManager's scrape_error carries its own.
type fixError struct {
	err error
	fix string
}

func (e *fixError) Error() string { return e.err.Error() + " (fix: " + e.fix + ")" }
func (e *fixError) Unwrap() error { return e.err }

func withFix(err error, fix string) error {
	if fix == "" {
		return err
	}
	return &fixError{err: err, fix: fix}
}

// notReporterFix is the fix when something answers on the port, but not as the reporter does.
const notReporterFix = "the port answers, but not as Flink's PrometheusReporter: check metrics.reporter.prom.port " +
	"(another process may hold it) and that nothing in between rewrites the answer"

// connectFix names the fix for a connection that could not be made, when the error tells.
func connectFix(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: enable Flink's PrometheusReporter on that port " +
			"(metrics.reporter.prom.factory.class and metrics.reporter.prom.port, docs/configuring-flink.md)"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "the agent has no route to the TaskManager's address: a NetworkPolicy or firewall must let it reach the reporter port"
	}
	return ""
}

// limitedReader fails (instead of io.LimitReader's silent EOF) when the body exceeds the cap,
// so a cut-off body is never mistaken for a complete one.
type limitedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		l.over = true
		return 0, fmt.Errorf("body exceeds the size limit")
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
