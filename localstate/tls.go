package localstate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// tlsFront terminates TLS on the configured address and relays to versitygw on a private
// abstract unix socket. versitygw only takes TLS certificates through a type of an internal
// package, so an embedder cannot hand it one; the relay keeps the Host header, which SigV4 signs.
type tlsFront struct {
	srv     *http.Server
	ln      net.Listener
	backend string // abstract socket name, "@..."
}

func newTLSFront(addr, certFile, keyFile string) (*tlsFront, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("state cache TLS: %w", err)
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("state cache TLS listen %s: %w", addr, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	sock := "@tmwarden-state-cache-" + hex.EncodeToString(b[:])
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 256,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: "http", Host: "state-cache"})
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			slog.Warn("state cache TLS front: relay failed", "method", r.Method, "path", r.URL.Path, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return &tlsFront{srv: &http.Server{Handler: rp, ReadHeaderTimeout: 30 * time.Second}, ln: ln, backend: sock}, nil
}

func (t *tlsFront) serve() error {
	if err := t.srv.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (t *tlsFront) close() { _ = t.srv.Close() }
