package ebpf

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TCPRetransmitsProbe is the name the TCP retransmit probe reports its status under.
const TCPRetransmitsProbe = "tcpretrans"

// TCPRetransmits is the loaded TCP retransmit probe: a counter per remote address.
type TCPRetransmits struct {
	p      *probe
	counts *ebpf.Map
}

// LoadTCPRetransmits loads and attaches the TCP retransmit probe. The error is a *LoadError
// saying why the probe is unavailable.
func LoadTCPRetransmits() (*TCPRetransmits, error) {
	spec, err := loadTcpretrans()
	if err != nil {
		return nil, &LoadError{Probe: TCPRetransmitsProbe, Reason: err.Error(), Err: err}
	}
	hooks := []hook{
		{tracepoint: "tcp_retransmit_skb", tpBTF: tcpretransProgTpTcpRetransmitSkb, raw: tcpretransProgRawTcpRetransmitSkb, required: true},
	}
	p, err := loadProbe(TCPRetransmitsProbe, spec, hooks, loadOptions{})
	if err != nil {
		return nil, err
	}
	return &TCPRetransmits{p: p, counts: p.coll.Maps[tcpretransMapRetransCounts]}, nil
}

// Status says how the probe is attached.
func (t *TCPRetransmits) Status() Status { return t.p.status }

// Read returns the cumulative retransmits per remote address.
func (t *TCPRetransmits) Read() (map[netip.Addr]uint64, error) {
	out := map[netip.Addr]uint64{}
	var k tcpretransRetransKey
	var n uint64
	it := t.counts.Iterate()
	for it.Next(&k, &n) {
		if a, ok := retransAddr(k); ok {
			out[a] += n
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read TCP retransmits: %w", err)
	}
	return out, nil
}

// Forget drops the counters of remote addresses, so the bounded map keeps room for new ones.
func (t *TCPRetransmits) Forget(addrs ...netip.Addr) error {
	var errs []error
	for _, a := range addrs {
		k := tcpretransRetransKey{}
		if a.Is4() {
			k.Family = unix.AF_INET
			b := a.As4()
			copy(k.Daddr[:], b[:])
		} else {
			k.Family = unix.AF_INET6
			b := a.As16()
			copy(k.Daddr[:], b[:])
		}
		if err := t.counts.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("forget %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

func retransAddr(k tcpretransRetransKey) (netip.Addr, bool) {
	switch k.Family {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(k.Daddr[:4])), true
	case unix.AF_INET6:
		// An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; report it as IPv4.
		return netip.AddrFrom16(k.Daddr).Unmap(), true
	}
	return netip.Addr{}, false
}

// Close detaches the probe and frees its maps.
func (t *TCPRetransmits) Close() error { return t.p.close() }
