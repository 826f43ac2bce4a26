package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// receiver is a minimal OTLP collector: it keeps every export request it is sent.
type receiver struct {
	colmetricspb.UnimplementedMetricsServiceServer
	metrics chan *colmetricspb.ExportMetricsServiceRequest
	traces  chan *coltracepb.ExportTraceServiceRequest
	headers chan string // value of the x-tenant header of each request
}

func newReceiver() *receiver {
	return &receiver{
		metrics: make(chan *colmetricspb.ExportMetricsServiceRequest, 16),
		traces:  make(chan *coltracepb.ExportTraceServiceRequest, 16),
		headers: make(chan string, 64),
	}
}

func (r *receiver) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.headers <- strings.Join(md.Get("x-tenant"), ",")
	r.metrics <- req
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// traceServer adapts receiver to the trace service, whose method is also called Export.
type traceServer struct {
	coltracepb.UnimplementedTraceServiceServer
	r *receiver
}

func (s traceServer) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.r.traces <- req
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func loadReport(t *testing.T) *tmwardenv1.Report {
	t.Helper()
	b, err := os.ReadFile("testdata/report.json")
	if err != nil {
		t.Fatal(err)
	}
	r := &tmwardenv1.Report{}
	if err := protojson.Unmarshal(b, r); err != nil {
		t.Fatalf("testdata/report.json: %v", err)
	}
	return r
}

func TestOTLPGRPC(t *testing.T) {
	rcv := newReceiver()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	colmetricspb.RegisterMetricsServiceServer(srv, rcv)
	coltracepb.RegisterTraceServiceServer(srv, traceServer{r: rcv})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	exercise(t, Config{Endpoint: lis.Addr().String(), Protocol: "grpc", Insecure: true, Interval: time.Hour, TraceSampleRatio: 1,
		Headers: map[string]string{"x-tenant": "flink-prod"}}, rcv)
}

func TestOTLPHTTP(t *testing.T) {
	rcv := newReceiver()
	mux := http.NewServeMux()
	decode := func(w http.ResponseWriter, r *http.Request, into proto.Message) bool {
		if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
			return false
		}
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = proto.Unmarshal(b, into)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /otel/v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		req := &colmetricspb.ExportMetricsServiceRequest{}
		if decode(w, r, req) {
			rcv.headers <- r.Header.Get("X-Tenant")
			rcv.metrics <- req
			b, _ := proto.Marshal(&colmetricspb.ExportMetricsServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(b)
		}
	})
	mux.HandleFunc("POST /otel/v1/traces", func(w http.ResponseWriter, r *http.Request) {
		req := &coltracepb.ExportTraceServiceRequest{}
		if decode(w, r, req) {
			rcv.traces <- req
			b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(b)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	exercise(t, Config{Endpoint: srv.URL + "/otel", Protocol: "http", Interval: time.Hour, TraceSampleRatio: 1,
		Headers: map[string]string{"X-Tenant": "flink-prod"}}, rcv)
}

// exercise sets up a provider against rcv, records report metrics and a span with a log line,
// flushes, and checks what arrived.
func exercise(t *testing.T, cfg Config, rcv *receiver) {
	t.Setenv("NODE_NAME", "worker-7")
	t.Setenv("POD_NAME", "tmwarden-agent-x2k4p")
	t.Setenv("POD_NAMESPACE", "tmwarden")
	ctx := context.Background()
	p, err := Setup(ctx, cfg, "tmwarden-agent", "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	rep := loadReport(t)
	if err := RegisterReportMetrics(p.Meters.Meter("test"), func() *tmwardenv1.Report { return rep }); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(NewTraceHandler(slog.NewJSONHandler(&logs, nil)))
	sctx, span := p.Tracers.Tracer("test").Start(ctx, "evaluation round")
	log.InfoContext(sctx, "evaluated", "nodes", 3)
	span.End()

	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := p.ForceFlush(fctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	var mreq *colmetricspb.ExportMetricsServiceRequest
	select {
	case mreq = <-rcv.metrics:
	case <-fctx.Done():
		t.Fatal("no metrics arrived at the receiver")
	}
	if h := <-rcv.headers; h != "flink-prod" {
		t.Errorf("x-tenant header = %q, want flink-prod", h)
	}
	rm := mreq.ResourceMetrics[0]
	res := attrMap(rm.Resource.Attributes)
	for k, want := range map[string]string{"service.name": "tmwarden-agent", "service.version": "1.2.3",
		"k8s.node.name": "worker-7", "k8s.pod.name": "tmwarden-agent-x2k4p", "k8s.namespace.name": "tmwarden"} {
		if res[k] != want {
			t.Errorf("resource %s = %q, want %q", k, res[k], want)
		}
	}
	if res["host.name"] == "" {
		t.Error("resource has no host.name")
	}
	got := map[string]*metricspb.Metric{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}
	// Every report metric of the table arrives with its unit.
	for _, in := range Instruments {
		if !strings.HasPrefix(in.Name, "system.") && !isReportMetric(in.Name) {
			continue
		}
		m, ok := got[in.Name]
		if !ok {
			t.Errorf("metric %s did not arrive", in.Name)
			continue
		}
		if m.Unit != in.Unit {
			t.Errorf("metric %s unit = %q, want %q", in.Name, m.Unit, in.Unit)
		}
	}
	// Values and attributes follow the report (see testdata/report.json).
	checkPoint(t, got, MetricCPUUtilization, map[string]string{"cpu.mode": "steal"}, 0.25)
	checkPoint(t, got, MetricCPUUtilization, map[string]string{"cpu.mode": "interrupt"}, 0.03)
	checkPoint(t, got, MetricDiskIO, map[string]string{"system.device": "nvme0n1", "disk.io.direction": "read"}, 1e6*5)
	checkPoint(t, got, MetricDiskOperationTime, map[string]string{"system.device": "nvme0n1", "disk.io.direction": "write"}, 0.012*50*5)
	checkPoint(t, got, MetricNetworkDropped, map[string]string{"network.interface.name": "eth0", "network.io.direction": "receive"}, 3*5)
	checkPoint(t, got, MetricNetworkErrors, map[string]string{"network.interface.name": "eth0", "network.io.direction": "transmit"}, 1*5)
	checkPoint(t, got, MetricTCPRetransmits, nil, 40*5)
	checkPoint(t, got, MetricMemoryUsage, map[string]string{"system.memory.state": "used"}, 6e9)
	checkPoint(t, got, MetricPressure, map[string]string{"resource": "io", "level": "full"}, 0.05)
	checkPoint(t, got, MetricRunqueueLatency, map[string]string{"cgroup": "/kubepods/pod-a", "stat": "mean"}, 250e-6)
	checkPoint(t, got, MetricTMGCShare, map[string]string{"flink.taskmanager.id": "tm-1", "k8s.pod.name": "flink-tm-1"}, 0.08)
	checkPoint(t, got, MetricCacheHitRatio, nil, 0.9)
	if m := got[MetricDiskIO]; m != nil {
		if s := m.GetSum(); s == nil || !s.IsMonotonic || s.AggregationTemporality != metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
			t.Errorf("%s is not a cumulative monotonic sum: %v", MetricDiskIO, m.Data)
		}
	}

	var treq *coltracepb.ExportTraceServiceRequest
	select {
	case treq = <-rcv.traces:
	case <-fctx.Done():
		t.Fatal("no spans arrived at the receiver")
	}
	var sp *tracepb.Span
	for _, rs := range treq.ResourceSpans {
		if attrMap(rs.Resource.Attributes)["service.name"] != "tmwarden-agent" {
			t.Errorf("span resource service.name = %q", attrMap(rs.Resource.Attributes)["service.name"])
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				if s.Name == "evaluation round" {
					sp = s
				}
			}
		}
	}
	if sp == nil {
		t.Fatal("span 'evaluation round' did not arrive")
	}
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", logs.String(), err)
	}
	if line["trace_id"] != hexID(sp.TraceId) || line["span_id"] != hexID(sp.SpanId) {
		t.Errorf("log trace_id/span_id = %v/%v, span has %s/%s", line["trace_id"], line["span_id"], hexID(sp.TraceId), hexID(sp.SpanId))
	}
	if err := p.Shutdown(fctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func isReportMetric(name string) bool {
	switch name {
	case MetricPressure, MetricRunqueueLatency, MetricBlockIOLatency, MetricTCPRetransmits, MetricTaskManagers, MetricSubtasks,
		MetricTMCPULoad, MetricTMGCShare, MetricTMHeapUsage, MetricTMBusy, MetricTMBackpressured,
		MetricCacheCapacity, MetricCacheUsage, MetricCacheObjects, MetricCacheHitRatio:
		return true
	}
	return false
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.GetStringValue()
	}
	return m
}

// checkPoint finds the data point of metric name whose attributes are exactly want and
// compares its value.
func checkPoint(t *testing.T, got map[string]*metricspb.Metric, name string, want map[string]string, value float64) {
	t.Helper()
	m, ok := got[name]
	if !ok {
		t.Errorf("metric %s missing", name)
		return
	}
	type point struct {
		attrs []*commonpb.KeyValue
		v     float64
	}
	var pts []point
	switch d := m.Data.(type) {
	case *metricspb.Metric_Gauge:
		for _, p := range d.Gauge.DataPoints {
			pts = append(pts, point{p.Attributes, p.GetAsDouble() + float64(p.GetAsInt())})
		}
	case *metricspb.Metric_Sum:
		for _, p := range d.Sum.DataPoints {
			pts = append(pts, point{p.Attributes, p.GetAsDouble() + float64(p.GetAsInt())})
		}
	default:
		t.Errorf("metric %s has unexpected type %T", name, m.Data)
		return
	}
	for _, p := range pts {
		am := attrMap(p.attrs)
		if len(am) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			if am[k] != v {
				match = false
			}
		}
		if match {
			if math.Abs(p.v-value) > 1e-9*math.Max(1, math.Abs(value)) {
				t.Errorf("%s%v = %v, want %v", name, want, p.v, value)
			}
			return
		}
	}
	t.Errorf("%s has no point with attributes %v (points: %d)", name, want, len(pts))
}
