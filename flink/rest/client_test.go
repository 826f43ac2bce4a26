package rest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	flinksim "github.com/tmwarden/tmwarden/sim/flink"
)

func startSim(t *testing.T, version string) (*flinksim.Cluster, *Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := flinksim.Start(ctx, flinksim.Config{
		Version:      version,
		TaskManagers: []flinksim.TaskManagerSpec{{Node: "node-a", Slots: 2}, {Node: "node-b", Slots: 2}},
		Jobs: []flinksim.JobSpec{{Name: "orders-enrichment", Rate: 20000, Vertices: []flinksim.VertexSpec{
			{Name: "Source: orders-kafka", Parallelism: 4, Capacity: 20000},
			{Name: "Enrich", Parallelism: 4, Capacity: 8000},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	c, err := New(Options{BaseURL: cl.RESTURL(), Timeout: 2 * time.Second, Backoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return cl, c
}

func TestClientAgainstSimulator(t *testing.T) {
	for _, version := range []string{flinksim.Version120, flinksim.Version20} {
		t.Run(version, func(t *testing.T) {
			cl, c := startSim(t, version)
			ctx := context.Background()
			if err := cl.SetNodeSlowness("node-b", 0.25); err != nil {
				t.Fatal(err)
			}
			ov, err := c.Overview(ctx)
			if err != nil || ov.FlinkVersion != version || ov.TaskManagers != 2 {
				t.Fatalf("overview %+v, %v", ov, err)
			}
			jobs, err := c.JobsOverview(ctx)
			if err != nil || len(jobs) != 1 || jobs[0].State != "RUNNING" {
				t.Fatalf("jobs overview %+v, %v", jobs, err)
			}
			ids, err := c.Jobs(ctx)
			if err != nil || len(ids) != 1 || ids[0].ID != jobs[0].ID {
				t.Fatalf("jobs %+v, %v", ids, err)
			}
			job, err := c.Job(ctx, jobs[0].ID)
			if err != nil || len(job.Vertices) != 2 {
				t.Fatalf("job %+v, %v", job, err)
			}
			tms, err := c.TaskManagers(ctx)
			if err != nil || len(tms) != 2 {
				t.Fatalf("taskmanagers %+v, %v", tms, err)
			}
			nodeOf := map[string]string{}
			for _, tm := range cl.TaskManagers() {
				nodeOf[tm.ID] = tm.Node
			}
			hostOf := map[string]string{}
			for _, tm := range tms {
				hostOf[tm.ID] = tm.RPCHost()
			}
			for _, v := range job.Vertices {
				vd, err := c.Vertex(ctx, job.ID, v.ID)
				if err != nil || len(vd.Subtasks) != v.Parallelism {
					t.Fatalf("vertex %s: %+v, %v", v.Name, vd, err)
				}
				for _, st := range vd.Subtasks {
					if nodeOf[st.TaskManagerID] == "" {
						t.Errorf("subtask %d on unknown TaskManager %q", st.Index, st.TaskManagerID)
					}
					if st.Host() != hostOf[st.TaskManagerID] {
						t.Errorf("subtask %d host %q, want %q (from %s)", st.Index, st.Host(), hostOf[st.TaskManagerID], version)
					}
					if (st.HostDeprec != "") != (version == flinksim.Version120) {
						t.Errorf("deprecated host field %q in %s", st.HostDeprec, version)
					}
				}
				vt, err := c.VertexTaskManagers(ctx, job.ID, v.ID)
				if err != nil || len(vt.TaskManagers) != 2 {
					t.Errorf("vertex taskmanagers %+v, %v", vt, err)
				}
				bp, err := c.BackPressure(ctx, job.ID, v.ID)
				if err != nil || len(bp.Subtasks) != v.Parallelism {
					t.Fatalf("backpressure %+v, %v", bp, err)
				}
				// node-b is slow, so Enrich is the bottleneck and the source is back-pressured.
				wantLevel := map[string]string{"Source: orders-kafka": "high", "Enrich": "ok"}[v.Name]
				if bp.Level != wantLevel {
					t.Errorf("%s back-pressure level %q, want %q", v.Name, bp.Level, wantLevel)
				}
			}
			tmd, err := c.TaskManager(ctx, tms[0].ID)
			if err != nil || tmd.ID != tms[0].ID || tmd.Metrics.HeapMax == 0 {
				t.Errorf("taskmanager details %+v, %v", tmd, err)
			}
		})
	}
}

func TestCheckpointTriggerAndWait(t *testing.T) {
	cl, c := startSim(t, flinksim.Version20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	jid, _ := cl.JobID("orders-enrichment")
	id, err := c.Checkpoint(ctx, jid, CheckpointFull, 20*time.Millisecond)
	if err != nil || id <= 0 {
		t.Fatalf("checkpoint: id %d, %v", id, err)
	}
	stats, err := c.Checkpoints(ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	lc := stats.Latest.Completed
	if lc == nil || lc.ID != id || !strings.HasSuffix(lc.ExternalPath, fmt.Sprintf("/%s/chk-%d", jid, id)) || lc.StateSize == 0 || lc.EndToEndDuration == 0 {
		t.Errorf("latest completed = %+v, want checkpoint %d with path, size and duration", lc, id)
	}

	if err := cl.FailCheckpoints("orders-enrichment", "Checkpoint expired before completing."); err != nil {
		t.Fatal(err)
	}
	_, err = c.Checkpoint(ctx, jid, CheckpointConfigured, 20*time.Millisecond)
	var cf *CheckpointFailedError
	if !errors.As(err, &cf) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("failed checkpoint error = %v", err)
	}

	if _, err := c.WaitCheckpoint(ctx, jid, "00000000000000000000000000000000", 10*time.Millisecond); !IsNotFound(err) {
		t.Errorf("unknown trigger id: %v, want a 404", err)
	}
	if _, err := c.TriggerCheckpoint(ctx, "ffffffffffffffffffffffffffffffff", CheckpointFull); !IsNotFound(err) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown job: %v, want a 404 naming the job", err)
	}
}

func TestClientErrors(t *testing.T) {
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/jobs/overview", func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"errors":["Internal server error.\n\tat org.apache.flink..."]}`)
	})
	mux.HandleFunc("/overview", func(w http.ResponseWriter, _ *http.Request) {
		// Transient: two 503s, then the answer.
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"taskmanagers":1,"flink-version":"2.0.0"}`)
	})
	mux.HandleFunc("/jobs/{jobid}", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"errors":["org.apache.flink.runtime.rest.NotFoundException: Job %s not found"]}`, r.PathValue("jobid"))
	})
	mux.HandleFunc("/jobs", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"jobs":[{"id":`) // garbled: cut off
	})
	mux.HandleFunc("/taskmanagers", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // hangs until the client gives up
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := New(Options{BaseURL: srv.URL, Timeout: 200 * time.Millisecond, Retries: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	calls.Store(0)
	_, err = c.JobsOverview(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 500 || calls.Load() != 3 || !strings.Contains(err.Error(), "Internal server error") ||
		strings.Contains(err.Error(), "org.apache") || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("500: err %v after %d calls, want an APIError after 3 attempts with the first message line", err, calls.Load())
	}

	calls.Store(0)
	if ov, err := c.Overview(ctx); err != nil || ov.FlinkVersion != "2.0.0" {
		t.Errorf("transient 503s must be retried: %+v, %v", ov, err)
	}

	calls.Store(0)
	_, err = c.Job(ctx, "0000")
	if !IsNotFound(err) || calls.Load() != 1 || !strings.Contains(err.Error(), "Job 0000 not found") {
		t.Errorf("404: %v after %d calls, want no retry and the message", err, calls.Load())
	}

	if _, err := c.Jobs(ctx); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("garbled body: %v", err)
	}

	if _, err := c.TaskManagers(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging server: %v, want a deadline error", err)
	}

	if _, err := c.Vertex(ctx, "", "x"); err == nil {
		t.Error("an empty job id must be refused before any request")
	}
	if _, err := New(Options{BaseURL: "jobmanager:8081"}); err == nil {
		t.Error("a base URL without scheme must be refused")
	}
}

func TestTLSAndAuthHeader(t *testing.T) {
	var gotAuth atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		fmt.Fprint(w, `{"taskmanagers":3}`)
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	plain, _ := New(Options{BaseURL: srv.URL, Retries: -1})
	if _, err := plain.Overview(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsCfg.RootCAs = pool
	c, err := New(Options{BaseURL: srv.URL + "/", TLSConfig: tlsCfg, Headers: http.Header{"Authorization": {"Bearer s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	ov, err := c.Overview(context.Background())
	if err != nil || ov.TaskManagers != 3 {
		t.Fatalf("TLS overview: %+v, %v", ov, err)
	}
	if gotAuth.Load() != "Bearer s3cret" {
		t.Errorf("Authorization header = %v", gotAuth.Load())
	}
}
