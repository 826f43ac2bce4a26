// Package rest is a client for the parts of the Flink JobManager REST API tmwarden needs: jobs,
// vertices with their subtasks' TaskManagers, back-pressure, checkpoints (read and trigger) and
// TaskManagers, for Flink 1.17–1.20 and 2.x.
// Every call has a per-attempt timeout and retries transient failures with jittered backoff.
package rest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Endpoint is one REST call, with its path written as in Flink's OpenAPI spec.
type Endpoint struct {
	Method string
	Path   string
}

// The endpoints the client calls. A test checks each against the 1.20 and 2.0 specs.
var (
	epOverview          = Endpoint{http.MethodGet, "/overview"}
	epJobs              = Endpoint{http.MethodGet, "/jobs"}
	epJobsOverview      = Endpoint{http.MethodGet, "/jobs/overview"}
	epJob               = Endpoint{http.MethodGet, "/jobs/{jobid}"}
	epVertex            = Endpoint{http.MethodGet, "/jobs/{jobid}/vertices/{vertexid}"}
	epVertexTMs         = Endpoint{http.MethodGet, "/jobs/{jobid}/vertices/{vertexid}/taskmanagers"}
	epBackPressure      = Endpoint{http.MethodGet, "/jobs/{jobid}/vertices/{vertexid}/backpressure"}
	epCheckpoints       = Endpoint{http.MethodGet, "/jobs/{jobid}/checkpoints"}
	epTriggerCheckpoint = Endpoint{http.MethodPost, "/jobs/{jobid}/checkpoints"}
	epCheckpointStatus  = Endpoint{http.MethodGet, "/jobs/{jobid}/checkpoints/{triggerid}"}
	epTaskManagers      = Endpoint{http.MethodGet, "/taskmanagers"}
	epTaskManager       = Endpoint{http.MethodGet, "/taskmanagers/{taskmanagerid}"}
)

// Endpoints lists every endpoint the client may call.
func Endpoints() []Endpoint {
	return []Endpoint{
		epOverview, epJobs, epJobsOverview, epJob, epVertex, epVertexTMs, epBackPressure,
		epCheckpoints, epTriggerCheckpoint, epCheckpointStatus, epTaskManagers, epTaskManager,
	}
}

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// BaseURL is the JobManager REST address, e.g. http://jobmanager:8081 (a /v1 suffix is fine).
	BaseURL string
	// Timeout bounds each attempt. Default 10s.
	Timeout time.Duration
	// Retries is how many times a transient failure (network error, 429, 5xx) is retried.
	// Default 3; negative means none.
	Retries int
	// Backoff is the first retry delay; it doubles up to MaxBackoff, with jitter. Default 200ms.
	Backoff    time.Duration
	MaxBackoff time.Duration // default 5s
	// TLSConfig is used for https URLs (client certificates, private CAs).
	TLSConfig *tls.Config
	// Headers are added to every request, e.g. Authorization for a proxy in front of Flink.
	Headers http.Header
	// HTTPClient replaces the client built from Timeout and TLSConfig.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Client talks to one JobManager. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	opts    Options
	http    *http.Client
	log     *slog.Logger
	maxBody int64
}

// New checks the options and builds a Client.
func New(o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("flink rest: base URL %q must be http(s)://host[:port][/prefix]", o.BaseURL)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 3
	} else if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	hc := o.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.TLSConfig != nil {
			tr.TLSClientConfig = o.TLSConfig.Clone()
		}
		hc = &http.Client{Transport: tr}
	}
	return &Client{base: u, opts: o, http: hc, log: o.Logger, maxBody: 64 << 20}, nil
}

// APIError is a non-2xx answer. Flink puts its messages in {"errors":[...]}.
type APIError struct {
	Method     string
	Path       string
	StatusCode int
	Errors     []string
}

func (e *APIError) Error() string {
	msg := "no error message"
	if len(e.Errors) > 0 {
		// Flink appends the Java stack trace after the first line; the first line says it.
		msg, _, _ = strings.Cut(e.Errors[0], "\n")
	}
	return fmt.Sprintf("flink rest %s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, msg)
}

// IsNotFound reports whether err is a 404 from the JobManager (unknown job, vertex, trigger).
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

func (c *Client) url(ep Endpoint, args []string) (string, error) {
	p := ep.Path
	for _, a := range args {
		i := strings.Index(p, "{")
		j := strings.Index(p, "}")
		if i < 0 || j < i {
			return "", fmt.Errorf("flink rest: too many arguments for %s", ep.Path)
		}
		if a == "" {
			return "", fmt.Errorf("flink rest %s: empty %s", ep.Path, p[i+1:j])
		}
		p = p[:i] + url.PathEscape(a) + p[j+1:]
	}
	if strings.Contains(p, "{") {
		return "", fmt.Errorf("flink rest: missing arguments for %s", ep.Path)
	}
	return c.base.String() + p, nil
}

// call runs one endpoint with retries and decodes a 2xx JSON body into out (if not nil).
func (c *Client) call(ctx context.Context, ep Endpoint, args []string, in, out any) error {
	target, err := c.url(ep, args)
	if err != nil {
		return err
	}
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("flink rest %s %s: encode request: %w", ep.Method, ep.Path, err)
		}
	}
	delay := c.opts.Backoff
	for attempt := 0; ; attempt++ {
		err = c.attempt(ctx, ep, target, body, out)
		if err == nil {
			return nil
		}
		var ae *APIError
		transient := !errors.As(err, &ae) || retryable(ae.StatusCode)
		if !transient || attempt >= c.opts.Retries || ctx.Err() != nil {
			if attempt > 0 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return err
		}
		// Full jitter keeps many coordinators from retrying in lockstep against one JobManager.
		sleep := delay/2 + mrand.N(delay/2+1)
		c.log.Debug("flink rest retry", "method", ep.Method, "path", ep.Path, "attempt", attempt+1, "in", sleep, "err", err)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retry abandoned: %w)", err, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, c.opts.MaxBackoff)
	}
}

func (c *Client) attempt(ctx context.Context, ep Endpoint, target string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, ep.Method, target, rd)
	if err != nil {
		return fmt.Errorf("flink rest %s %s: %w", ep.Method, ep.Path, err)
	}
	for k, vs := range c.opts.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("flink rest %s %s: %w", ep.Method, ep.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody))
	if err != nil {
		return fmt.Errorf("flink rest %s %s: read body: %w", ep.Method, ep.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: ep.Method, Path: ep.Path, StatusCode: resp.StatusCode}
		var eb struct {
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(data, &eb) == nil && len(eb.Errors) > 0 {
			ae.Errors = eb.Errors
		} else if s := strings.TrimSpace(string(data)); s != "" {
			ae.Errors = []string{truncate(s, 200)}
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("flink rest %s %s: decode %T: %w (body starts %q)", ep.Method, ep.Path, out, err, truncate(string(data), 120))
	}
	return nil
}

// fetch runs a GET and returns the decoded body, or nil and the error.
func fetch[T any](ctx context.Context, c *Client, ep Endpoint, args []string) (*T, error) {
	var out T
	if err := c.call(ctx, ep, args, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Overview is GET /overview (cluster size and the Flink version).
func (c *Client) Overview(ctx context.Context) (*ClusterOverview, error) {
	return fetch[ClusterOverview](ctx, c, epOverview, nil)
}

// Jobs is GET /jobs: every job id with its status.
func (c *Client) Jobs(ctx context.Context) ([]JobIDStatus, error) {
	var out struct {
		Jobs []JobIDStatus `json:"jobs"`
	}
	if err := c.call(ctx, epJobs, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

// JobsOverview is GET /jobs/overview: name, state and task counts per job.
func (c *Client) JobsOverview(ctx context.Context) ([]JobOverview, error) {
	var out struct {
		Jobs []JobOverview `json:"jobs"`
	}
	if err := c.call(ctx, epJobsOverview, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Jobs, nil
}

// Job is GET /jobs/:jid with its vertices.
func (c *Client) Job(ctx context.Context, jobID string) (*JobDetails, error) {
	return fetch[JobDetails](ctx, c, epJob, []string{jobID})
}

// Vertex is GET /jobs/:jid/vertices/:vid: each subtask with its TaskManager id and host.
func (c *Client) Vertex(ctx context.Context, jobID, vertexID string) (*VertexDetails, error) {
	return fetch[VertexDetails](ctx, c, epVertex, []string{jobID, vertexID})
}

// VertexTaskManagers is GET /jobs/:jid/vertices/:vid/taskmanagers (Flink has no job-level one).
func (c *Client) VertexTaskManagers(ctx context.Context, jobID, vertexID string) (*VertexTaskManagers, error) {
	return fetch[VertexTaskManagers](ctx, c, epVertexTMs, []string{jobID, vertexID})
}

// BackPressure is GET /jobs/:jid/vertices/:vid/backpressure.
func (c *Client) BackPressure(ctx context.Context, jobID, vertexID string) (*BackPressure, error) {
	var out BackPressure
	if err := c.call(ctx, epBackPressure, []string{jobID, vertexID}, nil, &out); err != nil {
		return nil, err
	}
	if out.Level == "" {
		out.Level = out.LevelCamel
	}
	for i := range out.Subtasks {
		if out.Subtasks[i].Level == "" {
			out.Subtasks[i].Level = out.Subtasks[i].LevelCamel
		}
	}
	return &out, nil
}

// Checkpoints is GET /jobs/:jid/checkpoints. The latest completed checkpoint (path, sizes,
// duration) is in Latest.Completed, which is nil before the first one.
func (c *Client) Checkpoints(ctx context.Context, jobID string) (*CheckpointStats, error) {
	return fetch[CheckpointStats](ctx, c, epCheckpoints, []string{jobID})
}

// CheckpointType is the checkpointType of a manual trigger.
type CheckpointType string

const (
	CheckpointConfigured CheckpointType = "CONFIGURED"
	CheckpointFull       CheckpointType = "FULL"
)

// TriggerCheckpoint is POST /jobs/:jid/checkpoints (Flink 1.17+). It sends its own trigger id,
// which makes retries idempotent: Flink answers a repeated id with the same operation.
func (c *Client) TriggerCheckpoint(ctx context.Context, jobID string, typ CheckpointType) (string, error) {
	if typ == "" {
		typ = CheckpointConfigured
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	req := struct {
		CheckpointType CheckpointType `json:"checkpointType"`
		TriggerID      string         `json:"triggerId"`
	}{typ, hex.EncodeToString(b[:])}
	var out TriggerResponse
	if err := c.call(ctx, epTriggerCheckpoint, []string{jobID}, req, &out); err != nil {
		return "", err
	}
	if out.RequestID == "" {
		return "", fmt.Errorf("flink rest POST %s: no request-id in the answer", epTriggerCheckpoint.Path)
	}
	return out.RequestID, nil
}

// CheckpointStatus is GET /jobs/:jid/checkpoints/:triggerid.
func (c *Client) CheckpointStatus(ctx context.Context, jobID, triggerID string) (*CheckpointOperation, error) {
	return fetch[CheckpointOperation](ctx, c, epCheckpointStatus, []string{jobID, triggerID})
}

// CheckpointFailedError says Flink finished a triggered checkpoint with a failure.
type CheckpointFailedError struct {
	JobID, TriggerID string
	Cause            FailureCause
}

func (e *CheckpointFailedError) Error() string {
	first, _, _ := strings.Cut(e.Cause.StackTrace, "\n")
	return fmt.Sprintf("checkpoint %s of job %s failed: %s: %s", e.TriggerID, e.JobID, e.Cause.Class, first)
}

// WaitCheckpoint polls a triggered checkpoint every interval until it completes (returning its
// id), fails (*CheckpointFailedError) or ctx ends.
func (c *Client) WaitCheckpoint(ctx context.Context, jobID, triggerID string, interval time.Duration) (int64, error) {
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		op, err := c.CheckpointStatus(ctx, jobID, triggerID)
		if err != nil {
			return 0, err
		}
		if op.Status.ID == "COMPLETED" {
			switch {
			case op.Operation == nil:
				return 0, fmt.Errorf("checkpoint %s of job %s: COMPLETED without an operation", triggerID, jobID)
			case op.Operation.FailureCause != nil:
				return 0, &CheckpointFailedError{JobID: jobID, TriggerID: triggerID, Cause: *op.Operation.FailureCause}
			case op.Operation.CheckpointID != nil:
				return *op.Operation.CheckpointID, nil
			}
			return 0, fmt.Errorf("checkpoint %s of job %s: COMPLETED without checkpoint id or failure", triggerID, jobID)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for checkpoint %s of job %s: %w", triggerID, jobID, ctx.Err())
		case <-t.C:
		}
	}
}

// Checkpoint triggers a checkpoint and waits for it, as the actuator does before evicting.
func (c *Client) Checkpoint(ctx context.Context, jobID string, typ CheckpointType, poll time.Duration) (int64, error) {
	id, err := c.TriggerCheckpoint(ctx, jobID, typ)
	if err != nil {
		return 0, err
	}
	return c.WaitCheckpoint(ctx, jobID, id, poll)
}

// TaskManagers is GET /taskmanagers.
func (c *Client) TaskManagers(ctx context.Context) ([]TaskManagerInfo, error) {
	var out struct {
		TaskManagers []TaskManagerInfo `json:"taskmanagers"`
	}
	if err := c.call(ctx, epTaskManagers, nil, nil, &out); err != nil {
		return nil, err
	}
	return out.TaskManagers, nil
}

// TaskManager is GET /taskmanagers/:tmid.
func (c *Client) TaskManager(ctx context.Context, tmID string) (*TaskManagerDetails, error) {
	return fetch[TaskManagerDetails](ctx, c, epTaskManager, []string{tmID})
}
