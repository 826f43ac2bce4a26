package localstate

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFilesFillKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Config{AccessKeyFile: write("a", "flink-key\n"), SecretKeyFile: write("s", "  flink-secret \n"),
		Upstream: UpstreamConfig{AccessKeyFile: write("ua", "up-key"), SecretKeyFile: write("us", "up-secret\n")}}
	if err := c.LoadKeyFiles(); err != nil {
		t.Fatal(err)
	}
	if c.AccessKey != "flink-key" || c.SecretKey != "flink-secret" || c.Upstream.AccessKey != "up-key" || c.Upstream.SecretKey != "up-secret" {
		t.Errorf("keys = %q %q %q %q", c.AccessKey, c.SecretKey, c.Upstream.AccessKey, c.Upstream.SecretKey)
	}
	c.applyDefaults()
	if c.Peer.AccessKey != "flink-key" {
		t.Errorf("the peer credential does not default to the gateway's key read from its file: %q", c.Peer.AccessKey)
	}

	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"both":    {Config{AccessKey: "x", AccessKeyFile: write("b", "y")}, "both inline and as state_cache.access_key_file"},
		"missing": {Config{Upstream: UpstreamConfig{SecretKeyFile: filepath.Join(dir, "nope")}}, "state_cache.upstream.secret_key_file"},
		"empty":   {Config{Peer: PeerConfig{AccessKeyFile: write("e", "\n")}}, "state_cache.peer.access_key_file"},
	} {
		if err := tc.cfg.LoadKeyFiles(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
	half := Config{Upstream: UpstreamConfig{Endpoint: "http://x", AccessKey: "only"}, AccessKey: "a", SecretKey: "b"}
	half.applyDefaults()
	if err := half.Validate(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("an upstream access key without its secret: %v", err)
	}
}

// TestUpstreamDefaultCredentialChain: with no upstream key configured, the gateway signs its
// upstream requests with what the AWS SDK's default chain finds, here the environment.
func TestUpstreamDefaultCredentialChain(t *testing.T) {
	up := startUpstream(t, 0)
	t.Setenv("AWS_ACCESS_KEY_ID", upAccess)
	t.Setenv("AWS_SECRET_ACCESS_KEY", upSecret)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg := testConfig(t, up)
	cfg.Upstream.AccessKey, cfg.Upstream.SecretKey = "", ""
	_, c := startGateway(t, cfg)
	data := randomBytes(t, 1<<20)
	putObject(t, c, "chk-1/_metadata", data)
	if got := getObject(t, c, "chk-1/_metadata", ""); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if _, err := os.Stat(filepath.Join(up.dir, testBucket, "chk-1", "_metadata")); err != nil {
		t.Errorf("the object did not reach the upstream (signed with the environment's key): %v", err)
	}
}
