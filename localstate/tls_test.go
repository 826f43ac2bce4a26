package localstate

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
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
