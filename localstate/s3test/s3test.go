// Package s3test serves a real S3 object store for tests: versitygw's posix backend behind its
// S3 API on loopback, in the test process. Tests that need an upstream for the state cache share
// it instead of each carrying its own.
package s3test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/s3api"
	"github.com/versity/versitygw/s3api/middlewares"
)

// The upstream's one account.
const (
	AccessKey = "upstream-key"
	SecretKey = "upstream-secret-0123456789"
)

// Upstream is a running object store.
type Upstream struct {
	// Endpoint is its URL (http://127.0.0.1:port); Dir holds the buckets as directories.
	Endpoint, Dir string
}

// Client returns a path-style client signing with creds.
func Client(endpoint, access, secret string) *s3.Client {
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(access, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired})
}

// Start serves an object store until the test ends and creates buckets in it. The posix
// backend changes the process's working directory: resolve relative paths before calling it.
func Start(t testing.TB, buckets ...string) Upstream {
	t.Helper()
	dir := t.TempDir()
	be, err := posix.New(dir, meta.XattrMeta{}, posix.PosixOpts{})
	if err != nil {
		t.Fatal(err)
	}
	acc := auth.Account{Access: AccessKey, Secret: SecretKey, Role: auth.RoleAdmin}
	srv, err := s3api.New(be, middlewares.RootUserConfig{Access: AccessKey, Secret: SecretKey}, "us-east-1",
		iam{acc}, nil, nil, nil, nil, s3api.WithQuiet(), s3api.WithConcurrencyLimiter(64, 64))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	go func() { _ = srv.ServeMultiPort([]string{addr}) }()
	t.Cleanup(func() { _ = srv.ShutDown() })
	u := Upstream{Endpoint: "http://" + addr, Dir: dir}
	c := Client(u.Endpoint, AccessKey, SecretKey)
	for _, b := range buckets {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("create bucket %s on the upstream: %v", b, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return u
}

// iam is the upstream's one account.
type iam struct{ acc auth.Account }

func (a iam) CreateAccount(auth.Account) error { return errors.New("read-only") }
func (a iam) GetUserAccount(access string) (auth.Account, error) {
	if access == a.acc.Access {
		return a.acc, nil
	}
	return auth.Account{}, auth.ErrNoSuchUser
}
func (a iam) ResolveAccounts(ids []string) ([]string, error)    { return ids, nil }
func (a iam) UpdateUserAccount(string, auth.MutableProps) error { return errors.New("read-only") }
func (a iam) DeleteUserAccount(string) error                    { return errors.New("read-only") }
func (a iam) ListUserAccounts() ([]auth.Account, error)         { return []auth.Account{a.acc}, nil }
func (a iam) Shutdown() error                                   { return nil }
