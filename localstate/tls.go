package localstate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/tmwarden/tmwarden/mtls"
)

// Relay host names: the transport dials the backend socket by the host it is asked for, and
// keeps a separate connection pool per host.
const (
	relayHost     = "state-cache"
	relayPeerHost = "state-cache-peer"
)

// tlsFront terminates TLS on the configured address and relays to versitygw on a private
// abstract unix socket. versitygw only takes TLS certificates through a type of an internal
// package, so an embedder cannot hand it one; the relay keeps the Host header, which SigV4 signs.
//
// With peer mTLS there are two backends: requests on connections with a verified agent
// certificate go to peerBackend, whose versitygw knows the peer credential; all others go to
// backend, whose versitygw does not. The front's own check of the credential (peerDenied) gives
// a clear error, but does not have to parse every way SigV4 can carry a key (POST policy forms
// for one): versitygw on backend refuses the peer key whatever it missed.
type tlsFront struct {
	srv         *http.Server
	ln          net.Listener
	backend     string // abstract socket name, "@..."
	peerBackend string // "" unless peer mTLS is on
	peerAccess  string // the peer access key, refused without a verified client certificate
}

// newTLSFront listens on addr. peerCA, when set, turns on peer mTLS for peerAccess.
func newTLSFront(addr, certFile, keyFile, peerCA, peerAccess string, log *slog.Logger) (*tlsFront, error) {
	tc, err := frontTLSConfig(certFile, keyFile, peerCA)
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", addr, tc)
	if err != nil {
		return nil, fmt.Errorf("state cache TLS listen %s: %w", addr, err)
	}
	t := &tlsFront{ln: ln, backend: abstractSocket()}
	if peerCA != "" {
		t.peerBackend, t.peerAccess = abstractSocket(), peerAccess
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, hostPort string) (net.Conn, error) {
			sock := t.backend
			if host, _, _ := net.SplitHostPort(hostPort); host == relayPeerHost {
				sock = t.peerBackend
			}
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 256,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			host := relayHost
			if t.peerBackend != "" && verifiedClient(r.In) {
				host = relayPeerHost
			}
			r.SetURL(&url.URL{Scheme: "http", Host: host})
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("state cache TLS front: relay failed", "method", r.Method, "path", r.URL.Path, "err", err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t.peerDenied(r) {
			log.Warn("state cache: peer request without a verified client certificate refused",
				"remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			writeS3Error(w, r, http.StatusForbidden, "AccessDenied",
				"Access Denied: a peer request needs a client certificate signed by state_cache.peer.ca_file")
			return
		}
		rp.ServeHTTP(w, r)
	})
	// Handshake failures (a peer certificate of another CA among them) go to the agent's log
	// rather than the process's standard logger.
	t.srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return t, nil
}

// frontTLSConfig reloads the gateway's certificate (and the peer CA) when their files change,
// through package mtls. mtls.ServerConfig requires a client certificate once it has a CA, but
// TaskManagers cannot present one, so the handshake only verifies a certificate if one is
// given; peerDenied then keeps the peer credential off connections without one.
func frontTLSConfig(certFile, keyFile, peerCA string) (*tls.Config, error) {
	inner, err := mtls.ServerConfig(mtls.Config{CertFile: certFile, KeyFile: keyFile, CAFile: peerCA})
	if err != nil {
		return nil, fmt.Errorf("state cache TLS: %w", err)
	}
	if peerCA == "" {
		return inner, nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := inner.GetConfigForClient(hello)
			if err != nil || c == nil {
				return c, err
			}
			c.ClientAuth = tls.VerifyClientCertIfGiven
			return c, nil
		},
	}, nil
}

func abstractSocket() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "@tmwarden-state-cache-" + hex.EncodeToString(b[:])
}

// verifiedClient reports whether the request came over a connection whose client certificate
// the handshake verified against the peer CA.
func verifiedClient(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
}

// peerDenied reports whether r is signed with the peer credential but its connection has no
// verified client certificate.
func (t *tlsFront) peerDenied(r *http.Request) bool {
	if t.peerAccess == "" || verifiedClient(r) {
		return false
	}
	// Every Authorization header is looked at, not just the first, so that a second header
	// cannot smuggle the key past this check to a parser that reads another one.
	for _, v := range r.Header.Values("Authorization") {
		if authNamesKey(v, t.peerAccess) {
			return true
		}
	}
	// Presigned URLs carry the credential in the query. A malformed query still yields the
	// pairs that parse, which is what a lenient parser behind the relay would see too.
	q, _ := url.ParseQuery(r.URL.RawQuery)
	for k, vs := range q {
		if !strings.EqualFold(k, "X-Amz-Credential") {
			continue
		}
		for _, v := range vs {
			if accessOf(v) == t.peerAccess {
				return true
			}
		}
	}
	return false
}

// authNamesKey reports whether a SigV4 Authorization header names access in any of its
// Credential components. Whitespace is dropped first, as versitygw's parser does.
func authNamesKey(header, access string) bool {
	h := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, header)
	for {
		i := strings.Index(h, "Credential=")
		if i < 0 {
			return false
		}
		h = h[i+len("Credential="):]
		if accessOf(h) == access {
			return true
		}
	}
}

// accessOf is the access key of a SigV4 credential scope (KEY/date/region/service/aws4_request).
func accessOf(cred string) string {
	if i := strings.IndexAny(cred, "/,"); i >= 0 {
		return cred[:i]
	}
	return cred
}

// writeS3Error answers with an S3 error document, as versitygw would, so S3 clients report
// the code and message instead of an unparseable body.
func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body, _ := xml.Marshal(struct {
		XMLName  xml.Name `xml:"Error"`
		Code     string   `xml:"Code"`
		Message  string   `xml:"Message"`
		Resource string   `xml:"Resource"`
	}{Code: code, Message: msg, Resource: r.URL.Path})
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(xml.Header))
		_, _ = w.Write(body)
	}
}

func (t *tlsFront) serve() error {
	if err := t.srv.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (t *tlsFront) close() { _ = t.srv.Close() }
