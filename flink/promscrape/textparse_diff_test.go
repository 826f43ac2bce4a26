package promscrape_test

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// TestParseAgreesWithTextparse is the differential test of the hand-written parser: every
// body is read a second time with Prometheus's own model/textparse (what the Prometheus server
// scrapes with), and every series of a family the agent keeps is mapped to the field it feeds
// by a plain, label-map-based extraction written here. Parse must produce exactly that: the
// same subtasks with the same identity, every field, the JVM figures, and the same series and
// skipped counts.
//
// The bodies are the reference scrapes of ../shared/reference/flink, the stand-in's 200-subtask
// TaskManagers in both namings, the fixtures, and each of them rewritten out of the reporter's
// exact shape (no trailing comma, quantile label first, blanks around labels), which takes
// Parse off its fast path for repeated label sets.
func TestParseAgreesWithTextparse(t *testing.T) {
	bodies := map[string][]byte{}
	for _, f := range []string{"tm-prometheus-1.20.txt", "tm-prometheus-2.x.txt"} {
		b, err := os.ReadFile(refFile(t, f))
		if err != nil {
			t.Fatal(err)
		}
		bodies["ref/"+f] = b
	}
	for _, f := range []string{"legacy-1.17-nan.txt", "both-pools-2x-wins.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		bodies["testdata/"+f] = b
	}
	for _, v := range []string{flinksim.Version120, flinksim.Version20} {
		cfg := benchConfig()
		cfg.Version = v
		cl, err := flinksim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := cl.WriteMetrics(&buf, cl.TaskManagers()[0].ID); err != nil {
			t.Fatal(err)
		}
		bodies["standin-200/"+v] = buf.Bytes()
	}
	for name, b := range bodies {
		for shape, rewrite := range map[string]func([]byte) []byte{
			"as written":           func(b []byte) []byte { return b },
			"no trailing comma":    func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(",}"), []byte("}")) },
			"quantile label first": quantileFirst,
			"blanks around labels": func(b []byte) []byte {
				b = bytes.ReplaceAll(b, []byte(`",`), []byte(`" , `))
				return bytes.ReplaceAll(b, []byte("{"), []byte("{ "))
			},
		} {
			t.Run(name+"/"+shape, func(t *testing.T) {
				body := rewrite(b)
				if shape != "as written" && !strings.HasPrefix(name, "testdata/") && bytes.Equal(body, b) {
					t.Fatalf("the rewrite changed nothing: the test would not leave the fast path")
				}
				want := extractWithTextparse(t, body)
				got, err := promscrape.ParseBody(body)
				if err != nil {
					t.Fatalf("ParseBody: %v", err)
				}
				compareScrapes(t, got, want)
				// Parse reads the body in chunks as it arrives; lines cut at every read boundary
				// (a byte, then half of what is left) must read the same.
				streamed, err := promscrape.Parse(iotest.HalfReader(io.MultiReader(iotest.OneByteReader(bytes.NewReader(body[:min(len(body), 1000)])), bytes.NewReader(body[min(len(body), 1000):]))))
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				compareScrapes(t, streamed, want)
				// A TaskManager's next scrape takes the label sets its last one decoded from
				// there (promscrape.Strings): read after itself, and after another body whose
				// sets it shares in part or not at all, it must read the same.
				for prevName, prev := range map[string][]byte{"itself": body, "another body": otherBody(bodies, name)} {
					var strs promscrape.Strings
					if _, err := promscrape.ParseWith(bytes.NewReader(prev), &strs); err != nil {
						t.Fatalf("ParseWith(%s): %v", prevName, err)
					}
					warm, err := promscrape.ParseWith(bytes.NewReader(body), &strs)
					if err != nil {
						t.Fatalf("ParseWith after %s: %v", prevName, err)
					}
					compareScrapes(t, warm, want)
					again, err := promscrape.ParseWith(bytes.NewReader(body), &strs)
					if err != nil {
						t.Fatalf("ParseWith a second time after %s: %v", prevName, err)
					}
					compareScrapes(t, again, want)
				}
			})
		}
	}
}

// otherBody is one of bodies other than name, the same one every time.
func otherBody(bodies map[string][]byte, name string) []byte {
	keys := slices.Sorted(maps.Keys(bodies))
	i := slices.Index(keys, name)
	return bodies[keys[(i+1)%len(keys)]]
}

// quantileFirst moves a summary's quantile label from the end of its label set to the start.
func quantileFirst(b []byte) []byte {
	re := regexp.MustCompile(`\{([^\n]*),(quantile="[^"]*"),\}`)
	return re.ReplaceAll(b, []byte(`{$2,$1,}`))
}

// extractWithTextparse is the reference extraction: textparse tokenises the body, labels are
// decoded into maps, and each kept family is mapped to its field by name.
func extractWithTextparse(t *testing.T, body []byte) *promscrape.Scrape {
	t.Helper()
	nan := math.NaN()
	out := &promscrape.Scrape{JVM: promscrape.JVM{CPULoad: nan, HeapUsed: nan, HeapMax: nan, Threads: nan, GCTimeMsPerSecond: nan}}
	type acc struct {
		m                      *tmwardenv1.SubtaskMetrics
		attempt                int64
		nettyIn, nettyOut      float64
		legacyIn, legacyOut    float64
		pending, lag           float64
		pendingSeen, lagSeen   bool
		hasNettyIn, hasNettyOu bool
	}
	subs := map[promscrape.SubtaskKey]*acc{}
	var order []promscrape.SubtaskKey
	var gcAllCount, gcAllTime, gcSumCount, gcSumTime float64
	var gcAllCountSeen, gcAllTimeSeen bool
	p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
	var lbls labels.Labels
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("textparse: %v", err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		out.Series++
		_, _, v := p.Series()
		p.Labels(&lbls)
		name := lbls.Get(labels.MetricName)
		if out.TaskManagerID == "" && strings.HasPrefix(name, "flink_taskmanager_") && lbls.Has("tm_id") {
			out.TaskManagerID, out.Host = lbls.Get("tm_id"), lbls.Get("host")
		}
		if !promscrape.Wanted([]byte(name)) {
			continue
		}
		if jvm, ok := strings.CutPrefix(name, "flink_taskmanager_Status_JVM_"); ok {
			switch jvm {
			case "CPU_Load":
				out.JVM.CPULoad = v
			case "Memory_Heap_Used":
				out.JVM.HeapUsed = v
			case "Memory_Heap_Max":
				out.JVM.HeapMax = v
			case "Threads_Count":
				out.JVM.Threads = v
			case "GarbageCollector_All_Count":
				gcAllCount, gcAllCountSeen = v, true
			case "GarbageCollector_All_Time":
				gcAllTime, gcAllTimeSeen = v, true
			case "GarbageCollector_All_TimeMsPerSecond":
				out.JVM.GCTimeMsPerSecond = v
			default:
				if !math.IsNaN(v) && strings.HasSuffix(jvm, "_Count") {
					gcSumCount += v
				} else if !math.IsNaN(v) && strings.HasSuffix(jvm, "_Time") {
					gcSumTime += v
				}
			}
			continue
		}
		idx, err := strconv.ParseInt(lbls.Get("subtask_index"), 10, 32)
		if lbls.Get("job_id") == "" || lbls.Get("task_id") == "" || err != nil || idx < 0 {
			out.Skipped++
			continue
		}
		k := promscrape.SubtaskKey{JobID: lbls.Get("job_id"), VertexID: lbls.Get("task_id"), SubtaskIndex: int32(idx)}
		a := subs[k]
		if a == nil {
			a = &acc{m: &tmwardenv1.SubtaskMetrics{JobId: k.JobID, VertexId: k.VertexID, SubtaskIndex: k.SubtaskIndex,
				BusyMsPerSecond: nan, BackpressuredMsPerSecond: nan, IdleMsPerSecond: nan, RecordsInPerSecond: nan,
				RecordsOutPerSecond: nan, BytesInPerSecond: nan, BytesOutPerSecond: nan, InputPoolUsage: nan,
				OutputPoolUsage: nan, MailboxLatencyMsP50: nan, MailboxLatencyMsP99: nan, CheckpointStartDelayMs: nan},
				attempt: -1, nettyIn: nan, nettyOut: nan, legacyIn: nan, legacyOut: nan}
			subs[k] = a
			order = append(order, k)
		}
		if n, _ := strconv.ParseInt(lbls.Get("task_attempt_num"), 10, 32); n > a.attempt {
			a.attempt = n
			a.m.AttemptNumber, a.m.AttemptId = int32(n), lbls.Get("task_attempt_id")
			a.m.JobName, a.m.VertexName = lbls.Get("job_name"), lbls.Get("task_name")
		}
		if op, ok := strings.CutPrefix(name, "flink_taskmanager_job_task_operator_"); ok {
			switch op {
			case "pendingRecords":
				if !math.IsNaN(v) {
					a.pending += v
					a.pendingSeen = true
				}
			case "KafkaSourceReader_KafkaConsumer_records_lag_max":
				if !math.IsNaN(v) && (!a.lagSeen || v > a.lag) {
					a.lag, a.lagSeen = v, true
				}
			default:
				a.m.IsSource = true
			}
			continue
		}
		switch strings.TrimPrefix(name, "flink_taskmanager_job_task_") {
		case "busyTimeMsPerSecond":
			a.m.BusyMsPerSecond = v
		case "backPressuredTimeMsPerSecond":
			a.m.BackpressuredMsPerSecond = v
		case "idleTimeMsPerSecond":
			a.m.IdleMsPerSecond = v
		case "numRecordsInPerSecond":
			a.m.RecordsInPerSecond = v
		case "numRecordsOutPerSecond":
			a.m.RecordsOutPerSecond = v
		case "numBytesInPerSecond":
			a.m.BytesInPerSecond = v
		case "numBytesOutPerSecond":
			a.m.BytesOutPerSecond = v
		case "checkpointStartDelayNanos":
			a.m.CheckpointStartDelayMs = v / 1e6
		case "Shuffle_Netty_Input_Buffers_inPoolUsage":
			a.nettyIn, a.hasNettyIn = v, true
		case "Shuffle_Netty_Output_Buffers_outPoolUsage":
			a.nettyOut, a.hasNettyOu = v, true
		case "buffers_inPoolUsage":
			a.legacyIn = v
		case "buffers_outPoolUsage":
			a.legacyOut = v
		case "mailboxLatencyMs":
			switch q, _ := strconv.ParseFloat(lbls.Get("quantile"), 64); q {
			case 0.5:
				a.m.MailboxLatencyMsP50 = v
			case 0.99:
				a.m.MailboxLatencyMsP99 = v
			}
		default:
			t.Fatalf("family %s is kept by Parse but unknown to this test: add it here", name)
		}
	}
	out.JVM.GCCount, out.JVM.GCTimeMs = gcSumCount, gcSumTime
	if gcAllCountSeen {
		out.JVM.GCCount = gcAllCount
	}
	if gcAllTimeSeen {
		out.JVM.GCTimeMs = gcAllTime
	}
	for _, k := range order {
		a := subs[k]
		a.m.InputPoolUsage, a.m.OutputPoolUsage = a.legacyIn, a.legacyOut
		if a.hasNettyIn {
			a.m.InputPoolUsage = a.nettyIn
		}
		if a.hasNettyOu {
			a.m.OutputPoolUsage = a.nettyOut
		}
		if a.pendingSeen {
			a.m.PendingRecords, a.m.IsSource = &a.pending, true
		}
		if a.lagSeen {
			a.m.KafkaLag, a.m.IsSource = &a.lag, true
		}
		out.Subtasks = append(out.Subtasks, a.m)
	}
	return out
}

func compareScrapes(t *testing.T, got, want *promscrape.Scrape) {
	t.Helper()
	if got.Series != want.Series || got.Skipped != want.Skipped {
		t.Errorf("series %d skipped %d, textparse %d and %d", got.Series, got.Skipped, want.Series, want.Skipped)
	}
	if got.TaskManagerID != want.TaskManagerID || got.Host != want.Host {
		t.Errorf("TaskManager %q host %q, textparse %q %q", got.TaskManagerID, got.Host, want.TaskManagerID, want.Host)
	}
	if !sameFloats(got.JVM.CPULoad, want.JVM.CPULoad) || !sameFloats(got.JVM.HeapUsed, want.JVM.HeapUsed) ||
		!sameFloats(got.JVM.HeapMax, want.JVM.HeapMax) || !sameFloats(got.JVM.Threads, want.JVM.Threads) ||
		!sameFloats(got.JVM.GCCount, want.JVM.GCCount) || !sameFloats(got.JVM.GCTimeMs, want.JVM.GCTimeMs) ||
		!sameFloats(got.JVM.GCTimeMsPerSecond, want.JVM.GCTimeMsPerSecond) {
		t.Errorf("JVM %+v, textparse %+v", got.JVM, want.JVM)
	}
	wantSubs := map[promscrape.SubtaskKey]*tmwardenv1.SubtaskMetrics{}
	for _, s := range want.Subtasks {
		wantSubs[promscrape.SubtaskKey{JobID: s.JobId, VertexID: s.VertexId, SubtaskIndex: s.SubtaskIndex}] = s
	}
	if len(got.Subtasks) != len(wantSubs) {
		t.Errorf("%d subtasks, textparse %d", len(got.Subtasks), len(wantSubs))
	}
	bad := 0
	for _, g := range got.Subtasks {
		w := wantSubs[promscrape.SubtaskKey{JobID: g.JobId, VertexID: g.VertexId, SubtaskIndex: g.SubtaskIndex}]
		if w == nil {
			t.Errorf("subtask %s/%s#%d not in textparse's reading", g.JobId, g.VertexId, g.SubtaskIndex)
			continue
		}
		if diff := subtaskDiff(g, w); diff != "" && bad < 5 {
			bad++
			t.Errorf("subtask %s#%d: %s", g.VertexId, g.SubtaskIndex, diff)
		}
	}
}

func subtaskDiff(g, w *tmwardenv1.SubtaskMetrics) string {
	var d []string
	str := func(name, a, b string) {
		if a != b {
			d = append(d, name+" "+strconv.Quote(a)+" want "+strconv.Quote(b))
		}
	}
	num := func(name string, a, b float64) {
		if !sameFloats(a, b) {
			d = append(d, name+" "+strconv.FormatFloat(a, 'g', -1, 64)+" want "+strconv.FormatFloat(b, 'g', -1, 64))
		}
	}
	opt := func(name string, a, b *float64) {
		switch {
		case (a == nil) != (b == nil):
			d = append(d, name+" present "+strconv.FormatBool(a != nil)+" want "+strconv.FormatBool(b != nil))
		case a != nil:
			num(name, *a, *b)
		}
	}
	str("job name", g.JobName, w.JobName)
	str("vertex name", g.VertexName, w.VertexName)
	str("attempt id", g.AttemptId, w.AttemptId)
	num("attempt number", float64(g.AttemptNumber), float64(w.AttemptNumber))
	num("busy", g.BusyMsPerSecond, w.BusyMsPerSecond)
	num("back-pressured", g.BackpressuredMsPerSecond, w.BackpressuredMsPerSecond)
	num("idle", g.IdleMsPerSecond, w.IdleMsPerSecond)
	num("records in", g.RecordsInPerSecond, w.RecordsInPerSecond)
	num("records out", g.RecordsOutPerSecond, w.RecordsOutPerSecond)
	num("bytes in", g.BytesInPerSecond, w.BytesInPerSecond)
	num("bytes out", g.BytesOutPerSecond, w.BytesOutPerSecond)
	num("input pool", g.InputPoolUsage, w.InputPoolUsage)
	num("output pool", g.OutputPoolUsage, w.OutputPoolUsage)
	num("mailbox p50", g.MailboxLatencyMsP50, w.MailboxLatencyMsP50)
	num("mailbox p99", g.MailboxLatencyMsP99, w.MailboxLatencyMsP99)
	num("checkpoint start delay", g.CheckpointStartDelayMs, w.CheckpointStartDelayMs)
	opt("pending records", g.PendingRecords, w.PendingRecords)
	opt("kafka lag", g.KafkaLag, w.KafkaLag)
	if g.IsSource != w.IsSource {
		d = append(d, "is source "+strconv.FormatBool(g.IsSource))
	}
	return strings.Join(d, "; ")
}

func sameFloats(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
