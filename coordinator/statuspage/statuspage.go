// Package statuspage is the coordinator's status page: one self-contained HTML/JS page, served
// at / on the coordinator's HTTP port, that reads the JSON API under /api/v1/. It shows the
// nodes with their state and cause, a node's evidence, the event log and the decision log with
// approve buttons, and needs nothing but the coordinator.
package statuspage

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var web embed.FS

// Handler serves the page and its assets. Mount it at "/" beside the API handler; it answers
// only GET and HEAD of its own files and 404s everything else.
func Handler() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		// The page only talks to its own origin; nothing inline, nothing from elsewhere.
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
