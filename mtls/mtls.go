// Package mtls builds the TLS configurations of tmwarden's connections (agent to coordinator,
// agent to agent) and reloads certificates from disk when they change, so rotating a
// certificate (cert-manager, a systemd timer) needs no restart.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Config is a `tls:` section. All paths are PEM files.
type Config struct {
	// CertFile and KeyFile are this side's certificate and key. Default none (TLS off).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile verifies the peer: on a server it turns on client-certificate verification (mTLS),
	// on a client it replaces the system roots. Default none.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name a client expects in the server's certificate. Default: the
	// host part of the address it dials.
	ServerName string `yaml:"server_name"`
}

// Enabled reports whether any TLS setting is given.
func (c Config) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" }

// Validate checks that the settings make sense together and that the files load.
func (c Config) Validate(server bool) error {
	if !c.Enabled() {
		return nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	if server && c.CertFile == "" {
		return errors.New("tls: a server needs cert_file and key_file")
	}
	if c.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			return fmt.Errorf("tls: loading %s and %s: %w", c.CertFile, c.KeyFile, err)
		}
	}
	if c.CAFile != "" {
		if _, err := loadPool(c.CAFile); err != nil {
			return err
		}
	}
	return nil
}

// reloader serves the newest certificate and CA pool on disk. It looks at the files at most
// once per checkEvery, on the handshake path, so a rotated file is picked up by the next
// connection without a watcher goroutine to own.
type reloader struct {
	cfg        Config
	checkEvery time.Duration

	mu        sync.Mutex
	checked   time.Time
	certStamp string
	caStamp   string
	cert      *tls.Certificate
	pool      *x509.CertPool
}

func newReloader(cfg Config) (*reloader, error) {
	r := &reloader{cfg: cfg, checkEvery: time.Second}
	if err := r.refresh(true); err != nil {
		return nil, err
	}
	return r, nil
}

// refresh reloads files whose size or modification time changed. A file caught half-written
// keeps the previous certificate in service instead of failing every handshake.
func (r *reloader) refresh(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !force && time.Since(r.checked) < r.checkEvery {
		return nil
	}
	r.checked = time.Now()
	if r.cfg.CertFile != "" {
		stamp := stampOf(r.cfg.CertFile) + "|" + stampOf(r.cfg.KeyFile)
		if stamp != r.certStamp {
			c, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
			if err != nil {
				if r.cert == nil {
					return fmt.Errorf("tls: loading %s: %w", r.cfg.CertFile, err)
				}
			} else {
				r.cert, r.certStamp = &c, stamp
			}
		}
	}
	if r.cfg.CAFile != "" {
		stamp := stampOf(r.cfg.CAFile)
		if stamp != r.caStamp {
			p, err := loadPool(r.cfg.CAFile)
			if err != nil {
				if r.pool == nil {
					return err
				}
			} else {
				r.pool, r.caStamp = p, stamp
			}
		}
	}
	return nil
}

func (r *reloader) current() (*tls.Certificate, *x509.CertPool) {
	_ = r.refresh(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, r.pool
}

// ServerConfig returns a server TLS configuration that reloads its certificate and, with a
// CA file, requires and verifies client certificates.
func ServerConfig(cfg Config) (*tls.Config, error) {
	if err := cfg.Validate(true); err != nil {
		return nil, err
	}
	r, err := newReloader(cfg)
	if err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := r.current()
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{*cert}
		if pool != nil {
			c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		return c, nil
	}
	return base, nil
}

// ClientConfig returns a client TLS configuration that reloads its certificate (presented
// when the server asks) and the CA it verifies the server with.
func ClientConfig(cfg Config) (*tls.Config, error) {
	if err := cfg.Validate(false); err != nil {
		return nil, err
	}
	r, err := newReloader(cfg)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	if cfg.CertFile != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := r.current()
			return cert, nil
		}
	}
	if cfg.CAFile != "" {
		// Verification is done by hand so that a rotated CA file is honoured too.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			_, pool := r.current()
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		}
	}
	return c, nil
}

// Names lists the names a certificate vouches for: its Common Name and its DNS names.
func Names(cert *x509.Certificate) []string {
	names := slices.Clone(cert.DNSNames)
	if cert.Subject.CommonName != "" {
		names = append(names, cert.Subject.CommonName)
	}
	return names
}

// VerifiedPeer returns the leaf of the verified chain the peer presented on a TLS
// connection, or nil when it presented none (or the connection is not TLS).
func VerifiedPeer(state *tls.ConnectionState) *x509.Certificate {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return nil
	}
	return state.VerifiedChains[0][0]
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: reading CA %s: %w", path, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", path)
	}
	return p, nil
}

func stampOf(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())
}
