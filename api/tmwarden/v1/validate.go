package tmwardenv1

import (
	"errors"
	"fmt"
	"regexp"
)

var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

// ValidNodeName reports whether name can identify a node (a Kubernetes node name or hostname).
func ValidNodeName(name string) bool { return nodeNameRE.MatchString(name) }

// ErrProtocolVersion marks a Hello whose protocol version the receiver does not speak.
var ErrProtocolVersion = errors.New("unsupported protocol version")

// ValidateHello checks what the coordinator relies on in a Hello.
func ValidateHello(h *Hello) error {
	if h.ProtocolVersion != uint32(ProtocolVersion_PROTOCOL_VERSION_1) {
		return fmt.Errorf("%w: hello says %d, this side speaks %d", ErrProtocolVersion, h.ProtocolVersion, ProtocolVersion_PROTOCOL_VERSION_1)
	}
	if !ValidNodeName(h.NodeName) {
		return fmt.Errorf("hello: node_name %q: must be 1-253 letters, digits, '.', '_' or '-'", h.NodeName)
	}
	if h.InstanceId == "" {
		return errors.New("hello: instance_id is empty")
	}
	if h.ReportIntervalSeconds < 0 {
		return fmt.Errorf("hello: report_interval_seconds %v is negative", h.ReportIntervalSeconds)
	}
	return nil
}

// ValidateReport checks what the coordinator relies on in a Report.
func ValidateReport(r *Report) error {
	if r.Sequence == 0 {
		return errors.New("report: sequence must start at 1")
	}
	if r.CollectedAt == nil {
		return fmt.Errorf("report %d: collected_at is missing", r.Sequence)
	}
	if err := r.CollectedAt.CheckValid(); err != nil {
		return fmt.Errorf("report %d: collected_at: %w", r.Sequence, err)
	}
	return nil
}
