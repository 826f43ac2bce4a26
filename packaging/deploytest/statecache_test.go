package deploytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gopkg.in/yaml.v3"

	"github.com/tmwarden/tmwarden/localstate/s3test"
)

const (
	upAccess, upSecret       = s3test.AccessKey, s3test.SecretKey
	flinkAccess, flinkSecret = "flink-key", "flink-secret-0123456789"
	bucket                   = "flink-state"
	s3ClientEnv              = "TMWARDEN_DEPLOYTEST_S3_CLIENT"
)

// TestMain doubles as the S3 client the test runs inside the TaskManager's network namespace.
func TestMain(m *testing.M) {
	if op := os.Getenv(s3ClientEnv); op != "" {
		if err := runS3Client(op); err != nil {
			fmt.Fprintln(os.Stderr, "s3 client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func s3Client(endpoint, access, secret string) *s3.Client {
	return s3test.Client(endpoint, access, secret)
}

// runS3Client puts the file TMW_FILE as TMW_KEY, or gets TMW_KEY into TMW_FILE, through the
// gateway at TMW_ENDPOINT with Flink's credential, as Flink's S3 filesystem does (path style).
func runS3Client(op string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s3Client(os.Getenv("TMW_ENDPOINT"), flinkAccess, flinkSecret)
	key, file := os.Getenv("TMW_KEY"), os.Getenv("TMW_FILE")
	switch op {
	case "put":
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(b)})
		return err
	case "get":
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err != nil {
			return err
		}
		return os.WriteFile(file, b, 0o644)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// TestStateCacheAsTheChartConfiguresIt renders the chart with the cache on, starts the agent
// with the configuration the chart generates under the chart's capabilities and a read-only
// root filesystem, with the Secret's keys in files and the cache on a directory standing in for
// the hostPath; a client in another network namespace (a TaskManager pod's) writes a checkpoint
// through the gateway and reads it back, and it is in the real upstream.
func TestStateCacheAsTheChartConfiguresIt(t *testing.T) {
	requireRoot(t, "setpriv", "ip", "unshare")
	upstream := s3test.Start(t, bucket)
	upEndpoint, upDir := upstream.Endpoint, upstream.Dir
	docs := helmTemplate(t, "--set", "agent.stateCache.enabled=true", "--set", "agent.stateCache.existingSecret=flink-s3",
		"--set", "agent.stateCache.upstream.endpoint="+upEndpoint, "--set", "agent.stateCache.upstream.staticCredentials=true",
		"--set", "agent.stateCache.capacityBytes=1073741824")
	priv, cfg := chartAgentPrivileges(t, docs)
	priv = priv.grantable(t)

	// The chart's mounts, read from the DaemonSet: where the Secret and the hostPath go.
	ds := findDoc(t, docs, "DaemonSet", "t-tmwarden-agent")
	mounts := map[string]string{}
	for _, m := range dig(ds, "spec", "template", "spec", "containers", 0, "volumeMounts").([]any) {
		mounts[dig(m, "name").(string)] = dig(m, "mountPath").(string)
	}
	sc, _ := cfg["state_cache"].(map[string]any)
	if sc == nil || sc["enabled"] != true {
		t.Fatalf("the chart's agent configuration has no enabled state_cache: %v", cfg)
	}
	if sc["dir"] != mounts["cache"] || !strings.HasPrefix(sc["access_key_file"].(string), mounts["state-cache-keys"]+"/") {
		t.Fatalf("state_cache dir %v / keys %v are not on the chart's mounts %v", sc["dir"], sc["access_key_file"], mounts)
	}
	if dig(sc, "upstream", "access_key") != nil || sc["access_key"] != nil {
		t.Errorf("the chart writes a key into the ConfigMap: %v", sc)
	}

	// Stand-ins for the Secret volume and the hostPath, at the same relative places.
	dir := workDir(t)
	keys, cache := filepath.Join(dir, "secret"), filepath.Join(dir, "hostpath-cache")
	for _, d := range []string{keys, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]string{"access-key": flinkAccess, "secret-key": flinkSecret,
		"upstream-access-key": upAccess, "upstream-secret-key": upSecret} {
		if err := os.WriteFile(filepath.Join(keys, name), []byte(v+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	// Only paths move (to the stand-ins) and the port (the chart's 9713 may be taken here).
	relocate := func(p string) string {
		p = strings.Replace(p, mounts["state-cache-keys"], keys, 1)
		return strings.Replace(p, mounts["cache"], cache, 1)
	}
	for _, k := range []string{"dir", "access_key_file", "secret_key_file"} {
		sc[k] = relocate(sc[k].(string))
	}
	up := sc["upstream"].(map[string]any)
	for _, k := range []string{"access_key_file", "secret_key_file"} {
		up[k] = relocate(up[k].(string))
	}
	port := freePortRange(t, 1)
	if sc["listen"] != ":9713" {
		t.Fatalf("the gateway listens on %v, want every address of the pod (:9713)", sc["listen"])
	}
	sc["listen"] = fmt.Sprintf(":%d", port)
	config := writeAgentConfig(t, dir, cfg)
	b, _ := yaml.Marshal(sc)
	t.Logf("state_cache as the chart generates it (paths and port moved to the stand-ins):\n%s", b)

	// Read-only root: a private mount namespace where / is read-only and only the cache
	// directory (a bind mount, like the hostPath volume) is writable.
	java := filepath.Join(dir, "ro-root.sh")
	script := fmt.Sprintf("set -e\nmount --make-rprivate /\nmount --bind %[1]s %[1]s\nmount -o remount,bind,ro /\n"+
		"if touch /h13-ro-probe 2>/dev/null; then echo 'root is writable' >&2; exit 1; fi\nexec \"$@\"\n", cache)
	if err := os.WriteFile(java, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	agentBin := build(t, dir, "./cmd/tmwarden-agent", "tmwarden-agent")
	a := startAgentWrapped(t, []string{"unshare", "--mount", "sh", java}, agentBin, priv, config, agentFlags...)
	if got, want := effectiveCaps(t, a.pid), capMask(t, priv.caps); got != want {
		t.Fatalf("agent CapEff %#x, want the chart's %v (%#x)", got, priv.caps, want)
	}

	// A TaskManager pod's network namespace; the gateway is reached on the node's side of it.
	pod := newPodNetwork(t)
	endpoint := "http://" + net.JoinHostPort(pod.hostIP, fmt.Sprint(port))
	waitTCPFrom(t, pod.name, pod.hostIP, port)
	checkpoint := make([]byte, 3<<20)
	_, _ = rand.Read(checkpoint)
	src, dst := filepath.Join(dir, "chk.in"), filepath.Join(dir, "chk.out")
	if err := os.WriteFile(src, checkpoint, 0o644); err != nil {
		t.Fatal(err)
	}
	key := "checkpoints/7c2f/chk-1/5d0e-state"
	s3From(t, pod.name, endpoint, "put", key, src)
	s3From(t, pod.name, endpoint, "get", key, dst)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, checkpoint) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(checkpoint))
	}
	inUpstream, err := os.ReadFile(filepath.Join(upDir, bucket, key))
	if err != nil || !bytes.Equal(inUpstream, checkpoint) {
		t.Fatalf("the checkpoint is not in the upstream: %v", err)
	}
	var cached int64
	_ = filepath.Walk(cache, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			cached += fi.Size()
		}
		return nil
	})
	if cached < int64(len(checkpoint)) {
		t.Errorf("the hostPath stand-in holds %d bytes, want the %d-byte checkpoint cached there", cached, len(checkpoint))
	}
}

// s3From runs this test binary as the S3 client inside netns.
func s3From(t *testing.T, netns, endpoint, op, key, file string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", netns, os.Args[0])
	cmd.Env = append(os.Environ(), s3ClientEnv+"="+op, "TMW_ENDPOINT="+endpoint, "TMW_KEY="+key, "TMW_FILE="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s from netns %s: %v\n%s", op, key, netns, err, out)
	}
}

// waitTCPFrom waits until host:port accepts connections from inside netns.
func waitTCPFrom(t *testing.T, netns, host string, port int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := exec.Command("ip", "netns", "exec", netns, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", host, port)).Run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway on %s:%d is not reachable from netns %s: %v", host, port, netns, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
