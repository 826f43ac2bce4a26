package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/tmwarden/tmwarden/configfile"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "node-1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Interval, cfg.BufferSize = "bad name", time.Millisecond, 0
	cfg.Collectors.Enabled = map[string]bool{"no-such-collector": true}
	err := cfg.Validate()
	for _, want := range []string{`node_name "bad name"`, "interval 1ms", "buffer_size 0", `unknown collector "no-such-collector"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestCollectorFlagsAndFileCombine(t *testing.T) {
	cfg, err := configfile.Load("agent", []string{"--collector.host=false", "--node-name", "n1", "--interval", "2s"}, DefaultConfig, BindFlags)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Collectors.Enabled["host"] || cfg.NodeName != "n1" || cfg.Interval != 2*time.Second {
		t.Errorf("got %+v", cfg)
	}
}
