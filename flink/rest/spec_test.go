package rest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// refDir is the shared reference folder beside the clone (/work/shared next to /work/main).
const refDir = "../../../shared/reference/flink"

func refPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(refDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("reference folder %s missing (it sits beside the clone in CI): %v", refDir, err)
	}
	return p
}

// Every endpoint the client calls must exist, with that method, in the OpenAPI spec of the
// oldest and newest Flink versions we support.
func TestEndpointsExistInOpenAPISpecs(t *testing.T) {
	for _, spec := range []string{"rest_v1_dispatcher-1.20.yml", "rest_v1_dispatcher-2.0.yml"} {
		t.Run(spec, func(t *testing.T) {
			data, err := os.ReadFile(refPath(t, spec))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				OpenAPI string                               `yaml:"openapi"`
				Paths   map[string]map[string]map[string]any `yaml:"paths"`
			}
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("parse %s: %v", spec, err)
			}
			if !strings.HasPrefix(doc.OpenAPI, "3.") || len(doc.Paths) < 50 {
				t.Fatalf("%s does not look like Flink's OpenAPI spec (openapi %q, %d paths)", spec, doc.OpenAPI, len(doc.Paths))
			}
			for _, ep := range Endpoints() {
				ops, ok := doc.Paths[ep.Path]
				if !ok {
					t.Errorf("%s %s: path not in %s", ep.Method, ep.Path, spec)
					continue
				}
				if _, ok := ops[strings.ToLower(ep.Method)]; !ok {
					t.Errorf("%s %s: method not in %s (has %v)", ep.Method, ep.Path, spec, keys(ops))
				}
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
