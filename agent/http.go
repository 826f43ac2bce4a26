package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tmwarden/tmwarden/localstate"
)

// HTTPAddr is the address the agent's HTTP endpoint (metrics, health, cache admin) is bound
// to, "" until Run has bound it or when http_addr is empty.
func (a *Agent) HTTPAddr() string {
	if p := a.httpAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// listenHTTP binds addr now, so that a taken port fails the start instead of a goroutine later.
func (a *Agent) listenHTTP(addr string) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent http listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := a.Status()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "node": st.NodeName, "connected": st.Connected,
			"pending_reports": st.Pending, "dropped_reports": st.Dropped})
	})
	mux.Handle("GET /metrics", a.tel.Handler)
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
		st := a.Status()
		var last json.RawMessage
		if st.LastReport != nil {
			last, _ = protojson.Marshal(st.LastReport)
		}
		cols := make([]json.RawMessage, 0, len(st.Collectors))
		for _, c := range st.Collectors {
			b, _ := protojson.Marshal(c)
			cols = append(cols, b)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"node": st.NodeName, "instance": st.InstanceID, "connected": st.Connected,
			"sessions": st.Sessions, "pending_reports": st.Pending, "dropped_reports": st.Dropped, "last_sequence": st.LastSequence,
			"last_acked": st.LastAcked, "collectors": cols, "last_report": last})
	})
	if a.gateway != nil {
		mux.Handle(localstate.AdminPrefix, a.gateway.AdminHandler())
	}
	bound := ln.Addr().String()
	a.httpAddr.Store(&bound)
	a.log.Info("agent http listening", "addr", bound)
	return &httpServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}, nil
}

type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

// serveUntil serves until ctx ends, then shuts down gracefully.
func serveUntil(ctx context.Context, s *httpServer) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("agent http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
