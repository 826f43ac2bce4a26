// Package telemetry sets up OpenTelemetry metrics and traces for a tmwarden process: a
// Prometheus endpoint always, OTLP push (gRPC or HTTP) when configured. Each process (and each
// agent in the demo) gets its own registry and providers, so components never mix their series.
package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Provider owns a meter provider, a tracer provider and the HTTP handler that exposes the
// metrics in the Prometheus text format.
type Provider struct {
	Meters  metric.MeterProvider
	Tracers trace.TracerProvider
	Handler http.Handler
	// Resource is what every metric and span of this process is attributed to.
	Resource *resource.Resource

	shutdown []func(context.Context) error
}

// New builds a provider for service (tmwarden-agent or tmwarden-coordinator) that serves metrics
// only through its Prometheus handler. Spans get IDs (so logs carry them) but are not exported.
func New(service, version string, attrs ...attribute.KeyValue) (*Provider, error) {
	return Setup(context.Background(), DefaultConfig(), service, version, attrs...)
}

// Setup builds a provider for service from cfg: the Prometheus handler always, and OTLP metric
// and span export when cfg.Endpoint is set. Call Shutdown to flush on exit.
func Setup(ctx context.Context, cfg Config, service, version string, attrs ...attribute.KeyValue) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	res := Resource(service, version, os.Getenv, attrs...)

	// The Go runtime's and the process's collectors in one registry, the exporter in another:
	// the text format is written by promText from the exporter's reader beside the runtime's
	// families, the other formats by promhttp over both.
	runtimeReg := prometheus.NewRegistry()
	runtimeReg.MustRegister(collectors.NewGoCollector(), newProcessCollector())
	otelReg := prometheus.NewRegistry()
	promExp, err := otelprom.New(otelprom.WithRegisterer(otelReg))
	if err != nil {
		return nil, fmt.Errorf("creating prometheus exporter: %w", err)
	}
	fallback := promhttp.HandlerFor(prometheus.Gatherers{runtimeReg, otelReg}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	mopts := []sdkmetric.Option{sdkmetric.WithReader(promExp), sdkmetric.WithResource(res)}
	topts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.TraceSampleRatio))),
	}
	if cfg.Endpoint != "" {
		mexp, err := metricExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(cfg.Interval))))
		if *cfg.Traces {
			texp, err := traceExporter(ctx, cfg)
			if err != nil {
				return nil, err
			}
			topts = append(topts, sdktrace.WithBatcher(texp))
		}
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	tp := sdktrace.NewTracerProvider(topts...)
	return &Provider{
		Meters:   mp,
		Tracers:  tp,
		Handler:  newPromText(promExp, runtimeReg, fallback),
		Resource: res,
		// Traces first: a span ending during shutdown may still record a metric.
		shutdown: []func(context.Context) error{tp.Shutdown, mp.Shutdown},
	}, nil
}

// Resource describes this process: service.name, service.version, host.name, and the
// Kubernetes node, pod and namespace when the downward API put them in NODE_NAME, POD_NAME and
// POD_NAMESPACE.
func Resource(service, version string, getenv func(string) string, attrs ...attribute.KeyValue) *resource.Resource {
	kv := []attribute.KeyValue{semconv.ServiceName(service), semconv.ServiceVersion(version)}
	if h, err := os.Hostname(); err == nil && h != "" {
		kv = append(kv, semconv.HostName(h))
	}
	if v := getenv("NODE_NAME"); v != "" {
		kv = append(kv, semconv.K8SNodeName(v))
	}
	if v := getenv("POD_NAME"); v != "" {
		kv = append(kv, semconv.K8SPodName(v))
	}
	if v := getenv("POD_NAMESPACE"); v != "" {
		kv = append(kv, semconv.K8SNamespaceName(v))
	}
	kv = append(kv, semconv.ServiceInstanceID(instanceID))
	base := resource.NewWithAttributes(semconv.SchemaURL, append(kv, attrs...)...)
	// The standard variables win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the SDK's own
	// reading of them, so their syntax and escaping are the SDK's).
	env, err := resource.New(context.Background(), resource.WithFromEnv())
	if err != nil {
		return base
	}
	if merged, err := resource.Merge(base, env); err == nil {
		return merged
	}
	return base
}

// instanceID tells this process apart from the same service's other processes
// (service.instance.id): random per start, as the semantic conventions suggest.
var instanceID = func() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return fmt.Sprintf("pid-%d", os.Getpid())
	}
	return hex.EncodeToString(b)
}()

func metricExporter(ctx context.Context, cfg Config) (sdkmetric.Exporter, error) {
	ep, _ := cfg.endpoint() // validated
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch cfg.Protocol {
	case "grpc":
		opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(ep.hostPort), otlpmetricgrpc.WithHeaders(cfg.Headers)}
		if ep.insecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	default:
		opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(ep.hostPort), otlpmetrichttp.WithHeaders(cfg.Headers),
			otlpmetrichttp.WithURLPath(ep.path + "/v1/metrics")}
		if ep.insecure {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("creating OTLP/%s metric exporter for %s: %w", cfg.Protocol, cfg.Endpoint, err)
	}
	return exp, nil
}

func traceExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	ep, _ := cfg.endpoint()
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Protocol {
	case "grpc":
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(ep.hostPort), otlptracegrpc.WithHeaders(cfg.Headers)}
		if ep.insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(ep.hostPort), otlptracehttp.WithHeaders(cfg.Headers),
			otlptracehttp.WithURLPath(ep.path + "/v1/traces")}
		if ep.insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("creating OTLP/%s trace exporter for %s: %w", cfg.Protocol, cfg.Endpoint, err)
	}
	return exp, nil
}

// Noop is a provider that records nothing, for components that must not export (the demo's
// simulated agents).
func Noop() *Provider {
	return &Provider{Meters: noop.NewMeterProvider(), Tracers: tracenoop.NewTracerProvider(), Handler: http.NotFoundHandler(),
		Resource: resource.Empty()}
}

// Shutdown flushes pending metrics and spans to the OTLP receiver and stops the providers.
func (p *Provider) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		if err := f(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}

// ForceFlush pushes what is pending now, without stopping (tests, and before a planned exit).
func (p *Provider) ForceFlush(ctx context.Context) error {
	var errs []error
	if mp, ok := p.Meters.(*sdkmetric.MeterProvider); ok {
		errs = append(errs, mp.ForceFlush(ctx))
	}
	if tp, ok := p.Tracers.(*sdktrace.TracerProvider); ok {
		errs = append(errs, tp.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}
