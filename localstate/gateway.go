package localstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/backend/s3proxy"
	"github.com/versity/versitygw/s3api"
	"github.com/versity/versitygw/s3api/middlewares"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sys/unix"

	tmwardenv1 "github.com/tmwarden/tmwarden/api/tmwarden/v1"
	"github.com/tmwarden/tmwarden/mtls"
)

// Gateway is the node-local S3 endpoint with its cache. Build it with New, serve with Run.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	store    *store
	upstream *s3.Client
	be       *cacheBackend
	sched    *scheduler
	fills    *fillSet
	prefetch *prefetches

	ctx    context.Context // lives until Close; fills and prefetches run under it
	cancel context.CancelFunc

	peersMu sync.Mutex
	peers   map[string]*s3.Client
	// peerTLS is the client TLS configuration of peer requests (agent certificate, agents' CA);
	// nil means the defaults (system roots, no client certificate).
	peerTLS *tls.Config

	addrMu sync.Mutex
	addr   string
	// listening is closed once addr is set: the agent announces addr to the coordinator.
	listening chan struct{}

	// live feeds the janitor (SetLiveSet); without it the janitor only reports usage.
	live func() LiveSet

	meter   metric.Meter // WithMeter; nil records nothing
	metrics cacheMetrics
}

// SetLiveSet tells the janitor what runs on this node; call before Run.
func (g *Gateway) SetLiveSet(live func() LiveSet) { g.live = live }

// New opens the cache under cfg.Dir and prepares the gateway; nothing listens until Run.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Gateway, error) {
	if err := cfg.LoadKeyFiles(); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	st, err := openStore(cfg.Dir, cfg.CapacityBytes, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{cfg: cfg, log: log, store: st, sched: newScheduler(cfg.MaxConcurrentFetches),
		ctx: ctx, cancel: cancel, peers: map[string]*s3.Client{}, listening: make(chan struct{})}
	for _, o := range opts {
		o(g)
	}
	if err := g.initMetrics(); err != nil {
		cancel()
		_ = st.close()
		return nil, err
	}
	if cfg.Peer.TLS && (cfg.Peer.CAFile != "" || cfg.Peer.CertFile != "") {
		// Built once here so that unreadable files fail New; it reloads them as they change.
		g.peerTLS, err = mtls.ClientConfig(mtls.Config{CertFile: cfg.Peer.CertFile, KeyFile: cfg.Peer.KeyFile, CAFile: cfg.Peer.CAFile})
		if err != nil {
			cancel()
			_ = st.close()
			return nil, fmt.Errorf("state_cache.peer: %w", err)
		}
	}
	g.fills = &fillSet{g: g, fills: map[string]*fill{}}
	g.prefetch = &prefetches{g: g, jobs: map[string]*prefetchJob{}}
	upCreds, err := upstreamCredentials(ctx, cfg.Upstream)
	if err != nil {
		cancel()
		_ = st.close()
		return nil, err
	}
	var upTLS *tls.Config
	if cfg.Upstream.InsecureSkipVerify {
		upTLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opted in by configuration
	}
	g.upstream = newS3ClientWith(cfg.Upstream.Endpoint, cfg.Upstream.Region, upCreds, *cfg.Upstream.PathStyle, upTLS, cfg.Upstream.Timeout)
	proxy, err := s3proxy.NewWithClient(ctx, g.upstream, "")
	if err != nil {
		cancel()
		_ = st.close()
		return nil, fmt.Errorf("state cache upstream: %w", err)
	}
	g.be = &cacheBackend{S3Proxy: proxy, g: g}
	return g, nil
}

// newS3Client builds an aws-sdk-go-v2 client for an S3-compatible endpoint. timeout bounds
// connecting and waiting for response headers, not a whole body.
func newS3Client(endpoint, region, access, secret string, pathStyle, insecure bool, timeout time.Duration) *s3.Client {
	var tc *tls.Config
	if insecure {
		tc = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opted in by configuration
	}
	return newS3ClientTLS(endpoint, region, access, secret, pathStyle, tc, timeout)
}

// upstreamCredentials is the static upstream key when one is configured, else the AWS SDK's
// default credential chain (environment, shared config, web identity, container and instance
// metadata), cached and refreshed by the SDK. The chain is resolved lazily, on the first request.
func upstreamCredentials(ctx context.Context, u UpstreamConfig) (aws.CredentialsProvider, error) {
	if u.AccessKey != "" {
		return credentials.NewStaticCredentialsProvider(u.AccessKey, u.SecretKey, ""), nil
	}
	c, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(u.Region))
	if err != nil {
		return nil, fmt.Errorf("state_cache.upstream: no access_key, and the AWS default credential chain fails: %w", err)
	}
	if c.Credentials == nil {
		return nil, errors.New("state_cache.upstream: no access_key, and the AWS default credential chain has no provider")
	}
	return c.Credentials, nil
}

// newS3ClientTLS is newS3Client with a given client TLS configuration (nil: the defaults).
func newS3ClientTLS(endpoint, region, access, secret string, pathStyle bool, tc *tls.Config, timeout time.Duration) *s3.Client {
	return newS3ClientWith(endpoint, region, credentials.NewStaticCredentialsProvider(access, secret, ""), pathStyle, tc, timeout)
}

// newS3ClientWith is newS3ClientTLS with any credentials provider.
func newS3ClientWith(endpoint, region string, creds aws.CredentialsProvider, pathStyle bool, tc *tls.Config, timeout time.Duration) *s3.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.ResponseHeaderTimeout = timeout
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSClientConfig = tc
	return s3.New(s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: pathStyle,
		Credentials:  creds,
		HTTPClient:   &http.Client{Transport: tr},
		// Checksums only where the operation requires them: the gateway relays bodies it did not sign.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           2,
	})
}

// Backend exposes the versitygw backend (for tests and embedding under another S3 router).
func (g *Gateway) Backend() backend.Backend { return g.be }

// Addr is the address the S3 endpoint listens on once Run started, else "".
func (g *Gateway) Addr() string {
	g.addrMu.Lock()
	defer g.addrMu.Unlock()
	return g.addr
}

// Listening is closed once the S3 endpoint listens and Addr returns its address.
func (g *Gateway) Listening() <-chan struct{} { return g.listening }

// Run serves the S3 endpoint until ctx ends, then shuts down and closes the cache.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.close()
	listen, err := resolveListen(g.cfg.Listen)
	if err != nil {
		return err
	}
	serveOn := listen
	var front *tlsFront
	if g.cfg.TLSCertFile != "" {
		front, err = newTLSFront(listen, g.cfg.TLSCertFile, g.cfg.TLSKeyFile, g.cfg.Peer.CAFile, g.cfg.Peer.AccessKey, g.log)
		if err != nil {
			return err
		}
		defer front.close()
		serveOn = front.backend
		go func() {
			if err := front.serve(); err != nil {
				g.log.Error("state cache TLS front", "err", err)
			}
		}()
	}
	tm := auth.Account{Access: g.cfg.AccessKey, Secret: g.cfg.SecretKey, Role: auth.RoleAdmin}
	peer := auth.Account{Access: g.cfg.Peer.AccessKey, Secret: g.cfg.Peer.SecretKey, Role: auth.RoleAdmin}
	var servers []*s3apiServer
	if front != nil && front.peerBackend != "" {
		// Peer mTLS: the versitygw that serves connections without a verified client
		// certificate does not know the peer credential at all (see tlsFront).
		servers = append(servers,
			&s3apiServer{addr: front.backend, iam: &accounts{byAccess: map[string]auth.Account{tm.Access: tm}}},
			&s3apiServer{addr: front.peerBackend, iam: &accounts{byAccess: map[string]auth.Account{tm.Access: tm, peer.Access: peer}}})
	} else {
		servers = append(servers, &s3apiServer{addr: serveOn, iam: &accounts{byAccess: map[string]auth.Account{tm.Access: tm, peer.Access: peer}}})
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		if err := g.newS3API(s); err != nil {
			return err
		}
	}
	for _, s := range servers {
		go func() { errc <- s.srv.ServeMultiPort([]string{s.addr}) }()
	}
	running := len(servers)
	shutdown := func() error {
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.srv.ShutDown())
		}
		for ; running > 0; running-- {
			<-errc
		}
		return errors.Join(errs...)
	}
	for _, s := range servers {
		select {
		case <-s.ready:
		case err := <-errc:
			running--
			_ = shutdown()
			return fmt.Errorf("state cache gateway on %s: %w", listen, err)
		case <-ctx.Done():
			_ = shutdown()
			return nil
		}
	}
	g.addrMu.Lock()
	first := g.addr == ""
	g.addr = listen
	g.addrMu.Unlock()
	if first {
		close(g.listening)
	}
	g.log.Info("state cache gateway listening", "addr", listen, "upstream", g.cfg.Upstream.Endpoint, "dir", g.cfg.Dir,
		"tls", front != nil, "peer_mtls", front != nil && front.peerBackend != "")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.flushLoop(ctx) }()
	if g.cfg.Janitor.Enabled {
		j := NewJanitor(g.cfg.Janitor, g.live, g.log)
		wg.Add(1)
		go func() { defer wg.Done(); j.Run(ctx) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		running--
		_ = shutdown()
		g.cancel()
		wg.Wait()
		return fmt.Errorf("state cache gateway: %w", err)
	}
	shutErr := shutdown()
	wg.Wait()
	return shutErr
}

// s3apiServer is one versitygw S3 front end of the gateway, serving addr with the accounts iam.
type s3apiServer struct {
	addr  string
	iam   *accounts
	srv   *s3api.S3ApiServer
	ready chan struct{}
}

func (g *Gateway) newS3API(s *s3apiServer) error {
	s.ready = make(chan struct{})
	opts := []s3api.Option{
		s3api.WithConcurrencyLimiter(1024, 1024),
		s3api.WithMpMaxParts(10000),
		s3api.WithQuiet(),
		s3api.WithKeepAlive(),
		s3api.WithDisableACL(),
		s3api.WithHealth("/healthz"),
		s3api.WithOnListen(func() { close(s.ready) }),
	}
	srv, err := s3api.New(g.be, middlewares.RootUserConfig{Access: g.cfg.AccessKey, Secret: g.cfg.SecretKey},
		g.cfg.Region, s.iam, nil, nil, nil, nil, opts...)
	if err != nil {
		return fmt.Errorf("state cache gateway: %w", err)
	}
	s.srv = srv
	return nil
}

func (g *Gateway) flushLoop(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.store.flushAccess()
		}
	}
}

// close stops fills and prefetches and closes the index.
func (g *Gateway) close() {
	g.cancel()
	g.fills.wg.Wait()
	g.prefetch.wg.Wait()
	g.closeIdle(g.upstream)
	g.peersMu.Lock()
	for _, c := range g.peers {
		g.closeIdle(c)
	}
	g.peersMu.Unlock()
	g.metrics.close()
	g.store.flushAccess()
	if err := g.store.close(); err != nil {
		g.log.Warn("state cache: close index", "err", err)
	}
}

func (g *Gateway) closeIdle(c *s3.Client) {
	if hc, ok := c.Options().HTTPClient.(*http.Client); ok {
		hc.CloseIdleConnections()
	}
}

// resolveListen turns port 0 into a concrete free port, because versitygw binds by address
// string and would not tell which port it got.
func resolveListen(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("state cache listen address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("state cache listen address %q: %w", addr, err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a, nil
}

// get serves a read: from disk on a hit, otherwise from a (shared) fill as its bytes arrive.
func (g *Gateway) get(ctx context.Context, bucket, key, rng string, prio int, src *s3.Client, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
	st := g.store
	if out, ok, err := g.getLocal(bucket, key, rng); ok || err != nil {
		if ok {
			g.metrics.request(resultHit)
		}
		return out, err
	}
	fl, started := g.fills.get(bucket, key, prio, src)
	if started {
		g.metrics.request(resultMiss)
	} else {
		g.metrics.request(resultPartial)
	}
	if err := fl.waitMeta(ctx); err != nil {
		return nil, err
	}
	fl.mu.Lock()
	if fl.done {
		fl.mu.Unlock()
		if out, ok, err := g.getLocal(bucket, key, rng); ok || err != nil {
			return out, err
		}
		return nil, fmt.Errorf("state cache: %s/%s vanished after loading", bucket, key)
	}
	if fl.err != nil {
		fl.mu.Unlock()
		return nil, fl.err
	}
	size, have := fl.size, fl.have
	start, length, isRange, err := backend.ParseObjectRange(size, rng)
	if err != nil {
		fl.mu.Unlock()
		return nil, err
	}
	out := &s3.GetObjectOutput{ContentLength: aws.Int64(length), ETag: aws.String(fl.etag), AcceptRanges: aws.String("bytes"),
		LastModified: aws.Time(fl.modTime), Metadata: fl.userMD}
	if fl.ctype != "" {
		out.ContentType = aws.String(fl.ctype)
	}
	if isRange {
		out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
	}
	if start > have+g.cfg.PassthroughDistanceBytes && in != nil {
		// Far ahead of the fill: ask the upstream for just this range rather than wait.
		fl.mu.Unlock()
		dctx, done := g.be.detach(ctx)
		o, err := src.GetObject(dctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String(rng)})
		if err != nil {
			done()
			return nil, upstreamError(err)
		}
		o.Body = &bodyCloser{ReadCloser: o.Body, done: done, served: g.metrics.servedBy(g.sourceOf(src))}
		return o, nil
	}
	f, err := os.Open(fl.tmpPath)
	fl.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("state cache: open loading file: %w", err)
	}
	st.ref(bucket, key)
	out.Body = &fillReader{f: fl, file: f, pos: start, end: start + length, release: func() { st.unref(bucket, key) },
		served: g.metrics.servedBy(g.sourceOf(fl.src))}
	return out, nil
}

// getLocal serves a hit. ok is false on a miss; a corrupt file is dropped and counts as a miss.
func (g *Gateway) getLocal(bucket, key, rng string) (*s3.GetObjectOutput, bool, error) {
	st := g.store
	e, ok := st.acquire(bucket, key)
	if !ok {
		return nil, false, nil
	}
	f, err := st.open(e)
	if err != nil {
		st.unref(bucket, key)
		if errors.Is(err, errCorrupt) {
			g.log.Warn("state cache: corrupt cached object, loading it again", "bucket", bucket, "key", key, "err", err)
		}
		st.remove(bucket, key)
		return nil, false, nil
	}
	if e.Pinned {
		// A prefetch pin lasts until the state is first used.
		st.setPinned(bucket, key, false)
	}
	start, length, isRange, err := backend.ParseObjectRange(e.Size, rng)
	if err != nil {
		_ = f.Close()
		st.unref(bucket, key)
		return nil, true, err
	}
	out := &s3.GetObjectOutput{ContentLength: aws.Int64(length), ETag: aws.String(e.ETag), AcceptRanges: aws.String("bytes"),
		LastModified: aws.Time(e.LastModified), Metadata: e.Metadata}
	if e.ContentType != "" {
		out.ContentType = aws.String(e.ContentType)
	}
	if isRange {
		out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, e.Size))
	}
	out.Body = &cachedBody{r: io.NewSectionReader(f, start, length), f: f, off: start, n: length, release: func() { st.unref(bucket, key) },
		served: g.metrics.servedBy(sourceLocal)}
	return out, true, nil
}

type cachedBody struct {
	r       *io.SectionReader
	f       *os.File
	off, n  int64
	release func()
	served  func(int64) // counts bytes as the client takes them
}

func (c *cachedBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.served(int64(n))
	return n, err
}

// WriteTo lets the HTTP server send a hit with sendfile(2): fasthttp prefers a body's WriteTo,
// and a flushed bufio.Writer hands a LimitedReader of an *os.File down to the TCP connection.
func (c *cachedBody) WriteTo(w io.Writer) (int64, error) {
	n, err := c.writeTo(w)
	c.served(n)
	return n, err
}

func (c *cachedBody) writeTo(w io.Writer) (int64, error) {
	if fl, ok := w.(interface{ Flush() error }); ok {
		if err := fl.Flush(); err != nil {
			return 0, err
		}
	}
	if _, err := c.f.Seek(c.off, io.SeekStart); err != nil {
		return 0, err
	}
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return io.Copy(w, &io.LimitedReader{R: c.f, N: c.n})
	}
	// sendfile pulls pages through a 64 KiB pipe, so a file not in the page cache is read in
	// small synchronous requests. Asking the kernel for the next span ahead (WILLNEED starts the
	// reads and returns) keeps the disk busy with large requests while the current span is sent.
	fd := int(c.f.Fd())
	_ = unix.Fadvise(fd, c.off, min(c.n, sendSpan), unix.FADV_WILLNEED)
	var sent int64
	for sent < c.n {
		span := min(c.n-sent, sendSpan)
		if next := sent + span; next < c.n {
			_ = unix.Fadvise(fd, c.off+next, min(c.n-next, sendSpan), unix.FADV_WILLNEED)
		}
		n, err := rf.ReadFrom(&io.LimitedReader{R: c.f, N: span})
		sent += n
		if err != nil {
			return sent, err
		}
		if n < span {
			return sent, io.ErrUnexpectedEOF
		}
	}
	return sent, nil
}

// sendSpan is how far ahead of sendfile a cache hit asks the kernel to read.
const sendSpan = 8 << 20

func (c *cachedBody) Close() error {
	err := c.f.Close()
	if c.release != nil {
		c.release()
		c.release = nil
	}
	return err
}

// copyLocal gives a CopyObject destination the source's cached bytes (a hard link: same content).
func (g *Gateway) copyLocal(srcBucket, srcKey, bucket, key, etag string) {
	st := g.store
	e, ok := st.peek(srcBucket, srcKey)
	if !ok {
		return
	}
	tmp, err := st.tempFile()
	if err != nil {
		return
	}
	_ = tmp.Close()
	_ = os.Remove(tmp.Name())
	if err := os.Link(st.path(srcBucket, srcKey), tmp.Name()); err != nil {
		return
	}
	ne := e
	ne.Bucket, ne.Key, ne.ETag, ne.Pinned, ne.LastModified = bucket, key, etag, false, time.Time{}
	if err := st.commit(tmp.Name(), ne); err != nil {
		_ = os.Remove(tmp.Name())
	}
}

// Inventory summarises the cache for the agent's report, grouped by checkpoint directory.
func (g *Gateway) Inventory() *tmwardenv1.CacheInventory {
	s := g.store.stats()
	inv := &tmwardenv1.CacheInventory{CapacityBytes: uint64(s.Capacity), UsedBytes: uint64(s.Used), Objects: uint64(s.Objects)}
	if s.Hits+s.Misses > 0 {
		inv.HitRatio = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	groups := map[[2]string]*tmwardenv1.CachedPrefix{}
	for _, e := range g.store.list("", "") {
		p := checkpointPrefix(e.Key)
		k := [2]string{e.Bucket, p}
		cp, ok := groups[k]
		if !ok {
			cp = &tmwardenv1.CachedPrefix{Bucket: e.Bucket, Prefix: p, JobId: e.JobID}
			groups[k] = cp
		}
		cp.Bytes += uint64(e.Size)
		cp.Objects++
	}
	for _, cp := range groups {
		inv.Prefixes = append(inv.Prefixes, cp)
	}
	sort.Slice(inv.Prefixes, func(i, j int) bool {
		a, b := inv.Prefixes[i], inv.Prefixes[j]
		return a.Bucket+"/"+a.Prefix < b.Bucket+"/"+b.Prefix
	})
	return inv
}

// accounts is the gateway's IAM: Flink's credential and the peer credential, nothing else.
type accounts struct {
	byAccess map[string]auth.Account
}

var errReadOnlyIAM = errors.New("the state cache's accounts come from its configuration")

func (a *accounts) CreateAccount(auth.Account) error { return errReadOnlyIAM }
func (a *accounts) GetUserAccount(access string) (auth.Account, error) {
	if acc, ok := a.byAccess[access]; ok {
		return acc, nil
	}
	return auth.Account{}, auth.ErrNoSuchUser
}
func (a *accounts) ResolveAccounts(ids []string) ([]string, error) { return ids, nil }
func (a *accounts) UpdateUserAccount(string, auth.MutableProps) error {
	return errReadOnlyIAM
}
func (a *accounts) DeleteUserAccount(string) error { return errReadOnlyIAM }
func (a *accounts) ListUserAccounts() ([]auth.Account, error) {
	out := make([]auth.Account, 0, len(a.byAccess))
	for _, acc := range a.byAccess {
		out = append(out, acc)
	}
	return out, nil
}
func (a *accounts) Shutdown() error { return nil }
