package statuspage_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/protobuf/types/known/timestamppb"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/coordinator/statuspage"
	"github.com/tmwarden/tmwarden/telemetry"
)

func TestHandlerServesPage(t *testing.T) {
	srv := httptest.NewServer(statuspage.Handler())
	defer srv.Close()
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "javascript", "/style.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no Content-Security-Policy", path)
		}
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/nope.js")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope.js: %d, want 404", resp.StatusCode)
	}
}

// startCoordinator runs a real coordinator on loopback with three nodes and returns the URL of
// a server that mounts the status page at / and proxies /api/ to the coordinator's HTTP port.
func startCoordinator(t *testing.T) string {
	t.Helper()
	cfg := coordinator.DefaultConfig()
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	c, err := coordinator.New(cfg, coordinator.WithTelemetry(telemetry.Noop()), coordinator.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
	})
	for i, name := range []string{"worker-1", "worker-2", "worker-3"} {
		collectors := []*tmwardenv1.CollectorStatus{
			{Name: "host", State: tmwardenv1.CollectorStatus_STATE_OK},
			{Name: "runqueue", State: tmwardenv1.CollectorStatus_STATE_DISABLED, Reason: "kernel lacks BTF on " + name},
		}
		_, err := c.Register(&tmwardenv1.Hello{
			ProtocolVersion: uint32(tmwardenv1.ProtocolVersion_PROTOCOL_VERSION_1), NodeName: name, AgentVersion: "0.9.0",
			InstanceId: "inst-" + name, Hostname: name + ".example", ReportIntervalSeconds: 5, Collectors: collectors,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Ingest(name, &tmwardenv1.Report{
			Sequence: 1, CollectedAt: timestamppb.Now(), IntervalSeconds: 5, Collectors: collectors,
			Host: &tmwardenv1.HostSignals{NumCpus: 8, Load1: float64(i + 1), Cpu: &tmwardenv1.CpuShares{User: 0.3, Idle: 0.6, Steal: 0.05 * float64(i)}},
			TaskManagers: []*tmwardenv1.TaskManager{{ResourceId: "tm-" + name, Pid: 100, PodName: "flink-tm-" + name, PodNamespace: "flink",
				Jvm: &tmwardenv1.JvmStats{CpuLoad: 0.5, HeapUsedBytes: 1 << 30, HeapMaxBytes: 4 << 30}}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	api, err := url.Parse("http://" + c.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", httputil.NewSingleHostReverseProxy(api))
	mux.Handle("/", statuspage.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (hack/packaging-deps.sh installs Debian's chromium); the status page is not browser-tested")
	return ""
}

// chromiumDataDir is a user data directory for one Chromium run. Not t.TempDir: Chromium's
// helper processes can still be writing into it when the browser has exited, and t.TempDir's
// cleanup then fails the test over a directory that is not empty. Removal is retried for a
// while and only logged if it still fails.
func chromiumDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tmwarden-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("leaving Chromium's data directory %s: %v", dir, err)
	})
	return dir
}

// dumpDOM loads url in headless Chromium, lets the page's fetches finish (virtual time waits
// for the network) and returns the resulting DOM.
func dumpDOM(t *testing.T, bin, url string) *html.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+chromiumDataDir(t), "--virtual-time-budget=3000", "--dump-dom", url)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, errb.String())
	}
	doc, err := html.Parse(&out)
	if err != nil {
		t.Fatalf("parsing the dumped DOM: %v", err)
	}
	return doc
}

func byID(n *html.Node, id string) *html.Node {
	if n.Type == html.ElementNode && attr(n, "id") == id {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := byID(c, id); f != nil {
			return f
		}
	}
	return nil
}

func all(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	if n.Type == html.ElementNode && match(n) {
		out = append(out, n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		out = append(out, all(c, match)...)
	}
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

func mustID(t *testing.T, doc *html.Node, id string) *html.Node {
	t.Helper()
	n := byID(doc, id)
	if n == nil {
		t.Fatalf("no element #%s in the rendered page", id)
	}
	return n
}

func TestPageInChromium(t *testing.T) {
	bin := chromium(t)
	base := startCoordinator(t)

	doc := dumpDOM(t, bin, base+"/#node/worker-2")
	if e := mustID(t, doc, "error"); !hasAttr(e, "hidden") {
		t.Errorf("page shows an error: %q", text(e))
	}
	rows := all(mustID(t, doc, "nodes"), func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-node") != "" })
	var names []string
	for _, r := range rows {
		names = append(names, attr(r, "data-node"))
	}
	if strings.Join(names, ",") != "worker-1,worker-2,worker-3" {
		t.Fatalf("nodes table rows = %v, want worker-1..3", names)
	}
	if s := text(rows[1]); !strings.Contains(s, "healthy") || !strings.Contains(s, "connected") && !strings.Contains(s, "disconnected") {
		t.Errorf("worker-2 row lacks its state: %q", s)
	}
	if !strings.Contains(attr(rows[1], "class"), "selected") {
		t.Errorf("worker-2 row is not marked selected")
	}
	if s := text(mustID(t, doc, "fleet-summary")); !strings.HasPrefix(s, "3 nodes") || !strings.Contains(s, "3 healthy") {
		t.Errorf("summary = %q", s)
	}

	// Drill-down: the selected node's collectors, TaskManagers and events.
	detail := mustID(t, doc, "detail")
	if hasAttr(detail, "hidden") {
		t.Fatal("drill-down for worker-2 is hidden")
	}
	if s := text(mustID(t, doc, "detail-name")); s != "worker-2" {
		t.Errorf("drill-down shows %q", s)
	}
	colls := text(mustID(t, doc, "collectors"))
	for _, want := range []string{"host", "runqueue", "disabled", "kernel lacks BTF on worker-2"} {
		if !strings.Contains(colls, want) {
			t.Errorf("collectors table lacks %q: %q", want, colls)
		}
	}
	if s := text(mustID(t, doc, "node-events")); !strings.Contains(s, "node_registered") || !strings.Contains(s, "worker-2") {
		t.Errorf("node events lack the registration: %q", s)
	}
	if s := text(mustID(t, doc, "events")); strings.Count(s, "node_registered") != 3 {
		t.Errorf("event log should list three registrations: %q", s)
	}
	if s := text(mustID(t, doc, "decisions-empty")); !strings.Contains(s, "No decisions yet") {
		t.Errorf("decisions section = %q", s)
	}
}
