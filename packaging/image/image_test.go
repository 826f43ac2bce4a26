//go:build !race

// The image is built and unpacked (hundreds of megabytes gzipped and gunzipped) in this test's
// process: under the race detector that alone took minutes of CPU, and nothing here is
// concurrent, so make test runs it in its non-race pass.

package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestMakeImage runs `make image` as a user would, twice, and checks what it wrote: one index
// with linux/amd64 and linux/arm64, the entrypoint and user, a passwd entry for that user, the
// CA bundle, binaries of the right machine, and each amd64 binary printing the version the
// release set. The second build must give the same digest (reproducible).
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds six binaries: not in -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make")
	}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err != nil {
		t.Skip("needs Debian's ca-certificates (make test-deps installs it)")
	}
	const version = "v0.0.0-imagetest"
	dist := t.TempDir()
	out := filepath.Join(dist, "image", "oci")
	cmd := exec.Command("make", "--no-print-directory", "image", "VERSION="+version, "DIST="+dist)
	cmd.Dir = "../.."
	// As a user runs it from a shell, not as a sub-make of make test's -j2, whose jobserver
	// this process does not hold.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, b)
	}
	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	checkIndex(t, idx, version)

	// The same inputs again (the binaries make built, which -trimpath and an empty build id
	// make a function of the source): the same digest.
	again, err := Build(Options{BinDir: filepath.Join(dist, "image", "bin"), Arches: []string{"amd64", "arm64"},
		CABundle: "/etc/ssl/certs/ca-certificates.crt", ConfigDir: "../config", Version: version, Out: filepath.Join(dist, "again")})
	if err != nil {
		t.Fatal(err)
	}
	if again != digest {
		t.Errorf("two builds from the same inputs differ: %s and %s", digest, again)
	}
	t.Logf("index %s", digest)
}

func checkIndex(t *testing.T, idx v1.ImageIndex, version string) {
	t.Helper()
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var arches []string
	for _, d := range m.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			t.Fatalf("manifest %s has platform %v", d.Digest, d.Platform)
		}
		arches = append(arches, d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, img, d.Platform.Architecture, version)
	}
	slices.Sort(arches)
	if !slices.Equal(arches, []string{"amd64", "arm64"}) {
		t.Errorf("architectures %v, want amd64 and arm64", arches)
	}
}

func checkImage(t *testing.T, img v1.Image, arch, version string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != arch || cf.OS != "linux" {
		t.Errorf("%s: config says %s/%s", arch, cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/bin/tmwarden-coordinator"}) || cf.Config.User != "65532:65532" {
		t.Errorf("%s: entrypoint %v user %q", arch, cf.Config.Entrypoint, cf.Config.User)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s: %d layers (%v), want 1 on an empty base", arch, len(layers), err)
	}
	files := untar(t, layers[0])
	if !strings.Contains(string(files["etc/passwd"]), ":65532:65532:") {
		t.Errorf("%s: /etc/passwd has no entry for the image's user 65532:\n%s", arch, files["etc/passwd"])
	}
	if ca := files["etc/ssl/certs/ca-certificates.crt"]; bytes.Count(ca, []byte("BEGIN CERTIFICATE")) < 50 {
		t.Errorf("%s: the CA bundle holds %d certificates", arch, bytes.Count(ca, []byte("BEGIN CERTIFICATE")))
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	dir := t.TempDir()
	for _, bin := range Binaries {
		body, ok := files["usr/bin/"+bin]
		if !ok {
			t.Errorf("%s: no /usr/bin/%s", arch, bin)
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(body))
		if err != nil {
			t.Errorf("%s: %s is not ELF: %v", arch, bin, err)
			continue
		}
		if f.Machine != wantMachine {
			t.Errorf("%s: %s is built for %v", arch, bin, f.Machine)
		}
		if f.Section(".interp") != nil {
			t.Errorf("%s: %s is dynamically linked", arch, bin)
		}
		if arch != runtime.GOARCH {
			continue
		}
		p := filepath.Join(dir, bin)
		if err := os.WriteFile(p, body, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(p, "--version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != bin+" "+version {
			t.Errorf("%s --version = %q (%v), want %q", bin, got, err, bin+" "+version)
		}
	}
}

func untar(t *testing.T, l v1.Layer) map[string][]byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: owner %d, mtime %v; want root and the fixed epoch", h.Name, h.Uid, h.ModTime)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return files
}
