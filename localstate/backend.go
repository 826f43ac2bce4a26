package localstate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/cespare/xxhash/v2"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/backend/s3proxy"
	"github.com/versity/versitygw/s3err"
	"github.com/versity/versitygw/s3response"
)

// cacheBackend is the versitygw backend behind the gateway: versitygw's S3 proxy backend does
// the upstream calls, and the methods below add the write-through cache around them.
type cacheBackend struct {
	*s3proxy.S3Proxy
	g *Gateway
}

var _ backend.Backend = (*cacheBackend)(nil)

func (b *cacheBackend) String() string { return "tmwarden-state-cache" }

// upstreamError turns an upstream failure into the S3 error the client should see: the
// upstream's own error when it answered, 503 ServiceUnavailable when it could not be reached.
func upstreamError(err error) error {
	if err == nil {
		return nil
	}
	var apiErr s3err.APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		out := s3err.APIError{Code: ae.ErrorCode(), Description: ae.ErrorMessage(), HTTPStatusCode: http.StatusInternalServerError}
		var re *awshttp.ResponseError
		if errors.As(err, &re) {
			out.HTTPStatusCode = re.Response.StatusCode
		}
		if out.Code == "NotFound" && out.HTTPStatusCode == http.StatusNotFound {
			out = s3err.GetAPIError(s3err.ErrNoSuchKey)
		}
		return out
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// Anything else from the upstream client is transport trouble: refused or reset
	// connections, timeouts, retries that could not rewind a streamed body.
	return s3err.APIError{Code: "ServiceUnavailable", HTTPStatusCode: http.StatusServiceUnavailable,
		Description: "The state cache cannot reach the upstream object store; retry later. (" + err.Error() + ")"}
}

// detach gives an upstream call its own context. versitygw hands backends fasthttp's RequestCtx,
// which is recycled for the next request as soon as the handler returns, while net/http may still
// consult a request's context from its dial goroutines; only cancellation is carried over.
func (b *cacheBackend) detach(ctx context.Context) (context.Context, func()) {
	c, cancel := context.WithCancel(b.g.ctx)
	// Done is read now, while the request is live; fasthttp's RequestCtx must not be touched later.
	if reqDone := ctx.Done(); reqDone != nil {
		go func() {
			select {
			case <-reqDone:
				cancel()
			case <-c.Done():
			}
		}()
	}
	return c, cancel
}

// bodyCloser ends a detached context when the streamed body is closed, and counts the bytes
// the client reads from it as served.
type bodyCloser struct {
	io.ReadCloser
	done   func()
	served func(int64)
}

func (c *bodyCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if c.served != nil {
		c.served(int64(n))
	}
	return n, err
}

func (c *bodyCloser) Close() error {
	err := c.ReadCloser.Close()
	c.done()
	return err
}

func isInvalidRange(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.Response.StatusCode == http.StatusRequestedRangeNotSatisfiable
}

// countingTee copies what the upstream PUT reads into the cache's temp file and hashes it.
type countingTee struct {
	r    io.Reader
	w    *os.File
	h    *xxhash.Digest
	n    int64
	werr error
}

func (t *countingTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 && t.werr == nil {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.werr = werr
		}
		_, _ = t.h.Write(p[:n])
		t.n += int64(n)
	}
	return n, err
}

func (b *cacheBackend) PutObject(ctx context.Context, in s3response.PutObjectInput) (s3response.PutObjectOutput, error) {
	ctx, done := b.detach(ctx)
	defer done()
	st := b.g.store
	bucket, key := strings.Clone(aws.ToString(in.Bucket)), strings.Clone(aws.ToString(in.Key))
	tmp, err := st.tempFile()
	if err != nil {
		// The cache is an optimisation: the write still goes through.
		b.g.log.Warn("state cache: no local copy of write", "key", key, "err", err)
		out, perr := b.S3Proxy.PutObject(ctx, in)
		return out, upstreamError(perr)
	}
	st.ref(bucket, key)
	defer st.unref(bucket, key)
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()
	tee := &countingTee{r: in.Body, w: tmp, h: xxhash.New()}
	in.Body = tee
	if noChecksumValue(in.ChecksumCRC32, in.ChecksumCRC32C, in.ChecksumCRC64NVME, in.ChecksumSHA1, in.ChecksumSHA256) {
		// A trailing checksum was already verified by the front end as the body arrived; the
		// relayed body is unseekable, so the upstream call cannot announce one up front.
		in.ChecksumAlgorithm = ""
	}
	out, err := b.S3Proxy.PutObject(ctx, in)
	if err != nil {
		return out, upstreamError(err)
	}
	// The upstream has it: only now is the local copy kept (write-through).
	if tee.werr == nil && (in.ContentLength == nil || *in.ContentLength == tee.n) {
		e := entry{Bucket: bucket, Key: key, Size: tee.n, ETag: out.ETag, XXH64: tee.h.Sum64(),
			ContentType: aws.ToString(in.ContentType), Metadata: in.Metadata}
		if err := tmp.Close(); err == nil {
			if err := st.commit(tmp.Name(), e); err != nil {
				b.g.log.Warn("state cache: keep local copy", "key", key, "err", err)
			}
		}
	} else {
		st.remove(bucket, key)
	}
	return out, nil
}

func noChecksumValue(vals ...*string) bool {
	for _, v := range vals {
		if aws.ToString(v) != "" {
			return false
		}
	}
	return true
}

func (b *cacheBackend) partPath(uploadID string, part int32) string {
	return filepath.Join(b.g.store.dir, "parts", safeName(uploadID), strconv.Itoa(int(part)))
}

func safeName(s string) string {
	return strings.NewReplacer("/", "_", "\\", "_", "..", "_").Replace(s)
}

func (b *cacheBackend) UploadPart(ctx context.Context, in *s3.UploadPartInput) (*s3.UploadPartOutput, error) {
	ctx, done := b.detach(ctx)
	defer done()
	p := b.partPath(aws.ToString(in.UploadId), aws.ToInt32(in.PartNumber))
	var tee *countingTee
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err == nil {
		if f, err := os.Create(p + ".tmp"); err == nil {
			tee = &countingTee{r: in.Body, w: f, h: xxhash.New()}
			in.Body = tee
			if noChecksumValue(in.ChecksumCRC32, in.ChecksumCRC32C, in.ChecksumCRC64NVME, in.ChecksumSHA1, in.ChecksumSHA256) {
				in.ChecksumAlgorithm = ""
			}
			defer f.Close()
		}
	}
	out, err := b.S3Proxy.UploadPart(ctx, in)
	if err != nil {
		_ = os.Remove(p + ".tmp")
		return out, upstreamError(err)
	}
	if tee != nil && tee.werr == nil && (in.ContentLength == nil || *in.ContentLength == tee.n) {
		_ = os.Rename(p+".tmp", p)
	} else {
		_ = os.Remove(p + ".tmp")
	}
	return out, nil
}

func (b *cacheBackend) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput) (s3response.CompleteMultipartUploadResult, string, error) {
	ctx, done := b.detach(ctx)
	defer done()
	bucket, key, id := strings.Clone(aws.ToString(in.Bucket)), strings.Clone(aws.ToString(in.Key)), strings.Clone(aws.ToString(in.UploadId))
	st := b.g.store
	st.ref(bucket, key)
	defer st.unref(bucket, key)
	res, ver, err := b.S3Proxy.CompleteMultipartUpload(ctx, in)
	if err != nil {
		return res, ver, upstreamError(err)
	}
	defer os.RemoveAll(filepath.Join(st.dir, "parts", safeName(id)))
	st.remove(bucket, key)
	if in.MultipartUpload == nil {
		return res, ver, nil
	}
	if err := b.assemble(bucket, key, aws.ToString(res.ETag), id, in.MultipartUpload.Parts); err != nil {
		// Not cached now; a later read loads it lazily.
		b.g.log.Debug("state cache: multipart upload not kept locally", "key", key, "err", err)
	}
	return res, ver, nil
}

func (b *cacheBackend) assemble(bucket, key, etag, uploadID string, parts []types.CompletedPart) error {
	st := b.g.store
	tmp, err := st.tempFile()
	if err != nil {
		return err
	}
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()
	h := xxhash.New()
	w := io.MultiWriter(tmp, h)
	var size int64
	for _, p := range parts {
		f, err := os.Open(b.partPath(uploadID, aws.ToInt32(p.PartNumber)))
		if err != nil {
			return fmt.Errorf("part %d: %w", aws.ToInt32(p.PartNumber), err)
		}
		n, err := io.Copy(w, f)
		_ = f.Close()
		if err != nil {
			return err
		}
		size += n
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return st.commit(tmp.Name(), entry{Bucket: bucket, Key: key, Size: size, ETag: etag, XXH64: h.Sum64()})
}

func (b *cacheBackend) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput) error {
	ctx, done := b.detach(ctx)
	defer done()
	err := b.S3Proxy.AbortMultipartUpload(ctx, in)
	_ = os.RemoveAll(filepath.Join(b.g.store.dir, "parts", safeName(aws.ToString(in.UploadId))))
	return upstreamError(err)
}

func (b *cacheBackend) HeadObject(ctx context.Context, in *s3.HeadObjectInput) (*s3.HeadObjectOutput, error) {
	ctx, done := b.detach(ctx)
	defer done()
	if plainRead(in.VersionId, in.PartNumber, in.IfMatch, in.IfNoneMatch) && in.IfModifiedSince == nil && in.IfUnmodifiedSince == nil {
		if e, ok := b.g.store.peek(aws.ToString(in.Bucket), aws.ToString(in.Key)); ok {
			start, length, isRange, err := backend.ParseObjectRange(e.Size, aws.ToString(in.Range))
			if err != nil {
				return nil, err
			}
			out := &s3.HeadObjectOutput{ContentLength: aws.Int64(length), ETag: aws.String(e.ETag),
				LastModified: aws.Time(e.LastModified), AcceptRanges: aws.String("bytes"), Metadata: e.Metadata,
				StorageClass: types.StorageClassStandard}
			if e.ContentType != "" {
				out.ContentType = aws.String(e.ContentType)
			}
			if isRange {
				out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, e.Size))
			}
			return out, nil
		}
	}
	out, err := b.S3Proxy.HeadObject(ctx, in)
	return out, upstreamError(err)
}

func plainRead(version *string, part *int32, ifMatch, ifNoneMatch *string) bool {
	return aws.ToString(version) == "" && aws.ToInt32(part) == 0 && aws.ToString(ifMatch) == "" && aws.ToString(ifNoneMatch) == ""
}

func (b *cacheBackend) GetObject(ctx context.Context, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
	plain := plainRead(in.VersionId, in.PartNumber, nil, in.IfNoneMatch) &&
		(in.IfModifiedSince == nil || in.IfModifiedSince.IsZero()) && (in.IfUnmodifiedSince == nil || in.IfUnmodifiedSince.IsZero())
	if im := aws.ToString(in.IfMatch); plain && im != "" {
		// If-Match is how a fill (here or on a peer) pins later chunks to one version: answer
		// it from the cache when the cached copy is that version.
		e, ok := b.g.store.peek(aws.ToString(in.Bucket), aws.ToString(in.Key))
		plain = ok && strings.Trim(im, `"`) == strings.Trim(e.ETag, `"`)
	}
	if !plain {
		dctx, done := b.detach(ctx)
		out, err := b.S3Proxy.GetObject(dctx, in)
		if err != nil {
			done()
			return out, upstreamError(err)
		}
		out.Body = &bodyCloser{ReadCloser: out.Body, done: done, served: b.g.metrics.servedBy(sourceUpstream)}
		b.g.metrics.request(resultMiss) // a conditional or versioned read: the upstream answers it
		return out, nil
	}
	return b.g.get(ctx, strings.Clone(aws.ToString(in.Bucket)), strings.Clone(aws.ToString(in.Key)), aws.ToString(in.Range), priorityOnDemand, b.g.upstream, in)
}

func (b *cacheBackend) CopyObject(ctx context.Context, in s3response.CopyObjectInput) (s3response.CopyObjectOutput, error) {
	ctx, done := b.detach(ctx)
	defer done()
	bucket, key := strings.Clone(aws.ToString(in.Bucket)), strings.Clone(aws.ToString(in.Key))
	// Owners are the gateway's accounts, which mean nothing to the upstream.
	in.ExpectedBucketOwner, in.ExpectedSourceBucketOwner = nil, nil
	out, err := b.S3Proxy.CopyObject(ctx, in)
	if err != nil {
		return out, upstreamError(err)
	}
	b.g.store.remove(bucket, key)
	srcBucket, srcKey, _, perr := backend.ParseCopySource(aws.ToString(in.CopySource))
	if perr == nil && out.CopyObjectResult != nil && in.MetadataDirective != types.MetadataDirectiveReplace {
		b.g.copyLocal(srcBucket, srcKey, bucket, key, aws.ToString(out.CopyObjectResult.ETag))
	}
	return out, nil
}

func (b *cacheBackend) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput) (*s3.DeleteObjectOutput, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.DeleteObject(ctx, in)
	if err != nil {
		return out, upstreamError(err)
	}
	b.g.store.remove(aws.ToString(in.Bucket), aws.ToString(in.Key))
	return out, nil
}

func (b *cacheBackend) DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput) (s3response.DeleteResult, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.DeleteObjects(ctx, in)
	if err != nil {
		return out, upstreamError(err)
	}
	for _, d := range out.Deleted {
		b.g.store.remove(aws.ToString(in.Bucket), aws.ToString(d.Key))
	}
	return out, nil
}

// The remaining calls go straight to the upstream; only their errors are translated.

func (b *cacheBackend) ListObjects(ctx context.Context, in *s3.ListObjectsInput) (s3response.ListObjectsResult, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.ListObjects(ctx, in)
	return out, upstreamError(err)
}

func (b *cacheBackend) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input) (s3response.ListObjectsV2Result, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.ListObjectsV2(ctx, in)
	return out, upstreamError(err)
}

func (b *cacheBackend) HeadBucket(ctx context.Context, in *s3.HeadBucketInput) (*s3.HeadBucketOutput, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.HeadBucket(ctx, in)
	return out, upstreamError(err)
}

func (b *cacheBackend) CreateMultipartUpload(ctx context.Context, in s3response.CreateMultipartUploadInput) (s3response.InitiateMultipartUploadResult, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.CreateMultipartUpload(ctx, in)
	return out, upstreamError(err)
}

func (b *cacheBackend) ListBuckets(ctx context.Context, in s3response.ListBucketsInput) (s3response.ListAllMyBucketsResult, error) {
	ctx, done := b.detach(ctx)
	defer done()
	out, err := b.S3Proxy.ListBuckets(ctx, in)
	return out, upstreamError(err)
}

// Object lock and versioning are enforced by the upstream on the writes themselves; versitygw
// would otherwise ask the upstream for both on every PUT and DELETE, two extra round trips.

func (b *cacheBackend) GetObjectLockConfiguration(context.Context, string) ([]byte, error) {
	return nil, s3err.GetAPIError(s3err.ErrObjectLockConfigurationNotFound)
}

func (b *cacheBackend) GetBucketVersioning(context.Context, string) (s3response.GetBucketVersioningOutput, error) {
	return s3response.GetBucketVersioningOutput{}, nil
}
