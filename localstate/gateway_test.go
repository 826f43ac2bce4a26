package localstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/minio/minio-go/v7"
	mcreds "github.com/minio/minio-go/v7/pkg/credentials"
)

const jobID = "0123456789abcdef0123456789abcdef"

func ckptKey(rest string) string { return "flink/" + jobID + "/" + rest }

func upstreamHas(t *testing.T, up *upstream, key string, want []byte) {
	t.Helper()
	got, err := tryGet(up.client, key, "")
	if err != nil {
		t.Fatalf("upstream get %s: %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("upstream %s: %d bytes differ from the %d written", key, len(got), len(want))
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestAWSClientRoundTrip runs every operation Flink's S3 filesystems use through the gateway
// with aws-sdk-go-v2 and checks the upstream and the cache after each write.
func TestAWSClientRoundTrip(t *testing.T) {
	up := startUpstream(t, 0)
	g, c := startGateway(t, testConfig(t, up))
	ctx := context.Background()

	data := randomBytes(t, 3<<20+17)
	key := ckptKey("shared/8f1c3d2e-uuid")
	putObject(t, c, key, data)
	upstreamHas(t, up, key, data)
	if _, ok := g.store.peek(testBucket, key); !ok {
		t.Fatal("write-through did not keep a local copy")
	}
	if got := getObject(t, c, key, ""); !bytes.Equal(got, data) {
		t.Fatal("full GET differs")
	}
	for _, r := range []struct {
		rng        string
		start, end int
	}{
		{"bytes=0-0", 0, 1}, {"bytes=1-1", 1, 2}, {"bytes=12345-67890", 12345, 67891},
		{"bytes=1048575-", 1048575, len(data)}, {"bytes=-777", len(data) - 777, len(data)},
		{fmt.Sprintf("bytes=%d-%d", len(data)-3, len(data)+1000), len(data) - 3, len(data)},
	} {
		if got := getObject(t, c, key, r.rng); !bytes.Equal(got, data[r.start:r.end]) {
			t.Fatalf("range %s: got %d bytes, want %d", r.rng, len(got), r.end-r.start)
		}
	}
	if _, err := tryGet(c, key, fmt.Sprintf("bytes=%d-", len(data)+5)); apiCode(err) != "InvalidRange" {
		t.Fatalf("range past the end: want InvalidRange, got %v", err)
	}

	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil || aws.ToInt64(head.ContentLength) != int64(len(data)) {
		t.Fatalf("head: %v %v", err, head)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String("nope")}); err == nil {
		t.Fatal("head of a missing key succeeded")
	}
	if _, err := tryGet(c, "nope", ""); apiCode(err) != "NoSuchKey" {
		t.Fatalf("get of a missing key: want NoSuchKey, got %v", err)
	}

	// CopyObject + DeleteObject is Flink's rename.
	dst := ckptKey("chk-7/_metadata")
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String(testBucket), Key: aws.String(dst),
		CopySource: aws.String(testBucket + "/" + key)}); err != nil {
		t.Fatalf("copy: %v", err)
	}
	upstreamHas(t, up, dst, data)
	if got := getObject(t, c, dst, "bytes=5-9"); !bytes.Equal(got, data[5:10]) {
		t.Fatal("copied object range differs")
	}

	for i := 0; i < 3; i++ {
		putObject(t, c, ckptKey(fmt.Sprintf("chk-8/part-%d", i)), []byte(fmt.Sprint("p", i)))
	}
	v2, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(ckptKey("chk-8/"))})
	if err != nil || len(v2.Contents) != 3 {
		t.Fatalf("list v2: %v, %d objects", err, len(v2.Contents))
	}
	v1, err := c.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String(testBucket), Prefix: aws.String("flink/" + jobID + "/"), Delimiter: aws.String("/")})
	if err != nil || len(v1.CommonPrefixes) != 3 {
		t.Fatalf("list v1 with delimiter: %v, prefixes %d", err, len(v1.CommonPrefixes))
	}

	del, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(testBucket), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String(ckptKey("chk-8/part-0"))}, {Key: aws.String(ckptKey("chk-8/part-1"))}}}})
	if err != nil || len(del.Deleted) != 2 {
		t.Fatalf("delete objects: %v %v", err, del)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(dst)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.store.peek(testBucket, dst); ok {
		t.Fatal("deleted object still cached")
	}
	if _, err := tryGet(up.client, dst, ""); apiCode(err) != "NoSuchKey" {
		t.Fatalf("deleted object still upstream: %v", err)
	}
	v2, _ = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(ckptKey("chk-8/"))})
	if len(v2.Contents) != 1 {
		t.Fatalf("after deletes %d objects remain, want 1", len(v2.Contents))
	}

	inv := g.Inventory()
	if inv.Objects == 0 || len(inv.Prefixes) == 0 || inv.Prefixes[0].JobId != jobID {
		t.Fatalf("inventory: %+v", inv)
	}
}

// TestMinioClient covers minio-go: its PUT over plain HTTP uses aws-chunked SigV4 streaming
// bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), and it lists with V1 on request.
func TestMinioClient(t *testing.T) {
	up := startUpstream(t, 0)
	g, _ := startGateway(t, testConfig(t, up))
	mc, err := minio.New(g.Addr(), &minio.Options{Creds: mcreds.NewStaticV4(gwAccess, gwSecret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := randomBytes(t, 6<<20+3)
	key := ckptKey("chk-3/minio-obj")
	// Unknown size forces streaming chunked upload (multipart above the part size).
	if _, err := mc.PutObject(ctx, testBucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("minio put: %v", err)
	}
	small := []byte("operator state")
	if _, err := mc.PutObject(ctx, testBucket, key+"-small", io.NopCloser(bytes.NewReader(small)), int64(len(small)),
		minio.PutObjectOptions{SendContentMd5: true}); err != nil {
		t.Fatalf("minio small put: %v", err)
	}
	upstreamHas(t, up, key, data)
	if _, ok := g.store.peek(testBucket, key); !ok {
		t.Fatal("minio upload not cached")
	}
	opts := minio.GetObjectOptions{}
	_ = opts.SetRange(4097, 1<<20+13)
	obj, err := mc.GetObject(ctx, testBucket, key, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data[4097:1<<20+14]) {
		t.Fatalf("minio ranged get: %v (%d bytes)", err, len(got))
	}
	var keys []string
	for o := range mc.ListObjects(ctx, testBucket, minio.ListObjectsOptions{Prefix: "flink/", Recursive: true, UseV1: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != key+","+key+"-small" {
		t.Fatalf("list v1: %v", keys)
	}
	if _, err := mc.CopyObject(ctx, minio.CopyDestOptions{Bucket: testBucket, Object: key + "-copy"},
		minio.CopySrcOptions{Bucket: testBucket, Object: key + "-small"}); err != nil {
		t.Fatal(err)
	}
	objs := make(chan minio.ObjectInfo, 2)
	objs <- minio.ObjectInfo{Key: key + "-copy"}
	objs <- minio.ObjectInfo{Key: key + "-small"}
	close(objs)
	for e := range mc.RemoveObjects(ctx, testBucket, objs, minio.RemoveObjectsOptions{}) {
		t.Fatalf("remove objects: %v", e.Err)
	}
	if _, err := mc.StatObject(ctx, testBucket, key+"-small", minio.StatObjectOptions{}); err == nil {
		t.Fatal("removed object still there")
	}
}

// TestLazyLoadSharedFill reads objects that only the upstream has: concurrent readers of one
// object share one fill and get the right bytes, ranged reads at odd offsets work while loading.
func TestLazyLoadSharedFill(t *testing.T) {
	// The fill takes about 0.4 s (6 MiB at 16 MiB/s, in 1 MiB chunks), so the six reads overlap
	// it. Bytes are what the race detector makes slow (every copy is checked), so the object is
	// no bigger than that needs.
	up := startUpstream(t, 16<<20)
	cfg := testConfig(t, up)
	cfg.FetchChunkBytes = 1 << 20
	g, c := startGateway(t, cfg)
	data := randomBytes(t, 6<<20+5)
	key := ckptKey("shared/lazy")
	putObject(t, up.client, key, data)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := ""
			want := data
			if i%2 == 1 {
				s, e := 1000*i+1, 3<<20+i*7
				rng, want = fmt.Sprintf("bytes=%d-%d", s, e), data[s:e+1]
			}
			got, err := tryGet(c, key, rng)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, want) {
				errs <- fmt.Errorf("reader %d: %d bytes differ", i, len(got))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Wait for the background fill to finish and check the cached copy.
	if f, ok := g.fills.running(testBucket, key); ok {
		if err := f.waitDone(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	e, ok := g.store.peek(testBucket, key)
	if !ok || e.Size != int64(len(data)) {
		t.Fatalf("lazily loaded object not cached: %+v", e)
	}
	if s := g.store.stats(); s.Misses == 0 {
		t.Fatal("no miss counted")
	}
	if n := g.fills.started.Load(); n != 1 {
		t.Fatalf("%d fills for one object read by six clients, want 1", n)
	}
}

// TestCorruptCacheFileIsFetchedAgain flips a byte in a cached file.
func TestCorruptCacheFileIsFetchedAgain(t *testing.T) {
	up := startUpstream(t, 0)
	g, c := startGateway(t, testConfig(t, up))
	data := randomBytes(t, 1<<20)
	key := ckptKey("shared/corrupt-me")
	putObject(t, c, key, data)
	_ = getObject(t, c, key, "") // verified once
	p := g.store.path(testBucket, key)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{data[4242] ^ 0xff}, 4242); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if got := getObject(t, c, key, "bytes=4000-4999"); !bytes.Equal(got, data[4000:5000]) {
		t.Fatal("served corrupt bytes")
	}
	if got := getObject(t, c, key, ""); !bytes.Equal(got, data) {
		t.Fatal("object not fetched again correctly")
	}
	if f, ok := g.fills.running(testBucket, key); ok {
		_ = f.waitDone(context.Background())
	}
	raw, err := os.ReadFile(g.store.path(testBucket, key))
	if err != nil || !bytes.Equal(raw, data) {
		t.Fatalf("cache file not repaired: %v", err)
	}
}

// TestBadSignaturesRefused signs with a wrong secret and an unknown key.
func TestBadSignaturesRefused(t *testing.T) {
	up := startUpstream(t, 0)
	g, c := startGateway(t, testConfig(t, up))
	putObject(t, c, ckptKey("chk-1/_metadata"), []byte("meta"))
	bad := gatewayClient("http://"+g.Addr(), gwAccess, "wrong-secret")
	if _, err := tryGet(bad, ckptKey("chk-1/_metadata"), ""); apiCode(err) != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: want SignatureDoesNotMatch, got %v", err)
	}
	if _, err := bad.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String("x"), Body: strings.NewReader("x")}); err == nil {
		t.Fatal("PUT with a bad signature accepted")
	}
	unknown := gatewayClient("http://"+g.Addr(), "nobody", gwSecret)
	if _, err := tryGet(unknown, ckptKey("chk-1/_metadata"), ""); apiCode(err) != "InvalidAccessKeyId" {
		t.Fatalf("unknown key: want InvalidAccessKeyId, got %v", err)
	}
	// The upstream credential is the agent's own; it does not open the gateway.
	upCred := gatewayClient("http://"+g.Addr(), upAccess, upSecret)
	if _, err := tryGet(upCred, ckptKey("chk-1/_metadata"), ""); err == nil {
		t.Fatal("upstream credential accepted by the gateway")
	}
}

// TestUpstreamOutage stops the upstream: cached reads keep working, everything else gets 503
// ServiceUnavailable, and the gateway recovers when the upstream is back.
func TestUpstreamOutage(t *testing.T) {
	up := startUpstream(t, 0)
	_, c := startGateway(t, testConfig(t, up))
	cached := randomBytes(t, 2<<20)
	putObject(t, c, ckptKey("shared/cached"), cached)
	uncached := randomBytes(t, 1<<20)
	putObject(t, up.client, ckptKey("shared/uncached"), uncached)

	up.kill()
	if got := getObject(t, c, ckptKey("shared/cached"), "bytes=10-20"); !bytes.Equal(got, cached[10:21]) {
		t.Fatal("cached read failed during outage")
	}
	if _, err := tryGet(c, ckptKey("shared/uncached"), ""); apiCode(err) != "ServiceUnavailable" {
		t.Fatalf("uncached read during outage: want ServiceUnavailable, got %v", err)
	}
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(ckptKey("chk-2/x")), Body: bytes.NewReader([]byte("x"))})
	if apiCode(err) != "ServiceUnavailable" {
		t.Fatalf("write during outage: want ServiceUnavailable, got %v", err)
	}
	if _, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(testBucket)}); apiCode(err) != "ServiceUnavailable" {
		t.Fatalf("list during outage: want ServiceUnavailable, got %v", err)
	}

	up.start()
	putObject(t, c, ckptKey("chk-2/x"), []byte("x"))
	if got := getObject(t, c, ckptKey("shared/uncached"), ""); !bytes.Equal(got, uncached) {
		t.Fatal("read after recovery differs")
	}
}

// TestSchedulerOnDemandFirst: with every fetch slot busy, an on-demand read waiting behind
// prefetches gets the next free slot.
func TestSchedulerOnDemandFirst(t *testing.T) {
	s := newScheduler(1)
	ctx := context.Background()
	if err := s.acquire(ctx, 0); err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	var wg sync.WaitGroup
	start := func(prio int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.acquire(ctx, prio); err != nil {
				t.Error(err)
				return
			}
			order <- prio
			s.release()
		}()
	}
	start(1)
	start(2)
	for waiting(s) < 2 {
		runtime.Gosched()
	}
	start(priorityOnDemand)
	for waiting(s) < 3 {
		runtime.Gosched()
	}
	s.release()
	wg.Wait()
	close(order)
	var got []int
	for p := range order {
		got = append(got, p)
	}
	if len(got) != 3 || got[0] != priorityOnDemand || got[1] != 2 || got[2] != 1 {
		t.Fatalf("grant order %v, want on-demand, then prefetch priority 2, then 1", got)
	}
}

func waiting(s *scheduler) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters)
}
