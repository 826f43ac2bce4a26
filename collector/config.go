package collector

// Config is the `collectors:` section of the agent's YAML file.
type Config struct {
	// Enabled turns collectors on or off by name; a collector not named keeps its default.
	Enabled map[string]bool `yaml:"enabled"`
	// Paths lets the agent read the host's files when it runs in a container with the host mounted.
	Paths Paths `yaml:"paths"`
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
		Paths: Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"},
	}
}

// IsEnabled reports whether the named registration is on under this config.
func (c Config) IsEnabled(reg Registration) bool {
	if on, ok := c.Enabled[reg.Name]; ok {
		return on
	}
	return reg.DefaultEnabled
}
