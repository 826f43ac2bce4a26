package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// State is a probe's health as reported to the coordinator.
type State string

const (
	// StateLoaded means every hook of the probe is attached.
	StateLoaded State = "loaded"
	// StateDegraded means the probe runs but an optional hook is missing; Reason says which.
	StateDegraded State = "degraded"
	// StateUnavailable means the probe could not be loaded at all; Reason says why.
	StateUnavailable State = "unavailable"
)

// Attach modes, in order of preference.
const (
	// ModeTPBTF is BTF-enabled raw tracepoints (tp_btf, Linux 5.5+).
	ModeTPBTF = "tp_btf"
	// ModeRawTP is plain raw tracepoints (Linux 4.17+), used where tracing programs cannot load.
	ModeRawTP = "raw_tp"
)

// Status is one probe's health: what it attached with, or why it could not.
type Status struct {
	Probe  string
	State  State
	Mode   string
	Reason string
}

func (s Status) String() string {
	out := s.Probe + ": " + string(s.State)
	if s.Mode != "" {
		out += " (" + s.Mode + ")"
	}
	if s.Reason != "" {
		out += ": " + s.Reason
	}
	return out
}

// ErrNotPermitted means the process may not load BPF programs.
var ErrNotPermitted = errors.New("not permitted to load BPF programs (needs CAP_BPF and CAP_PERFMON, or root; CAP_SYS_RESOURCE on kernels before 5.11)")

// ErrKernelUnsupported means the running kernel lacks something a probe needs (BTF, a
// tracepoint, a program or map type).
var ErrKernelUnsupported = errors.New("kernel does not support the probe")

// LoadError says why a probe is unavailable on this machine. It wraps ErrNotPermitted or
// ErrKernelUnsupported when one of those is the cause.
type LoadError struct {
	Probe  string
	Reason string
	Err    error
}

func (e *LoadError) Error() string { return e.Probe + " probe unavailable: " + e.Reason }
func (e *LoadError) Unwrap() error { return e.Err }

// Status returns the unavailable status this error stands for.
func (e *LoadError) Status() Status {
	return Status{Probe: e.Probe, State: StateUnavailable, Reason: e.Reason}
}

// StatusOf turns a Load* error into a status; any error is read as unavailable.
func StatusOf(probe string, err error) Status {
	var le *LoadError
	if errors.As(err, &le) {
		return le.Status()
	}
	return Status{Probe: probe, State: StateUnavailable, Reason: err.Error()}
}

// hook is one tracepoint a probe attaches to, with its program in each attach mode ("" when
// that mode does without the tracepoint).
type hook struct {
	tracepoint string
	tpBTF      string
	raw        string
	// required hooks make the probe unavailable when missing; the others only degrade it.
	required bool
}

func (h hook) program(mode string) string {
	if mode == ModeTPBTF {
		return h.tpBTF
	}
	return h.raw
}

// Hook is one tracepoint a loaded probe's program is attached to, and how (ModeTPBTF or
// ModeRawTP): what an empty program must be attached to, the same way, to measure the floor the
// probe's own work sits on (ebpf/probebench).
type Hook struct {
	Tracepoint string
	Mode       string
}

// probe is a loaded collection with its links.
type probe struct {
	coll   *ebpf.Collection
	links  []link.Link
	hooks  []Hook
	status Status
}

func (p *probe) close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.coll != nil {
		p.coll.Close()
		p.coll = nil
	}
	return errors.Join(errs...)
}

var memlockOnce sync.Once

// removeMemlock lifts RLIMIT_MEMLOCK on kernels before 5.11, which charge BPF memory to it
// (needs CAP_SYS_RESOURCE there); newer kernels use memcg accounting and need nothing.
func removeMemlock() {
	memlockOnce.Do(func() {
		if err := rlimit.RemoveMemlock(); err != nil {
			slog.Debug("ebpf: could not lift RLIMIT_MEMLOCK; maps may fail to load on kernels before 5.11", "err", err)
		}
	})
}

// kernelTypes shares the running kernel's BTF between the probes' loads: each probe decoding
// it anew (four decodes at the agent's start, one per probe and one more for the block-IO
// prototype check) made the start the agent's peak heap. ReleaseKernelBTF drops it.
var kernelTypes struct {
	sync.Mutex
	cache *btf.Cache
}

func btfCache() *btf.Cache {
	kernelTypes.Lock()
	defer kernelTypes.Unlock()
	if kernelTypes.cache == nil {
		kernelTypes.cache = btf.NewCache()
	}
	return kernelTypes.cache
}

// ReleaseKernelBTF drops the kernel BTF the probes' loads shared (megabytes of heap). Call it
// once the probes are loaded: loaded probes keep nothing of it, and a later load decodes it
// again.
func ReleaseKernelBTF() {
	kernelTypes.Lock()
	kernelTypes.cache = nil
	kernelTypes.Unlock()
}

// kernelBTF returns the running kernel's BTF, which every CO-RE probe needs.
func kernelBTF(name string) (*btf.Spec, error) {
	spec, err := btfCache().Kernel()
	if err != nil {
		err = fmt.Errorf("%w: kernel BTF not available (needs CONFIG_DEBUG_INFO_BTF, /sys/kernel/btf/vmlinux): %v", ErrKernelUnsupported, err)
		return nil, &LoadError{Probe: name, Reason: err.Error(), Err: err}
	}
	return spec, nil
}

// hasTracepoint reports whether the kernel defines the tracepoint, from its BTF typedef.
func hasTracepoint(kspec *btf.Spec, name string) bool {
	_, err := kspec.AnyTypeByName("btf_trace_" + name)
	return err == nil
}

// privilegeErr turns a permission error into one that names the missing capabilities.
func privilegeErr(err error) (error, bool) {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w: %v", ErrNotPermitted, err), true
	}
	return nil, false
}

// modes probes the kernel once and returns the attach modes to try, best first, with a note
// on why tp_btf was left out.
func modes() ([]string, string, error) {
	if modesOverride != nil {
		return modesOverride, "", nil
	}
	modesOnce.Do(func() { modesList, modesNote, modesErr = probeModes() })
	return modesList, modesNote, modesErr
}

var (
	// modesOverride lets tests force the raw_tp fallback on a kernel that has tp_btf.
	modesOverride []string

	modesOnce sync.Once
	modesList []string
	modesNote string
	modesErr  error
)

func probeModes() ([]string, string, error) {
	if err := features.HaveProgramType(ebpf.RawTracepoint); err != nil {
		if perr, ok := privilegeErr(err); ok {
			return nil, "", perr
		}
		return nil, "", fmt.Errorf("%w: cannot load raw tracepoint programs (Linux 4.17+): %v", ErrKernelUnsupported, err)
	}
	for _, mt := range []ebpf.MapType{ebpf.Hash, ebpf.LRUHash} {
		if err := features.HaveMapType(mt); err != nil {
			return nil, "", fmt.Errorf("%w: no %s maps: %v", ErrKernelUnsupported, mt, err)
		}
	}
	if err := features.HaveProgramHelper(ebpf.RawTracepoint, asm.FnProbeReadKernel); err != nil {
		return nil, "", fmt.Errorf("%w: no bpf_probe_read_kernel (Linux 5.5+): %v", ErrKernelUnsupported, err)
	}
	if err := haveTPBTF(); err != nil {
		return []string{ModeRawTP}, fmt.Sprintf("tp_btf unavailable, using raw_tp (%v)", err), nil
	}
	return []string{ModeTPBTF, ModeRawTP}, "", nil
}

// haveTPBTF loads an empty tp_btf program on sched_switch. The features package's Tracing
// probe uses an fentry program, which some kernels refuse (no ftrace trampolines) while tp_btf,
// which needs none, works; so tp_btf is probed directly.
func haveTPBTF() error {
	prog, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Type:       ebpf.Tracing,
		AttachType: ebpf.AttachTraceRawTp,
		AttachTo:   "sched_switch",
		License:    "GPL",
		Instructions: asm.Instructions{
			asm.LoadImm(asm.R0, 0, asm.DWord),
			asm.Return(),
		},
	}, ebpf.ProgramOptions{LogDisabled: true})
	if err != nil {
		return err
	}
	return prog.Close()
}

// loadOptions are a probe's particulars for loadProbe.
type loadOptions struct {
	// configure sets constants on the spec copy before load.
	configure func(*ebpf.CollectionSpec) error
	// tpBTFNeeds probes kernel features the probe's tp_btf programs need beyond tp_btf itself.
	tpBTFNeeds func() error
	// loaded prepares the loaded maps before the programs are attached.
	loaded func(*ebpf.Collection) error
}

// loadProbe loads spec in the best attach mode that works and attaches every hook.
func loadProbe(name string, spec *ebpf.CollectionSpec, hooks []hook, opts loadOptions) (*probe, error) {
	removeMemlock()
	kspec, err := kernelBTF(name)
	if err != nil {
		return nil, err
	}
	tryModes, note, err := modes()
	if err != nil {
		return nil, &LoadError{Probe: name, Reason: err.Error(), Err: err}
	}
	if tryModes[0] == ModeTPBTF && opts.tpBTFNeeds != nil {
		if err := opts.tpBTFNeeds(); err != nil {
			tryModes = []string{ModeRawTP}
			note = fmt.Sprintf("tp_btf programs unavailable, using raw_tp (%v)", err)
		}
	}

	var missing []string
	var present []hook
	for _, h := range hooks {
		if hasTracepoint(kspec, h.tracepoint) {
			present = append(present, h)
			continue
		}
		if h.required {
			err := fmt.Errorf("%w: no tracepoint %s", ErrKernelUnsupported, h.tracepoint)
			return nil, &LoadError{Probe: name, Reason: err.Error(), Err: err}
		}
		missing = append(missing, h.tracepoint)
	}

	var failures []string
	for _, mode := range tryModes {
		p, degraded, err := loadMode(name, mode, spec, present, kspec, opts)
		if err != nil {
			if perr, ok := privilegeErr(err); ok {
				return nil, &LoadError{Probe: name, Reason: perr.Error(), Err: perr}
			}
			failures = append(failures, fmt.Sprintf("%s: %v", mode, err))
			continue
		}
		var reasons []string
		if note != "" {
			reasons = append(reasons, note)
		}
		reasons = append(reasons, failures...)
		if len(missing) > 0 {
			reasons = append(reasons, "kernel has no tracepoint "+strings.Join(missing, ", "))
		}
		reasons = append(reasons, degraded...)
		p.status = Status{Probe: name, State: StateLoaded, Mode: mode, Reason: strings.Join(reasons, "; ")}
		if len(missing) > 0 || len(degraded) > 0 {
			p.status.State = StateDegraded
		}
		return p, nil
	}
	return nil, &LoadError{Probe: name, Reason: strings.Join(failures, "; ")}
}

// loadMode loads the programs of one attach mode and attaches them. It returns the optional
// hooks that failed to attach.
func loadMode(name, mode string, spec *ebpf.CollectionSpec, hooks []hook, kspec *btf.Spec, opts loadOptions) (*probe, []string, error) {
	cs := spec.Copy()
	keep := map[string]bool{}
	for _, h := range hooks {
		if prog := h.program(mode); prog != "" {
			keep[prog] = true
		}
	}
	for prog := range cs.Programs {
		if !keep[prog] {
			delete(cs.Programs, prog)
		}
	}
	// Maps only the other mode uses are not created: the kernel may not support their type.
	used := map[string]bool{}
	for _, ps := range cs.Programs {
		for _, ins := range ps.Instructions {
			if ref := ins.Reference(); ref != "" {
				used[ref] = true
			}
		}
	}
	for m := range cs.Maps {
		if !used[m] {
			delete(cs.Maps, m)
		}
	}
	// So are the variables that live in them (a .bss only the other mode reads).
	for name, v := range cs.Variables {
		if _, ok := cs.Maps[v.SectionName]; !ok {
			delete(cs.Variables, name)
		}
	}
	if opts.configure != nil {
		if err := opts.configure(cs); err != nil {
			return nil, nil, fmt.Errorf("configure %s: %w", name, err)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kspec},
		Cache:    btfCache(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load: %w", err)
	}
	p := &probe{coll: coll}
	if opts.loaded != nil {
		if err := opts.loaded(coll); err != nil {
			p.close()
			return nil, nil, fmt.Errorf("prepare %s: %w", name, err)
		}
	}
	var degraded []string
	for _, h := range hooks {
		if h.program(mode) == "" {
			continue // this mode does without the hook
		}
		prog := coll.Programs[h.program(mode)]
		var l link.Link
		if mode == ModeTPBTF {
			l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		} else {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.tracepoint, Program: prog})
		}
		if err != nil {
			if h.required {
				p.close()
				return nil, nil, fmt.Errorf("attach %s: %w", h.tracepoint, err)
			}
			degraded = append(degraded, fmt.Sprintf("attach %s: %v", h.tracepoint, err))
			continue
		}
		p.links = append(p.links, l)
		p.hooks = append(p.hooks, Hook{Tracepoint: h.tracepoint, Mode: mode})
	}
	return p, degraded, nil
}
