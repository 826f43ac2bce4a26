package flinksim

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/tmwarden/tmwarden/flink/promscrape"
)

// JavaDouble formats v the way Java's Double.toString does (and simpleclient 0.8 writes
// sample values): "7.0", "0.7321428571428571", "1.387266048E9", "NaN", "+Inf".
func JavaDouble(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == 0:
		if math.Signbit(v) {
			return "-0.0"
		}
		return "0.0"
	}
	abs := math.Abs(v)
	if abs >= 1e-3 && abs < 1e7 {
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	s := strconv.FormatFloat(v, 'e', -1, 64) // 1.387266048e+09
	mant, exp, _ := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	e, _ := strconv.Atoi(exp)
	return mant + "E" + strconv.Itoa(e)
}

// promWriter writes families in the simpleclient 0.8 text format: HELP with the raw name and
// logical scope, TYPE, label sets with a trailing comma, no timestamps.
type promWriter struct {
	w *bufio.Writer
	// only, when set, is the ?name[]= filter; skip is true inside a family it excludes.
	only map[string]bool
	skip bool
}

func (p *promWriter) family(name, raw, scope, typ string) {
	p.skip = p.only != nil && !p.only[name]
	if p.skip {
		return
	}
	fmt.Fprintf(p.w, "# HELP %s %s (scope: %s)\n# TYPE %s %s\n", name, raw, scope, name, typ)
}

func (p *promWriter) sample(name string, labels [][2]string, v float64) {
	if p.skip {
		return
	}
	p.w.WriteString(name)
	p.w.WriteByte('{')
	for _, l := range labels {
		p.w.WriteString(l[0])
		p.w.WriteString(`="`)
		p.w.WriteString(l[1])
		p.w.WriteString(`",`)
	}
	p.w.WriteString("} ")
	p.w.WriteString(JavaDouble(v))
	p.w.WriteByte('\n')
}

// SubtaskSample is one subtask's task-scope metric values as its TaskManager exports them. The
// model fills it from its pipeline; the real-fault lab's TaskManager stand-in (lab/) fills it
// from work it really did, and both are written by WriteTaskManagerMetrics.
type SubtaskSample struct {
	JobID, JobName, VertexID, VertexName string
	// ExecutionGraphID prefixes task_attempt_id.
	ExecutionGraphID string
	Index, Attempt   int
	// Source marks the head subtask of a source vertex: it also exports the source operator's
	// metrics (pendingRecords, records-lag-max, currentEmitEventTimeLag).
	Source bool
	// Counters.
	RecordsIn, RecordsOut, BytesIn, BytesOut float64
	// Meters (records and bytes per second) and TimerGauges (ms per second).
	RecordsInRate, RecordsOutRate, BytesInRate, BytesOutRate float64
	IdleMs, BackPressuredMs                                  float64
	InPool, OutPool, MailboxQueue                            float64
	// MailboxLatencyMs is the median mailbox latency; the quantiles fan out from it.
	MailboxLatencyMs          float64
	CheckpointStartDelayNanos float64
	// Pending and EmitEventTimeLagMs are the source operator's backlog and lag.
	Pending, EmitEventTimeLagMs float64
}

// TaskManagerSample is one TaskManager's JVM-scope values.
type TaskManagerSample struct {
	ID, Host                                  string
	CPULoad, CPUTimeNs                        float64
	HeapUsed, HeapCommitted, HeapMax, Threads float64
	// Young and old generation collector counts and accumulated times (ms); All is their sum.
	YoungGCCount, YoungGCTimeMs, OldGCCount, OldGCTimeMs float64
	// GCTimeMsPerSecond is the All collector's TimeMsPerSecond gauge.
	GCTimeMsPerSecond float64
}

type taskSeries struct {
	raw   string
	group string // sub-group path after the task scope, '_'-joined ("" for none)
	value func(s *SubtaskSample) float64
	only1 bool // 1.x only (removed in 2.0)
}

func busyMs(s *SubtaskSample) float64 {
	return 1000 - math.Min(math.Round(s.IdleMs)+math.Round(s.BackPressuredMs), 1000)
}

// taskFamilies are the task-scope metrics the stand-in exports, per subtask.
var taskFamilies = []taskSeries{
	{raw: "numRecordsIn", value: func(s *SubtaskSample) float64 { return math.Floor(s.RecordsIn) }},
	{raw: "numRecordsOut", value: func(s *SubtaskSample) float64 { return math.Floor(s.RecordsOut) }},
	{raw: "numRecordsInPerSecond", value: func(s *SubtaskSample) float64 { return s.RecordsInRate }},
	{raw: "numRecordsOutPerSecond", value: func(s *SubtaskSample) float64 { return s.RecordsOutRate }},
	{raw: "numBytesIn", value: func(s *SubtaskSample) float64 { return math.Floor(s.BytesIn) }},
	{raw: "numBytesOut", value: func(s *SubtaskSample) float64 { return math.Floor(s.BytesOut) }},
	{raw: "numBytesInPerSecond", value: func(s *SubtaskSample) float64 { return s.BytesInRate }},
	{raw: "numBytesOutPerSecond", value: func(s *SubtaskSample) float64 { return s.BytesOutRate }},
	{raw: "idleTimeMsPerSecond", value: func(s *SubtaskSample) float64 { return math.Round(s.IdleMs) }},
	{raw: "softBackPressuredTimeMsPerSecond", value: func(*SubtaskSample) float64 { return 0 }},
	{raw: "hardBackPressuredTimeMsPerSecond", value: func(s *SubtaskSample) float64 { return math.Round(s.BackPressuredMs) }},
	{raw: "backPressuredTimeMsPerSecond", value: func(s *SubtaskSample) float64 { return math.Round(s.BackPressuredMs) }},
	{raw: "busyTimeMsPerSecond", value: busyMs},
	{raw: "isBackPressured", value: func(s *SubtaskSample) float64 {
		if s.BackPressuredMs > 100 {
			return 1
		}
		return 0
	}},
	{raw: "mailboxQueueSize", value: func(s *SubtaskSample) float64 { return math.Round(s.MailboxQueue) }},
	{raw: "checkpointStartDelayNanos", value: func(s *SubtaskSample) float64 { return math.Round(s.CheckpointStartDelayNanos) }},
	{raw: "outPoolUsage", group: "Shuffle_Netty_Output_Buffers", value: func(s *SubtaskSample) float64 { return s.OutPool }},
	{raw: "inPoolUsage", group: "Shuffle_Netty_Input_Buffers", value: func(s *SubtaskSample) float64 { return s.InPool }},
	{raw: "inPoolUsage", group: "buffers", only1: true, value: func(s *SubtaskSample) float64 { return s.InPool }},
	{raw: "outPoolUsage", group: "buffers", only1: true, value: func(s *SubtaskSample) float64 { return s.OutPool }},
}

// sourceOperatorFamilies are exported by the head operator of source vertices (a Kafka source).
var sourceOperatorFamilies = []taskSeries{
	{raw: "pendingRecords", value: func(s *SubtaskSample) float64 { return math.Floor(s.Pending) }},
	{raw: "records-lag-max", group: "KafkaSourceReader_KafkaConsumer", value: func(s *SubtaskSample) float64 {
		return math.Floor(s.Pending / 2)
	}},
	{raw: "currentEmitEventTimeLag", value: func(s *SubtaskSample) float64 { return math.Round(s.EmitEventTimeLagMs) }},
}

var mailboxQuantiles = []float64{0.5, 0.75, 0.95, 0.98, 0.99, 0.999}

// WriteMetrics writes TaskManager tmID's /metrics body. It advances the model to now first.
func (c *Cluster) WriteMetrics(w io.Writer, tmID string) error {
	return c.writeMetrics(w, tmID, nil)
}

// writeMetrics honours simpleclient's ?name[]= filter: only the named families are written.
func (c *Cluster) writeMetrics(w io.Writer, tmID string, names []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := c.tmByID(tmID)
	if tm == nil {
		return fmt.Errorf("flinksim: unknown TaskManager %q", tmID)
	}
	c.advance()
	return WriteTaskManagerMetrics(w, c.version, c.tmSample(tm), c.subtaskSamples(tm), names)
}

// WriteTaskManagerMetrics writes one TaskManager's PrometheusReporter body in Flink version's
// naming (Version120 or Version20), exactly as the model's own endpoints do. names, when not
// empty, is simpleclient's ?name[]= filter.
func WriteTaskManagerMetrics(w io.Writer, version string, tm TaskManagerSample, subtasks []SubtaskSample, names []string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	p := &promWriter{w: bw}
	if len(names) > 0 {
		p.only = make(map[string]bool, len(names))
		for _, n := range names {
			p.only[n] = true
		}
	}
	writeTaskManager(p, tm)
	writeTasks(p, version, tm, subtasks)
	return bw.Flush()
}

func (c *Cluster) tmSample(tm *taskManager) TaskManagerSample {
	busy := 0.0
	for _, j := range c.jobs {
		for _, v := range j.vertices {
			for _, st := range v.subtasks {
				if st.tm == tm {
					busy += st.busy / 1000
				}
			}
		}
	}
	heapMax := 1476395008.0
	return TaskManagerSample{
		ID: tm.info.ID, Host: tm.info.Host,
		CPULoad: math.Min(1, 0.05+busy/float64(max(tm.slots, 1))), CPUTimeNs: math.Floor(tm.cpuTimeNs),
		HeapUsed: heapMax * (0.4 + 0.4*(1-tm.speed)), HeapCommitted: heapMax, HeapMax: heapMax, Threads: 80,
		YoungGCCount: math.Floor(tm.gcCount), YoungGCTimeMs: math.Floor(tm.gcTimeMs),
		GCTimeMsPerSecond: 5 + 40*(1-tm.speed),
	}
}

func (c *Cluster) subtaskSamples(tm *taskManager) []SubtaskSample {
	var out []SubtaskSample
	for _, j := range c.jobs {
		for vi, v := range j.vertices {
			for _, st := range v.subtasks {
				if st.tm != tm {
					continue
				}
				out = append(out, SubtaskSample{
					JobID: j.id, JobName: j.name, VertexID: v.id, VertexName: v.name, ExecutionGraphID: j.execGraph,
					Index: st.index, Attempt: st.attempt, Source: vi == 0,
					RecordsIn: st.recIn, RecordsOut: st.recOut, BytesIn: st.bytesIn, BytesOut: st.bytesOut,
					RecordsInRate: st.inRate, RecordsOutRate: st.outRate,
					BytesInRate: st.inRate * v.bytesPerRec, BytesOutRate: st.outRate * v.bytesPerRec,
					IdleMs: st.idle, BackPressuredMs: st.bp, InPool: st.inPool, OutPool: st.outPool,
					MailboxQueue: st.busy / 200, MailboxLatencyMs: st.busy / 250,
					CheckpointStartDelayNanos: 2e6 + st.bp*1e7,
					Pending:                   st.pending, EmitEventTimeLagMs: 50 + st.pending/math.Max(j.rateNow, 1)*1000,
				})
			}
		}
	}
	return out
}

func writeTaskManager(p *promWriter, tm TaskManagerSample) {
	labels := [][2]string{{"host", promscrape.SanitizeLabelValue(tm.Host)}, {"tm_id", promscrape.SanitizeLabelValue(tm.ID)}}
	gauges := []struct {
		group, raw string
		v          float64
	}{
		{"Status_JVM_CPU", "Load", tm.CPULoad},
		{"Status_JVM_CPU", "Time", math.Floor(tm.CPUTimeNs)},
		{"Status_JVM_Memory_Heap", "Used", tm.HeapUsed},
		{"Status_JVM_Memory_Heap", "Committed", tm.HeapCommitted},
		{"Status_JVM_Memory_Heap", "Max", tm.HeapMax},
		{"Status_JVM_Threads", "Count", tm.Threads},
		{"Status_JVM_GarbageCollector_G1_Young_Generation", "Count", math.Floor(tm.YoungGCCount)},
		{"Status_JVM_GarbageCollector_G1_Young_Generation", "Time", math.Floor(tm.YoungGCTimeMs)},
		{"Status_JVM_GarbageCollector_G1_Old_Generation", "Count", math.Floor(tm.OldGCCount)},
		{"Status_JVM_GarbageCollector_G1_Old_Generation", "Time", math.Floor(tm.OldGCTimeMs)},
		{"Status_JVM_GarbageCollector_All", "Count", math.Floor(tm.YoungGCCount + tm.OldGCCount)},
		{"Status_JVM_GarbageCollector_All", "Time", math.Floor(tm.YoungGCTimeMs + tm.OldGCTimeMs)},
		{"Status_JVM_GarbageCollector_All", "TimeMsPerSecond", tm.GCTimeMsPerSecond},
		{"Status_Shuffle_Netty", "TotalMemorySegments", 4096},
		{"Status_Shuffle_Netty", "AvailableMemorySegments", 3072},
	}
	for _, g := range gauges {
		name := "flink_taskmanager_" + g.group + "_" + g.raw
		p.family(name, g.raw, "taskmanager_"+g.group, "gauge")
		p.sample(name, labels, g.v)
	}
}

// taskLabels returns the labels in the reporter's HashMap order (FORMATS.md §1.3).
func taskLabels(tm TaskManagerSample, s *SubtaskSample, operator bool) [][2]string {
	l := make([][2]string, 0, 11)
	l = append(l,
		[2]string{"job_id", s.JobID},
		[2]string{"task_id", s.VertexID},
		[2]string{"task_attempt_id", fmt.Sprintf("%s_%s_%d_%d", s.ExecutionGraphID, s.VertexID, s.Index, s.Attempt)},
		[2]string{"host", promscrape.SanitizeLabelValue(tm.Host)},
	)
	if operator {
		opName := s.VertexName
		if len(opName) > 80 {
			opName = opName[:80]
		}
		l = append(l, [2]string{"operator_id", s.VertexID}, [2]string{"operator_name", promscrape.SanitizeLabelValue(opName)})
	}
	return append(l,
		[2]string{"task_name", promscrape.SanitizeLabelValue(s.VertexName)},
		[2]string{"task_attempt_num", strconv.Itoa(s.Attempt)},
		[2]string{"job_name", promscrape.SanitizeLabelValue(s.JobName)},
		[2]string{"tm_id", promscrape.SanitizeLabelValue(tm.ID)},
		[2]string{"subtask_index", strconv.Itoa(s.Index)},
	)
}

type placed struct {
	s *SubtaskSample
	l [][2]string
}

func writeTasks(p *promWriter, version string, tm TaskManagerSample, subtasks []SubtaskSample) {
	var here, sources []placed
	for i := range subtasks {
		s := &subtasks[i]
		here = append(here, placed{s, taskLabels(tm, s, false)})
		if s.Source {
			sources = append(sources, placed{s, taskLabels(tm, s, true)})
		}
	}
	if len(here) == 0 {
		return
	}
	for _, f := range taskFamilies {
		if f.only1 && version != Version120 {
			continue
		}
		scope := "taskmanager_job_task"
		if f.group != "" {
			scope += "_" + f.group
		}
		name := "flink_" + scope + "_" + promscrape.SanitizeLabelValue(f.raw)
		p.family(name, f.raw, scope, "gauge")
		for _, x := range here {
			p.sample(name, x.l, f.value(x.s))
		}
	}
	// mailboxLatencyMs is a Flink histogram: a summary with _count and quantiles, no _sum.
	name := "flink_taskmanager_job_task_mailboxLatencyMs"
	p.family(name, "mailboxLatencyMs", "taskmanager_job_task", "summary")
	for _, x := range here {
		p.sample(name+"_count", x.l, 60)
		base := x.s.MailboxLatencyMs
		for _, q := range mailboxQuantiles {
			ql := append(append([][2]string(nil), x.l...), [2]string{"quantile", strconv.FormatFloat(q, 'f', -1, 64)})
			p.sample(name, ql, math.Round(base*(1+8*q*q*q)))
		}
	}
	if len(sources) == 0 {
		return
	}
	for _, f := range sourceOperatorFamilies {
		scope := "taskmanager_job_task_operator"
		if f.group != "" {
			scope += "_" + f.group
		}
		name := "flink_" + scope + "_" + promscrape.SanitizeLabelValue(f.raw)
		p.family(name, f.raw, scope, "gauge")
		for _, x := range sources {
			p.sample(name, x.l, f.value(x.s))
		}
	}
}
