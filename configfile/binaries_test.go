package configfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/coordinator"
)

// TestDaemonConfigErrorsNameTheYAMLPath: a typo or a wrong value deep in the agent's and the
// coordinator's real configurations is reported by its YAML path and line, as the operator
// wrote it, never by the Go type behind it. (tmwardenctl reads no configuration file.)
func TestDaemonConfigErrorsNameTheYAMLPath(t *testing.T) {
	cases := []struct {
		name, body string
		decode     func(path string) error
		want       []string
	}{
		{"coordinator unknown option", "grpc_addr: 127.0.0.1:0\ndecisions:\n  policy:\n    mod: auto\n",
			func(p string) error { c := coordinator.DefaultConfig(); return configfile.DecodeFile(p, &c) },
			[]string{"line 4", "unknown option decisions.policy.mod", "mode"}},
		{"coordinator wrong type", "decisions:\n  policy:\n    confirm_rounds: many\n",
			func(p string) error { c := coordinator.DefaultConfig(); return configfile.DecodeFile(p, &c) },
			[]string{"line 3", "option decisions.policy.confirm_rounds"}},
		{"agent unknown option", "interval: 5s\nstate_cache:\n  enabled: true\n  upstream:\n    endpiont: http://minio:9000\n",
			func(p string) error { c := agent.DefaultConfig(); return configfile.DecodeFile(p, &c) },
			[]string{"line 5", "unknown option state_cache.upstream.endpiont", "endpoint"}},
		{"agent wrong type", "state_cache:\n  capacity_bytes: lots\n",
			func(p string) error { c := agent.DefaultConfig(); return configfile.DecodeFile(p, &c) },
			[]string{"line 2", "option state_cache.capacity_bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			err := tc.decode(p)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, goName := range []string{"decide.Config", "localstate.", "not found in type"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("error %q names Go type %q", err, goName)
				}
			}
		})
	}
}
