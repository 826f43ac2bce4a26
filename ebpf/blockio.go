package ebpf

import (
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// BlockIOProbe is the name the block-IO probe reports its status under.
const BlockIOProbe = "blockio"

// Dev is a kernel device number as the kernel keeps it internally (major<<20 | minor), which
// differs from the user-space dev_t encoding.
type Dev uint32

// Major is the device's major number.
func (d Dev) Major() uint32 { return uint32(d) >> 20 }

// Minor is the device's minor number.
func (d Dev) Minor() uint32 { return uint32(d) & (1<<20 - 1) }

func (d Dev) String() string { return fmt.Sprintf("%d:%d", d.Major(), d.Minor()) }

// BlockIO is the loaded block-IO latency probe: a histogram per disk of the time from issuing
// a request to the device until it completes.
type BlockIO struct {
	p     *probe
	hists *ebpf.Map
}

// LoadBlockIO loads and attaches the block-IO probe. The error is a *LoadError saying why the
// probe is unavailable.
func LoadBlockIO() (*BlockIO, error) {
	spec, err := loadBiolat()
	if err != nil {
		return nil, &LoadError{Probe: BlockIOProbe, Reason: err.Error(), Err: err}
	}
	kspec, err := kernelBTF(BlockIOProbe)
	if err != nil {
		return nil, err
	}
	issue := hook{tracepoint: "block_rq_issue", tpBTF: biolatProgTpBlockRqIssue, raw: biolatProgRawBlockRqIssue, required: true}
	if issueTakesQueue(kspec) {
		issue.tpBTF, issue.raw = biolatProgTpBlockRqIssueOld, biolatProgRawBlockRqIssueOld
	}
	hooks := []hook{
		issue,
		{tracepoint: "block_rq_complete", tpBTF: biolatProgTpBlockRqComplete, raw: biolatProgRawBlockRqComplete, required: true},
	}
	p, err := loadProbe(BlockIOProbe, spec, hooks, loadOptions{})
	if err != nil {
		return nil, err
	}
	return &BlockIO{p: p, hists: p.coll.Maps[biolatMapBioHists]}, nil
}

// issueTakesQueue reports whether block_rq_issue still has the (request_queue, request)
// arguments of kernels before 5.11, from the tracepoint's prototype in the kernel's BTF.
func issueTakesQueue(kspec *btf.Spec) bool {
	typ, err := kspec.AnyTypeByName("btf_trace_block_rq_issue")
	return err == nil && tracepointArgs(typ) == 2
}

// tracepointArgs counts the arguments of a btf_trace_<name> typedef, a pointer to a function
// whose first parameter is the tracepoint's own data pointer. It returns -1 for other types.
func tracepointArgs(typ btf.Type) int {
	td, ok := typ.(*btf.Typedef)
	if !ok {
		return -1
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return -1
	}
	fp, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(fp.Params) == 0 {
		return -1
	}
	return len(fp.Params) - 1
}

// Status says how the probe is attached.
func (b *BlockIO) Status() Status { return b.p.status }

// Hooks lists the tracepoints the probe's programs are attached to.
func (b *BlockIO) Hooks() []Hook { return slices.Clone(b.p.hooks) }

// Read returns the cumulative histogram of every disk seen so far.
func (b *BlockIO) Read() (map[Dev]Histogram, error) {
	out := map[Dev]Histogram{}
	var dev uint32
	var v biolatHist
	it := b.hists.Iterate()
	for it.Next(&dev, &v) {
		out[Dev(dev)] = kernelHistogram(v.Slots, v.SumNs)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read block-IO histograms: %w", err)
	}
	return out, nil
}

// Close detaches the probe and frees its maps.
func (b *BlockIO) Close() error { return b.p.close() }
