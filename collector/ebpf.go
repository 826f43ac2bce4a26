package collector

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/tmwarden/tmwarden/ebpf"
)

// The eBPF collectors read cumulative aggregates from kernel maps and report what changed
// over the interval. The kernel does all per-event work; each Collect only walks small maps.

const (
	// maxReportedCgroups bounds the run-queue histograms per report to the cgroups that waited
	// most; the rest are idle or negligible.
	maxReportedCgroups = 64
	// maxReportedRemotes bounds the retransmit rows per report to the worst remote addresses.
	maxReportedRemotes = 64
)

// probeStatuser is implemented by the eBPF collectors, so the agent can show each probe's
// state (loaded, degraded, unavailable) and reason in Hello, /metrics and tmwardenctl.
type probeStatuser interface {
	ProbeStatus() ebpf.Status
}

var _ = []probeStatuser{(*ebpfRunQueueCollector)(nil), (*ebpfBlockIOCollector)(nil), (*ebpfTCPRetransCollector)(nil)}

// ebpfProbe is what a collector needs of a loaded probe: its status, its cumulative counters
// (M), and a way to detach it.
type ebpfProbe[M any] interface {
	Status() ebpf.Status
	Read() (M, error)
	Close() error
}

// probeHandle is a collector's probe, or the status saying why it could not be loaded. The
// eBPF collectors embed it for ProbeStatus and Close.
type probeHandle[P ebpfProbe[M], M any] struct {
	probe  P
	loaded bool
	status ebpf.Status
}

// load runs loader and records the probe or why it failed (name is the probe's ebpf name).
func (h *probeHandle[P, M]) load(name string, loader func() (P, error)) {
	p, err := loader()
	if err != nil {
		h.status = ebpf.StatusOf(name, err)
		return
	}
	h.probe, h.loaded, h.status = p, true, p.Status()
}

func (h *probeHandle[P, M]) ProbeStatus() ebpf.Status { return h.status }

// read returns the probe's cumulative counters, or, without a probe, why there are none.
func (h *probeHandle[P, M]) read(ctx context.Context) (M, error) {
	var none M
	if !h.loaded {
		return none, probeCollectError(h.status)
	}
	if err := ctx.Err(); err != nil {
		return none, err
	}
	return h.probe.Read()
}

func (h *probeHandle[P, M]) Close() error {
	if !h.loaded {
		return nil
	}
	return h.probe.Close()
}

// probeLoadResult turns a probe's status into the factory's error: nil when fully loaded,
// a *DegradedError otherwise. The collector is returned either way, so the agent keeps running
// and reports the probe's state every interval.
func probeLoadResult(log *slog.Logger, st ebpf.Status) error {
	switch st.State {
	case ebpf.StateLoaded:
		if st.Reason != "" {
			log.Info("eBPF probe loaded", "probe", st.Probe, "mode", st.Mode, "note", st.Reason)
		}
		return nil
	case ebpf.StateDegraded:
		log.Warn("eBPF probe degraded", "probe", st.Probe, "mode", st.Mode, "reason", st.Reason)
	default:
		log.Warn("eBPF probe unavailable; the agent keeps running on /proc signals", "probe", st.Probe, "reason", st.Reason)
	}
	return &DegradedError{Reason: st.String()}
}

// probeCollectError is what Collect returns for a probe that is not fully working.
func probeCollectError(st ebpf.Status) error {
	switch st.State {
	case ebpf.StateLoaded:
		return nil
	case ebpf.StateDegraded:
		return &DegradedError{Reason: st.String()}
	}
	return errors.New(st.String())
}

func ebpfLogger(o Options) *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func ebpfSysfs(o Options) string {
	if o.Config.Paths.SysFS != "" {
		return o.Config.Paths.SysFS
	}
	return "/sys"
}

// ebpfJoinReasons joins the non-empty reasons of a status.
func ebpfJoinReasons(reasons ...string) string {
	var out []string
	for _, r := range reasons {
		if r != "" {
			out = append(out, r)
		}
	}
	return strings.Join(out, "; ")
}

// descending orders rows by a count, largest first.
func descending(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
