package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TCPRetransmitsProbe is the name the TCP retransmit probe reports its status under.
const TCPRetransmitsProbe = "tcpretrans"

// TCPRetransmits is the loaded TCP retransmit probe: a counter per remote address.
type TCPRetransmits struct {
	p      *probe
	counts *ebpf.Map
	// batch holds the batch lookup's buffers between reads; noBatch is set once the kernel
	// refused batch lookups (before 5.6), and Read iterates key by key from then on.
	batch   *retransBatch
	noBatch bool
}

// retransBatchSize is how many entries one BPF_MAP_LOOKUP_BATCH call returns. A hash map's
// batch ends at a bucket boundary, so it must hold the largest bucket (a few entries).
const retransBatchSize = 512

type retransBatch struct {
	keys   []tcpretransRetransKey
	values []uint64
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

// Hooks lists the tracepoints the probe's programs are attached to.
func (t *TCPRetransmits) Hooks() []Hook { return slices.Clone(t.p.hooks) }

// Read returns the cumulative retransmits per remote address.
//
// The map holds up to 4,096 remotes, and a node that talks to many peers fills it. Reading it
// key by key costs two system calls per entry (next key, then lookup): with a full map that
// was 12 ms of CPU every interval, more than the rest of the agent's probes together. Batch
// lookups read it in a handful of calls.
func (t *TCPRetransmits) Read() (map[netip.Addr]uint64, error) {
	if !t.noBatch {
		out, err := t.readBatch()
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return out, err
		}
		t.noBatch = true
	}
	return t.readIterate()
}

// readBatch reads the map with BPF_MAP_LOOKUP_BATCH (Linux 5.6+).
func (t *TCPRetransmits) readBatch() (map[netip.Addr]uint64, error) {
	if t.batch == nil {
		t.batch = &retransBatch{keys: make([]tcpretransRetransKey, retransBatchSize), values: make([]uint64, retransBatchSize)}
	}
	out := map[netip.Addr]uint64{}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := t.counts.BatchLookup(&cursor, t.batch.keys, t.batch.values, nil)
		for i := range n {
			if a, ok := retransAddr(t.batch.keys[i]); ok {
				out[a] += t.batch.values[i]
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read TCP retransmits: %w", err)
		}
	}
}

// readIterate reads the map key by key, for kernels without batch lookups.
func (t *TCPRetransmits) readIterate() (map[netip.Addr]uint64, error) {
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
