package coordinator

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/decisions"
	"github.com/tmwarden/tmwarden/coordinator/leader"
	"github.com/tmwarden/tmwarden/coordinator/store"
	"github.com/tmwarden/tmwarden/mtls"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Config is the coordinator's YAML file (see README "Coordinator configuration"); flags override it.
type Config struct {
	// DataDir holds the pebble store. Default /var/lib/tmwarden.
	DataDir string `yaml:"data_dir"`
	// GRPCAddr is where agents connect. Default :9710.
	GRPCAddr string `yaml:"grpc_addr"`
	// HTTPAddr serves the API, /healthz, /readyz and /metrics. Default :9711.
	HTTPAddr string `yaml:"http_addr"`
	// PprofAddr serves Go's runtime profiles (net/http/pprof: CPU, heap, goroutines) on an
	// address of their own, apart from the API, so they are never exposed by accident.
	// Default "" (off).
	PprofAddr string `yaml:"pprof_addr"`
	// MissedIntervals is how many report intervals a node may stay silent before it is
	// unreachable. Default 3.
	MissedIntervals int `yaml:"missed_intervals"`
	// DefaultInterval is assumed for agents that do not announce theirs. Default 5s.
	DefaultInterval time.Duration `yaml:"default_interval"`
	// MaxMessageBytes caps one gRPC message from an agent. Default 16777216 (16 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// MaxReportsPerSecond throttles one agent's stream: reports beyond it wait (the agent's
	// buffer absorbs them) and the limit counter goes up. Default 20.
	MaxReportsPerSecond float64 `yaml:"max_reports_per_second"`
	// ReportBurst lets an agent that reconnects after an outage replay this many buffered reports
	// at full speed before the rate applies. Default 1000.
	ReportBurst int `yaml:"report_burst"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// GCPercent is the garbage collector's target, as Go's GOGC: a collection starts when the
	// heap has grown by this percentage of what the last one left (and of the goroutine stacks).
	// Lower trades CPU for memory. The GOGC environment variable, when set, wins. Default 50
	// (DefaultGCPercent, where the measurement behind it is).
	GCPercent int `yaml:"gc_percent"`
	// TLS secures the agents' streams; with ca_file, agents must present a certificate signed
	// by it (mTLS). Certificates are reloaded when their files change. Default off.
	TLS mtls.Config `yaml:"tls"`
	// AgentIdentity says what an agent's client certificate must vouch for under mTLS:
	// "node-name" (default): the node the agent reports as must be the certificate's Common Name
	// or one of its DNS names, so one node's key cannot speak for another;
	// "any": any certificate signed by the CA may report as any node (one certificate shared by
	// every agent).
	AgentIdentity string `yaml:"agent_identity"`
	// APITokenFile holds a bearer token that the HTTP API requires for every mutating request
	// (approvals); reads stay open. Default none (no token).
	APITokenFile string `yaml:"api_token_file"`
	// Telemetry exports the coordinator's own metrics and traces over OTLP (see
	// telemetry.Config); /metrics on http_addr is always on. Default: no OTLP.
	Telemetry telemetry.Config `yaml:"telemetry"`
	// Detection configures the model and the detector (see DetectionConfig).
	Detection DetectionConfig `yaml:"detection"`
	// Decisions configures the decision policy (mode dry-run, approve or auto; guardrails) and
	// its executor. Default: dry-run.
	Decisions decisions.Config `yaml:"decisions"`
	// Actuator says how decisions are carried out: log (default), kubernetes, baremetal, webhook.
	Actuator actuate.Config `yaml:"actuator"`
	// Flink lists the JobManagers to poll for the topology (see FlinkConfig).
	Flink FlinkConfig `yaml:"flink"`
	// Leader elects the one acting replica on a Kubernetes Lease (see leader.Config). Default:
	// on when lease_name or TMWARDEN_LEASE_NAME is set, otherwise this coordinator always acts.
	Leader leader.Config `yaml:"leader"`
	// Store says where the decision log, audit, command records, node records and events live:
	// pebble under data_dir (default, one replica) or an etcd every replica shares
	// (docs/high-availability.md).
	Store store.Config `yaml:"store"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:             "/var/lib/tmwarden",
		GRPCAddr:            ":9710",
		HTTPAddr:            ":9711",
		MissedIntervals:     3,
		DefaultInterval:     5 * time.Second,
		MaxMessageBytes:     16 << 20,
		MaxReportsPerSecond: 20,
		ReportBurst:         1000,
		LogLevel:            "info",
		GCPercent:           DefaultGCPercent,
		AgentIdentity:       AgentIdentityNodeName,
		Leader:              leader.DefaultConfig(),
		Store:               store.DefaultConfig(),
		Detection:           defaultDetectionConfig(),
		Decisions:           decisions.DefaultConfig(),
		Actuator:            actuate.DefaultConfig(),
		Flink:               FlinkConfig{PollInterval: 15 * time.Second, StaleAfter: time.Minute},
		Telemetry:           telemetry.DefaultConfig(),
	}
}

// What an agent's client certificate must vouch for (Config.AgentIdentity).
const (
	AgentIdentityNodeName = "node-name"
	AgentIdentityAny      = "any"
)

// BindFlags registers the coordinator's flags with cfg's fields as their targets.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory of the embedded pebble store")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "gRPC listen address for agents")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listen address for the API, health and metrics")
	fs.StringVar(&cfg.PprofAddr, "pprof-addr", cfg.PprofAddr, "listen address for Go's runtime profiles (/debug/pprof/); empty turns them off")
	fs.IntVar(&cfg.MissedIntervals, "missed-intervals", cfg.MissedIntervals, "silent report intervals before a node is unreachable")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", cfg.MaxMessageBytes, "largest gRPC message accepted from an agent")
	fs.StringVar(&cfg.APITokenFile, "api-token-file", cfg.APITokenFile, "file holding the bearer token required for mutating API requests")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.IntVar(&cfg.GCPercent, "gc-percent", cfg.GCPercent, "garbage collector target, as GOGC (which wins when set): lower trades CPU for memory")
}

// Validate checks the configuration and names every problem it finds.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: empty"))
	}
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("grpc_addr: empty"))
	}
	if c.MissedIntervals < 1 {
		errs = append(errs, fmt.Errorf("missed_intervals %d: must be at least 1", c.MissedIntervals))
	}
	if c.DefaultInterval <= 0 {
		errs = append(errs, fmt.Errorf("default_interval %v: must be positive", c.DefaultInterval))
	}
	if c.GCPercent < 1 {
		errs = append(errs, fmt.Errorf("gc_percent %d: must be at least 1 (GOGC=off is for the environment, not the configuration)", c.GCPercent))
	}
	if c.MaxMessageBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_message_bytes %d: must be at least 1024", c.MaxMessageBytes))
	}
	if c.MaxReportsPerSecond <= 0 || c.ReportBurst < 1 {
		errs = append(errs, fmt.Errorf("max_reports_per_second %v / report_burst %d: must be positive", c.MaxReportsPerSecond, c.ReportBurst))
	}
	if c.Detection.Interval <= 0 || c.Detection.Window < 2 || c.Detection.ForgetAfter <= 0 {
		errs = append(errs, fmt.Errorf("detection: interval %v, window %d, forget_after %v: need a positive interval, a window of 2 or more and a positive forget_after",
			c.Detection.Interval, c.Detection.Window, c.Detection.ForgetAfter))
	}
	if err := c.Detection.Peer.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Store.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Leader.WithEnv().Validate(); err != nil {
		errs = append(errs, err)
	}
	// WithEnv fills durations left empty by code; from YAML a zero is what the operator wrote.
	if c.Leader.WithEnv().Enabled() {
		for _, d := range []struct {
			key string
			v   time.Duration
		}{{"lease_duration", c.Leader.LeaseDuration}, {"renew_deadline", c.Leader.RenewDeadline}, {"retry_period", c.Leader.RetryPeriod}, {"take_over_timeout", c.Leader.TakeOverTimeout}} {
			if d.v <= 0 {
				errs = append(errs, fmt.Errorf("leader.%s %v: must be positive", d.key, d.v))
			}
		}
	}
	if _, err := c.Decisions.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Actuator.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Telemetry.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.TLS.Validate(true); err != nil {
		errs = append(errs, err)
	}
	if c.AgentIdentity != AgentIdentityNodeName && c.AgentIdentity != AgentIdentityAny {
		errs = append(errs, fmt.Errorf("agent_identity %q: want %q or %q", c.AgentIdentity, AgentIdentityNodeName, AgentIdentityAny))
	}
	if c.Flink.PollInterval <= 0 || c.Flink.StaleAfter <= 0 {
		errs = append(errs, fmt.Errorf("flink.poll_interval %v / flink.stale_after %v: must be positive", c.Flink.PollInterval, c.Flink.StaleAfter))
	}
	for i, jm := range c.Flink.JobManagers {
		if jm.URL == "" {
			errs = append(errs, fmt.Errorf("flink.jobmanagers[%d].url: empty", i))
		}
		if jm.Timeout != nil && *jm.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("flink.jobmanagers[%d].timeout %v: must be positive (omit it for the default)", i, *jm.Timeout))
		}
	}
	return errors.Join(errs...)
}
