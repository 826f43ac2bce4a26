package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tmwarden/tmwarden/coordinator/actuate"
	"github.com/tmwarden/tmwarden/coordinator/topology"
	"github.com/tmwarden/tmwarden/flink/rest"
)

// FlinkConfig is the `flink:` section: the JobManagers whose jobs the coordinator maps onto nodes.
// Without any, the topology comes from the agents' scrapes alone (job, vertex and subtask ids
// and names are in the PrometheusReporter labels); REST adds parallelism, placement of subtasks
// whose TaskManager no agent sees yet, and checkpoints.
type FlinkConfig struct {
	// JobManagers to poll. Default none.
	JobManagers []JobManagerConfig `yaml:"jobmanagers"`
	// PollInterval between REST polls of every JobManager. Default 15s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// StaleAfter drops a placement nobody confirmed for this long. Default 1m.
	StaleAfter time.Duration `yaml:"stale_after"`
}

// JobManagerConfig is one JobManager's REST endpoint.
type JobManagerConfig struct {
	// URL of the REST API, e.g. http://flink-jobmanager:8081. Required.
	URL string `yaml:"url"`
	// Timeout of one request. Default 10s (omitted); 0 is refused.
	Timeout *time.Duration `yaml:"timeout"`
	// CAFile is a PEM bundle to verify an https JobManager. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// Headers are sent with every request (e.g. Authorization for a proxy). Default none.
	Headers map[string]string `yaml:"headers"`
}

func (j JobManagerConfig) client() (*rest.Client, error) {
	o := rest.Options{BaseURL: j.URL, Headers: http.Header{}}
	if j.Timeout != nil {
		o.Timeout = *j.Timeout
	}
	for k, v := range j.Headers {
		o.Headers.Set(k, v)
	}
	if j.CAFile != "" {
		pem, err := os.ReadFile(j.CAFile)
		if err != nil {
			return nil, fmt.Errorf("jobmanager %s: ca_file: %w", j.URL, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("jobmanager %s: ca_file %s holds no PEM certificate", j.URL, j.CAFile)
		}
		o.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := rest.New(o)
	if err != nil {
		return nil, fmt.Errorf("jobmanager %s: %w", j.URL, err)
	}
	return c, nil
}

// jobManagerPoller keeps the topology's REST side current. A JobManager that fails a poll keeps
// its last good view, so an unreachable JobManager never looks like all its jobs stopped.
type jobManagerPoller struct {
	c       *Coordinator
	clients []*rest.Client
	urls    []string

	mu       sync.Mutex // guards lastGood: the poll writes it, the state warmer reads it
	lastGood []*rest.ClusterPlacement
}

func newJobManagerPoller(c *Coordinator, cfg FlinkConfig) (*jobManagerPoller, error) {
	p := &jobManagerPoller{c: c}
	var errs []error
	for _, jm := range cfg.JobManagers {
		cl, err := jm.client()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.clients, p.urls = append(p.clients, cl), append(p.urls, jm.URL)
	}
	p.lastGood = make([]*rest.ClusterPlacement, len(p.clients))
	return p, errors.Join(errs...)
}

func (p *jobManagerPoller) run(ctx context.Context, every time.Duration) {
	if len(p.clients) == 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		p.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll reads every JobManager once and hands the combined view to the topology.
func (p *jobManagerPoller) poll(ctx context.Context) {
	for i, cl := range p.clients {
		cp, err := cl.Placement(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.c.log.Warn("polling jobmanager", "url", p.urls[i], "err", err)
			}
			continue
		}
		p.mu.Lock()
		p.lastGood[i] = cp
		p.mu.Unlock()
	}
	var jobs []topology.RESTJob
	var tms []topology.RESTTaskManager
	p.mu.Lock()
	for _, cp := range p.lastGood {
		if cp == nil {
			continue
		}
		j, t := topology.FromREST(cp)
		jobs, tms = append(jobs, j...), append(tms, t...)
	}
	p.mu.Unlock()
	p.c.topo.ObserveREST(jobs, tms, p.c.now())
}

// Topology returns the joined job → vertex → subtask → TaskManager → node model.
func (c *Coordinator) Topology() *topology.Topology { return c.topo }

// checkpointer is the first JobManager's client, which the Kubernetes actuator uses to take a
// checkpoint before it evicts TaskManagers (nil without JobManagers).
func (p *jobManagerPoller) checkpointer() actuate.Checkpointer {
	if len(p.clients) == 0 {
		return nil
	}
	return p.clients[0]
}

// latestCheckpoint returns the external path and id of a job's latest completed checkpoint,
// asking the JobManager that runs the job ("" when there is none yet).
func (p *jobManagerPoller) latestCheckpoint(ctx context.Context, jobID string) (string, int64, error) {
	client := p.clientOf(jobID)
	if client == nil {
		return "", 0, nil
	}
	st, err := client.Checkpoints(ctx, jobID)
	if err != nil {
		return "", 0, fmt.Errorf("checkpoints of job %s: %w", jobID, err)
	}
	if c := st.Latest.Completed; c != nil {
		return c.ExternalPath, c.ID, nil
	}
	return "", 0, nil
}

// clientOf returns the client of the JobManager whose last good poll listed the job.
func (p *jobManagerPoller) clientOf(jobID string) *rest.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, cp := range p.lastGood {
		if cp == nil {
			continue
		}
		for _, j := range cp.Jobs {
			if j.Job != nil && j.Job.ID == jobID {
				return p.clients[i]
			}
		}
	}
	return nil
}
