// Package telemetry sets up the OpenTelemetry meter provider of a tmwarden process and serves
// its metrics in the Prometheus text format. Each process (and each agent in the demo) gets its
// own registry, so several components in one process never mix their series.
package telemetry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Provider owns a meter provider and the HTTP handler that exposes it.
type Provider struct {
	Meters  metric.MeterProvider
	Handler http.Handler
	sdk     *sdkmetric.MeterProvider
}

// New builds a provider for service (tmwarden-agent or tmwarden-coordinator) with a private
// Prometheus registry that also carries the Go runtime and process collectors.
func New(service, version string, attrs ...attribute.KeyValue) (*Provider, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("creating prometheus exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		append([]attribute.KeyValue{semconv.ServiceName(service), semconv.ServiceVersion(version)}, attrs...)...)
	sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	return &Provider{
		Meters:  sdk,
		Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
		sdk:     sdk,
	}, nil
}

// Noop is a provider that records nothing, for components that must not export (the demo's
// simulated agents).
func Noop() *Provider {
	return &Provider{Meters: noop.NewMeterProvider(), Handler: http.NotFoundHandler()}
}

// Shutdown flushes and stops the provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}
