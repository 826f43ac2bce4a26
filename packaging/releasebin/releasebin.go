// Package releasebin gives tests tmwarden's binaries as the release builds them (`make
// release-bin`: static, -trimpath, release ldflags), so that what a test runs is what ships.
// `make test` builds them once for the whole run and names the directory in
// TMWARDEN_RELEASE_BIN; a test package run alone builds them itself through the same make rule.
package releasebin

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Env names the directory `make test` built the binaries into.
const Env = "TMWARDEN_RELEASE_BIN"

// Version is what the binaries built here print with --version.
const Version = "v0.0.0-test"

// Binaries are the three shipped executables.
var Binaries = []string{"tmwarden-agent", "tmwarden-coordinator", "tmwardenctl"}

// root is the module root, found from the working directory the test binary starts in (some
// tests change it later: versitygw's posix backend does).
var root, rootErr = ModuleRoot()

// ModuleRoot finds the module root from the working directory (a package directory, where go
// test starts a test binary).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/tmwarden/tmwarden\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tmwarden module (no go.mod of github.com/tmwarden/tmwarden above the working directory)")
		}
		dir = parent
	}
}

// Root is the module root.
func Root(t testing.TB) string {
	t.Helper()
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return root
}

// Dir returns a directory holding the three binaries: the one `make test` built (Env), else a
// fresh build into a temporary directory of the test. Go's build cache keeps the second case
// to a link when anything built the same packages before (vet does, with the same settings).
func Dir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(Env); dir != "" {
		for _, b := range Binaries {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				t.Fatalf("%s=%s: %v", Env, dir, err)
			}
		}
		return dir
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make (the binaries are built by `make release-bin`, as the release builds them)")
	}
	dir := t.TempDir()
	cmd := exec.Command("make", "--no-print-directory", "release-bin", "RELEASE_BIN="+dir, "VERSION="+Version)
	cmd.Dir = Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release-bin: %v\n%s", err, out)
	}
	return dir
}

// Build compiles another command of this module (a stand-in) with the release's compiler
// settings, so that it shares their compiled packages, into dir/out.
func Build(t testing.TB, pkg, dir, out string) string {
	t.Helper()
	bin := filepath.Join(dir, out)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Dir = Root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}
