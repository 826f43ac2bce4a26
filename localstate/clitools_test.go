package localstate

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tool finds a pinned S3 CLI installed by hack/s3-test-deps.sh (./.tools) or on PATH.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("..", ".tools", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Skipf("%s is not installed: run hack/s3-test-deps.sh (make test-deps)", name)
	return ""
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func sameFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v, %d bytes, want %d", name, err, len(got), len(want))
		}
	}
}

// TestS5cmd is Flink's s3.s5cmd.path download path: s5cmd against the gateway, with
// multipart uploads, parallel downloads of a checkpoint directory, ls and rm.
func TestS5cmd(t *testing.T) {
	s5 := tool(t, "s5cmd")
	up := startUpstream(t, 0)
	g, _ := startGateway(t, testConfig(t, up))
	env := []string{"AWS_ACCESS_KEY_ID=" + gwAccess, "AWS_SECRET_ACCESS_KEY=" + gwSecret, "AWS_REGION=us-east-1", "S3_ENDPOINT_URL=", "AWS_PROFILE="}
	ep := []string{"--endpoint-url", "http://" + g.Addr()}
	src := t.TempDir()
	files := map[string][]byte{"shared/a": randomBytes(t, 12<<20+1), "shared/b": randomBytes(t, 333), "chk-5/_metadata": []byte("m")}
	writeFiles(t, src, files)
	dst := "s3://" + testBucket + "/flink/" + jobID + "/"
	run(t, env, s5, append(ep, "cp", "--part-size", "5", src+"/", dst)...)
	for name, data := range files {
		upstreamHas(t, up, "flink/"+jobID+"/"+name, data)
	}
	// Restore from a second, cold gateway: s5cmd's ranged, parallel GETs load it lazily.
	g2, _ := startGateway(t, testConfig(t, up))
	out := t.TempDir()
	run(t, env, s5, "--endpoint-url", "http://"+g2.Addr(), "cp", "--concurrency", "4", "--part-size", "5", dst+"*", out+"/")
	sameFiles(t, out, files)
	ls := run(t, env, s5, append(ep, "ls", dst+"shared/*")...)
	if !strings.Contains(ls, "shared/a") && !strings.Contains(ls, " a\n") {
		t.Fatalf("s5cmd ls: %s", ls)
	}
	run(t, env, s5, append(ep, "rm", dst+"shared/*")...)
	if _, err := tryGet(up.client, "flink/"+jobID+"/shared/b", ""); apiCode(err) != "NoSuchKey" {
		t.Fatalf("s5cmd rm did not delete upstream: %v", err)
	}
}

// TestRclone copies a checkpoint directory up and back with rclone (multipart above 5 MiB),
// checks it, and deletes through the gateway.
func TestRclone(t *testing.T) {
	rc := tool(t, "rclone")
	up := startUpstream(t, 0)
	g, _ := startGateway(t, testConfig(t, up))
	env := []string{"RCLONE_CONFIG_GW_TYPE=s3", "RCLONE_CONFIG_GW_PROVIDER=Other", "RCLONE_CONFIG_GW_ACCESS_KEY_ID=" + gwAccess,
		"RCLONE_CONFIG_GW_SECRET_ACCESS_KEY=" + gwSecret, "RCLONE_CONFIG_GW_ENDPOINT=http://" + g.Addr(),
		"RCLONE_CONFIG_GW_FORCE_PATH_STYLE=true", "RCLONE_CONFIG_GW_REGION=us-east-1", "RCLONE_CONFIG=/dev/null"}
	src := t.TempDir()
	files := map[string][]byte{"shared/x": randomBytes(t, 11<<20+7), "chk-6/_metadata": []byte("meta"), "chk-6/op": randomBytes(t, 70000)}
	writeFiles(t, src, files)
	remote := "gw:" + testBucket + "/flink/" + jobID
	flags := []string{"--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--retries", "1"}
	run(t, env, rc, append([]string{"copy", src, remote}, flags...)...)
	for name, data := range files {
		upstreamHas(t, up, "flink/"+jobID+"/"+name, data)
	}
	run(t, env, rc, "check", src, remote, "--retries", "1")
	out := t.TempDir()
	run(t, env, rc, "copy", remote, out, "--retries", "1", "--multi-thread-cutoff", "1M", "--multi-thread-streams", "3")
	sameFiles(t, out, files)
	lsf := run(t, env, rc, "lsf", "-R", remote)
	if !strings.Contains(lsf, "chk-6/_metadata") {
		t.Fatalf("rclone lsf: %s", lsf)
	}
	run(t, env, rc, "moveto", remote+"/chk-6/op", remote+"/chk-6/op-renamed", "--retries", "1")
	upstreamHas(t, up, "flink/"+jobID+"/chk-6/op-renamed", files["chk-6/op"])
	run(t, env, rc, "purge", remote, "--retries", "1")
	if _, err := tryGet(up.client, "flink/"+jobID+"/shared/x", ""); apiCode(err) != "NoSuchKey" {
		t.Fatalf("rclone purge left objects: %v", err)
	}
}
