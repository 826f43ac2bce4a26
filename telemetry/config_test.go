package telemetry

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

func TestConfigValidate(t *testing.T) {
	off := false
	for _, tc := range []struct {
		cfg  Config
		want string // substring of the error; empty for valid
	}{
		{Config{}, ""},
		{Config{Endpoint: "otel-collector:4317", Interval: time.Second}, ""},
		{Config{Endpoint: "https://otlp.example.com/prefix", Protocol: "http", Interval: time.Second}, ""},
		{Config{Protocol: "thrift"}, "want grpc or http"},
		{Config{Endpoint: "ftp://x:1", Interval: time.Second}, "scheme must be http or https"},
		{Config{Endpoint: "host:1/path", Interval: time.Second}, "want host:port"},
		{Config{Endpoint: "x:1", Interval: time.Millisecond}, "at least 1s"},
		{Config{Endpoint: "x:1"}, "telemetry.interval 0s"},
		{Config{Interval: 0, TraceSampleRatio: 0}, ""},
		{Config{Traces: new(bool(true))}, "endpoint is empty"},
		{Config{Traces: &off, TraceSampleRatio: 2}, "trace_sample_ratio"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	d := DefaultConfig()
	d.Endpoint = "x:1"
	d = d.WithDefaults()
	if d.Protocol != "grpc" || d.Interval != 30*time.Second || !*d.Traces || d.TraceSampleRatio != 1 {
		t.Errorf("defaults = %+v", d)
	}
}

func TestLog2Quantile(t *testing.T) {
	// 2 events in [128,256) us and 2 in [256,512) us.
	b := []uint64{0, 0, 0, 0, 0, 0, 0, 2, 2}
	if got := Log2Quantile(b, 0.5); got != 256 {
		t.Errorf("p50 = %v, want 256", got)
	}
	if got := Log2Quantile(b, 1); got != 512 {
		t.Errorf("p100 = %v, want 512", got)
	}
	if got := Log2Quantile(nil, 0.99); got != 0 {
		t.Errorf("empty p99 = %v, want 0", got)
	}
}

func TestPrometheusNames(t *testing.T) {
	// The Prometheus handler serves the report metrics under their translated names.
	p, err := New("tmwarden-agent", "test")
	if err != nil {
		t.Fatal(err)
	}
	rep := loadReport(t)
	if err := RegisterReportMetrics(p.Meters.Meter("test"), func() *tmwardenv1.Report { return rep }); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`system_cpu_utilization_ratio{cpu_mode="steal"`,
		`system_disk_io_bytes_total{disk_io_direction="read"`,
		`tmwarden_runqueue_latency_seconds{cgroup="/kubepods/pod-a"`,
		`tmwarden_cache_hit_ratio `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestResourceHonoursOTELVariables: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override
// what the code sets, and every process has a service.instance.id.
func TestResourceHonoursOTELVariables(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "h14-renamed")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=h14-test")
	res := Resource("tmwarden-agent", "v1", func(string) string { return "" })
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["service.name"] != "h14-renamed" || got["deployment.environment.name"] != "h14-test" || got["service.instance.id"] == "" {
		t.Errorf("resource attributes: %v", got)
	}
}
