package lab

import (
	"sync"
	"time"
)

// meterView is Flink's MeterView and TimerGauge window: a cumulative count sampled every
// UPDATE_INTERVAL (5 s) into a ring, the rate being the difference across the ring over its
// span (60 s in Flink). Until the ring is full the span is the time since the first sample, so a
// fresh TaskManager does not report a rate diluted by a minute it did not run.
type meterView struct {
	mu      sync.Mutex
	window  time.Duration
	samples []meterSample
}

type meterSample struct {
	at    time.Time
	count float64
}

// meterUpdate is Flink's View.UPDATE_INTERVAL_SECONDS.
const meterUpdate = 5 * time.Second

func newMeterView(window time.Duration) *meterView {
	if window < meterUpdate {
		window = meterUpdate
	}
	return &meterView{window: window}
}

// update records the cumulative count at now; it is called every meterUpdate.
func (m *meterView) update(now time.Time, count float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, meterSample{now, count})
	// Keep one sample older than the window as the far end of the span.
	for len(m.samples) > 2 && now.Sub(m.samples[1].at) >= m.window {
		m.samples = m.samples[1:]
	}
}

// rate is the count's increase per second across the window.
func (m *meterView) rate() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) < 2 {
		return 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := last.at.Sub(first.at).Seconds()
	if span <= 0 {
		return 0
	}
	return (last.count - first.count) / span
}
