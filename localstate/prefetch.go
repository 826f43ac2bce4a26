package localstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
)

// PrefetchRequest warms the cache with objects or everything under a prefix.
type PrefetchRequest struct {
	Bucket string   `json:"bucket"`
	Keys   []string `json:"keys,omitempty"`
	Prefix string   `json:"prefix,omitempty"`
	// Priority orders prefetches among themselves; on-demand reads always come first.
	Priority int `json:"priority,omitempty"`
	// SourcePeer is a peer agent's gateway host:port; empty fetches from the upstream.
	SourcePeer string `json:"source_peer,omitempty"`
	// Pin keeps the prefetched objects from LRU eviction until they are read or unpinned.
	Pin bool `json:"pin,omitempty"`
}

// PrefetchStatus is the progress of one prefetch.
type PrefetchStatus struct {
	ID          string    `json:"id"`
	State       string    `json:"state"` // running, succeeded, failed
	Source      string    `json:"source"`
	Objects     int       `json:"objects"`
	DoneObjects int       `json:"done_objects"`
	DoneBytes   int64     `json:"done_bytes"`
	TotalBytes  int64     `json:"total_bytes"`
	Error       string    `json:"error,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished,omitzero"`
}

type prefetchJob struct {
	mu     sync.Mutex
	status PrefetchStatus
}

func (j *prefetchJob) get() PrefetchStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status
}

// prefetches keeps the jobs started through the admin API so their progress can be polled.
type prefetches struct {
	g    *Gateway
	mu   sync.Mutex
	jobs map[string]*prefetchJob
	wg   sync.WaitGroup
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartPrefetch runs a prefetch in the background (owned by the gateway) and returns its id.
func (g *Gateway) StartPrefetch(req PrefetchRequest) string {
	id := newID()
	j := &prefetchJob{status: PrefetchStatus{ID: id, State: "running", Started: time.Now()}}
	p := g.prefetch
	p.mu.Lock()
	p.jobs[id] = j
	// Finished jobs are kept for polling; the oldest go once there are many.
	if len(p.jobs) > 256 {
		var oldest string
		for k, o := range p.jobs {
			s := o.get()
			if s.State != "running" && (oldest == "" || s.Started.Before(p.jobs[oldest].get().Started)) {
				oldest = k
			}
		}
		delete(p.jobs, oldest)
	}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_, _ = g.Prefetch(g.ctx, req, func(s PrefetchStatus) {
			s.ID = id
			j.mu.Lock()
			j.status = s
			j.mu.Unlock()
		})
	}()
	return id
}

// PrefetchStatusOf returns a background prefetch's progress.
func (g *Gateway) PrefetchStatusOf(id string) (PrefetchStatus, bool) {
	g.prefetch.mu.Lock()
	j, ok := g.prefetch.jobs[id]
	g.prefetch.mu.Unlock()
	if !ok {
		return PrefetchStatus{}, false
	}
	return j.get(), true
}

type prefetchItem struct {
	key  string
	size int64
}

// Prefetch loads the requested objects into the cache from the upstream or a peer gateway,
// calling progress about five times a second and once at the end.
func (g *Gateway) Prefetch(ctx context.Context, req PrefetchRequest, progress func(PrefetchStatus)) (PrefetchStatus, error) {
	st := PrefetchStatus{State: "running", Started: time.Now(), Source: "upstream"}
	source := sourceUpstream
	if req.SourcePeer != "" {
		st.Source = "peer " + req.SourcePeer
		source = sourcePeer
	}
	// Bytes this prefetch has to fetch (objects not cached yet) and how many of them were
	// already counted as fetched; the rest is pending until the prefetch ends.
	var toFetch, counted int64
	finish := func(err error) (PrefetchStatus, error) {
		g.metrics.pending.Add(-(toFetch - counted)) // failed or cancelled bytes are no longer pending
		toFetch = counted
		st.Finished = time.Now()
		st.State = "succeeded"
		if err != nil {
			st.State, st.Error = "failed", err.Error()
		}
		if progress != nil {
			progress(st)
		}
		return st, err
	}
	if req.Bucket == "" || (len(req.Keys) == 0 && req.Prefix == "") {
		return finish(errors.New("prefetch needs a bucket and keys or a prefix"))
	}
	src := g.upstream
	if req.SourcePeer != "" {
		src = g.peerClient(req.SourcePeer)
	}
	items, err := g.prefetchItems(ctx, src, req)
	if err != nil {
		return finish(fmt.Errorf("prefetch: list %s/%s: %w", req.Bucket, req.Prefix, err))
	}
	prio := min(max(req.Priority, 0), priorityOnDemand-1)
	st.Objects = len(items)
	for _, it := range items {
		st.TotalBytes += it.size
	}
	var doneBytes, doneObjects, fetchedBytes atomic.Int64
	var mu sync.Mutex
	running := map[string]*fill{}
	var firstErr error
	sem := make(chan struct{}, g.cfg.MaxConcurrentFetches)
	var wg sync.WaitGroup
	var fetch []prefetchItem
	for _, it := range items {
		if _, ok := g.store.peek(req.Bucket, it.key); ok {
			if req.Pin {
				g.store.setPinned(req.Bucket, it.key, true)
			}
			doneBytes.Add(it.size)
			doneObjects.Add(1)
			continue
		}
		fetch = append(fetch, it)
		toFetch += it.size
	}
	g.metrics.pending.Add(toFetch)
	report := func() {
		mu.Lock()
		partial := int64(0)
		for _, f := range running {
			h, _, _, _, _ := f.snapshot()
			partial += h
		}
		fetched := fetchedBytes.Load()
		mu.Unlock()
		st.DoneBytes = min(doneBytes.Load()+partial, st.TotalBytes)
		st.DoneObjects = int(doneObjects.Load())
		// Fetched bytes go out as they land, so a long prefetch shows progress on /metrics.
		if now := min(fetched+partial, toFetch); now > counted {
			g.metrics.fetched(source, now-counted)
			g.metrics.pending.Add(-(now - counted))
			counted = now
		}
	}
	for _, it := range fetch {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			report()
			return finish(ctx.Err())
		}
		wg.Add(1)
		go func(it prefetchItem) {
			defer wg.Done()
			defer func() { <-sem }()
			f, _ := g.fills.get(req.Bucket, it.key, prio, src)
			mu.Lock()
			running[it.key] = f
			mu.Unlock()
			err := f.waitDone(ctx)
			mu.Lock()
			delete(running, it.key)
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("prefetch %s/%s: %w", req.Bucket, it.key, err)
			}
			if err == nil {
				// Under mu, so that report never sees the object neither running nor fetched.
				fetchedBytes.Add(it.size)
			}
			mu.Unlock()
			if err == nil {
				if req.Pin {
					g.store.setPinned(req.Bucket, it.key, true)
				}
				doneBytes.Add(it.size)
				doneObjects.Add(1)
			}
		}(it)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			report()
			mu.Lock()
			err := firstErr
			mu.Unlock()
			return finish(err)
		case <-tick.C:
			report()
			if progress != nil {
				progress(st)
			}
		}
	}
}

func (g *Gateway) prefetchItems(ctx context.Context, src *s3.Client, req PrefetchRequest) ([]prefetchItem, error) {
	var items []prefetchItem
	for _, k := range req.Keys {
		out, err := src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(req.Bucket), Key: aws.String(k)})
		if err != nil {
			return nil, upstreamError(err)
		}
		items = append(items, prefetchItem{key: k, size: aws.ToInt64(out.ContentLength)})
	}
	if req.Prefix != "" {
		pg := s3.NewListObjectsV2Paginator(src, &s3.ListObjectsV2Input{Bucket: aws.String(req.Bucket), Prefix: aws.String(req.Prefix)})
		for pg.HasMorePages() {
			out, err := pg.NextPage(ctx)
			if err != nil {
				return nil, upstreamError(err)
			}
			for _, o := range out.Contents {
				items = append(items, prefetchItem{key: aws.ToString(o.Key), size: aws.ToInt64(o.Size)})
			}
		}
	}
	return items, nil
}

// peerClient signs requests to a peer agent's gateway with the shared peer credential (SigV4)
// and, with peer mTLS, presents this agent's certificate and verifies the peer's with the agents' CA.
func (g *Gateway) peerClient(endpoint string) *s3.Client {
	g.peersMu.Lock()
	defer g.peersMu.Unlock()
	if c, ok := g.peers[endpoint]; ok {
		return c
	}
	scheme := "http://"
	if g.cfg.Peer.TLS {
		scheme = "https://"
	}
	c := newS3ClientTLS(scheme+endpoint, g.cfg.Region, g.cfg.Peer.AccessKey, g.cfg.Peer.SecretKey, true, g.peerTLS, g.cfg.Upstream.Timeout)
	g.peers[endpoint] = c
	return c
}

// PrefetchHandler runs the coordinator's Prefetch commands. It satisfies agent.CommandHandler
// (Handle(ctx, *tmwardenv1.Command, progress) error) without importing the agent package.
type PrefetchHandler struct{ g *Gateway }

// PrefetchHandler returns the gateway's handler for tmwardenv1.PrefetchCommand.
func (g *Gateway) PrefetchHandler() *PrefetchHandler { return &PrefetchHandler{g: g} }

// Handle runs one prefetch command, reporting progress; other commands are refused.
func (h *PrefetchHandler) Handle(ctx context.Context, cmd *tmwardenv1.Command, progress func(*tmwardenv1.CommandProgress)) error {
	p := cmd.GetPrefetch()
	if p == nil {
		return fmt.Errorf("state cache: command %s is not a prefetch", cmd.GetId())
	}
	req := PrefetchRequest{Bucket: p.GetBucket(), Keys: p.GetKeys(), Prefix: p.GetPrefix(),
		Priority: int(p.GetPriority()), SourcePeer: p.GetSourcePeer(), Pin: true}
	_, err := h.g.Prefetch(ctx, req, func(s PrefetchStatus) {
		if progress == nil {
			return
		}
		state := tmwardenv1.CommandProgress_STATE_RUNNING
		switch s.State {
		case "succeeded":
			state = tmwardenv1.CommandProgress_STATE_SUCCEEDED
		case "failed":
			state = tmwardenv1.CommandProgress_STATE_FAILED
		}
		progress(&tmwardenv1.CommandProgress{CommandId: cmd.GetId(), State: state,
			DoneBytes: uint64(s.DoneBytes), TotalBytes: uint64(s.TotalBytes),
			Message: fmt.Sprintf("%d/%d objects from %s", s.DoneObjects, s.Objects, s.Source)})
	})
	return err
}
