package agent

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/collector"
	"github.com/tmwarden/tmwarden/localstate"
	"github.com/tmwarden/tmwarden/mtls"
	"github.com/tmwarden/tmwarden/telemetry"
)

// Config is the agent's YAML file (see README "Agent configuration"); flags override it.
type Config struct {
	// NodeName identifies this node to the coordinator. Default: $NODE_NAME, else the hostname.
	NodeName string `yaml:"node_name"`
	// Coordinator is the coordinator's gRPC address. Default 127.0.0.1:9710.
	Coordinator string `yaml:"coordinator"`
	// Interval between reports. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// HTTPAddr serves /healthz, /metrics and /debug/status; empty disables it. Default 127.0.0.1:9712.
	HTTPAddr string `yaml:"http_addr"`
	// BufferSize is how many unacknowledged reports are kept while the coordinator is away;
	// the oldest is dropped first when it is full. Default 720 (one hour at 5 s).
	BufferSize int `yaml:"buffer_size"`
	// BackoffInitial is the first reconnect delay. Default 500ms.
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	// BackoffMax caps the reconnect delay. Default 30s.
	BackoffMax time.Duration `yaml:"backoff_max"`
	// MaxMessageBytes caps one gRPC message in either direction. Default 16777216 (16 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// Labels are sent in Hello (zone, rack, pool, ...). Default none.
	Labels map[string]string `yaml:"labels"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// TLS secures the stream to the coordinator; with cert_file the agent presents a client
	// certificate (mTLS). Certificates are reloaded when their files change. Default off.
	TLS mtls.Config `yaml:"tls"`
	// Telemetry exports the agent's own metrics and traces over OTLP (see telemetry.Config);
	// /metrics on http_addr is always on. Default: no OTLP.
	Telemetry telemetry.Config `yaml:"telemetry"`
	// StateCache is the node-local checkpoint-state cache: the S3 gateway Flink's checkpoint
	// storage points at, with write-through, lazy load and prefetch (see localstate.Config).
	// Default off.
	StateCache localstate.Config `yaml:"state_cache"`
	// Collectors configures the collectors (see collector.Config).
	Collectors collector.Config `yaml:"collectors"`
	// Drain is the command run when the coordinator asks this node to drain (see DrainConfig).
	Drain DrainConfig `yaml:"drain"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	name := os.Getenv("NODE_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	return Config{
		NodeName:        name,
		Coordinator:     "127.0.0.1:9710",
		Interval:        5 * time.Second,
		HTTPAddr:        "127.0.0.1:9712",
		BufferSize:      720,
		BackoffInitial:  500 * time.Millisecond,
		BackoffMax:      30 * time.Second,
		MaxMessageBytes: 16 << 20,
		LogLevel:        "info",
		Collectors:      collector.DefaultConfig(),
		StateCache:      localstate.DefaultConfig(),
		Drain:           DefaultDrainConfig(),
		Telemetry:       telemetry.DefaultConfig(),
	}
}

// BindFlags registers the agent's flags with cfg's fields as their targets.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.NodeName, "node-name", cfg.NodeName, "node name reported to the coordinator")
	fs.StringVar(&cfg.Coordinator, "coordinator", cfg.Coordinator, "coordinator gRPC address host:port")
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "report interval")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "address for /healthz, /metrics and /debug/status (empty: off)")
	fs.IntVar(&cfg.BufferSize, "buffer-size", cfg.BufferSize, "unacknowledged reports kept during a coordinator outage")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.Collectors.Paths.ProcFS, "path.procfs", cfg.Collectors.Paths.ProcFS, "host /proc mount point")
	fs.StringVar(&cfg.Collectors.Paths.SysFS, "path.sysfs", cfg.Collectors.Paths.SysFS, "host /sys mount point")
	fs.StringVar(&cfg.Collectors.Paths.RootFS, "path.rootfs", cfg.Collectors.Paths.RootFS, "host / mount point")
	for _, reg := range collector.Registrations() {
		fs.Var(collectorFlag{cfg: cfg, name: reg.Name}, "collector."+reg.Name,
			fmt.Sprintf("enable the %s collector: %s (default %v)", reg.Name, reg.Help, reg.DefaultEnabled))
	}
}

// collectorFlag is a boolean flag that writes into Collectors.Enabled.
type collectorFlag struct {
	cfg  *Config
	name string
}

func (f collectorFlag) String() string {
	if f.cfg == nil {
		return ""
	}
	if on, ok := f.cfg.Collectors.Enabled[f.name]; ok {
		return fmt.Sprint(on)
	}
	return ""
}

func (f collectorFlag) Set(s string) error {
	var on bool
	switch s {
	case "true", "1", "yes", "on":
		on = true
	case "false", "0", "no", "off":
	default:
		return fmt.Errorf("want true or false, got %q", s)
	}
	if f.cfg.Collectors.Enabled == nil {
		f.cfg.Collectors.Enabled = map[string]bool{}
	}
	f.cfg.Collectors.Enabled[f.name] = on
	return nil
}

func (f collectorFlag) IsBoolFlag() bool { return true }

// Validate checks the configuration and names the first problem it finds.
func (c Config) Validate() error {
	var errs []error
	if !tmwardenv1.ValidNodeName(c.NodeName) {
		errs = append(errs, fmt.Errorf("node_name %q: must be 1-253 letters, digits, '.', '_' or '-'", c.NodeName))
	}
	if c.Coordinator == "" {
		errs = append(errs, errors.New("coordinator: address is empty"))
	}
	if c.Interval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("interval %v: must be at least 10ms", c.Interval))
	}
	if c.BufferSize < 1 {
		errs = append(errs, fmt.Errorf("buffer_size %d: must be at least 1", c.BufferSize))
	}
	if c.BackoffInitial <= 0 || c.BackoffMax < c.BackoffInitial {
		errs = append(errs, fmt.Errorf("backoff_initial %v / backoff_max %v: need 0 < initial <= max", c.BackoffInitial, c.BackoffMax))
	}
	if c.MaxMessageBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_message_bytes %d: must be at least 1024", c.MaxMessageBytes))
	}
	if err := c.Telemetry.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.TLS.Validate(false); err != nil {
		errs = append(errs, err)
	}
	if err := c.Collectors.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.StateCache.Enabled {
		if err := c.StateCache.CheckLimits(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Drain.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("drain.timeout %v: must be positive (omit it for the default %v)", c.Drain.Timeout, DefaultDrainConfig().Timeout))
	}
	return errors.Join(errs...)
}
