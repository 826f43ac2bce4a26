package localstate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble"
)

// entry is one cached object as recorded in the pebble index.
type entry struct {
	Bucket       string            `json:"bucket"`
	Key          string            `json:"key"`
	Size         int64             `json:"size"`
	ETag         string            `json:"etag"`
	XXH64        uint64            `json:"xxh64"`
	JobID        string            `json:"job_id,omitempty"`
	ContentType  string            `json:"content_type,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	LastModified time.Time         `json:"last_modified"`
	LastAccess   time.Time         `json:"last_access"`
	// Pinned objects are never evicted (prefetched state a migration is about to need).
	Pinned bool `json:"pinned,omitempty"`
}

// store is the on-disk object cache: one file per object under objects/, indexed in pebble.
// A file is renamed into place before its index entry is written, and Open drops files without
// an entry and entries without a matching file, so a kill -9 at any point leaves it consistent.
type store struct {
	dir      string
	capacity int64
	db       *pebble.DB
	log      *slog.Logger

	mu       sync.Mutex
	entries  map[string]*entry // by bucket/key
	used     int64
	refs     map[string]int     // open readers and writers; never evicted while > 0
	verified map[string]fileSig // files whose checksum matched since start
	hits     uint64
	misses   uint64
}

type fileSig struct {
	size  int64
	mtime time.Time
}

var errCorrupt = errors.New("cached object failed its checksum")

func ckey(bucket, key string) string { return bucket + "/" + key }

func openStore(dir string, capacity int64, log *slog.Logger) (*store, error) {
	for _, d := range []string{"objects", "tmp", "parts"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("create cache dir: %w", err)
		}
	}
	// Temporary and multipart part files of a previous process are never valid: their writes
	// were not acknowledged (or their upload can no longer be completed from here).
	for _, d := range []string{"tmp", "parts"} {
		_ = os.RemoveAll(filepath.Join(dir, d))
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("create cache dir: %w", err)
		}
	}
	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		return nil, fmt.Errorf("open cache index %s: %w", dir, err)
	}
	s := &store{dir: dir, capacity: capacity, db: db, log: log,
		entries: map[string]*entry{}, refs: map[string]int{}, verified: map[string]fileSig{}}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...interface{})  {}
func (quietPebble) Errorf(string, ...interface{}) {}
func (quietPebble) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf(format, args...))
}

// load rebuilds the in-memory view and repairs what a crash may have left behind.
func (s *store) load() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("read cache index: %w", err)
	}
	keep := map[string]bool{}
	var stale [][]byte
	for it.First(); it.Valid(); it.Next() {
		var e entry
		if err := json.Unmarshal(it.Value(), &e); err != nil {
			stale = append(stale, append([]byte(nil), it.Key()...))
			continue
		}
		p := s.path(e.Bucket, e.Key)
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != e.Size {
			stale = append(stale, append([]byte(nil), it.Key()...))
			continue
		}
		keep[p] = true
		s.entries[ckey(e.Bucket, e.Key)] = &e
		s.used += e.Size
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read cache index: %w", err)
	}
	for _, k := range stale {
		if err := s.db.Delete(k, pebble.Sync); err != nil {
			return fmt.Errorf("repair cache index: %w", err)
		}
	}
	// Files renamed into place whose index write never happened (kill -9 in between).
	return filepath.WalkDir(filepath.Join(s.dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !keep[p] {
			_ = os.Remove(p)
		}
		return nil
	})
}

func (s *store) close() error { return s.db.Close() }

func (s *store) path(bucket, key string) string {
	h := sha256.Sum256([]byte(ckey(bucket, key)))
	x := hex.EncodeToString(h[:])
	return filepath.Join(s.dir, "objects", x[:2], x)
}

// get returns a copy of the entry and pins it for reading; release with unref.
func (s *store) acquire(bucket, key string) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ckey(bucket, key)]
	if !ok {
		s.misses++
		return entry{}, false
	}
	s.hits++
	s.refs[ckey(bucket, key)]++
	e.LastAccess = time.Now()
	return *e, true
}

func (s *store) peek(bucket, key string) (entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ckey(bucket, key)]
	if !ok {
		return entry{}, false
	}
	return *e, true
}

func (s *store) ref(bucket, key string) {
	s.mu.Lock()
	s.refs[ckey(bucket, key)]++
	s.mu.Unlock()
}

func (s *store) unref(bucket, key string) {
	s.mu.Lock()
	k := ckey(bucket, key)
	if s.refs[k]--; s.refs[k] <= 0 {
		delete(s.refs, k)
	}
	s.mu.Unlock()
}

// open opens a cached file and checks its checksum unless it was already verified unchanged.
func (s *store) open(e entry) (*os.File, error) {
	f, err := os.Open(s.path(e.Bucket, e.Key))
	if err != nil {
		return nil, fmt.Errorf("open cached %s/%s: %w", e.Bucket, e.Key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("stat cached %s/%s: %w", e.Bucket, e.Key, err)
	}
	sig := fileSig{size: fi.Size(), mtime: fi.ModTime()}
	s.mu.Lock()
	ok := s.verified[ckey(e.Bucket, e.Key)] == sig
	s.mu.Unlock()
	if ok {
		return f, nil
	}
	h := xxhash.New()
	n, err := io.Copy(h, f)
	if err != nil || n != e.Size || h.Sum64() != e.XXH64 {
		_ = f.Close()
		return nil, fmt.Errorf("%s/%s: %w (size %d/%d)", e.Bucket, e.Key, errCorrupt, n, e.Size)
	}
	s.mu.Lock()
	s.verified[ckey(e.Bucket, e.Key)] = sig
	s.mu.Unlock()
	return f, nil
}

// tempFile is where a new object is written before commit renames it into place.
func (s *store) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "obj-*")
	if err != nil {
		return nil, fmt.Errorf("create cache temp file: %w", err)
	}
	return f, nil
}

// commit moves a fully written temp file into place and records it; then evicts to the quota.
func (s *store) commit(tmp string, e entry) error {
	// Request strings may alias fasthttp's reused buffers; the index keeps its own copies.
	e.Bucket, e.Key, e.ETag, e.ContentType = strings.Clone(e.Bucket), strings.Clone(e.Key), strings.Clone(e.ETag), strings.Clone(e.ContentType)
	if e.Metadata != nil {
		md := make(map[string]string, len(e.Metadata))
		for k, v := range e.Metadata {
			md[strings.Clone(k)] = strings.Clone(v)
		}
		e.Metadata = md
	}
	e.JobID = jobIDFromKey(e.Key)
	if e.LastAccess.IsZero() {
		e.LastAccess = time.Now()
	}
	if e.LastModified.IsZero() {
		e.LastModified = time.Now().UTC()
	}
	dst := s.path(e.Bucket, e.Key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("commit cached object: %w", err)
	}
	raw, err := json.Marshal(&e)
	if err != nil {
		return fmt.Errorf("commit cached object: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := ckey(e.Bucket, e.Key)
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("commit cached object: %w", err)
	}
	if err := s.db.Set([]byte(k), raw, pebble.Sync); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("index cached object: %w", err)
	}
	if old, ok := s.entries[k]; ok {
		s.used -= old.Size
	}
	delete(s.verified, k)
	s.entries[k] = &e
	s.used += e.Size
	s.evictLocked()
	return nil
}

// evictLocked drops least recently used objects until the quota holds, skipping pinned objects
// and objects that are being read or written.
func (s *store) evictLocked() {
	if s.used <= s.capacity {
		return
	}
	all := make([]*entry, 0, len(s.entries))
	for _, e := range s.entries {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].LastAccess.Before(all[j].LastAccess) })
	for _, e := range all {
		if s.used <= s.capacity {
			return
		}
		k := ckey(e.Bucket, e.Key)
		if e.Pinned || s.refs[k] > 0 {
			continue
		}
		s.removeLocked(e.Bucket, e.Key)
	}
}

func (s *store) removeLocked(bucket, key string) {
	k := ckey(bucket, key)
	e, ok := s.entries[k]
	if !ok {
		return
	}
	if err := s.db.Delete([]byte(k), pebble.Sync); err != nil {
		s.log.Warn("state cache: drop index entry", "key", k, "err", err)
		return
	}
	_ = os.Remove(s.path(bucket, key))
	s.used -= e.Size
	delete(s.entries, k)
	delete(s.verified, k)
}

func (s *store) remove(bucket, key string) {
	s.mu.Lock()
	s.removeLocked(bucket, key)
	s.mu.Unlock()
}

func (s *store) setPinned(bucket, key string, pinned bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[ckey(bucket, key)]
	if !ok || e.Pinned == pinned {
		return
	}
	e.Pinned = pinned
	if raw, err := json.Marshal(e); err == nil {
		_ = s.db.Set([]byte(ckey(bucket, key)), raw, pebble.NoSync)
	}
}

// flushAccess persists last-access times (kept in memory between flushes to spare the index).
func (s *store) flushAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	for k, e := range s.entries {
		if raw, err := json.Marshal(e); err == nil {
			_ = b.Set([]byte(k), raw, nil)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		s.log.Warn("state cache: persist access times", "err", err)
	}
}

// list returns copies of the entries under bucket/prefix (all buckets when bucket is empty).
func (s *store) list(bucket, prefix string) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []entry
	for _, e := range s.entries {
		if (bucket == "" || e.Bucket == bucket) && len(e.Key) >= len(prefix) && e.Key[:len(prefix)] == prefix {
			out = append(out, *e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return ckey(out[i].Bucket, out[i].Key) < ckey(out[j].Bucket, out[j].Key) })
	return out
}

type storeStats struct {
	Capacity, Used int64
	Objects        int
	Hits, Misses   uint64
}

func (s *store) stats() storeStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return storeStats{Capacity: s.capacity, Used: s.used, Objects: len(s.entries), Hits: s.hits, Misses: s.misses}
}

var jobIDRe = regexp.MustCompile(`(?:^|/)([0-9a-f]{32})/(?:chk-\d+|shared|taskowned)(?:/|$)`)

// jobIDFromKey finds the Flink job id in a checkpoint path (<dir>/<jobid>/{chk-N,shared,taskowned}/...).
func jobIDFromKey(key string) string {
	if m := jobIDRe.FindStringSubmatch(key); m != nil {
		return m[1]
	}
	return ""
}

// checkpointPrefix is the part of a key up to and including the job id directory, used to group the inventory.
func checkpointPrefix(key string) string {
	if loc := jobIDRe.FindStringSubmatchIndex(key); loc != nil {
		return key[:loc[3]] + "/"
	}
	if i := lastSlash(key); i >= 0 {
		return key[:i+1]
	}
	return ""
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}
