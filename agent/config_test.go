package agent

import (
	"reflect"
	"slices"
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

// TestExplicitZero writes `key: 0` for every numeric option of the agent's YAML and checks that
// it is either refused with an error naming the option, or kept as 0 (never quietly replaced by
// the default that omitting the option gives), as coordinator.TestExplicitZero does for the
// coordinator. A new numeric option fails the test until it has a row.
func TestExplicitZero(t *testing.T) {
	const refused, zero = "refused", "zero"
	want := map[string]string{
		"interval":          refused,
		"buffer_size":       refused,
		"backoff_initial":   refused,
		"backoff_max":       refused,
		"max_message_bytes": refused,
		// With an OTLP endpoint (set below) a zero push interval makes no sense; a zero sample
		// ratio keeps no trace.
		"telemetry.interval":                     refused,
		"telemetry.trace_sample_ratio":           zero,
		"state_cache.capacity_bytes":             refused,
		"state_cache.upstream.timeout":           refused,
		"state_cache.fetch_chunk_bytes":          refused,
		"state_cache.max_concurrent_fetches":     refused,
		"state_cache.passthrough_distance_bytes": refused,
		"state_cache.janitor.interval":           refused,
		"state_cache.janitor.grace_period":       refused,
		// No budget.
		"state_cache.janitor.budget_bytes":     zero,
		"collectors.taskmanagers.default_port": refused,
		"collectors.flink.scrape_timeout":      refused,
		"collectors.flink.max_concurrent":      refused,
		"collectors.flink.max_body_bytes":      refused,
		"drain.timeout":                        refused,
	}
	keys := configfile.NumericKeys(Config{})
	for k := range want {
		if !slices.Contains(keys, k) {
			t.Errorf("the table has %s, which the configuration no longer has", k)
		}
	}
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			expect, ok := want[key]
			if !ok {
				t.Fatalf("new numeric option %s: add it to this table and decide what 0 means", key)
			}
			cfg := DefaultConfig()
			cfg.NodeName = "node-1"
			// Sections whose options only matter when in use are switched on.
			switch section, _, _ := strings.Cut(key, "."); section {
			case "telemetry":
				cfg.Telemetry.Endpoint = "otel-collector:4317"
			case "state_cache":
				cfg.StateCache.Enabled = true
				cfg.StateCache.AccessKey, cfg.StateCache.SecretKey = "flink", "flink-secret"
				cfg.StateCache.Upstream.Endpoint = "http://minio:9000"
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the defaults with the section on are refused: %v", err)
			}
			if err := configfile.Decode(strings.NewReader(configfile.ZeroAt(key)), "test.yaml", &cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			switch expect {
			case refused:
				if err == nil || !strings.Contains(err.Error(), key) && !strings.Contains(err.Error(), key[strings.LastIndex(key, ".")+1:]+" ") {
					t.Fatalf("%s: 0 was accepted or refused without naming the option: %v", key, err)
				}
			case zero:
				if err != nil {
					t.Fatalf("%s: 0 refused: %v", key, err)
				}
				if v := valueAt(t, reflect.ValueOf(cfg), key); !v.IsZero() {
					t.Fatalf("%s: 0 became %v", key, v)
				}
			}
		})
	}
}

// valueAt returns the field of v at a dotted YAML path.
func valueAt(t *testing.T, v reflect.Value, key string) reflect.Value {
	t.Helper()
	for _, part := range strings.Split(key, ".") {
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		found := false
		for i := range v.NumField() {
			if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); name == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			t.Fatalf("%s: no field %q", key, part)
		}
	}
	return v
}
