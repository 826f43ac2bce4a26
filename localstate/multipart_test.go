//go:build !race

// TestMultipartOver100MiB moves 105 MiB through three S3 stacks (the SDK, the gateway, the
// upstream), and the race detector checks every byte copied: a minute of CPU under it, eight
// seconds without, for a test with nothing concurrent in it. make test runs it in its non-race
// pass.

package localstate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestMultipartOver100MiB uploads 105 MiB in three parts and reads it back at odd offsets.
func TestMultipartOver100MiB(t *testing.T) {
	up := startUpstream(t, 0)
	g, c := startGateway(t, testConfig(t, up))
	ctx := context.Background()
	key := ckptKey("shared/big-sst")
	const part = 35 << 20
	data := randomBytes(t, 3*part)
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	var parts []types.CompletedPart
	for i := 0; i < 3; i++ {
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key), UploadId: mp.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(data[i*part : (i+1)*part])})
		if err != nil {
			t.Fatalf("upload part %d: %v", i+1, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		UploadId: mp.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatal(err)
	}
	upstreamHas(t, up, key, data)
	if e, ok := g.store.peek(testBucket, key); !ok || e.Size != int64(len(data)) {
		t.Fatalf("multipart upload not kept locally: %+v %v", e, ok)
	}
	for _, r := range [][2]int{{part - 1, part + 1}, {77777, 77777 + 3333333}, {len(data) - 99, len(data) - 1}} {
		if got := getObject(t, c, key, fmt.Sprintf("bytes=%d-%d", r[0], r[1])); !bytes.Equal(got, data[r[0]:r[1]+1]) {
			t.Fatalf("range %v differs", r)
		}
	}
	// An aborted upload leaves nothing behind.
	mp2, _ := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key + "-aborted")})
	if _, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(key + "-aborted"), UploadId: mp2.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(data[:1<<20])}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key + "-aborted"), UploadId: mp2.UploadId}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(g.store.dir + "/parts"); len(ents) != 0 {
		t.Fatalf("part files left after abort: %d", len(ents))
	}
}
