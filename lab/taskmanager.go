package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// MainClass is what the stand-in carries on its command line where a JVM carries its main
// class: the agent finds it in procfs through collectors.taskmanagers.extra_main_classes, the
// same path that finds real TaskManagers, and reads -Dtaskmanager.resource-id and
// -Dmetrics.reporter.prom.port from the arguments after it.
const MainClass = "tmwarden.lab.TaskManagerStandIn"

// TaskManagerConfig is the stand-in's configuration, written by the lab as JSON.
type TaskManagerConfig struct {
	// Cgroups are cgroup.procs files the stand-in joins before it does anything else.
	Cgroups []string `json:"cgroups"`
	// ResourceID and Host are the TaskManager's Flink identity (tm_id and host labels).
	ResourceID string `json:"resource_id"`
	Host       string `json:"host"`
	// MetricsAddr serves the PrometheusReporter endpoint (and the lab's /lab/ control).
	MetricsAddr string `json:"metrics_addr"`
	// StateDir holds the keyed state, the changelog and the sink's output.
	StateDir string `json:"state_dir"`
	// NetNS is the network namespace (a /var/run/netns path) the processing subtasks listen
	// in, on ListenIP; the sources connect to it from outside, over the veth. Empty: loopback.
	NetNS    string `json:"netns"`
	ListenIP string `json:"listen_ip"`
	// Lanes pairs one subtask of each vertex: Lanes[i] lists the subtask index per vertex.
	Vertices []VertexIdentity `json:"vertices"`
	// SourceRate is the records per second each source subtask is offered (its Kafka partition).
	SourceRate float64 `json:"source_rate"`
	// WorkRounds is the CPU work per record in the processing vertex (FNV rounds over the
	// record); the source does a quarter of it and the sink half.
	WorkRounds int `json:"work_rounds"`
	// StateMiB is the mmap'd keyed state per processing or sink subtask.
	StateMiB int `json:"state_mib"`
	// SyncEvery is how often the processing and sink subtasks fsync their changelog.
	SyncEvery Duration `json:"sync_every"`
	// MeterWindow is the window of the rate meters (Flink's MeterView: 60 s) and TimerWindow
	// that of the busy, idle and backpressured time gauges (Flink's TimerGauge: 5 s).
	MeterWindow Duration `json:"meter_window"`
	TimerWindow Duration `json:"timer_window"`
	// FlinkVersion picks the metric names (flinksim.Version20 or Version120).
	FlinkVersion string `json:"flink_version"`
}

// VertexIdentity is one vertex of the lab job and the subtask indices this TaskManager runs.
type VertexIdentity struct {
	JobID, JobName, VertexID, VertexName, ExecutionGraphID string
	Indices                                                []int
}

// Duration is a time.Duration that reads and writes as "5s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

const recordBytes = 200

// subtaskStats is what one subtask accumulates; the metrics writer reads it.
type subtaskStats struct {
	ident                VertexIdentity
	index                int
	source               bool
	recIn, recOut        atomic.Int64
	busyNs, idleNs, bpNs atomic.Int64
	pending              atomic.Int64
	cpDelayNs            atomic.Int64

	inRate, outRate, busy, idle, bp *meterView
}

// standIn is the running TaskManager stand-in.
type standIn struct {
	cfg   TaskManagerConfig
	log   *slog.Logger
	stats []*subtaskStats
	// safepoint is the stand-in's stop-the-world: subtasks hold it for reading while they
	// process, a GC pause takes it for writing.
	safepoint sync.RWMutex
	gcStorm   atomic.Bool
	gcPauseNs atomic.Int64
	gcCount   atomic.Int64
	gcRate    *meterView
	started   time.Time
}

// RunTaskManager runs the stand-in until ctx ends: per lane a source, a processing subtask and a
// sink doing real work (see docs/lab.md), and the PrometheusReporter endpoint.
func RunTaskManager(ctx context.Context, cfg TaskManagerConfig, log *slog.Logger) error {
	if len(cfg.Vertices) != 3 {
		return fmt.Errorf("lab taskmanager: want 3 vertices (source, process, sink), have %d", len(cfg.Vertices))
	}
	lanes := len(cfg.Vertices[0].Indices)
	for _, v := range cfg.Vertices {
		if len(v.Indices) != lanes || lanes == 0 {
			return errors.New("lab taskmanager: every vertex needs the same, non-zero number of subtasks")
		}
	}
	for _, cg := range cfg.Cgroups {
		// All threads move with the process (cgroup v1 cgroup.procs).
		if err := os.WriteFile(cg, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("lab taskmanager: joining %s: %w", cg, err)
		}
	}
	if cfg.SourceRate <= 0 || cfg.WorkRounds <= 0 || cfg.StateMiB <= 0 {
		return errors.New("lab taskmanager: source_rate, work_rounds and state_mib must be positive")
	}
	if cfg.SyncEvery <= 0 {
		cfg.SyncEvery = Duration(100 * time.Millisecond)
	}
	if cfg.MeterWindow <= 0 {
		cfg.MeterWindow = Duration(60 * time.Second)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return err
	}
	s := &standIn{cfg: cfg, log: log, started: time.Now()}
	if cfg.TimerWindow <= 0 {
		cfg.TimerWindow = Duration(meterUpdate)
	}
	s.gcRate = newMeterView(time.Duration(cfg.TimerWindow))
	w, tw := time.Duration(cfg.MeterWindow), time.Duration(cfg.TimerWindow)
	for vi, v := range cfg.Vertices {
		for _, idx := range v.Indices {
			s.stats = append(s.stats, &subtaskStats{ident: v, index: idx, source: vi == 0,
				inRate: newMeterView(w), outRate: newMeterView(w), busy: newMeterView(tw), idle: newMeterView(tw), bp: newMeterView(tw)})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ln, err := listenIn(cfg.NetNS, cfg.ListenIP)
	if err != nil {
		return fmt.Errorf("listening for the processing subtasks' input: %w", err)
	}
	defer ln.Close()

	var wg sync.WaitGroup
	errc := make(chan error, 4*lanes+4)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- err
			}
		}()
	}
	// Processing subtask i reads from every source over TCP; connections say which lane they feed.
	inputs := make([]chan []byte, lanes)
	toSink := make([]chan []byte, lanes)
	for i := range lanes {
		inputs[i] = make(chan []byte, 256)
		toSink[i] = make(chan []byte, 256)
	}
	run(func() error { return s.accept(ctx, ln, inputs) })
	for i := range lanes {
		src, proc, sink := s.stats[i], s.stats[lanes+i], s.stats[2*lanes+i]
		run(func() error { return s.runSource(ctx, src, ln.Addr().String(), lanes) })
		run(func() error { return s.runProcess(ctx, proc, inputs[i], toSink[i]) })
		run(func() error { return s.runSink(ctx, sink, toSink[i]) })
	}
	run(func() error { return s.runGC(ctx) })
	run(func() error { s.runMeters(ctx); return nil })

	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		cancel()
		wg.Wait()
		return fmt.Errorf("metrics endpoint: %w", err)
	}
	run(func() error {
		if err := srv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	log.Info("TaskManager stand-in running", "metrics", mln.Addr().String(), "input", ln.Addr().String(), "lanes", lanes)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	_ = srv.Close()
	_ = ln.Close()
	wg.Wait()
	return runErr
}

// The stand-in switches one thread into the lab's network namespace (listenIn). Procfs shows a
// process's sockets and addresses as its main thread sees them (/proc/PID/net), and that is where
// the agent's discovery finds the metrics port: had the switched thread been the main one, the
// agent found the port missing and scraped the namespace's address instead (seen once, in a cold
// make test, as "the agent never reported the stand-in's subtasks"). Locked here, in init, the
// main goroutine keeps the main thread for itself, so no other goroutine, listenIn's among them,
// ever runs on it. Only the stand-in's process does this.
func init() {
	if len(os.Args) > len(standInCommand) && slices.Equal(os.Args[1:1+len(standInCommand)], standInCommand) {
		runtime.LockOSThread()
	}
}

// standInCommand is the tmwardenctl command line the lab starts the stand-in with (os.Args[1:]
// before its flags): the lab builds it, and init recognises the stand-in's process by it.
var standInCommand = []string{"lab", "taskmanager"}

// listenIn opens the processing subtasks' listener inside the network namespace, so that the
// sources' traffic crosses the veth pair (and the faults put on it). A thread switched into
// another namespace is never returned to the scheduler: it exits with its goroutine.
func listenIn(nsPath, ip string) (net.Listener, error) {
	if nsPath == "" {
		return net.Listen("tcp", "127.0.0.1:0")
	}
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		f, err := os.Open(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ch <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// accept reads each connection's lane byte and feeds its records to that lane's input.
func (s *standIn) accept(ctx context.Context, ln net.Listener, inputs []chan []byte) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			r := bufio.NewReaderSize(c, 64<<10)
			lane, err := r.ReadByte()
			if err != nil || int(lane) >= len(inputs) {
				return
			}
			for {
				rec := make([]byte, recordBytes)
				if _, err := io.ReadFull(r, rec); err != nil {
					return
				}
				select {
				case inputs[lane] <- rec:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
}

// work is the per-record CPU cost: rounds of FNV-1a over the record, written out so that it
// allocates nothing.
func work(rec []byte, rounds int) uint64 {
	var h uint64 = 14695981039346656037
	for range rounds {
		for _, b := range rec {
			h ^= uint64(b)
			h *= 1099511628211
		}
	}
	return h
}

// runSource offers SourceRate records per second (a Kafka partition that always has data) and
// writes each to the processing subtask its key hashes to, over TCP. Time blocked in the
// socket write is backpressure; unsent records are its backlog (pendingRecords).
func (s *standIn) runSource(ctx context.Context, st *subtaskStats, addr string, lanes int) error {
	conns := make([]*bufio.Writer, lanes)
	for i := range lanes {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("source %d: %w", st.index, err)
		}
		defer c.Close()
		context.AfterFunc(ctx, func() { c.Close() })
		if tc, ok := c.(*net.TCPConn); ok {
			// A small send buffer, as Flink's bounded network buffers: a slow link
			// backpressures the source within a fraction of a second.
			_ = tc.SetWriteBuffer(64 << 10)
		}
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			return err
		}
		conns[i] = bufio.NewWriterSize(c, 16<<10)
	}
	rec := make([]byte, recordBytes)
	seq := uint64(st.index) << 40
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	var owed float64
	for {
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Now()
		st.idleNs.Add(int64(now.Sub(t0)))
		owed += s.cfg.SourceRate * now.Sub(last).Seconds()
		last = now
		n := int(owed)
		owed -= float64(n)
		st.pending.Add(int64(n))
		// Send the backlog in batches; a batch that cannot be sent within the tick stays
		// pending, as records wait in Kafka.
		for sent := 0; st.pending.Load() > 0 && sent < 4*n+64; sent++ {
			b0 := time.Now()
			s.safepoint.RLock()
			seq++
			binary.LittleEndian.PutUint64(rec, seq)
			binary.LittleEndian.PutUint64(rec[8:], work(rec, max(1, s.cfg.WorkRounds/4)))
			lane := int(seq % uint64(lanes))
			s.safepoint.RUnlock()
			busy := time.Since(b0)
			w0 := time.Now()
			if _, err := conns[lane].Write(rec); err != nil {
				return err
			}
			if conns[lane].Buffered() == 0 || sent%64 == 63 {
				if err := conns[lane].Flush(); err != nil {
					return err
				}
			}
			blocked := time.Since(w0)
			// A write that returns at once is busy work; one that waited was backpressure.
			if blocked > 200*time.Microsecond {
				st.bpNs.Add(int64(blocked))
			} else {
				busy += blocked
			}
			st.busyNs.Add(int64(busy))
			st.recOut.Add(1)
			st.pending.Add(-1)
			if time.Since(now) > 10*time.Millisecond {
				break
			}
		}
		for _, w := range conns {
			w0 := time.Now()
			if err := w.Flush(); err != nil {
				return err
			}
			st.bpNs.Add(int64(time.Since(w0)))
		}
	}
}

// keyedState is a subtask's keyed state: a file mapped into memory and read and written at
// random keys (MADV_RANDOM: no readahead hides a fault), plus a changelog fsync'd every
// SyncEvery, the way a state backend's writes reach the disk.
type keyedState struct {
	mem       []byte
	changelog *os.File
	buf       bytes.Buffer
	lastSync  time.Time
}

func openKeyedState(dir, name string, mib int) (*keyedState, error) {
	size := mib << 20
	f, err := os.OpenFile(filepath.Join(dir, name+".state"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Real bytes on disk (not a sparse hole), so evicted pages are read back from the device.
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	for off := 0; off < size; off += len(chunk) {
		if _, err := f.WriteAt(chunk, int64(off)); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", name, err)
	}
	_ = unix.Madvise(mem, unix.MADV_RANDOM)
	cl, err := os.OpenFile(filepath.Join(dir, name+".changelog"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	return &keyedState{mem: mem, changelog: cl, lastSync: time.Now()}, nil
}

func (k *keyedState) close() {
	_ = unix.Munmap(k.mem)
	_ = k.changelog.Close()
}

// update reads and rewrites the 64 bytes of key's slot and logs the change.
func (k *keyedState) update(key uint64, v uint64) {
	slot := int(key%uint64(len(k.mem)/64)) * 64
	old := binary.LittleEndian.Uint64(k.mem[slot:])
	binary.LittleEndian.PutUint64(k.mem[slot:], old^v)
	var e [16]byte
	binary.LittleEndian.PutUint64(e[:], key)
	binary.LittleEndian.PutUint64(e[8:], old^v)
	k.buf.Write(e[:])
}

// maybeSync appends the logged changes and fsyncs them when SyncEvery has passed. The log is
// rewound at 64 MiB so the lab does not fill the disk.
func (k *keyedState) maybeSync(every time.Duration) error {
	if time.Since(k.lastSync) < every {
		return nil
	}
	k.lastSync = time.Now()
	if off, _ := k.changelog.Seek(0, io.SeekCurrent); off > 64<<20 {
		if _, err := k.changelog.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	if _, err := k.changelog.Write(k.buf.Bytes()); err != nil {
		return err
	}
	k.buf.Reset()
	return k.changelog.Sync()
}

// consume is the loop of a non-source subtask: wait for input (idle), then process whatever
// is queued as one batch (busy), then hand the output downstream (backpressured while the
// downstream queue is full).
func (s *standIn) consume(ctx context.Context, st *subtaskStats, in <-chan []byte, process func([]byte) error, out chan<- []byte) error {
	batch := make([][]byte, 0, 64)
	for {
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return nil
		case rec := <-in:
			batch = append(batch[:0], rec)
		}
		st.idleNs.Add(int64(time.Since(t0)))
	more:
		for len(batch) < cap(batch) {
			select {
			case rec := <-in:
				batch = append(batch, rec)
			default:
				break more
			}
		}
		b0 := time.Now()
		s.safepoint.RLock()
		var err error
		for _, rec := range batch {
			if err = process(rec); err != nil {
				break
			}
		}
		s.safepoint.RUnlock()
		st.busyNs.Add(int64(time.Since(b0)))
		if err != nil {
			return err
		}
		st.recIn.Add(int64(len(batch)))
		if out == nil {
			continue
		}
		for _, rec := range batch {
			select {
			case out <- rec:
			default:
				w0 := time.Now()
				select {
				case out <- rec:
				case <-ctx.Done():
					return nil
				}
				st.bpNs.Add(int64(time.Since(w0)))
			}
		}
		st.recOut.Add(int64(len(batch)))
	}
}

func (s *standIn) runProcess(ctx context.Context, st *subtaskStats, in <-chan []byte, out chan<- []byte) error {
	ks, err := openKeyedState(s.cfg.StateDir, fmt.Sprintf("process-%d", st.index), s.cfg.StateMiB)
	if err != nil {
		return err
	}
	defer ks.close()
	every := time.Duration(s.cfg.SyncEvery)
	return s.consume(ctx, st, in, func(rec []byte) error {
		h := work(rec, s.cfg.WorkRounds)
		ks.update(binary.LittleEndian.Uint64(rec)*0x9E3779B97F4A7C15, h)
		binary.LittleEndian.PutUint64(rec[16:], h)
		return ks.maybeSync(every)
	}, out)
}

// runSink enriches each record from its own mapped table, writes it out and fsyncs the output
// as a transactional sink commits.
func (s *standIn) runSink(ctx context.Context, st *subtaskStats, in <-chan []byte) error {
	ks, err := openKeyedState(s.cfg.StateDir, fmt.Sprintf("sink-%d", st.index), s.cfg.StateMiB)
	if err != nil {
		return err
	}
	defer ks.close()
	every := time.Duration(s.cfg.SyncEvery)
	return s.consume(ctx, st, in, func(rec []byte) error {
		h := work(rec, max(1, s.cfg.WorkRounds/2))
		ks.update(binary.LittleEndian.Uint64(rec[16:]), h)
		return ks.maybeSync(every)
	}, nil)
}

// runGC stands in for the JVM's collector. Quietly it reports the Go runtime's own pauses; in
// a GC storm (POST /lab/gc-storm) it stops the world for 600 ms of every second while burning
// CPU on allocation, as a JVM thrashing in old-generation collections does, and counts the
// pauses as GC time.
func (s *standIn) runGC(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var sink [][]byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !s.gcStorm.Load() {
			continue
		}
		p0 := time.Now()
		s.safepoint.Lock()
		for time.Since(p0) < 600*time.Millisecond {
			sink = append(sink, make([]byte, 64<<10))
			if len(sink) > 256 {
				sink = sink[:0]
			}
		}
		s.safepoint.Unlock()
		s.gcPauseNs.Add(int64(time.Since(p0)))
		s.gcCount.Add(1)
	}
}

// goGCPauseNs is the Go runtime's own stop-the-world time, the quiet baseline of GC time.
func goGCPauseNs() (int64, int64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.PauseTotalNs), int64(m.NumGC)
}

func (s *standIn) gcTotals() (timeMs, count float64) {
	ns, n := goGCPauseNs()
	return float64(ns+s.gcPauseNs.Load()) / 1e6, float64(n + s.gcCount.Load())
}

// runMeters updates every meter view each meterUpdate, as Flink's MetricRegistry does.
func (s *standIn) runMeters(ctx context.Context) {
	update := func() {
		now := time.Now()
		for _, st := range s.stats {
			st.inRate.update(now, float64(st.recIn.Load()))
			st.outRate.update(now, float64(st.recOut.Load()))
			st.busy.update(now, float64(st.busyNs.Load())/1e6)
			st.idle.update(now, float64(st.idleNs.Load())/1e6)
			st.bp.update(now, float64(st.bpNs.Load())/1e6)
		}
		ms, _ := s.gcTotals()
		s.gcRate.update(now, ms)
	}
	update()
	t := time.NewTicker(meterUpdate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			update()
		}
	}
}

func (s *standIn) samples() (flinksim.TaskManagerSample, []flinksim.SubtaskSample) {
	var subs []flinksim.SubtaskSample
	busyCores := 0.0
	for _, st := range s.stats {
		idle, bp, busy := st.idle.rate(), st.bp.rate(), st.busy.rate()
		// Idle and backpressured time are measured; busy is the rest of the second, as Flink
		// derives it, so time waiting for the CPU or the disk while processing counts as busy.
		busyCores += busy / 1000
		inRate, outRate := st.inRate.rate(), st.outRate.rate()
		sub := flinksim.SubtaskSample{
			JobID: st.ident.JobID, JobName: st.ident.JobName, VertexID: st.ident.VertexID, VertexName: st.ident.VertexName,
			ExecutionGraphID: st.ident.ExecutionGraphID, Index: st.index, Source: st.source,
			RecordsIn: float64(st.recIn.Load()), RecordsOut: float64(st.recOut.Load()),
			BytesIn: float64(st.recIn.Load()) * recordBytes, BytesOut: float64(st.recOut.Load()) * recordBytes,
			RecordsInRate: inRate, RecordsOutRate: outRate, BytesInRate: inRate * recordBytes, BytesOutRate: outRate * recordBytes,
			IdleMs: idle, BackPressuredMs: bp, InPool: math.Min(1, 0.05+busy/1000), OutPool: math.Min(1, 0.05+bp/1000),
			MailboxQueue: busy / 200, MailboxLatencyMs: busy / 250,
			CheckpointStartDelayNanos: 2e6 + bp*1e7,
		}
		if st.source {
			sub.RecordsIn, sub.RecordsInRate, sub.BytesIn, sub.BytesInRate = 0, 0, 0, 0
			sub.InPool = math.NaN()
			sub.Pending = float64(st.pending.Load())
			sub.EmitEventTimeLagMs = 50 + sub.Pending/math.Max(s.cfg.SourceRate, 1)*1000
		}
		if st.ident.VertexName == s.cfg.Vertices[2].VertexName {
			sub.RecordsOut, sub.RecordsOutRate, sub.BytesOut, sub.BytesOutRate = 0, 0, 0, 0
		}
		subs = append(subs, sub)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	gcMs, gcN := s.gcTotals()
	tm := flinksim.TaskManagerSample{
		ID: s.cfg.ResourceID, Host: s.cfg.Host,
		CPULoad: math.Min(1, busyCores/float64(runtime.NumCPU())), CPUTimeNs: float64(processCPUTime()),
		HeapUsed: float64(m.HeapInuse), HeapCommitted: float64(m.HeapSys), HeapMax: float64(m.Sys),
		Threads: float64(runtime.NumGoroutine()), YoungGCCount: gcN, YoungGCTimeMs: gcMs,
		GCTimeMsPerSecond: s.gcRate.rate(),
	}
	return tm, subs
}

func processCPUTime() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func (s *standIn) handler() http.Handler {
	mux := http.NewServeMux()
	metrics := func(w http.ResponseWriter, r *http.Request) {
		tm, subs := s.samples()
		var buf bytes.Buffer
		if err := flinksim.WriteTaskManagerMetrics(&buf, s.cfg.FlinkVersion, tm, subs, r.URL.Query()["name[]"]); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	}
	mux.HandleFunc("GET /{$}", metrics)
	mux.HandleFunc("GET /metrics", metrics)
	// The lab's control: a GC storm inside this JVM only.
	mux.HandleFunc("POST /lab/gc-storm", func(w http.ResponseWriter, r *http.Request) {
		on := r.URL.Query().Get("on")
		if on != "true" && on != "false" {
			http.Error(w, "on=true or on=false", http.StatusBadRequest)
			return
		}
		s.gcStorm.Store(on == "true")
		s.log.Info("GC storm", "on", on)
		fmt.Fprintf(w, "gc storm %s\n", on)
	})
	mux.HandleFunc("POST /lab/drained", func(w http.ResponseWriter, r *http.Request) {
		s.log.Info("drain command ran: the stand-in keeps running so the next fault has a TaskManager", "by", r.URL.Query().Get("decision"))
		fmt.Fprintln(w, "noted")
	})
	return mux
}

// ParseTaskManagerArgs reads the stand-in's command line: --config FILE, then the main class
// and JVM-style -D properties, which are there for the agent's discovery and ignored here.
func ParseTaskManagerArgs(args []string) (TaskManagerConfig, error) {
	var path string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--config" && i+1 < len(args):
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="):
			path = strings.TrimPrefix(a, "--config=")
		}
	}
	if path == "" {
		return TaskManagerConfig{}, errors.New("lab taskmanager: --config FILE is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return TaskManagerConfig{}, err
	}
	var cfg TaskManagerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return TaskManagerConfig{}, fmt.Errorf("lab taskmanager config %s: %w", path, err)
	}
	return cfg, nil
}
