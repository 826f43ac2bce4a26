package coordinator_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/coordinator"
)

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

// TestExplicitZero writes `key: 0` for every numeric option of the coordinator's YAML and checks
// that it is either refused with an error naming the option, or kept as 0 through validation and
// normalization: never quietly replaced by the default that omitting the option gives.
func TestExplicitZero(t *testing.T) {
	const refused, zero = "refused", "zero"
	want := map[string]string{
		"missed_intervals":       refused,
		"gc_percent":             refused,
		"default_interval":       refused,
		"max_message_bytes":      refused,
		"max_reports_per_second": refused,
		"report_burst":           refused,
		// With an OTLP endpoint (set below) a zero push interval makes no sense; a zero sample
		// ratio keeps no trace.
		"telemetry.interval":           refused,
		"telemetry.trace_sample_ratio": zero,
		"detection.interval":           refused,
		"detection.window":             refused,
		"detection.forget_after":       refused,
		// The detector's tuning: zero keeps its meaning where it has one (no margin, no floor,
		// no single-window verdicts, no evidence kept, a learned speed that stays).
		"detection.peer.min_busy_ms":            zero,
		"detection.peer.min_peers":              refused,
		"detection.peer.slowdown":               refused,
		"detection.peer.backpressure_excess_ms": zero,
		"detection.peer.gc_excess_ms":           zero,
		"detection.peer.single_slowdown":        refused,
		"detection.peer.node_share":             refused,
		"detection.peer.min_vertices":           refused,
		"detection.peer.strong_windows":         refused,
		"detection.peer.weak_windows":           refused,
		"detection.peer.clear_windows":          refused,
		"detection.peer.decisive_host_score":    zero,
		"detection.peer.weak_of":                refused,
		"detection.peer.severe_host_score":      zero,
		"detection.peer.host_only_windows":      refused,
		"detection.peer.forget_after":           refused,
		"detection.peer.max_evidence":           zero,
		"detection.peer.gc_elevated_ms":         zero,
		"detection.peer.learn_windows":          refused,
		"detection.peer.min_class_peers":        refused,
		"detection.peer.speed_alpha":            zero,
		"detection.peer.slower_hardware":        refused,
		"detection.peer.host_stand_out":         zero,
		// 0 migrations in flight is a kill switch; 0 quarantined share allows none.
		"decisions.policy.max_concurrent_migrations": zero,
		"decisions.policy.max_quarantined_share":     zero,
		"decisions.policy.job_cooldown":              zero,
		"decisions.policy.confirm_rounds":            refused,
		"decisions.policy.clear_rounds":              refused,
		"decisions.policy.quarantine_min":            zero,
		"decisions.policy.recovery_rounds":           zero,
		"decisions.policy.probation_min":             zero,
		"decisions.policy.approval_ttl":              refused,
		"decisions.policy.retry_after":               zero,
		// The breaker trips on at least one node whatever the minimum and shares say.
		"decisions.policy.breaker_min_nodes":     zero,
		"decisions.policy.breaker_bad_share":     zero,
		"decisions.policy.breaker_vanish_share":  zero,
		"decisions.policy.breaker_regress_share": zero,
		"decisions.policy.breaker_hold":          zero,
		"decisions.policy.breaker_vanish_window": zero,
		"decisions.exec_interval":                refused,
		"decisions.step_timeout":                 refused,
		"decisions.max_plan_attempts":            refused,
		"decisions.blocked_timeout":              refused,
		"actuator.kubernetes.checkpoint_timeout": refused,
		"actuator.kubernetes.pdb_retry":          refused,
		"actuator.kubernetes.pod_gone_poll":      refused,
		"actuator.kubernetes.qps":                refused,
		"actuator.kubernetes.burst":              refused,
		"actuator.baremetal.command_timeout":     refused,
		"actuator.baremetal.poll":                refused,
		"actuator.webhook.timeout":               refused,
		"actuator.webhook.retries":               zero,
		"actuator.webhook.backoff":               refused,
		"flink.poll_interval":                    refused,
		"flink.stale_after":                      refused,
		"leader.lease_duration":                  refused,
		"leader.renew_deadline":                  refused,
		"leader.retry_period":                    refused,
		"leader.take_over_timeout":               refused,
		"store.etcd.dial_timeout":                refused,
		"store.etcd.request_timeout":             refused,
	}
	keys := configfile.NumericKeys(coordinator.Config{})
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
			cfg := coordinator.DefaultConfig()
			// Sections whose options only matter when in use are switched on.
			switch section, rest, _ := strings.Cut(key, "."); section {
			case "actuator":
				cfg.Actuator.Kind, _, _ = strings.Cut(rest, ".")
			case "leader":
				cfg.Leader.LeaseName = "tmwarden-coordinator"
			case "telemetry":
				cfg.Telemetry.Endpoint = "otel-collector:4317"
			case "store":
				cfg.Store.Backend, cfg.Store.Etcd.Endpoints = "etcd", []string{"http://etcd:2379"}
			}
			if err := configfile.Decode(strings.NewReader(configfile.ZeroAt(key)), "test.yaml", &cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			leaf := key[strings.LastIndex(key, ".")+1:]
			switch expect {
			case refused:
				if err == nil || !strings.Contains(err.Error(), leaf) {
					t.Fatalf("%s: 0 was accepted or refused without naming the option: %v", key, err)
				}
			case zero:
				if err != nil {
					t.Fatalf("%s: 0 refused: %v", key, err)
				}
				// What the decision manager would run with.
				if d, err := cfg.Decisions.Validate(); err != nil {
					t.Fatal(err)
				} else {
					cfg.Decisions = d
				}
				if v := valueAt(t, reflect.ValueOf(cfg), key); !v.IsZero() {
					t.Fatalf("%s: 0 became %v", key, v)
				}
			}
		})
	}
}

// TestJobManagerTimeoutZero: flink.jobmanagers[].timeout sits in a list, which the table above
// does not walk. Omitted it is the default (10s); an explicit 0 is refused, naming the option.
func TestJobManagerTimeoutZero(t *testing.T) {
	for _, tc := range []struct {
		yaml    string
		refused bool
	}{
		{"flink:\n  jobmanagers:\n    - url: http://jm:8081\n", false},
		{"flink:\n  jobmanagers:\n    - url: http://jm:8081\n      timeout: 0\n", true},
		{"flink:\n  jobmanagers:\n    - url: http://jm:8081\n      timeout: 2s\n", false},
	} {
		cfg := coordinator.DefaultConfig()
		if err := configfile.Decode(strings.NewReader(tc.yaml), "test.yaml", &cfg); err != nil {
			t.Fatal(err)
		}
		err := cfg.Validate()
		if tc.refused != (err != nil) || err != nil && !strings.Contains(err.Error(), "flink.jobmanagers[0].timeout") {
			t.Errorf("%q: %v, want refused %v naming flink.jobmanagers[0].timeout", tc.yaml, err, tc.refused)
		}
	}
}
