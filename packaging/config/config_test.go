// Package config holds the example configuration files shipped with tmwarden; its test keeps
// them loadable, so the documented defaults cannot drift from the code.
package config

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/coordinator"
)

func TestAgentExampleIsTheDefaults(t *testing.T) {
	cfg := agent.DefaultConfig()
	if err := configfile.DecodeFile("agent.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	want := agent.DefaultConfig()
	cfg.Labels, want.Labels = nil, nil
	cfg.Collectors.Enabled, want.Collectors.Enabled = nil, nil
	if cfg.Collectors.TaskManagers.ScanProc != nil && *cfg.Collectors.TaskManagers.ScanProc {
		cfg.Collectors.TaskManagers.ScanProc = want.Collectors.TaskManagers.ScanProc
	}
	cfg.Collectors.TaskManagers.ExtraMainClasses, want.Collectors.TaskManagers.ExtraMainClasses = nil, nil
	cfg.Collectors.TaskManagers.Static, want.Collectors.TaskManagers.Static = nil, nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("agent.yaml differs from the defaults:\n file %+v\n code %+v", cfg, want)
	}
}

func TestCoordinatorExampleIsTheDefaults(t *testing.T) {
	cfg := coordinator.DefaultConfig()
	if err := configfile.DecodeFile("coordinator.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, coordinator.DefaultConfig()) {
		t.Errorf("coordinator.yaml differs from the defaults:\n file %+v\n code %+v", cfg, coordinator.DefaultConfig())
	}
}

// TestArchitectureMapNamesEveryPackage reads the package table under the README's Architecture
// heading and checks it against the module's directories: every package (a directory holding
// Go files, tests only included) is named, and every name is a package, so the map cannot fall behind the code.
// A row's first cell names packages in backticks; names in parentheses are under the name before them.
func TestArchitectureMapNamesEveryPackage(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Architecture\n")
	if !ok {
		t.Fatal("README.md has no Architecture section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	named := map[string]bool{}
	tick := regexp.MustCompile("`([^`]+)`|[()]")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.Split(line, "|")[1]
		parent, inParen := "", false
		for _, m := range tick.FindAllStringSubmatch(cell, -1) {
			switch m[0] {
			case "(":
				inParen = true
			case ")":
				inParen = false
			default:
				name := strings.TrimSuffix(m[1], "/")
				if inParen {
					named[parent+"/"+name] = true
				} else {
					parent = name
					named[name] = true
				}
			}
		}
	}
	packages := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			packages[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range packages {
		if !named[p] {
			t.Errorf("package %s is missing from the README's architecture table", p)
		}
	}
	for n := range named {
		// A name may also be a directory that only groups packages (packaging/).
		grouping := slices.ContainsFunc(slices.Collect(maps.Keys(packages)), func(p string) bool { return strings.HasPrefix(p, n+"/") })
		if !packages[n] && !grouping {
			t.Errorf("the README's architecture table names %s, which is not a package", n)
		}
	}
}
