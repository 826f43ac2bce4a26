package localstate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/s3api"
	"github.com/versity/versitygw/s3api/middlewares"
)

// The tests run real servers: the upstream is versitygw's posix backend (an S3-compatible object
// store on a real directory) in a child process of the test binary, so it can be killed and
// restarted; the gateway runs in-process, or as a child process where a test kills it with -9.

const (
	upAccess, upSecret = "upstream-key", "upstream-secret-0123456789"
	gwAccess, gwSecret = "flink-key", "flink-secret-0123456789"
	testBucket         = "checkpoints"
	helperEnv          = "TMWARDEN_LOCALSTATE_HELPER"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "upstream":
		if err := runUpstreamHelper(); err != nil {
			fmt.Fprintln(os.Stderr, "upstream helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "gateway":
		if err := runGatewayHelper(); err != nil {
			fmt.Fprintln(os.Stderr, "gateway helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

// runUpstreamHelper serves versitygw's posix backend on TMW_ADDR over TMW_DIR, optionally
// rate-limiting object reads to TMW_RATE bytes per second (an object store's bandwidth).
func runUpstreamHelper() error {
	ctx, cancel := signalContext()
	defer cancel()
	var be interface {
		s3apiBackend
	}
	p, err := posix.New(os.Getenv("TMW_DIR"), meta.XattrMeta{}, posix.PosixOpts{CopyObjectThreshold: 5 << 30, Concurrency: 64})
	if err != nil {
		return err
	}
	be = p
	var rate int64
	_, _ = fmt.Sscan(os.Getenv("TMW_RATE"), &rate)
	if rate > 0 {
		be = &throttled{Posix: p, lim: &limiter{rate: float64(rate)}}
	}
	srv, err := s3api.New(be, middlewares.RootUserConfig{Access: upAccess, Secret: upSecret}, "us-east-1",
		&accounts{byAccess: map[string]authAccount{upAccess: rootAccount(upAccess, upSecret)}}, nil, nil, nil, nil,
		s3api.WithQuiet(), s3api.WithKeepAlive(), s3api.WithConcurrencyLimiter(1024, 1024), s3api.WithMpMaxParts(10000))
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeMultiPort([]string{os.Getenv("TMW_ADDR")}) }()
	select {
	case <-ctx.Done():
		// Idle keep-alive connections would hold a graceful shutdown for its full timeout.
		go func() { _ = srv.ShutDown() }()
		time.Sleep(200 * time.Millisecond)
		return nil
	case err := <-errc:
		return err
	}
}

// runGatewayHelper runs a gateway configured by TMW_CONFIG (JSON) until SIGTERM or SIGKILL.
func runGatewayHelper() error {
	ctx, cancel := signalContext()
	defer cancel()
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv("TMW_CONFIG")), &cfg); err != nil {
		return err
	}
	g, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	a, err := resolveListen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func waitTCP(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not start listening within %s", addr, within)
}

// child is a helper process of this test binary.
type child struct {
	t    testing.TB
	cmd  *exec.Cmd
	env  []string
	addr string
	mu   sync.Mutex
	done chan struct{}
}

func startChild(t testing.TB, addr string, env ...string) *child {
	t.Helper()
	c := &child{t: t, env: env, addr: addr}
	c.start()
	t.Cleanup(c.stop)
	return c
}

func (c *child) start() {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	waitTCP(c.t, c.addr, 20*time.Second)
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	c.mu.Lock()
	c.cmd = nil
	c.mu.Unlock()
}

func (c *child) stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}

type upstream struct {
	*child
	endpoint string
	dir      string
	client   *s3.Client
}

// startUpstream runs an S3 upstream (versitygw posix) with the test bucket; rate 0 = unthrottled.
func startUpstream(t testing.TB, rate int64) *upstream {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	c := startChild(t, addr, helperEnv+"=upstream", "TMW_ADDR="+addr, "TMW_DIR="+dir, fmt.Sprintf("TMW_RATE=%d", rate))
	u := &upstream{child: c, endpoint: "http://" + addr, dir: dir}
	u.client = newS3Client(u.endpoint, "us-east-1", upAccess, upSecret, true, false, 30*time.Second)
	if _, err := u.client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("create bucket on upstream: %v", err)
	}
	return u
}

func testConfig(t testing.TB, up *upstream) Config {
	return Config{
		Enabled: true, Listen: "127.0.0.1:0", AccessKey: gwAccess, SecretKey: gwSecret,
		Dir: t.TempDir(), CapacityBytes: 4 << 30,
		Upstream: UpstreamConfig{Endpoint: up.endpoint, AccessKey: upAccess, SecretKey: upSecret, Timeout: 5 * time.Second},
	}
}

// startGateway runs a gateway in-process until the test ends.
func startGateway(t testing.TB, cfg Config, opts ...Option) (*Gateway, *s3.Client) {
	t.Helper()
	g, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for g.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatal("gateway did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitTCP(t, g.Addr(), 10*time.Second)
	return g, gatewayClient("http://"+g.Addr(), gwAccess, gwSecret)
}

func gatewayClient(endpoint, access, secret string) *s3.Client {
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: staticCreds(access, secret), RetryMaxAttempts: 1})
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func putObject(t testing.TB, c *s3.Client, key string, data []byte) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func getObject(t testing.TB, c *s3.Client, key, rng string) []byte {
	t.Helper()
	b, err := tryGet(c, key, rng)
	if err != nil {
		t.Fatalf("get %s %s: %v", key, rng, err)
	}
	return b
}

func tryGet(c *s3.Client, key, rng string) ([]byte, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	out, err := c.GetObject(context.Background(), in)
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// limiter paces reads to a byte rate shared by all connections.
type limiter struct {
	mu   sync.Mutex
	rate float64
	next time.Time
}

func (l *limiter) wait(n int) {
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	at := l.next
	l.mu.Unlock()
	time.Sleep(time.Until(at))
}

type throttledBody struct {
	io.ReadCloser
	lim *limiter
}

func (b *throttledBody) Read(p []byte) (int, error) {
	if len(p) > 256<<10 {
		p = p[:256<<10]
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.lim.wait(n)
	}
	return n, err
}

func (t *throttled) GetObject(ctx context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
	out, err := t.Posix.GetObject(ctx, in)
	if err == nil && out.Body != nil {
		out.Body = &throttledBody{ReadCloser: out.Body, lim: t.lim}
	}
	return out, err
}
