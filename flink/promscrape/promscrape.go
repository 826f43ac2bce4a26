// Package promscrape reads what a Flink TaskManager's PrometheusReporter serves (Flink 1.17–1.20
// and 2.x naming) and extracts the per-subtask and per-JVM signals tmwarden reports.
// It follows the reporter's rules: labels by name, NaN values, summaries without _sum, and the
// 1.x `buffers_*` pool gauges where 2.x has only `Shuffle_Netty_*`.
package promscrape

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// SanitizeLabelValue applies the PrometheusReporter's label-value filter
// (filterLabelValueCharacters=true, the default): every character outside [a-zA-Z0-9:_] becomes
// '_'. REST ids and names must go through it before they are joined with scraped labels.
func SanitizeLabelValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !labelByteOK(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	// Java filters UTF-16 chars one by one; a non-ASCII rune is one char outside the set, so it
	// becomes a single '_' (runes above the BMP are two Java chars and become "__").
	for _, r := range s {
		switch {
		case r < 0x80 && labelByteOK(byte(r)):
			b.WriteRune(r)
		case r > 0xFFFF:
			b.WriteString("__")
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func labelByteOK(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_'
}

// Metric family prefixes by Flink logical scope (FORMATS.md §1.2).
const (
	prefixOperator = "flink_taskmanager_job_task_operator_"
	prefixTask     = "flink_taskmanager_job_task_"
	prefixJVM      = "flink_taskmanager_Status_JVM_"
)

// gcCollectorNames are the JVM collector names (filtered the reporter's way) whose per-collector
// series stand in for the "All" group before Flink 1.19.
var gcCollectorNames = []string{
	"G1_Young_Generation", "G1_Old_Generation", "G1_Concurrent_GC", "PS_Scavenge", "PS_MarkSweep",
	"ParNew", "ConcurrentMarkSweep", "Copy", "MarkSweepCompact", "ZGC_Cycles", "ZGC_Pauses",
	"ZGC_Minor_Cycles", "ZGC_Major_Cycles", "ZGC_Minor_Pauses", "ZGC_Major_Pauses",
	"Shenandoah_Cycles", "Shenandoah_Pauses",
}

// Families lists every metric family Extract reads, for the reporter's ?name[]= filter, which
// cuts the body (and the parse cost) to what tmwarden uses.
func Families() []string {
	out := []string{}
	for _, s := range []string{
		"busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond",
		"numRecordsInPerSecond", "numRecordsOutPerSecond", "numBytesInPerSecond", "numBytesOutPerSecond",
		"checkpointStartDelayNanos", "mailboxLatencyMs",
		"Shuffle_Netty_Input_Buffers_inPoolUsage", "Shuffle_Netty_Output_Buffers_outPoolUsage",
		"buffers_inPoolUsage", "buffers_outPoolUsage",
	} {
		out = append(out, prefixTask+s)
	}
	for _, s := range []string{"pendingRecords", "KafkaSourceReader_KafkaConsumer_records_lag_max", "sourceIdleTime", "currentEmitEventTimeLag"} {
		out = append(out, prefixOperator+s)
	}
	for _, s := range []string{"CPU_Load", "Memory_Heap_Used", "Memory_Heap_Max", "Threads_Count",
		"GarbageCollector_All_Count", "GarbageCollector_All_Time", "GarbageCollector_All_TimeMsPerSecond"} {
		out = append(out, prefixJVM+s)
	}
	for _, gc := range gcCollectorNames {
		out = append(out, prefixJVM+"GarbageCollector_"+gc+"_Count", prefixJVM+"GarbageCollector_"+gc+"_Time")
	}
	return out
}

// SubtaskKey identifies a subtask across attempts; attempt ids change on every failover.
type SubtaskKey struct {
	JobID        string
	VertexID     string
	SubtaskIndex int32
}

// JVM holds one TaskManager's process-level figures as scraped. GC figures are cumulative, so
// rates need the previous scrape (see Stats).
type JVM struct {
	CPULoad  float64
	HeapUsed float64
	HeapMax  float64
	Threads  float64
	// GCCount and GCTimeMs are summed over all collectors (or the 1.19+ "All" group).
	GCCount  float64
	GCTimeMs float64
	// GCTimeMsPerSecond is Flink's own rate (1.19+); NaN when the TaskManager does not export it.
	GCTimeMsPerSecond float64
}

// Scrape is everything extracted from one /metrics body.
type Scrape struct {
	// TaskManagerID and Host are the tm_id and host labels, already sanitised by the reporter.
	TaskManagerID string
	Host          string
	// Subtasks are sorted by job, vertex and subtask index.
	Subtasks []*tmwardenv1.SubtaskMetrics
	JVM      JVM
	// Series is the number of samples read (a summary counts its quantiles and _count); Skipped counts task-scope series without the
	// job_id/task_id/subtask_index labels needed to key them.
	Series  int
	Skipped int
}

// Parse reads a PrometheusReporter text body and extracts the subtasks and JVM figures.
// A body that does not parse completely (truncated, garbled) is an error: partial families
// would show some subtasks without their busy time and mislead the peer comparison.
func Parse(r io.Reader) (*Scrape, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse prometheus text: %w", err)
	}
	return Extract(fams), nil
}

// subtaskAcc accumulates one subtask's series; the flags remember which source a value came
// from because series arrive in arbitrary order and the 2.x names win over the 1.x ones.
type subtaskAcc struct {
	m             *tmwardenv1.SubtaskMetrics
	inFromNetty   bool
	outFromNetty  bool
	pending       float64
	pendingSeen   bool
	kafkaLag      float64
	kafkaLagSeen  bool
	attemptNumber int32
}

// Extract turns parsed metric families into a Scrape. It never fails: series it cannot key are
// counted in Skipped and metrics it does not know are ignored.
func Extract(fams map[string]*dto.MetricFamily) *Scrape {
	s := &Scrape{JVM: JVM{
		CPULoad: math.NaN(), HeapUsed: math.NaN(), HeapMax: math.NaN(), Threads: math.NaN(),
		GCTimeMsPerSecond: math.NaN(),
	}}
	subs := make(map[SubtaskKey]*subtaskAcc)
	var gcAll struct{ count, time float64 }
	var gcSum struct{ count, time float64 }
	gcAllSeen := [2]bool{}

	for name, fam := range fams {
		metrics := fam.GetMetric()
		s.Series += len(metrics)
		if fam.GetType() == dto.MetricType_SUMMARY {
			for _, m := range metrics {
				s.Series += len(m.GetSummary().GetQuantile()) // plus _count, already counted
			}
		}
		switch {
		case strings.HasPrefix(name, prefixOperator):
			suffix := name[len(prefixOperator):]
			if !operatorMetricWanted(suffix) {
				continue
			}
			for _, m := range metrics {
				acc := s.subtask(subs, m)
				if acc == nil {
					continue
				}
				applyOperator(acc, suffix, sampleValue(m))
			}
		case strings.HasPrefix(name, prefixTask):
			suffix := name[len(prefixTask):]
			for _, m := range metrics {
				acc := s.subtask(subs, m)
				if acc == nil {
					continue
				}
				if suffix == "mailboxLatencyMs" {
					applyMailbox(acc.m, m)
					continue
				}
				applyTask(acc, suffix, sampleValue(m))
			}
		case strings.HasPrefix(name, prefixJVM):
			if len(metrics) == 0 {
				continue
			}
			m := metrics[0]
			s.noteTaskManager(m)
			v := sampleValue(m)
			switch suffix := name[len(prefixJVM):]; suffix {
			case "CPU_Load":
				s.JVM.CPULoad = v
			case "Memory_Heap_Used":
				s.JVM.HeapUsed = v
			case "Memory_Heap_Max":
				s.JVM.HeapMax = v
			case "Threads_Count":
				s.JVM.Threads = v
			case "GarbageCollector_All_Count":
				gcAll.count, gcAllSeen[0] = v, true
			case "GarbageCollector_All_Time":
				gcAll.time, gcAllSeen[1] = v, true
			case "GarbageCollector_All_TimeMsPerSecond":
				s.JVM.GCTimeMsPerSecond = v
			default:
				if rest, ok := strings.CutPrefix(suffix, "GarbageCollector_"); ok && !math.IsNaN(v) {
					if strings.HasSuffix(rest, "_Count") {
						gcSum.count += v
					} else if strings.HasSuffix(rest, "_Time") {
						gcSum.time += v
					}
				}
			}
		default:
			if strings.HasPrefix(name, "flink_taskmanager_") && len(metrics) > 0 {
				s.noteTaskManager(metrics[0])
			}
		}
	}
	// Before 1.19 there is no "All" group; the per-collector sums are the same quantity.
	s.JVM.GCCount, s.JVM.GCTimeMs = gcSum.count, gcSum.time
	if gcAllSeen[0] {
		s.JVM.GCCount = gcAll.count
	}
	if gcAllSeen[1] {
		s.JVM.GCTimeMs = gcAll.time
	}

	s.Subtasks = make([]*tmwardenv1.SubtaskMetrics, 0, len(subs))
	for _, acc := range subs {
		if acc.pendingSeen {
			acc.m.PendingRecords = &acc.pending
			acc.m.IsSource = true
		}
		if acc.kafkaLagSeen {
			acc.m.KafkaLag = &acc.kafkaLag
			acc.m.IsSource = true
		}
		s.Subtasks = append(s.Subtasks, acc.m)
	}
	slices.SortFunc(s.Subtasks, func(a, b *tmwardenv1.SubtaskMetrics) int {
		return cmp.Or(cmp.Compare(a.JobId, b.JobId), cmp.Compare(a.VertexId, b.VertexId),
			cmp.Compare(a.SubtaskIndex, b.SubtaskIndex))
	})
	return s
}

func (s *Scrape) noteTaskManager(m *dto.Metric) {
	if s.TaskManagerID != "" {
		return
	}
	s.TaskManagerID = label(m, "tm_id")
	s.Host = label(m, "host")
}

// subtask finds or creates the accumulator for the series' (job_id, task_id, subtask_index).
func (s *Scrape) subtask(subs map[SubtaskKey]*subtaskAcc, m *dto.Metric) *subtaskAcc {
	var jobID, vertexID, idx, jobName, vertexName, attemptID, attemptNum, tmID, host string
	for _, lp := range m.GetLabel() {
		switch lp.GetName() {
		case "job_id":
			jobID = lp.GetValue()
		case "task_id":
			vertexID = lp.GetValue()
		case "subtask_index":
			idx = lp.GetValue()
		case "job_name":
			jobName = lp.GetValue()
		case "task_name":
			vertexName = lp.GetValue()
		case "task_attempt_id":
			attemptID = lp.GetValue()
		case "task_attempt_num":
			attemptNum = lp.GetValue()
		case "tm_id":
			tmID = lp.GetValue()
		case "host":
			host = lp.GetValue()
		}
	}
	n, err := strconv.ParseInt(idx, 10, 32)
	if jobID == "" || vertexID == "" || err != nil || n < 0 {
		s.Skipped++
		return nil
	}
	if s.TaskManagerID == "" && tmID != "" {
		s.TaskManagerID, s.Host = tmID, host
	}
	key := SubtaskKey{JobID: jobID, VertexID: vertexID, SubtaskIndex: int32(n)}
	acc := subs[key]
	if acc == nil {
		acc = &subtaskAcc{m: newSubtask(key)}
		subs[key] = acc
	}
	// Mid-failover a scrape can hold series of two attempts; the newest attempt describes the
	// running task.
	an, _ := strconv.ParseInt(attemptNum, 10, 32)
	if acc.m.AttemptId == "" || int32(an) > acc.attemptNumber {
		acc.attemptNumber = int32(an)
		acc.m.AttemptNumber = int32(an)
		acc.m.AttemptId = attemptID
		acc.m.JobName = jobName
		acc.m.VertexName = vertexName
	}
	return acc
}

func newSubtask(k SubtaskKey) *tmwardenv1.SubtaskMetrics {
	nan := math.NaN()
	return &tmwardenv1.SubtaskMetrics{
		JobId: k.JobID, VertexId: k.VertexID, SubtaskIndex: k.SubtaskIndex,
		BusyMsPerSecond: nan, BackpressuredMsPerSecond: nan, IdleMsPerSecond: nan,
		RecordsInPerSecond: nan, RecordsOutPerSecond: nan, BytesInPerSecond: nan, BytesOutPerSecond: nan,
		InputPoolUsage: nan, OutputPoolUsage: nan,
		MailboxLatencyMsP50: nan, MailboxLatencyMsP99: nan, CheckpointStartDelayMs: nan,
	}
}

func applyTask(acc *subtaskAcc, suffix string, v float64) {
	m := acc.m
	switch suffix {
	case "busyTimeMsPerSecond":
		m.BusyMsPerSecond = v
	case "backPressuredTimeMsPerSecond":
		m.BackpressuredMsPerSecond = v
	case "idleTimeMsPerSecond":
		m.IdleMsPerSecond = v
	case "numRecordsInPerSecond":
		m.RecordsInPerSecond = v
	case "numRecordsOutPerSecond":
		m.RecordsOutPerSecond = v
	case "numBytesInPerSecond":
		m.BytesInPerSecond = v
	case "numBytesOutPerSecond":
		m.BytesOutPerSecond = v
	case "checkpointStartDelayNanos":
		m.CheckpointStartDelayMs = v / 1e6
	case "Shuffle_Netty_Input_Buffers_inPoolUsage":
		m.InputPoolUsage, acc.inFromNetty = v, true
	case "Shuffle_Netty_Output_Buffers_outPoolUsage":
		m.OutputPoolUsage, acc.outFromNetty = v, true
	case "buffers_inPoolUsage": // 1.x only, removed in 2.0
		if !acc.inFromNetty {
			m.InputPoolUsage = v
		}
	case "buffers_outPoolUsage":
		if !acc.outFromNetty {
			m.OutputPoolUsage = v
		}
	}
}

func operatorMetricWanted(suffix string) bool {
	switch suffix {
	case "pendingRecords", "KafkaSourceReader_KafkaConsumer_records_lag_max", "sourceIdleTime", "currentEmitEventTimeLag":
		return true
	}
	return false
}

func applyOperator(acc *subtaskAcc, suffix string, v float64) {
	switch suffix {
	case "pendingRecords":
		// A chain normally holds one source; summing covers multi-source chains.
		if !math.IsNaN(v) {
			acc.pending += v
			acc.pendingSeen = true
		}
	case "KafkaSourceReader_KafkaConsumer_records_lag_max":
		if !math.IsNaN(v) && (!acc.kafkaLagSeen || v > acc.kafkaLag) {
			acc.kafkaLag = v
			acc.kafkaLagSeen = true
		}
	case "sourceIdleTime", "currentEmitEventTimeLag":
		// Only FLIP-27 source readers register these.
		acc.m.IsSource = true
	}
}

func applyMailbox(sm *tmwardenv1.SubtaskMetrics, m *dto.Metric) {
	sum := m.GetSummary()
	if sum == nil {
		return
	}
	for _, q := range sum.GetQuantile() {
		switch q.GetQuantile() {
		case 0.5:
			sm.MailboxLatencyMsP50 = q.GetValue()
		case 0.99:
			sm.MailboxLatencyMsP99 = q.GetValue()
		}
	}
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// Stats turns the scraped JVM figures into the report's JvmStats. GC rates come from the
// previous scrape of the same TaskManager; without one (or after a restart reset the counters)
// they are NaN unless Flink exports its own rate.
func (j JVM) Stats(prev *JVM, elapsed time.Duration) *tmwardenv1.JvmStats {
	st := &tmwardenv1.JvmStats{
		CpuLoad:           j.CPULoad,
		HeapUsedBytes:     toUint(j.HeapUsed),
		HeapMaxBytes:      toUint(j.HeapMax),
		Threads:           uint32(toUint(j.Threads)),
		GcTimeMsPerSecond: j.GCTimeMsPerSecond,
		GcCountPerSecond:  math.NaN(),
	}
	if prev == nil || elapsed <= 0 {
		return st
	}
	sec := elapsed.Seconds()
	if dc := j.GCCount - prev.GCCount; dc >= 0 {
		st.GcCountPerSecond = dc / sec
	}
	if math.IsNaN(st.GcTimeMsPerSecond) {
		if dt := j.GCTimeMs - prev.GCTimeMs; dt >= 0 {
			st.GcTimeMsPerSecond = dt / sec
		}
	}
	return st
}

func toUint(v float64) uint64 {
	if math.IsNaN(v) || v <= 0 {
		return 0
	}
	if v >= math.MaxUint64 {
		return math.MaxUint64
	}
	return uint64(v)
}
