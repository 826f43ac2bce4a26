package telemetry

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config is the `telemetry:` section shared by agent and coordinator. The zero value exports
// nothing over OTLP; the Prometheus endpoint is always served.
type Config struct {
	// Endpoint is the OTLP receiver: host:port for grpc (default port 4317), or host:port or an
	// http(s):// URL for http (default port 4318; the /v1/metrics and /v1/traces paths are
	// appended). Empty (the default) turns OTLP export off.
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc or http. Default: grpc.
	Protocol string `yaml:"protocol"`
	// Insecure sends OTLP without TLS. Default: false (TLS with the system roots).
	Insecure bool `yaml:"insecure"`
	// Headers are sent with every OTLP request, e.g. an API key. Default: none.
	Headers map[string]string `yaml:"headers"`
	// Interval is how often metrics are pushed over OTLP. Default: 30s.
	Interval time.Duration `yaml:"interval"`
	// Traces turns span export over OTLP on (needs Endpoint). Default: true when Endpoint is set.
	Traces *bool `yaml:"traces"`
	// TraceSampleRatio is the share of root traces kept, in [0, 1]. Default: 1.
	TraceSampleRatio float64 `yaml:"trace_sample_ratio"`
}

// Defaults used when a Config field is left empty.
const (
	DefaultProtocol = "grpc"
	DefaultInterval = 30 * time.Second
)

// DefaultConfig returns the documented defaults: no OTLP export; when an endpoint is set,
// metrics every 30s over gRPC and every trace kept. YAML is decoded onto it, so an omitted
// option keeps its default and an explicit 0 means zero (or is refused).
func DefaultConfig() Config {
	return Config{Protocol: DefaultProtocol, Interval: DefaultInterval, TraceSampleRatio: 1}
}

// WithDefaults returns c with an empty protocol and an unset traces switch resolved. Numbers
// are never filled in here: a zero is what the operator wrote.
func (c Config) WithDefaults() Config {
	if c.Protocol == "" {
		c.Protocol = DefaultProtocol
	}
	if c.Traces == nil {
		on := c.Endpoint != ""
		c.Traces = &on
	}
	return c
}

// Validate reports the first problem in c (after defaults).
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch c.Protocol {
	case "grpc", "http":
	default:
		return fmt.Errorf("telemetry.protocol %q: want grpc or http", c.Protocol)
	}
	if c.Endpoint != "" && c.Interval < time.Second {
		return fmt.Errorf("telemetry.interval %s: want at least 1s", c.Interval)
	}
	if c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		return fmt.Errorf("telemetry.trace_sample_ratio %v: want a number in [0, 1] (0 keeps no trace)", c.TraceSampleRatio)
	}
	if c.Endpoint != "" {
		if _, err := c.endpoint(); err != nil {
			return err
		}
	} else if *c.Traces {
		return fmt.Errorf("telemetry.traces is on but telemetry.endpoint is empty")
	}
	for k := range c.Headers {
		if strings.TrimSpace(k) == "" {
			return fmt.Errorf("telemetry.headers: empty header name")
		}
	}
	return nil
}

// endpoint splits Endpoint into host:port and, for URLs, the scheme-implied insecure flag.
type parsedEndpoint struct {
	hostPort string
	path     string // URL path prefix before /v1/metrics and /v1/traces (http only)
	insecure bool
}

func (c Config) endpoint() (parsedEndpoint, error) {
	e := c.Endpoint
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return parsedEndpoint{}, fmt.Errorf("telemetry.endpoint %q: %w", e, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return parsedEndpoint{}, fmt.Errorf("telemetry.endpoint %q: scheme must be http or https", e)
		}
		if u.Host == "" {
			return parsedEndpoint{}, fmt.Errorf("telemetry.endpoint %q: no host", e)
		}
		return parsedEndpoint{hostPort: u.Host, path: strings.TrimSuffix(u.Path, "/"), insecure: c.Insecure || u.Scheme == "http"}, nil
	}
	if e == "" || strings.ContainsAny(e, "/ ") {
		return parsedEndpoint{}, fmt.Errorf("telemetry.endpoint %q: want host:port or an http(s):// URL", e)
	}
	return parsedEndpoint{hostPort: e, insecure: c.Insecure}, nil
}
