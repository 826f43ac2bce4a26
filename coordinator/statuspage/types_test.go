package statuspage_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tsc finds the TypeScript compiler hack/test-deps.sh installs into .tools, or one on PATH.
func tsc(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs("../../.tools/typescript/node_modules/.bin/tsc"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("tsc"); err == nil {
		return p
	}
	t.Skip("tsc is not installed (make test-deps installs TypeScript into .tools/typescript); the page is not type-checked against the API's types")
	return ""
}

// checkPage type-checks app.js against the API types in dir (tsc --checkJs) and returns what
// tsc said and whether it passed.
func checkPage(t *testing.T, bin, dir string) (string, bool) {
	t.Helper()
	app, err := os.ReadFile("web/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.js"), app, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--noEmit", "--allowJs", "--checkJs", "--target", "es2022", "--module", "es2022",
		"--moduleResolution", "bundler", "--lib", "es2022,dom", "app.js", "api-types.js")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// generate writes the API's types as JSDoc into dir/api-types.js with the committed generator.
func generate(t *testing.T, dir string) []byte {
	t.Helper()
	out := filepath.Join(dir, "api-types.js")
	cmd := exec.Command("go", "run", "../../api/httpv1/jsdoc", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generating the API's JSDoc types: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPageReadsTheAPITypes: the page is type-checked against types generated from api/httpv1's
// Go types right now, so a renamed or removed API field the page reads fails here. The committed
// web/api-types.js must be what make generate writes, and the check must have teeth: with one
// field the page reads renamed in the types, tsc must fail.
func TestPageReadsTheAPITypes(t *testing.T) {
	bin := tsc(t)
	dir := t.TempDir()
	fresh := generate(t, dir)
	committed, err := os.ReadFile("web/api-types.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Errorf("web/api-types.js is not what api/httpv1's Go types generate: run make generate")
	}
	if out, ok := checkPage(t, bin, dir); !ok {
		t.Fatalf("the page does not type-check against the API's types:\n%s", out)
	}
	// Teeth: Node.score and Decision.evidence renamed, as a change to the Go types would.
	for _, field := range []string{"score", "evidence", "would_migrate"} {
		mutated := regexp.MustCompile(`(@property \{[^}]*\} \[?)`+field+`\b`).ReplaceAll(fresh, []byte("${1}renamed_"+field))
		if bytes.Equal(mutated, fresh) {
			t.Fatalf("no property %s in the generated types", field)
		}
		if err := os.WriteFile(filepath.Join(dir, "api-types.js"), mutated, 0o644); err != nil {
			t.Fatal(err)
		}
		out, ok := checkPage(t, bin, dir)
		if ok || !strings.Contains(out, "'"+field+"'") {
			t.Errorf("with %s renamed in the API's types the page still type-checks (tsc: %s)", field, out)
		}
	}
}
