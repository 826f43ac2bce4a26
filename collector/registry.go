package collector

import (
	"fmt"
	"sort"
)

// table lists every collector, in the order the agent runs them each interval. Later rows may
// read what earlier rows put into the report (the Flink scrape reads the discovered TaskManagers).
// Adding a collector is one new file and one row here.
var table = []Registration{
	{Name: "host", DefaultEnabled: true, Help: "CPU, load, memory, disks, network and TCP from /proc via gopsutil", New: newHostCollector},
}

// Registrations returns the collector table in run order.
func Registrations() []Registration {
	out := make([]Registration, len(table))
	copy(out, table)
	return out
}

// Names returns every registered collector name, sorted.
func Names() []string {
	names := make([]string, 0, len(table))
	for _, r := range table {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return names
}

// ValidateEnabled rejects names in the enabled map that no collector has.
func ValidateEnabled(c Config) error {
	known := map[string]bool{}
	for _, r := range table {
		known[r.Name] = true
	}
	for name := range c.Enabled {
		if !known[name] {
			return fmt.Errorf("collectors.enabled: unknown collector %q (known: %v)", name, Names())
		}
	}
	return nil
}
