package collector

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/ebpf"
)

// forgetIdleRemoteAfter is how many rounds without retransmits a remote address keeps its
// kernel counter; after that it is deleted to keep room in the bounded map.
const forgetIdleRemoteAfter = 60

// ebpfTCPRetransCollector reports TCP retransmits per remote address, so packet loss can be
// pinned on a path (one peer, one rack) rather than on the node as a whole.
type ebpfTCPRetransCollector struct {
	probeHandle[*ebpf.TCPRetransmits, map[netip.Addr]uint64]
	log  *slog.Logger
	prev map[netip.Addr]uint64
	idle map[netip.Addr]int
}

func newEBPFTCPRetransCollector(o Options) (Collector, error) {
	c := &ebpfTCPRetransCollector{log: ebpfLogger(o), prev: map[netip.Addr]uint64{}, idle: map[netip.Addr]int{}}
	c.load(ebpf.TCPRetransmitsProbe, ebpf.LoadTCPRetransmits)
	return c, probeLoadResult(c.log, c.status)
}

func (c *ebpfTCPRetransCollector) Collect(ctx context.Context, r *tmwardenv1.Report) error {
	cur, err := c.read(ctx)
	if err != nil {
		return err
	}
	type row struct {
		addr netip.Addr
		n    uint64
	}
	var rows []row
	var forget []netip.Addr
	for a, n := range cur {
		d := n - c.prev[a]
		if n < c.prev[a] {
			d = n
		}
		if d > 0 {
			rows = append(rows, row{a, d})
			delete(c.idle, a)
			continue
		}
		if c.idle[a]++; c.idle[a] >= forgetIdleRemoteAfter {
			forget = append(forget, a)
		}
	}
	slices.SortFunc(rows, func(x, y row) int {
		if o := descending(x.n, y.n); o != 0 {
			return o
		}
		return x.addr.Compare(y.addr)
	})
	if len(rows) > maxReportedRemotes {
		rows = rows[:maxReportedRemotes]
	}
	for _, rw := range rows {
		r.Retransmits = append(r.Retransmits, &tmwardenv1.TcpRetransmits{RemoteAddress: rw.addr.String(), Retransmits: rw.n})
	}
	if len(forget) > 0 {
		if err := c.probe.Forget(forget...); err != nil {
			c.log.Warn("eBPF TCP retransmits: cannot forget idle remotes", "err", err)
		}
		for _, a := range forget {
			delete(c.idle, a)
			delete(cur, a)
		}
	}
	c.prev = cur
	return probeCollectError(c.status)
}
