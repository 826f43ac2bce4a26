package promscrape_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

// refDir is the shared reference folder beside the clone (/work/shared next to /work/main).
const refDir = "../../../shared/reference/flink"

func refFile(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(refDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("reference folder %s missing (it sits beside the clone in CI): %v", refDir, err)
	}
	return p
}

func parseFile(t *testing.T, path string) (*promscrape.Scrape, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return promscrape.Parse(f)
}

func find(t *testing.T, s *promscrape.Scrape, vertexID string, idx int32) *tmwardenv1.SubtaskMetrics {
	t.Helper()
	for _, st := range s.Subtasks {
		if st.VertexId == vertexID && st.SubtaskIndex == idx {
			return st
		}
	}
	t.Fatalf("subtask %s#%d not found in %d subtasks", vertexID, idx, len(s.Subtasks))
	return nil
}

const (
	sampleJob    = "5e20cb6b0f357591171dfcca2eea09de"
	sampleSource = "cbc357ccb763df2852fee8c4fc7d55f2"
	sampleEnrich = "90bea66de1c231edf33913ecd54406c1"
)

func TestReferenceSamples(t *testing.T) {
	for _, tc := range []struct {
		file       string
		wantSeries int
	}{
		{file: "tm-prometheus-1.20.txt", wantSeries: 339},
		{file: "tm-prometheus-2.x.txt", wantSeries: 315},
	} {
		t.Run(tc.file, func(t *testing.T) {
			s, err := parseFile(t, refFile(t, tc.file))
			if err != nil {
				t.Fatalf("reference sample does not decode: %v", err)
			}
			// Series counts samples (each quantile and _count apart); FORMATS.md counts 315/291 label
			// sets, where a summary is one.
			if s.Series != tc.wantSeries {
				t.Errorf("read %d series, want %d", s.Series, tc.wantSeries)
			}
			if s.TaskManagerID != "10_0_1_23:36471_7b3c9e" || s.Host != "10_0_1_23" {
				t.Errorf("TaskManager = %q host %q, want the sanitised tm_id and host labels", s.TaskManagerID, s.Host)
			}
			if len(s.Subtasks) != 4 {
				t.Fatalf("got %d subtasks, want 4 (2 vertices × 2)", len(s.Subtasks))
			}
			if s.Skipped != 0 {
				t.Errorf("skipped %d series, want 0", s.Skipped)
			}
			enrich1 := find(t, s, sampleEnrich, 1)
			if enrich1.JobId != sampleJob || enrich1.VertexName != "Enrich" || enrich1.JobName != "orders_enrichment" {
				t.Errorf("Enrich#1 identity = %+v", enrich1)
			}
			if enrich1.BusyMsPerSecond != 987 {
				t.Errorf("Enrich#1 busy = %v, want 987", enrich1.BusyMsPerSecond)
			}
			if enrich1.InputPoolUsage != 1 {
				t.Errorf("Enrich#1 input pool usage = %v, want 1", enrich1.InputPoolUsage)
			}
			if enrich1.CheckpointStartDelayMs != 8431.157211 {
				t.Errorf("Enrich#1 checkpoint start delay = %v ms, want 8431.157211", enrich1.CheckpointStartDelayMs)
			}
			if math.IsNaN(enrich1.MailboxLatencyMsP99) || math.IsNaN(enrich1.MailboxLatencyMsP50) {
				t.Errorf("Enrich#1 mailbox latency quantiles missing: p50 %v p99 %v", enrich1.MailboxLatencyMsP50, enrich1.MailboxLatencyMsP99)
			}
			if enrich1.IsSource || enrich1.PendingRecords != nil {
				t.Errorf("Enrich#1 must not look like a source: %+v", enrich1)
			}
			src1 := find(t, s, sampleSource, 1)
			if !src1.IsSource || src1.VertexName != "Source:_orders_kafka" {
				t.Errorf("Source#1 = source %v name %q", src1.IsSource, src1.VertexName)
			}
			if src1.BackpressuredMsPerSecond != 882 {
				t.Errorf("Source#1 back-pressure = %v, want 882", src1.BackpressuredMsPerSecond)
			}
			if src1.PendingRecords == nil || *src1.PendingRecords != 241337 {
				t.Errorf("Source#1 pendingRecords = %v, want 241337", src1.PendingRecords)
			}
			if src1.KafkaLag == nil || *src1.KafkaLag != 121003 {
				t.Errorf("Source#1 kafka lag = %v, want 121003", src1.KafkaLag)
			}
			if !(src1.OutputPoolUsage > 0) {
				t.Errorf("Source#1 output pool usage = %v, want > 0", src1.OutputPoolUsage)
			}
			if src1.AttemptId == "" {
				t.Error("attempt id missing")
			}
			if s.JVM.CPULoad != 0.7321428571428571 {
				t.Errorf("JVM CPU load = %v", s.JVM.CPULoad)
			}
			if s.JVM.HeapUsed != 1.387266048e9 || !(s.JVM.HeapMax > 0) {
				t.Errorf("heap used %v max %v", s.JVM.HeapUsed, s.JVM.HeapMax)
			}
			if math.IsNaN(s.JVM.GCTimeMsPerSecond) || s.JVM.GCCount <= 0 {
				t.Errorf("GC figures missing: %+v", s.JVM)
			}
		})
	}
}

func TestLegacyNaNAndAttempts(t *testing.T) {
	s, err := parseFile(t, "testdata/legacy-1.17-nan.txt")
	if err != nil {
		t.Fatal(err)
	}
	src := find(t, s, strings.Repeat("b", 32), 0)
	if !math.IsNaN(src.BusyMsPerSecond) {
		t.Errorf("NaN busy time must stay NaN, got %v", src.BusyMsPerSecond)
	}
	if src.RecordsOutPerSecond != 1.2e7 {
		t.Errorf("records out = %v, want 1.2E7", src.RecordsOutPerSecond)
	}
	if src.OutputPoolUsage != 1 {
		t.Errorf("1.x buffers_outPoolUsage not used: %v", src.OutputPoolUsage)
	}
	if src.PendingRecords != nil {
		t.Errorf("a NaN pendingRecords must not count: %v", *src.PendingRecords)
	}
	if !math.IsNaN(src.InputPoolUsage) {
		t.Errorf("absent input pool usage must be NaN, got %v", src.InputPoolUsage)
	}
	agg := find(t, s, strings.Repeat("c", 32), 1)
	if agg.AttemptNumber != 2 || agg.AttemptId != "e_c_1_2" || agg.BusyMsPerSecond != 950 {
		t.Errorf("the newest attempt must win: attempt %d %q busy %v", agg.AttemptNumber, agg.AttemptId, agg.BusyMsPerSecond)
	}
	if agg.InputPoolUsage != 0.5 || agg.MailboxLatencyMsP50 != 3 || agg.MailboxLatencyMsP99 != 41 {
		t.Errorf("pool %v mailbox p50 %v p99 %v", agg.InputPoolUsage, agg.MailboxLatencyMsP50, agg.MailboxLatencyMsP99)
	}
	if agg.CheckpointStartDelayMs != 8431.157211 {
		t.Errorf("checkpoint start delay %v", agg.CheckpointStartDelayMs)
	}
	if s.Skipped != 1 {
		t.Errorf("skipped = %d, want 1 (the series without subtask_index)", s.Skipped)
	}
	if len(s.Subtasks) != 2 {
		t.Errorf("got %d subtasks, want 2", len(s.Subtasks))
	}
	// No GarbageCollector_All before 1.19: the per-collector series are summed.
	if s.JVM.GCCount != 102 || s.JVM.GCTimeMs != 2000 || !math.IsNaN(s.JVM.GCTimeMsPerSecond) {
		t.Errorf("GC = %+v", s.JVM)
	}
	prev := s.JVM
	cur := s.JVM
	cur.GCCount += 10
	cur.GCTimeMs += 500
	st := cur.Stats(&prev, 5*time.Second)
	if st.GcCountPerSecond != 2 || st.GcTimeMsPerSecond != 100 {
		t.Errorf("GC rates = %v/s %v ms/s, want 2 and 100", st.GcCountPerSecond, st.GcTimeMsPerSecond)
	}
	if st.HeapMaxBytes != 0 || st.HeapUsedBytes != 1387266048 {
		t.Errorf("heap = %d/%d (a -1 max must become 0)", st.HeapUsedBytes, st.HeapMaxBytes)
	}
	if first := cur.Stats(nil, 0); !math.IsNaN(first.GcCountPerSecond) {
		t.Errorf("first scrape GC count rate = %v, want NaN", first.GcCountPerSecond)
	}
	restarted := prev
	restarted.GCCount = 1
	if r := restarted.Stats(&prev, time.Second); !math.IsNaN(r.GcCountPerSecond) {
		t.Errorf("counter reset must not give a negative rate, got %v", r.GcCountPerSecond)
	}
}

func TestNettyPoolNamesWin(t *testing.T) {
	s, err := parseFile(t, "testdata/both-pools-2x-wins.txt")
	if err != nil {
		t.Fatal(err)
	}
	st := find(t, s, strings.Repeat("c", 32), 1)
	if st.InputPoolUsage != 0.75 || st.OutputPoolUsage != 0.9 {
		t.Errorf("pools = in %v out %v, want the Shuffle_Netty values 0.75 and 0.9", st.InputPoolUsage, st.OutputPoolUsage)
	}
}

func TestBadBodies(t *testing.T) {
	for _, name := range []string{"truncated-mid-line.txt", "garbled-html.txt", "garbled-labels.txt"} {
		t.Run(name, func(t *testing.T) {
			s, err := parseFile(t, filepath.Join("testdata", name))
			if err == nil {
				t.Fatalf("want an error, got %d subtasks", len(s.Subtasks))
			}
			if !strings.Contains(err.Error(), "parse prometheus text") || !strings.Contains(err.Error(), "line") {
				t.Errorf("error does not say what and where: %v", err)
			}
		})
	}
}

// TestLongLines: a line longer than Parse's read buffer (64 KB) is read whole, one longer
// than the bound (1 MB) is an error naming its line, and a body cut mid-line is an error
// however it arrives.
func TestLongLines(t *testing.T) {
	series := func(taskName string) string {
		return `flink_taskmanager_job_task_busyTimeMsPerSecond{job_id="j",task_id="t",subtask_index="0",task_name="` + taskName + `",} 250.0` + "\n"
	}
	body := "# TYPE x gauge\n" + series(strings.Repeat("a", 200<<10)) + series("short")
	s, err := promscrape.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatalf("a 200 KB line: %v", err)
	}
	if len(s.Subtasks) != 1 || s.Subtasks[0].BusyMsPerSecond != 250 || s.Series != 2 {
		t.Errorf("a 200 KB line: %d subtasks, %d series", len(s.Subtasks), s.Series)
	}
	_, err = promscrape.Parse(strings.NewReader("# TYPE x gauge\n" + series(strings.Repeat("a", 2<<20))))
	if err == nil || !strings.Contains(err.Error(), "line 2: longer than") {
		t.Errorf("a 2 MB line: %v", err)
	}
	cut := body[:len(body)-4]
	_, err = promscrape.Parse(iotest.OneByteReader(strings.NewReader(cut)))
	if err == nil || !strings.Contains(err.Error(), "line 3: body ends mid-line") {
		t.Errorf("a body cut mid-line: %v", err)
	}
}

func TestSanitizeLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.1.23":              "10_0_1_23",
		"10.0.1.23:36471-7b3c9e": "10_0_1_23:36471_7b3c9e",
		"Source: orders-kafka":   "Source:_orders_kafka", // ":" is allowed; FORMATS.md §1.3 misprints this
		"orders-enrichment":      "orders_enrichment",
		"Enrich":                 "Enrich",
		"héllo":                  "h_llo",
		"":                       "",
	} {
		if got := promscrape.SanitizeLabelValue(in); got != want {
			t.Errorf("SanitizeLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// benchBody is one scrape of a TaskManager running 200 subtasks, rendered by the stand-in in
// the given Flink version's naming.
func benchBody(b *testing.B, version string) ([]byte, int) {
	b.Helper()
	cfg := benchConfig()
	cfg.Version = version
	cl, err := flinksim.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := cl.WriteMetrics(&buf, cl.TaskManagers()[0].ID); err != nil {
		b.Fatal(err)
	}
	s, err := promscrape.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		b.Fatal(err)
	}
	if len(s.Subtasks) != 200 {
		b.Fatalf("bench body has %d subtasks, want 200", len(s.Subtasks))
	}
	return buf.Bytes(), s.Series
}

// benchConfig is one TaskManager running 200 subtasks: 4 vertices × 50.
func benchConfig() flinksim.Config {
	return flinksim.Config{
		Version:      flinksim.Version20,
		TaskManagers: []flinksim.TaskManagerSpec{{Node: "bench", Slots: 50}},
		Jobs: []flinksim.JobSpec{{Name: "bench", Rate: 1e5, Vertices: []flinksim.VertexSpec{
			{Name: "Source: s", Parallelism: 50, Capacity: 1e4},
			{Name: "Map", Parallelism: 50, Capacity: 1e4},
			{Name: "Window", Parallelism: 50, Capacity: 1e4},
			{Name: "Sink: k", Parallelism: 50, Capacity: 1e4},
		}}},
	}
}

// benchBodies are the scrapes the parser candidates are compared on: the two reference
// TaskManagers (4 subtasks) and the stand-in's 200-subtask TaskManager in both namings.
func benchBodies(b *testing.B) []struct {
	name string
	body []byte
} {
	var out []struct {
		name string
		body []byte
	}
	for _, f := range []string{"tm-prometheus-1.20.txt", "tm-prometheus-2.x.txt"} {
		body, err := os.ReadFile(refFile(b, f))
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, struct {
			name string
			body []byte
		}{"ref-" + strings.TrimSuffix(strings.TrimPrefix(f, "tm-prometheus-"), ".txt"), body})
	}
	for _, v := range []string{flinksim.Version120, flinksim.Version20} {
		body, _ := benchBody(b, v)
		out = append(out, struct {
			name string
			body []byte
		}{"200subtasks-" + v, body})
	}
	return out
}

// BenchmarkParse measures Parse (Prometheus's textparse, labels decoded only for the series
// tmwarden reads, then extraction) on each body; BenchmarkParseExpfmtDecode beside it is the
// anchor: expfmt's full decode of the same bodies into metric families, which Parse used before,
// before any extraction at all.
func BenchmarkParse(b *testing.B) {
	for _, c := range benchBodies(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := promscrape.Parse(bytes.NewReader(c.body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseNextScrape is Parse as the flink collector runs it: ParseWith and the
// TaskManager's promscrape.Strings, warm from its previous scrape of the same body.
func BenchmarkParseNextScrape(b *testing.B) {
	for _, c := range benchBodies(b) {
		b.Run(c.name, func(b *testing.B) {
			var strs promscrape.Strings
			if _, err := promscrape.ParseWith(bytes.NewReader(c.body), &strs); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := promscrape.ParseWith(bytes.NewReader(c.body), &strs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseTextparse is how Parse read bodies before: Prometheus's model/textparse
// tokenising every line, labels decoded for the series of the families Parse reads. No
// extraction; it is the anchor for the line filter and the in-place label reading.
func BenchmarkParseTextparse(b *testing.B) {
	for _, c := range benchBodies(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				p := textparse.NewPromParser(c.body, nil, false)
				var lbls labels.Labels
				for {
					et, err := p.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					if et != textparse.EntrySeries {
						continue
					}
					series, _, _ := p.Series()
					name := series
					if i := bytes.IndexAny(series, "{ \t"); i >= 0 {
						name = series[:i]
					}
					if promscrape.Wanted(name) {
						p.Labels(&lbls)
					}
				}
			}
		})
	}
}

func BenchmarkParseExpfmtDecode(b *testing.B) {
	for _, c := range benchBodies(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			for b.Loop() {
				p := expfmt.NewTextParser(model.LegacyValidation)
				if _, err := p.TextToMetricFamilies(bytes.NewReader(c.body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseFiltered is the 200-subtask TaskManager scraped with ?name[]= (the collector's
// filter_families option): only the families Parse reads.
func BenchmarkParseFiltered(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := flinksim.Start(ctx, benchConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	q := url.Values{"name[]": promscrape.Families()}
	resp, err := http.Get("http://" + cl.TaskManagers()[0].MetricsAddr + "/metrics?" + q.Encode())
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	s, err := promscrape.Parse(bytes.NewReader(body))
	if err != nil || len(s.Subtasks) != 200 {
		b.Fatalf("filtered body: %v, %d subtasks", err, len(s.Subtasks))
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := promscrape.Parse(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Series), "series/op")
}
