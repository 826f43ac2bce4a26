package flinksim

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

type server struct {
	ln  net.Listener
	srv *http.Server
}

// Start builds the model and serves it on loopback: one JobManager REST server and one
// /metrics server per TaskManager, each on its own ephemeral port. The servers stop when ctx is
// cancelled or Close is called.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	rest, err := c.serve(c.RESTHandler())
	if err != nil {
		return nil, fmt.Errorf("flinksim: JobManager REST listener: %w", err)
	}
	c.restURL = "http://" + rest.ln.Addr().String()
	for _, tm := range c.tms {
		s, err := c.serve(c.metricsHandler(tm.info.ID))
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("flinksim: TaskManager %s metrics listener: %w", tm.info.ID, err)
		}
		tm.info.MetricsAddr = s.ln.Addr().String()
	}
	stopped := make(chan struct{})
	var once sync.Once
	c.stop = func() { once.Do(func() { close(stopped) }) }
	// This goroutine belongs to the Cluster: it exits on ctx cancel or Close.
	go func() {
		select {
		case <-ctx.Done():
			_ = c.Close()
		case <-stopped:
		}
	}()
	return c, nil
}

func (c *Cluster) serve(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	c.mu.Lock()
	c.servers = append(c.servers, s)
	c.mu.Unlock()
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("flinksim server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return s, nil
}

// RESTURL is the JobManager REST base URL, e.g. http://127.0.0.1:40123.
func (c *Cluster) RESTURL() string { return c.restURL }

// Close stops every server.
func (c *Cluster) Close() error {
	c.mu.Lock()
	servers := c.servers
	c.servers = nil
	stop := c.stop
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	var errs []error
	for _, s := range servers {
		if err := s.srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MetricsHandler serves TaskManager tmID's PrometheusReporter endpoint (on / and /metrics, as
// simpleclient's HTTPServer does, gzip when asked).
func (c *Cluster) metricsHandler(tmID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		var buf bytes.Buffer
		if err := c.writeMetrics(&buf, tmID, r.URL.Query()["name[]"]); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c.mu.Lock()
		gone := c.tmByID(tmID).gone
		c.mu.Unlock()
		if gone {
			cutMidBody(w, buf.Bytes())
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(buf.Bytes())
			_ = zw.Close()
			return
		}
		_, _ = w.Write(buf.Bytes())
	})
}

// cutMidBody imitates a TaskManager that dies while answering: it promises the whole body,
// sends half, and drops the connection.
func cutMidBody(w http.ResponseWriter, body []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\n\r\n", len(body))
	_, _ = rw.Write(body[:len(body)/2])
	_ = rw.Flush()
}

// DemoConfig is a ready cluster for the demo: nodes named node-1..node-N with one TaskManager
// of slots slots each, and two keyed jobs spread over all of them.
func DemoConfig(nodes, slots int) Config {
	cfg := Config{Version: Version20}
	for i := 1; i <= nodes; i++ {
		cfg.TaskManagers = append(cfg.TaskManagers, TaskManagerSpec{Node: fmt.Sprintf("node-%d", i), Slots: slots})
	}
	par := max(1, nodes*slots/2)
	cfg.Jobs = []JobSpec{
		{Name: "orders-enrichment", Rate: float64(par) * 6000, Vertices: []VertexSpec{
			{Name: "Source: orders-kafka", Parallelism: par, Capacity: 20000},
			{Name: "Enrich", Parallelism: par, Capacity: 10000},
			{Name: "Sink: orders-out", Parallelism: par, Capacity: 30000},
		}},
		{Name: "clicks-sessionize", Rate: float64(par) * 3000, Vertices: []VertexSpec{
			{Name: "Source: clicks-kafka", Parallelism: par, Capacity: 20000},
			{Name: "Sessionize", Parallelism: par, Capacity: 6000},
		}},
	}
	return cfg
}
