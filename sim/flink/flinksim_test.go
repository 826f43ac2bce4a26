package flinksim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/flink/promscrape"
)

func TestJavaDouble(t *testing.T) {
	for v, want := range map[float64]string{
		7: "7.0", 0.7321428571428571: "0.7321428571428571", 1.387266048e9: "1.387266048E9",
		-9.223372036854776e18: "-9.223372036854776E18", 8.431157211e9: "8.431157211E9", 1e7: "1.0E7",
		9999999: "9999999.0", 0.001: "0.001", 0.0001: "1.0E-4", 0: "0.0", math.Inf(1): "+Inf", math.NaN(): "NaN",
	} {
		if got := JavaDouble(v); got != want {
			t.Errorf("JavaDouble(%v) = %q, want %q", v, got, want)
		}
	}
}

// clock is a settable time source for deterministic model tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testCluster(t *testing.T, version string, clk *clock) *Cluster {
	t.Helper()
	cl, err := New(Config{
		Version: version, Now: clk.now,
		TaskManagers: []TaskManagerSpec{{Node: "n1", Slots: 2}, {Node: "n2", Slots: 2}},
		Jobs: []JobSpec{{Name: "orders-enrichment", Rate: 20000, Vertices: []VertexSpec{
			{Name: "Source: orders-kafka", Parallelism: 4, Capacity: 20000},
			{Name: "Enrich", Parallelism: 4, Capacity: 8000},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func scrape(t *testing.T, cl *Cluster, tmID string) (*promscrape.Scrape, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := cl.WriteMetrics(&buf, tmID); err != nil {
		t.Fatal(err)
	}
	s, err := promscrape.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("stand-in output does not parse: %v", err)
	}
	return s, buf.String()
}

func byVertex(subs []*tmwardenv1.SubtaskMetrics, name string) []*tmwardenv1.SubtaskMetrics {
	var out []*tmwardenv1.SubtaskMetrics
	for _, s := range subs {
		if s.VertexName == promscrape.SanitizeLabelValue(name) {
			out = append(out, s)
		}
	}
	return out
}

// The output follows the reporter's format: HELP with the raw name and scope, trailing commas,
// the HashMap label order, and per-version names.
func TestMetricsFormat(t *testing.T) {
	taskLabelOrder := regexp.MustCompile(`^flink_taskmanager_job_task_busyTimeMsPerSecond\{job_id="[0-9a-f]{32}",task_id="[0-9a-f]{32}",task_attempt_id="[^"]+",host="[0-9_]+",task_name="[^"]+",task_attempt_num="0",job_name="orders_enrichment",tm_id="[0-9_:a-f]+",subtask_index="\d",\} \d+\.\d+$`)
	for _, version := range []string{Version120, Version20} {
		t.Run(version, func(t *testing.T) {
			clk := &clock{t: time.Unix(1_700_000_000, 0)}
			cl := testCluster(t, version, clk)
			_, text := scrape(t, cl, cl.TaskManagers()[0].ID)
			if has := strings.Contains(text, "flink_taskmanager_job_task_buffers_inPoolUsage{"); has != (version == Version120) {
				t.Errorf("buffers_inPoolUsage present = %v in %s", has, version)
			}
			if !strings.Contains(text, "# HELP flink_taskmanager_job_task_Shuffle_Netty_Input_Buffers_inPoolUsage inPoolUsage (scope: taskmanager_job_task_Shuffle_Netty_Input_Buffers)\n") {
				t.Error("HELP line not in the reporter's form")
			}
			if !strings.Contains(text, `task_name="Source:_orders_kafka"`) || strings.Contains(text, "_sum{") {
				t.Error("label value not sanitised, or a summary has _sum")
			}
			n := 0
			sc := bufio.NewScanner(strings.NewReader(text))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "flink_taskmanager_job_task_busyTimeMsPerSecond{") {
					n++
					if !taskLabelOrder.MatchString(sc.Text()) {
						t.Errorf("task series not in the reporter's form: %s", sc.Text())
					}
				}
			}
			if n != 4 {
				t.Errorf("%d busy-time series on a 2-slot TaskManager, want 4 (2 vertices × 2)", n)
			}
		})
	}
}

func TestSlownessVersusSkew(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	cl := testCluster(t, Version20, clk)
	tms := cl.TaskManagers()
	all := func() []*tmwardenv1.SubtaskMetrics {
		var out []*tmwardenv1.SubtaskMetrics
		for _, tm := range tms {
			s, _ := scrape(t, cl, tm.ID)
			out = append(out, s.Subtasks...)
		}
		return out
	}
	// Healthy: 5000 records/s per Enrich subtask at 8000 capacity → 625 ms/s busy, no back-pressure.
	for _, s := range byVertex(all(), "Enrich") {
		if s.BusyMsPerSecond != 625 || s.RecordsInPerSecond != 5000 {
			t.Errorf("healthy Enrich#%d busy %v in %v", s.SubtaskIndex, s.BusyMsPerSecond, s.RecordsInPerSecond)
		}
	}
	if err := cl.SetNodeSlowness("n2", 0.25); err != nil {
		t.Fatal(err)
	}
	clk.add(10 * time.Second)
	subs := all()
	nodeOf := map[string]string{}
	for _, tm := range tms {
		nodeOf[promscrape.SanitizeLabelValue(tm.ID)] = tm.Node
	}
	placement := map[[2]any]string{}
	for _, p := range cl.Placements() {
		placement[[2]any{p.VertexName, p.SubtaskIndex}] = p.Node
	}
	for _, s := range byVertex(subs, "Enrich") {
		rate := s.RecordsInPerSecond / (s.BusyMsPerSecond / 1000) // DS2's true processing rate
		slow := placement[[2]any{"Enrich", int(s.SubtaskIndex)}] == "n2"
		if slow && (s.BusyMsPerSecond < 990 || s.InputPoolUsage != 1 || math.Abs(rate-2000) > 1) {
			t.Errorf("slow Enrich#%d: busy %v pool %v true rate %v", s.SubtaskIndex, s.BusyMsPerSecond, s.InputPoolUsage, rate)
		}
		if !slow && math.Abs(rate-8000) > 1 {
			t.Errorf("healthy Enrich#%d true rate %v, want its full capacity 8000", s.SubtaskIndex, rate)
		}
	}
	for _, s := range byVertex(subs, "Source: orders-kafka") {
		if s.BackpressuredMsPerSecond < 500 || s.PendingRecords == nil || *s.PendingRecords <= 1000 {
			t.Errorf("source#%d behind a slow subtask: back-pressure %v pending %v", s.SubtaskIndex, s.BackpressuredMsPerSecond, s.PendingRecords)
		}
	}

	// Skew instead of slowness: one subtask gets twice the keys; its true rate stays at capacity.
	if err := cl.SetNodeSlowness("n2", 1); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetSkew("orders-enrichment", "Enrich", 0, 2); err != nil {
		t.Fatal(err)
	}
	for _, s := range byVertex(all(), "Enrich") {
		rate := s.RecordsInPerSecond / (s.BusyMsPerSecond / 1000)
		if math.Abs(rate-8000) > 1 {
			t.Errorf("skewed Enrich#%d true rate %v, want 8000 (skew is not slowness)", s.SubtaskIndex, rate)
		}
	}
	if err := cl.SetNodeSlowness("nope", 0.5); err == nil {
		t.Error("unknown node accepted")
	}
	if err := cl.SetNodeSlowness("n1", 0); err == nil {
		t.Error("speed 0 accepted")
	}
}

func TestRESTFormats(t *testing.T) {
	for _, version := range []string{Version120, Version20} {
		t.Run(version, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clk := &clock{t: time.Unix(1_700_000_000, 0)}
			cl, err := Start(ctx, Config{Version: version, Now: clk.now,
				TaskManagers: []TaskManagerSpec{{Node: "n1", Slots: 1}},
				Jobs:         []JobSpec{{Name: "j", Rate: 10, Vertices: []VertexSpec{{Name: "Source: s", Parallelism: 1, Capacity: 100}}}}})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			clk.add(25 * time.Second)
			jid, _ := cl.JobID("j")
			get := func(path string) map[string]any {
				resp, err := http.Get(cl.RESTURL() + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var m map[string]any
				if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				return m
			}
			job := get("/jobs/" + jid)
			vid := job["vertices"].([]any)[0].(map[string]any)["id"].(string)
			sub := get("/jobs/" + jid + "/vertices/" + vid)["subtasks"].([]any)[0].(map[string]any)
			if _, has := sub["host"]; has != (version == Version120) {
				t.Errorf("subtask host field present = %v in %s", has, version)
			}
			if ep := sub["endpoint"].(string); !strings.HasPrefix(ep, "10.0.") || !strings.Contains(ep, ":") {
				t.Errorf("endpoint %q", ep)
			}
			cps := get("/jobs/" + jid + "/checkpoints")
			latest := cps["latest"].(map[string]any)["completed"].(map[string]any)
			if latest["id"].(float64) != 2 || !strings.HasSuffix(latest["external_path"].(string), "/chk-2") {
				t.Errorf("after 25 s with a 10 s interval the latest checkpoint is %v", latest)
			}
			if e := get("/jobs/00000000000000000000000000000000"); !strings.Contains(e["errors"].([]any)[0].(string), "not found") {
				t.Errorf("404 body %v", e)
			}
			// An idle source has busy time 0, so its accumulated busy time is a Java double.
			resp, _ := http.Get(cl.RESTURL() + "/jobs/" + jid)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !regexp.MustCompile(`"accumulated-busy-time": \d+\.\d+(E\d+)?`).Match(raw) {
				t.Errorf("accumulated-busy-time not a Java double: %s", raw)
			}
		})
	}
}

func TestMetricsEndpointOverHTTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := Start(ctx, DemoConfig(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	tm := cl.TaskManagers()[0]
	for _, path := range []string{"/", "/metrics"} {
		resp, err := http.Get("http://" + tm.MetricsAddr + path) // Go asks for gzip and inflates it
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !resp.Uncompressed || !bytes.Contains(body, []byte("flink_taskmanager_Status_JVM_CPU_Load{")) {
			t.Errorf("%s: status %d, gzip %v, %d bytes", path, resp.StatusCode, resp.Uncompressed, len(body))
		}
	}
	resp, err := http.Get("http://" + tm.MetricsAddr + "/metrics?name[]=flink_taskmanager_Status_JVM_CPU_Load&name[]=flink_taskmanager_job_task_mailboxLatencyMs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := bytes.Count(body, []byte("# TYPE ")); n != 2 || !bytes.Contains(body, []byte("mailboxLatencyMs_count{")) {
		t.Errorf("name[] filter: %d families in\n%s", n, body)
	}
	if err := cl.SetTaskManagerGone(tm.ID, true); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + tm.MetricsAddr + "/metrics")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("a gone TaskManager answered a whole body")
	}
	cancel() // stops every server
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := http.Get(cl.RESTURL() + "/overview"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("servers still up after the context was cancelled")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
