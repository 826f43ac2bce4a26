package localstate

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tmwarden/tmwarden/mtls/mtlstest"
)

func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	return mtlstest.NewCA(t, "test CA").Leaf(t, "127.0.0.1")
}

// onlyReader hides Seek so the SDK must stream the body (aws-chunked with a checksum trailer).
type onlyReader struct{ io.Reader }

// TestTLSAndChecksumTrailer serves the gateway over TLS and uploads with aws-sdk-go-v2's
// streaming aws-chunked encoding and a CRC32 trailer, as the SDK does for unseekable bodies.
func TestTLSAndChecksumTrailer(t *testing.T) {
	up := startUpstream(t, 0)
	cfg := testConfig(t, up)
	cfg.TLSCertFile, cfg.TLSKeyFile = selfSigned(t)
	g, _ := startGateway(t, cfg)
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String("https://" + g.Addr()), UsePathStyle: true,
		Credentials: staticCreds(gwAccess, gwSecret), RetryMaxAttempts: 1,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}) //nolint:gosec // test certificate
	data := randomBytes(t, 5<<20+11)
	key := ckptKey("chk-4/trailer")
	_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		Body: onlyReader{bytes.NewReader(data)}, ContentLength: aws.Int64(int64(len(data))), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		t.Fatalf("streaming PUT with checksum trailer: %v", err)
	}
	upstreamHas(t, up, key, data)
	if e, ok := g.store.peek(testBucket, key); !ok || e.Size != int64(len(data)) {
		t.Fatalf("trailer upload not cached as the decoded bytes: %+v", e)
	}
	if got := getObject(t, c, key, "bytes=3-1000003"); !bytes.Equal(got, data[3:1000004]) {
		t.Fatal("TLS ranged read differs")
	}
}
