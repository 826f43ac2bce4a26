package localstate

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cespare/xxhash/v2"
)

// Priorities: on-demand reads from Flink outrank every prefetch.
const priorityOnDemand = 1 << 20

// scheduler hands out upstream fetch slots, highest priority first, FIFO within a priority.
type scheduler struct {
	mu      sync.Mutex
	free    int
	seq     uint64
	waiters []*slotWaiter
}

type slotWaiter struct {
	prio  int
	seq   uint64
	ready chan struct{}
}

func newScheduler(n int) *scheduler { return &scheduler{free: n} }

func (s *scheduler) acquire(ctx context.Context, prio int) error {
	s.mu.Lock()
	if s.free > 0 && len(s.waiters) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	s.seq++
	w := &slotWaiter{prio: prio, seq: s.seq, ready: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for i, x := range s.waiters {
			if x == w {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				s.mu.Unlock()
				return ctx.Err()
			}
		}
		s.mu.Unlock()
		// Granted while cancelling: hand the slot on.
		s.release()
		return ctx.Err()
	}
}

func (s *scheduler) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) == 0 {
		s.free++
		return
	}
	best := 0
	for i, w := range s.waiters {
		b := s.waiters[best]
		if w.prio > b.prio || (w.prio == b.prio && w.seq < b.seq) {
			best = i
		}
	}
	w := s.waiters[best]
	s.waiters = append(s.waiters[:best], s.waiters[best+1:]...)
	close(w.ready)
}

// fill loads one object into the cache with ranged GETs. Readers attach to a running fill and
// are served bytes as they land on disk; every reader of the object shares the one fill.
type fill struct {
	bucket, key string
	tmpPath     string
	prio        atomic.Int64
	src         *s3.Client

	mu      sync.Mutex
	meta    bool // size/etag known
	size    int64
	etag    string
	ctype   string
	modTime time.Time
	userMD  map[string]string
	have    int64
	done    bool
	err     error
	changed chan struct{} // closed and replaced whenever the fields above change
}

func (f *fill) snapshot() (have int64, meta, done bool, err error, ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.have, f.meta, f.done, f.err, f.changed
}

func (f *fill) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitMeta blocks until the object's size is known or the fill failed.
func (f *fill) waitMeta(ctx context.Context) error {
	for {
		_, meta, _, err, ch := f.snapshot()
		if meta {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitDone blocks until the fill finished.
func (f *fill) waitDone(ctx context.Context) error {
	for {
		_, _, done, err, ch := f.snapshot()
		if done || err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// fillSet owns the running fills of one gateway.
type fillSet struct {
	g       *Gateway
	mu      sync.Mutex
	fills   map[string]*fill
	wg      sync.WaitGroup
	started atomic.Int64 // fills started, for the inventory and tests
}

// get returns the running fill of an object or starts one from src, raising its priority to
// prio; started says whether this call started it.
func (fs *fillSet) get(bucket, key string, prio int, src *s3.Client) (f *fill, started bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	k := ckey(bucket, key)
	if f, ok := fs.fills[k]; ok {
		for {
			old := f.prio.Load()
			if int64(prio) <= old || f.prio.CompareAndSwap(old, int64(prio)) {
				break
			}
		}
		return f, false
	}
	f = &fill{bucket: strings.Clone(bucket), key: strings.Clone(key), src: src, changed: make(chan struct{})}
	f.prio.Store(int64(prio))
	fs.fills[k] = f
	fs.started.Add(1)
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		err := fs.run(f)
		fs.mu.Lock()
		delete(fs.fills, k)
		fs.mu.Unlock()
		if err != nil {
			fs.g.log.Debug("state cache: fill failed", "bucket", bucket, "key", key, "err", err)
			f.mu.Lock()
			f.err = err
			f.notifyLocked()
			f.mu.Unlock()
		}
	}()
	return f, true
}

func (fs *fillSet) running(bucket, key string) (*fill, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.fills[ckey(bucket, key)]
	return f, ok
}

func (fs *fillSet) run(f *fill) error {
	g := fs.g
	ctx := g.ctx
	tmp, err := g.store.tempFile()
	if err != nil {
		return err
	}
	f.tmpPath = tmp.Name()
	g.store.ref(f.bucket, f.key)
	defer g.store.unref(f.bucket, f.key)
	committed := false
	defer func() {
		_ = tmp.Close()
		if !committed {
			_ = os.Remove(f.tmpPath)
		}
	}()
	h := xxhash.New()
	chunk := g.cfg.FetchChunkBytes
	var off int64
	size := int64(-1)
	for size < 0 || off < size {
		end := off + chunk - 1
		if size >= 0 && end >= size {
			end = size - 1
		}
		n, total, err := fs.fetchRange(ctx, f, tmp, h, off, end)
		if err != nil {
			return err
		}
		if size < 0 {
			size = total
		}
		off += n
		if n == 0 && off < size {
			return fmt.Errorf("fill %s/%s: upstream returned no bytes at %d", f.bucket, f.key, off)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fill %s/%s: %w", f.bucket, f.key, err)
	}
	f.mu.Lock()
	e := entry{Bucket: f.bucket, Key: f.key, Size: size, ETag: f.etag, XXH64: h.Sum64(),
		ContentType: f.ctype, Metadata: f.userMD, LastModified: f.modTime}
	// Readers open the temp path under f.mu, so the rename and done flip happen under it too.
	if err := g.store.commit(f.tmpPath, e); err != nil {
		f.mu.Unlock()
		return err
	}
	committed = true
	f.done = true
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

// fetchRange GETs bytes off..end into tmp, publishing progress as it goes. It returns the bytes
// written and the object's total size.
func (fs *fillSet) fetchRange(ctx context.Context, f *fill, tmp *os.File, h io.Writer, off, end int64) (int64, int64, error) {
	g := fs.g
	if err := g.sched.acquire(ctx, int(f.prio.Load())); err != nil {
		return 0, 0, err
	}
	defer g.sched.release()
	in := &s3.GetObjectInput{Bucket: aws.String(f.bucket), Key: aws.String(f.key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))}
	f.mu.Lock()
	if f.meta {
		in.IfMatch = aws.String(f.etag)
	}
	f.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out, err := f.src.GetObject(rctx, in)
	if err != nil {
		if off == 0 && isInvalidRange(err) {
			// An empty object has no byte 0.
			return fs.emptyObject(ctx, f)
		}
		return 0, 0, upstreamError(err)
	}
	defer out.Body.Close()
	total := totalFromContentRange(aws.ToString(out.ContentRange), aws.ToInt64(out.ContentLength))
	f.mu.Lock()
	if !f.meta {
		f.meta, f.size, f.etag = true, total, aws.ToString(out.ETag)
		f.ctype = aws.ToString(out.ContentType)
		f.userMD = out.Metadata
		f.modTime = aws.ToTime(out.LastModified)
		f.notifyLocked()
	}
	f.mu.Unlock()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, rerr := io.ReadFull(out.Body, buf)
		if m > 0 {
			if _, err := tmp.WriteAt(buf[:m], off+n); err != nil {
				return n, total, fmt.Errorf("fill %s/%s: write cache file: %w", f.bucket, f.key, err)
			}
			_, _ = h.Write(buf[:m])
			n += int64(m)
			f.mu.Lock()
			f.have = off + n
			f.notifyLocked()
			f.mu.Unlock()
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return n, total, upstreamError(rerr)
		}
	}
	if want := end - off + 1; n != want && off+n != total {
		return n, total, fmt.Errorf("fill %s/%s: short ranged read %d of %d bytes", f.bucket, f.key, n, want)
	}
	return n, total, nil
}

func (fs *fillSet) emptyObject(ctx context.Context, f *fill) (int64, int64, error) {
	out, err := f.src.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(f.bucket), Key: aws.String(f.key)})
	if err != nil {
		return 0, 0, upstreamError(err)
	}
	if aws.ToInt64(out.ContentLength) != 0 {
		return 0, 0, fmt.Errorf("fill %s/%s: range refused on a %d-byte object", f.bucket, f.key, aws.ToInt64(out.ContentLength))
	}
	f.mu.Lock()
	f.meta, f.size, f.etag = true, 0, aws.ToString(out.ETag)
	f.ctype, f.userMD, f.modTime = aws.ToString(out.ContentType), out.Metadata, aws.ToTime(out.LastModified)
	f.notifyLocked()
	f.mu.Unlock()
	return 0, 0, nil
}

// totalFromContentRange reads the total of "bytes a-b/total".
func totalFromContentRange(cr string, fallback int64) int64 {
	if i := strings.LastIndexByte(cr, '/'); i >= 0 {
		if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
			return n
		}
	}
	return fallback
}

// fillReader serves start..end of an object from a running fill, waiting for bytes not yet loaded.
type fillReader struct {
	f        *fill
	file     *os.File
	pos, end int64
	release  func()
	served   func(int64) // counts bytes as the client takes them
}

func (r *fillReader) Read(p []byte) (int, error) {
	if r.pos >= r.end {
		return 0, io.EOF
	}
	for {
		have, _, done, err, ch := r.f.snapshot()
		if done {
			have = r.f.size
		}
		if r.pos < have {
			n := min(int64(len(p)), have-r.pos, r.end-r.pos)
			m, rerr := r.file.ReadAt(p[:n], r.pos)
			r.pos += int64(m)
			r.served(int64(m))
			if rerr == io.EOF && m > 0 {
				rerr = nil
			}
			return m, rerr
		}
		if err != nil {
			return 0, fmt.Errorf("lazy load of %s/%s: %w", r.f.bucket, r.f.key, err)
		}
		<-ch
	}
}

func (r *fillReader) Close() error {
	err := r.file.Close()
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return err
}
