// Package helmrender renders the tmwarden chart with the pinned helm for tests and walks the
// rendered documents. It exists so the chart's own tests and the deployment tests read the chart
// through one renderer instead of two copies.
package helmrender

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"
)

// Template runs `helm template` on the chart under repoRoot with args and returns its documents.
// It skips the test when neither repoRoot/.tools/helm nor a helm on PATH exists.
func Template(t testing.TB, repoRoot string, args ...string) []map[string]any {
	t.Helper()
	helm := filepath.Join(repoRoot, ".tools", "helm")
	if _, err := os.Stat(helm); err != nil {
		if helm, err = exec.LookPath("helm"); err != nil {
			t.Skip("helm is not installed: `make test-deps` installs the pinned version into .tools")
		}
	}
	cmd := exec.Command(helm, append([]string{"template", "t", filepath.Join(repoRoot, "packaging/helm/tmwarden"),
		"--namespace", "tmwarden", "--kube-version", "1.33.0"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// Find returns the rendered document of kind and name, failing the test when there is none.
func Find(t testing.TB, docs []map[string]any, kind, name string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind && Dig(d, "metadata", "name") == name {
			return d
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// Dig walks nested maps and lists (list indices as ints); nil when the path does not exist.
func Dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
