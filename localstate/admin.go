package localstate

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/tmwarden/tmwarden/api/httpv1"
)

// Admin API paths. The agent mounts AdminHandler on its HTTP server (default 127.0.0.1:9712)
// under AdminPrefix; tmwardenctl cache talks to it there.
const AdminPrefix = "/cache/v1/"

// CacheObject is one cached object as the admin API lists it.
type CacheObject struct {
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	Size       int64     `json:"size"`
	ETag       string    `json:"etag"`
	JobID      string    `json:"job_id,omitempty"`
	LastAccess time.Time `json:"last_access"`
	Pinned     bool      `json:"pinned,omitempty"`
}

// CacheStats is the admin API's summary.
type CacheStats struct {
	CapacityBytes int64            `json:"capacity_bytes"`
	UsedBytes     int64            `json:"used_bytes"`
	Objects       int              `json:"objects"`
	Hits          uint64           `json:"hits"`
	Misses        uint64           `json:"misses"`
	HitRatio      float64          `json:"hit_ratio"`
	Prefixes      []PrefixStats    `json:"prefixes"`
	Loading       int              `json:"loading"`
	Prefetches    []PrefetchStatus `json:"prefetches,omitempty"`
}

// PrefixStats groups cached bytes by checkpoint directory.
type PrefixStats struct {
	Bucket  string `json:"bucket"`
	Prefix  string `json:"prefix"`
	JobID   string `json:"job_id,omitempty"`
	Bytes   uint64 `json:"bytes"`
	Objects uint64 `json:"objects"`
}

// AdminHandler serves, under AdminPrefix:
//
//	GET  stats                      CacheStats
//	GET  objects?bucket=B&prefix=P  []CacheObject
//	POST prefetch                   PrefetchRequest → PrefetchStatus (202, runs in the background)
//	GET  prefetch/{id}              PrefetchStatus
//
// It has no authentication of its own: mount it only on a loopback or otherwise protected listener.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+AdminPrefix+"stats", func(w http.ResponseWriter, _ *http.Request) {
		s := g.store.stats()
		inv := g.Inventory()
		out := CacheStats{CapacityBytes: s.Capacity, UsedBytes: s.Used, Objects: s.Objects, Hits: s.Hits, Misses: s.Misses,
			HitRatio: inv.HitRatio, Prefixes: []PrefixStats{}}
		for _, p := range inv.Prefixes {
			out.Prefixes = append(out.Prefixes, PrefixStats{Bucket: p.Bucket, Prefix: p.Prefix, JobID: p.JobId, Bytes: p.Bytes, Objects: p.Objects})
		}
		g.fills.mu.Lock()
		out.Loading = len(g.fills.fills)
		g.fills.mu.Unlock()
		g.prefetch.mu.Lock()
		for _, j := range g.prefetch.jobs {
			if st := j.get(); st.State == "running" {
				out.Prefetches = append(out.Prefetches, st)
			}
		}
		g.prefetch.mu.Unlock()
		httpv1.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET "+AdminPrefix+"objects", func(w http.ResponseWriter, r *http.Request) {
		out := []CacheObject{}
		for _, e := range g.store.list(r.URL.Query().Get("bucket"), r.URL.Query().Get("prefix")) {
			out = append(out, CacheObject{Bucket: e.Bucket, Key: e.Key, Size: e.Size, ETag: e.ETag, JobID: e.JobID,
				LastAccess: e.LastAccess, Pinned: e.Pinned})
		}
		httpv1.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST "+AdminPrefix+"prefetch", func(w http.ResponseWriter, r *http.Request) {
		var req PrefetchRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpv1.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "prefetch request: " + err.Error()})
			return
		}
		if req.Bucket == "" || (len(req.Keys) == 0 && req.Prefix == "") {
			httpv1.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "prefetch request needs bucket and keys or prefix"})
			return
		}
		id := g.StartPrefetch(req)
		st, _ := g.PrefetchStatusOf(id)
		httpv1.WriteJSON(w, http.StatusAccepted, st)
	})
	mux.HandleFunc("GET "+AdminPrefix+"prefetch/{id}", func(w http.ResponseWriter, r *http.Request) {
		st, ok := g.PrefetchStatusOf(strings.TrimSpace(r.PathValue("id")))
		if !ok {
			httpv1.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such prefetch"})
			return
		}
		httpv1.WriteJSON(w, http.StatusOK, st)
	})
	return mux
}
