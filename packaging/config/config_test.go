// Package config holds the example configuration files shipped with tmwarden; its test keeps
// them loadable, so the documented defaults cannot drift from the code.
package config

import (
	"reflect"
	"testing"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/coordinator"
)

func TestAgentExampleIsTheDefaults(t *testing.T) {
	cfg := agent.DefaultConfig()
	if err := configfile.DecodeFile("agent.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	want := agent.DefaultConfig()
	cfg.Labels, want.Labels = nil, nil
	cfg.Collectors.Enabled, want.Collectors.Enabled = nil, nil
	if cfg.Collectors.TaskManagers.ScanProc != nil && *cfg.Collectors.TaskManagers.ScanProc {
		cfg.Collectors.TaskManagers.ScanProc = want.Collectors.TaskManagers.ScanProc
	}
	cfg.Collectors.TaskManagers.ExtraMainClasses, want.Collectors.TaskManagers.ExtraMainClasses = nil, nil
	cfg.Collectors.TaskManagers.Static, want.Collectors.TaskManagers.Static = nil, nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("agent.yaml differs from the defaults:\n file %+v\n code %+v", cfg, want)
	}
}

func TestCoordinatorExampleIsTheDefaults(t *testing.T) {
	cfg := coordinator.DefaultConfig()
	if err := configfile.DecodeFile("coordinator.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, coordinator.DefaultConfig()) {
		t.Errorf("coordinator.yaml differs from the defaults:\n file %+v\n code %+v", cfg, coordinator.DefaultConfig())
	}
}
