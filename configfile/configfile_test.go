package configfile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name     string            `yaml:"name"`
	Interval time.Duration     `yaml:"interval"`
	Labels   map[string]string `yaml:"labels"`
}

func defaults() sample { return sample{Name: "default", Interval: 5 * time.Second} }

func bind(fs *flag.FlagSet, s *sample) {
	fs.StringVar(&s.Name, "name", s.Name, "")
	fs.DurationVar(&s.Interval, "interval", s.Interval, "")
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFlagsOverrideFileOverridesDefaults(t *testing.T) {
	p := write(t, "name: from-file\ninterval: 2s\nlabels: {zone: a}\n")
	got, err := Load("x", []string{"--config", p, "--interval", "7s"}, defaults, bind)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "from-file" || got.Interval != 7*time.Second || got.Labels["zone"] != "a" {
		t.Errorf("got %+v; want name from the file, interval from the flag, labels from the file", got)
	}
	got, err = Load("x", nil, defaults, bind)
	if err != nil || got.Name != "default" || got.Interval != 5*time.Second || got.Labels != nil {
		t.Errorf("no file, no flags: got %+v, %v; want the defaults", got, err)
	}
}

func TestBadFilesNameTheProblem(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"garbled":       {"name: [unclosed\n", "line 1"},
		"unknown key":   {"name: a\nintervall: 5s\n", "line 2: unknown option intervall"},
		"wrong type":    {"interval: soon\n", "line 1: option interval: "},
		"not a mapping": {"- a\n- b\n", "cannot unmarshal"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := write(t, tc.body)
			_, err := Load("x", []string{"--config", p}, defaults, bind)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got %v; want an error naming %s and containing %q", err, p, tc.want)
			}
		})
	}
	if _, err := Load("x", []string{"--config", "/nonexistent/c.yaml"}, defaults, bind); err == nil || !strings.Contains(err.Error(), "/nonexistent/c.yaml") {
		t.Errorf("missing file: got %v", err)
	}
	if _, err := Load("x", []string{"--bogus"}, defaults, bind); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown flag: got %v", err)
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	got, err := Load("x", []string{"--config", write(t, "# nothing set\n")}, defaults, bind)
	if err != nil || got.Name != "default" {
		t.Errorf("got %+v, %v", got, err)
	}
}

func TestBareZeroIsAZeroDuration(t *testing.T) {
	got, err := Load("x", []string{"--config", write(t, "name: a\ninterval: 0\n")}, defaults, bind)
	if err != nil || got.Interval != 0 || got.Name != "a" {
		t.Errorf("interval: 0 gave %+v, %v; want a zero interval, not the 5s default", got, err)
	}
	// Any other bare number has no unit to go by, and a mistake elsewhere keeps its line.
	p := write(t, "interval: 5\n")
	if _, err := Load("x", []string{"--config", p}, defaults, bind); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("interval: 5 gave %v; want an error naming line 1", err)
	}
	if _, err := Load("x", []string{"--config", write(t, "interval: 0\nintervall: 2s\n")}, defaults, bind); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("typo after a zero duration: %v; want an error naming line 2", err)
	}
}
