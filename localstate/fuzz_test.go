package localstate

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/s3api/utils"
)

// FuzzS3Request sends arbitrary bytes as a request to a real gateway (with a real upstream) on
// loopback. Whatever arrives, the gateway answers or drops that connection, and goes on serving
// properly signed requests: bad input never takes the gateway down.
func FuzzS3Request(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=-5\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n\r\n",
		"PUT /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\nx-amz-decoded-content-length: 5\r\nContent-Length: 88\r\n\r\n5;chunk-signature=0000000000000000000000000000000000000000000000000000000000000000\r\nhello\r\n0;chunk-signature=00\r\n\r\n",
		"POST /bucket?delete HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 30\r\n\r\n<Delete><Object><Key>k</Key>",
		"GET /bucket?list-type=2&continuation-token=%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	up := startUpstream(f, 0)
	g, client := startGateway(f, testConfig(f, up))
	f.Fuzz(func(t *testing.T, req []byte) {
		conn, err := net.DialTimeout("tcp", g.Addr(), 2*time.Second)
		if err != nil {
			t.Fatalf("gateway stopped accepting connections: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = conn.Write(req)
		// End the request stream, so the server answers what it got and closes, rather than
		// both sides waiting on a keep-alive connection.
		_ = conn.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(testBucket)}); err != nil {
			t.Fatalf("after %q the gateway no longer serves a signed request: %v", req, err)
		}
	})
}

// FuzzAuthorizationHeader parses arbitrary SigV4 Authorization headers: an error or fields,
// never a panic.
func FuzzAuthorizationHeader(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIA/20250101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcdef")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=, Signature=")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, h string) {
		_, _ = utils.ParseAuthorization(h)
	})
}

// FuzzChunkedBody decodes arbitrary aws-chunked bodies, signed and unsigned: each decoder ends
// with data or an error, never panics, and never yields more bytes than it was given.
func FuzzChunkedBody(f *testing.F) {
	f.Add([]byte("5;chunk-signature=0000000000000000000000000000000000000000000000000000000000000000\r\nhello\r\n0;chunk-signature=0000000000000000000000000000000000000000000000000000000000000000\r\n\r\n"))
	f.Add([]byte("5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"))
	f.Add([]byte("ffffffffffffffff\r\n"))
	f.Add([]byte("0\r\n"))
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	auth := utils.AuthData{Algorithm: "AWS4-HMAC-SHA256", Access: "flink", Region: "us-east-1", Service: "s3", Date: "20250101", Signature: "00"}
	f.Fuzz(func(t *testing.T, body []byte) {
		if r, err := utils.NewSignedChunkReader(bytes.NewReader(body), auth, "canonical", make([]byte, 32), date, "", false, int64(len(body))); err == nil {
			if out, _ := io.ReadAll(io.LimitReader(r, int64(len(body))+1)); len(out) > len(body) {
				t.Fatalf("signed decoder yielded %d bytes from %d", len(out), len(body))
			}
		}
		if r, err := utils.NewUnsignedChunkReader(bytes.NewReader(body), "", int64(len(body))); err == nil {
			if out, _ := io.ReadAll(io.LimitReader(r, int64(len(body))+1)); len(out) > len(body) {
				t.Fatalf("unsigned decoder yielded %d bytes from %d", len(out), len(body))
			}
		}
	})
}
