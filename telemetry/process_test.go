package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// TestProcessCollectorMatchesClientGolang gathers this test process with the agent's process
// collector and with client_golang's beside it: the same series with the same values where
// they cannot move between the two reads (limits, start time), sane ones where they can, and
// none of the namespace-wide network counters.
func TestProcessCollectorMatchesClientGolang(t *testing.T) {
	gather := func(c prometheus.Collector) map[string]float64 {
		t.Helper()
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[mf.GetName()] = m.GetCounter().GetValue()
			default:
				out[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	ours := gather(newProcessCollector())
	lib := gather(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for name, want := range lib {
		got, ok := ours[name]
		switch name {
		case "process_network_receive_bytes_total", "process_network_transmit_bytes_total":
			if ok {
				t.Errorf("%s is the network namespace's counter, not the process's: left out", name)
			}
			continue
		case "process_max_fds", "process_virtual_memory_max_bytes", "process_start_time_seconds":
			if !ok || got != want {
				t.Errorf("%s = %v (present %v), client_golang %v", name, got, ok, want)
			}
		default:
			if !ok || !(got > 0) || got > 4*want+1 || want > 4*got+1 {
				t.Errorf("%s = %v (present %v), client_golang %v", name, got, ok, want)
			}
		}
	}
	if len(ours) != 7 {
		t.Errorf("%d series, want 7: %v", len(ours), ours)
	}
}

// BenchmarkProcessCollector gathers the process series with the agent's collector and with
// client_golang's beside it.
func BenchmarkProcessCollector(b *testing.B) {
	for _, c := range []struct {
		name string
		c    prometheus.Collector
	}{{"tmwarden", newProcessCollector()}, {"client_golang", collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}} {
		b.Run(c.name, func(b *testing.B) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(c.c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
