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

type taskSeries struct {
	raw   string
	group string // sub-group path after the task scope, '_'-joined ("" for none)
	value func(st *subtask, v *vertex, j *job) float64
	only1 bool // 1.x only (removed in 2.0)
}

// taskFamilies are the task-scope metrics the stand-in exports, per subtask.
var taskFamilies = []taskSeries{
	{raw: "numRecordsIn", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Floor(st.recIn) }},
	{raw: "numRecordsOut", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Floor(st.recOut) }},
	{raw: "numRecordsInPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 { return st.inRate }},
	{raw: "numRecordsOutPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 { return st.outRate }},
	{raw: "numBytesIn", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Floor(st.bytesIn) }},
	{raw: "numBytesOut", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Floor(st.bytesOut) }},
	{raw: "numBytesInPerSecond", value: func(st *subtask, v *vertex, _ *job) float64 { return st.inRate * v.bytesPerRec }},
	{raw: "numBytesOutPerSecond", value: func(st *subtask, v *vertex, _ *job) float64 { return st.outRate * v.bytesPerRec }},
	{raw: "idleTimeMsPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Round(st.idle) }},
	{raw: "softBackPressuredTimeMsPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 { return 0 }},
	{raw: "hardBackPressuredTimeMsPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Round(st.bp) }},
	{raw: "backPressuredTimeMsPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Round(st.bp) }},
	{raw: "busyTimeMsPerSecond", value: func(st *subtask, _ *vertex, _ *job) float64 {
		return 1000 - math.Min(math.Round(st.idle)+math.Round(st.bp), 1000)
	}},
	{raw: "isBackPressured", value: func(st *subtask, _ *vertex, _ *job) float64 {
		if st.bp > 100 {
			return 1
		}
		return 0
	}},
	{raw: "mailboxQueueSize", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Round(st.busy / 200) }},
	{raw: "checkpointStartDelayNanos", value: func(st *subtask, _ *vertex, _ *job) float64 {
		return math.Round(2e6 + st.bp*1e7)
	}},
	{raw: "outPoolUsage", group: "Shuffle_Netty_Output_Buffers", value: func(st *subtask, _ *vertex, _ *job) float64 { return st.outPool }},
	{raw: "inPoolUsage", group: "Shuffle_Netty_Input_Buffers", value: func(st *subtask, _ *vertex, _ *job) float64 { return st.inPool }},
	{raw: "inPoolUsage", group: "buffers", only1: true, value: func(st *subtask, _ *vertex, _ *job) float64 { return st.inPool }},
	{raw: "outPoolUsage", group: "buffers", only1: true, value: func(st *subtask, _ *vertex, _ *job) float64 { return st.outPool }},
}

// sourceOperatorFamilies are exported by the head operator of source vertices (a Kafka source).
var sourceOperatorFamilies = []taskSeries{
	{raw: "pendingRecords", value: func(st *subtask, _ *vertex, _ *job) float64 { return math.Floor(st.pending) }},
	{raw: "records-lag-max", group: "KafkaSourceReader_KafkaConsumer", value: func(st *subtask, _ *vertex, _ *job) float64 {
		return math.Floor(st.pending / 2)
	}},
	{raw: "currentEmitEventTimeLag", value: func(st *subtask, _ *vertex, j *job) float64 {
		return math.Round(50 + st.pending/math.Max(j.rateNow, 1)*1000)
	}},
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
	bw := bufio.NewWriterSize(w, 64<<10)
	p := &promWriter{w: bw}
	if len(names) > 0 {
		p.only = make(map[string]bool, len(names))
		for _, n := range names {
			p.only[n] = true
		}
	}
	c.writeTaskManager(p, tm)
	c.writeTasks(p, tm)
	return bw.Flush()
}

func (c *Cluster) writeTaskManager(p *promWriter, tm *taskManager) {
	labels := [][2]string{{"host", promscrape.SanitizeLabelValue(tm.info.Host)}, {"tm_id", promscrape.SanitizeLabelValue(tm.info.ID)}}
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
	gauges := []struct {
		group, raw string
		v          float64
	}{
		{"Status_JVM_CPU", "Load", math.Min(1, 0.05+busy/float64(max(tm.slots, 1)))},
		{"Status_JVM_CPU", "Time", math.Floor(tm.cpuTimeNs)},
		{"Status_JVM_Memory_Heap", "Used", heapMax * (0.4 + 0.4*(1-tm.speed))},
		{"Status_JVM_Memory_Heap", "Committed", heapMax},
		{"Status_JVM_Memory_Heap", "Max", heapMax},
		{"Status_JVM_Threads", "Count", 80},
		{"Status_JVM_GarbageCollector_G1_Young_Generation", "Count", math.Floor(tm.gcCount)},
		{"Status_JVM_GarbageCollector_G1_Young_Generation", "Time", math.Floor(tm.gcTimeMs)},
		{"Status_JVM_GarbageCollector_G1_Old_Generation", "Count", 0},
		{"Status_JVM_GarbageCollector_G1_Old_Generation", "Time", 0},
		{"Status_JVM_GarbageCollector_All", "Count", math.Floor(tm.gcCount)},
		{"Status_JVM_GarbageCollector_All", "Time", math.Floor(tm.gcTimeMs)},
		{"Status_JVM_GarbageCollector_All", "TimeMsPerSecond", 5 + 40*(1-tm.speed)},
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
func (c *Cluster) taskLabels(j *job, v *vertex, st *subtask, operator bool) [][2]string {
	l := make([][2]string, 0, 11)
	l = append(l,
		[2]string{"job_id", j.id},
		[2]string{"task_id", v.id},
		[2]string{"task_attempt_id", fmt.Sprintf("%s_%s_%d_%d", j.execGraph, v.id, st.index, st.attempt)},
		[2]string{"host", promscrape.SanitizeLabelValue(st.tm.info.Host)},
	)
	if operator {
		opName := v.name
		if len(opName) > 80 {
			opName = opName[:80]
		}
		l = append(l, [2]string{"operator_id", v.id}, [2]string{"operator_name", promscrape.SanitizeLabelValue(opName)})
	}
	return append(l,
		[2]string{"task_name", promscrape.SanitizeLabelValue(v.name)},
		[2]string{"task_attempt_num", strconv.Itoa(st.attempt)},
		[2]string{"job_name", promscrape.SanitizeLabelValue(j.name)},
		[2]string{"tm_id", promscrape.SanitizeLabelValue(st.tm.info.ID)},
		[2]string{"subtask_index", strconv.Itoa(st.index)},
	)
}

type placed struct {
	j  *job
	v  *vertex
	st *subtask
	l  [][2]string
}

func (c *Cluster) writeTasks(p *promWriter, tm *taskManager) {
	var here, sources []placed
	for _, j := range c.jobs {
		for vi, v := range j.vertices {
			for _, st := range v.subtasks {
				if st.tm != tm {
					continue
				}
				here = append(here, placed{j, v, st, c.taskLabels(j, v, st, false)})
				if vi == 0 {
					sources = append(sources, placed{j, v, st, c.taskLabels(j, v, st, true)})
				}
			}
		}
	}
	if len(here) == 0 {
		return
	}
	for _, f := range taskFamilies {
		if f.only1 && c.version != Version120 {
			continue
		}
		scope := "taskmanager_job_task"
		if f.group != "" {
			scope += "_" + f.group
		}
		name := "flink_" + scope + "_" + promscrape.SanitizeLabelValue(f.raw)
		p.family(name, f.raw, scope, "gauge")
		for _, x := range here {
			p.sample(name, x.l, f.value(x.st, x.v, x.j))
		}
	}
	// mailboxLatencyMs is a Flink histogram: a summary with _count and quantiles, no _sum.
	name := "flink_taskmanager_job_task_mailboxLatencyMs"
	p.family(name, "mailboxLatencyMs", "taskmanager_job_task", "summary")
	for _, x := range here {
		p.sample(name+"_count", x.l, 60)
		base := x.st.busy / 250
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
			p.sample(name, x.l, f.value(x.st, x.v, x.j))
		}
	}
}
