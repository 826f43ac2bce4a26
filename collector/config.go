package collector

import (
	"errors"
	"fmt"
)

// Config is the `collectors:` section of the agent's YAML file.
type Config struct {
	// Enabled turns collectors on or off by name; a collector not named keeps its default.
	Enabled map[string]bool `yaml:"enabled"`
	// Paths lets the agent read the host's files when it runs in a container with the host mounted.
	Paths Paths `yaml:"paths"`
	// Host tunes the host collector.
	Host HostConfig `yaml:"host"`
	// TaskManagers tunes TaskManager discovery.
	TaskManagers TaskManagersConfig `yaml:"taskmanagers"`
	// Flink tunes the TaskManager metrics scrape (type in flink.go).
	Flink FlinkConfig `yaml:"flink"`
}

// HostConfig is the `collectors.host:` section. Empty strings mean the default.
type HostConfig struct {
	// DiskIgnore is a regexp of block devices left out of the report (pseudo devices and
	// partitions, whose IO their whole disk already counts). Default
	// `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$` (node_exporter's).
	DiskIgnore string `yaml:"disk_ignore"`
	// NetIgnore is a regexp of network interfaces left out of the report (loopback and the
	// per-pod veth ends, which would make the report grow with the pod count).
	// Default `^(lo|veth.*|cali.*|lxc.*)$`.
	NetIgnore string `yaml:"net_ignore"`
}

// TaskManagersConfig is the `collectors.taskmanagers:` section.
type TaskManagersConfig struct {
	// DefaultPort is the PrometheusReporter port assumed when neither the command line nor the
	// Flink configuration names one. Default 9249 (Flink's default).
	DefaultPort int `yaml:"default_port"`
	// ExtraMainClasses are main classes recognised as TaskManagers besides Flink's three
	// (TaskManagerRunner, KubernetesTaskExecutorRunner, YarnTaskExecutorRunner). Default none.
	ExtraMainClasses []string `yaml:"extra_main_classes"`
	// ScanProc finds TaskManager JVMs in procfs. Default true; turn off when only Static is used.
	ScanProc *bool `yaml:"scan_proc"`
	// Static lists TaskManagers given by hand (bare metal, or JVMs the agent cannot see in
	// procfs). A static target whose endpoint port belongs to a discovered JVM is merged with it.
	// Default none.
	Static []StaticTaskManager `yaml:"static"`
}

// StaticTaskManager is one hand-configured TaskManager.
type StaticTaskManager struct {
	// Endpoint is the PrometheusReporter's host:port. Required.
	Endpoint string `yaml:"endpoint"`
	// ResourceID is Flink's taskmanager.resource-id; empty means learnt from the scrape.
	ResourceID string `yaml:"resource_id"`
}

// Paths are the roots of the host's pseudo-filesystems.
type Paths struct {
	// ProcFS is the host's /proc. Default /proc.
	ProcFS string `yaml:"procfs"`
	// SysFS is the host's /sys. Default /sys.
	SysFS string `yaml:"sysfs"`
	// RootFS is the host's /. Default /.
	RootFS string `yaml:"rootfs"`
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		Paths:        Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"},
		Host:         HostConfig{DiskIgnore: DefaultDiskIgnore, NetIgnore: DefaultNetIgnore},
		TaskManagers: TaskManagersConfig{DefaultPort: 9249},
		Flink:        FlinkConfig{}.withDefaults(),
	}
}

// Validate refuses numbers that make no sense, naming the option. The defaults come from
// DefaultConfig, onto which the file is decoded, so a 0 here was written by the operator: a
// zero scrape timeout, concurrency, body cap or port would scrape nothing.
func (c Config) Validate() error {
	var errs []error
	if c.TaskManagers.DefaultPort <= 0 || c.TaskManagers.DefaultPort > 65535 {
		errs = append(errs, fmt.Errorf("collectors.taskmanagers.default_port %d: want a port in 1-65535", c.TaskManagers.DefaultPort))
	}
	if c.Flink.ScrapeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("collectors.flink.scrape_timeout %v: must be positive (omit it for the default %v)", c.Flink.ScrapeTimeout, FlinkConfig{}.withDefaults().ScrapeTimeout))
	}
	if c.Flink.MaxConcurrent <= 0 {
		errs = append(errs, fmt.Errorf("collectors.flink.max_concurrent %d: must be at least 1", c.Flink.MaxConcurrent))
	}
	if c.Flink.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("collectors.flink.max_body_bytes %d: must be positive", c.Flink.MaxBodyBytes))
	}
	if err := ValidateEnabled(c); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// IsEnabled reports whether the named registration is on under this config.
func (c Config) IsEnabled(reg Registration) bool {
	if on, ok := c.Enabled[reg.Name]; ok {
		return on
	}
	return reg.DefaultEnabled
}
