// Package collector gathers one node's signals into the report the agent streams to the
// coordinator. Each collector lives in its own file and is registered with one line in the table
// in registry.go; the agent runs the enabled ones in table order every interval.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// Collector adds its signals to a report. Collect is called once per interval, never
// concurrently with itself, so a collector may keep the previous counters to compute rates.
//
// Collect returns nil on full success, a *DegradedError when it produced part of its data (the
// report keeps that part), or any other error when it produced nothing usable this round.
type Collector interface {
	Collect(ctx context.Context, r *tmwardenv1.Report) error
}

// Closer is implemented by collectors that hold resources (eBPF links, HTTP clients).
type Closer interface {
	Close() error
}

// DegradedError says a collector ran but part of its data is missing, and why.
type DegradedError struct {
	Reason string
}

func (e *DegradedError) Error() string { return "degraded: " + e.Reason }

// Degradedf builds a DegradedError with a formatted reason.
func Degradedf(format string, args ...any) error {
	return &DegradedError{Reason: fmt.Sprintf(format, args...)}
}

// IsDegraded reports whether err says the collector produced partial data.
func IsDegraded(err error) bool {
	var d *DegradedError
	return errors.As(err, &d)
}

// Options is what a factory gets to build its collector.
type Options struct {
	Config Config
	Logger *slog.Logger
}

// Factory builds a collector. A factory that cannot work on this machine (no BTF, no PSI)
// returns a *DegradedError together with a usable collector, or an error and nil.
type Factory func(Options) (Collector, error)

// Registration is one row of the collector table.
type Registration struct {
	Name           string
	DefaultEnabled bool
	Help           string
	New            Factory
}

// StatusOf turns a collector's last error into the status sent to the coordinator.
func StatusOf(name string, err error) *tmwardenv1.CollectorStatus {
	st := &tmwardenv1.CollectorStatus{Name: name, State: tmwardenv1.CollectorStatus_STATE_OK}
	switch {
	case err == nil:
	case IsDegraded(err):
		var d *DegradedError
		errors.As(err, &d)
		st.State = tmwardenv1.CollectorStatus_STATE_DEGRADED
		st.Reason = d.Reason
	default:
		st.State = tmwardenv1.CollectorStatus_STATE_FAILED
		st.Reason = err.Error()
	}
	return st
}
