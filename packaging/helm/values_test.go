package helm

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestEveryValueDocumented walks values.yaml: every leaf value (and every map that is a value
// in itself, like resources) must carry a "# --" comment, and the README table must list it.
func TestEveryValueDocumented(t *testing.T) {
	b, err := os.ReadFile("tmwarden/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("tmwarden/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	n := 0
	var walk func(prefix string, m *yaml.Node)
	walk = func(prefix string, m *yaml.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			documented := strings.Contains(k.HeadComment, "# -- ")
			if documented {
				n++
				if !strings.Contains(string(readme), "| `"+key+"` |") {
					t.Errorf("%s is documented in values.yaml but missing from the README table", key)
				}
			}
			if v.Kind == yaml.MappingNode && !documented {
				walk(key+".", v)
				continue
			}
			if v.Kind == yaml.MappingNode && key == "image" {
				walk(key+".", v)
				continue
			}
			if !documented {
				t.Errorf("value %s has no \"# --\" comment in values.yaml", key)
			}
		}
	}
	walk("", root.Content[0])
	if n < 40 {
		t.Errorf("only %d documented values found; the walk is broken", n)
	}
}
