// Package helm holds the tmwarden Helm chart; its test renders the chart with the pinned helm
// and checks what the lint cannot: that the binaries accept the generated configuration and
// that the agent keeps its least-privilege shape.
package helm

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tmwarden/tmwarden/agent"
	"github.com/tmwarden/tmwarden/configfile"
	"github.com/tmwarden/tmwarden/coordinator"
	"github.com/tmwarden/tmwarden/packaging/helm/helmrender"
)

func render(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	return helmrender.Template(t, "../..", args...)
}

func find(t *testing.T, docs []map[string]any, kind, name string) map[string]any {
	t.Helper()
	return helmrender.Find(t, docs, kind, name)
}

// get walks nested maps and lists (list indices as ints).
func get(v any, path ...any) any { return helmrender.Dig(v, path...) }

func TestRenderedConfigsLoad(t *testing.T) {
	docs := render(t)
	acfg := agent.DefaultConfig()
	body := get(find(t, docs, "ConfigMap", "t-tmwarden-agent"), "data", "agent.yaml").(string)
	if err := configfile.Decode(strings.NewReader(body), "agent.yaml", &acfg); err != nil {
		t.Fatalf("the agent rejects the chart's configuration: %v\n%s", err, body)
	}
	if acfg.Coordinator != "t-tmwarden-coordinator:9710" || acfg.Collectors.Paths.ProcFS != "/host/proc" {
		t.Errorf("agent config: coordinator %q, procfs %q", acfg.Coordinator, acfg.Collectors.Paths.ProcFS)
	}
	ccfg := coordinator.DefaultConfig()
	body = get(find(t, docs, "ConfigMap", "t-tmwarden-coordinator"), "data", "coordinator.yaml").(string)
	if err := configfile.Decode(strings.NewReader(body), "coordinator.yaml", &ccfg); err != nil {
		t.Fatalf("the coordinator rejects the chart's configuration: %v\n%s", err, body)
	}
	if err := ccfg.Validate(); err != nil {
		t.Errorf("coordinator config invalid: %v", err)
	}
}

func TestAgentLeastPrivilege(t *testing.T) {
	for _, tc := range []struct {
		args []string
		caps []string
	}{
		{nil, []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"}},
		{[]string{"--set", "agent.sysResource=true"}, []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE"}},
	} {
		ds := find(t, render(t, tc.args...), "DaemonSet", "t-tmwarden-agent")
		pod := get(ds, "spec", "template", "spec")
		sc := get(pod, "containers", 0, "securityContext")
		if d := get(sc, "capabilities", "drop"); !slices.Equal(toStrings(d), []string{"ALL"}) {
			t.Errorf("%v: capabilities.drop = %v, want [ALL]", tc.args, d)
		}
		if a := toStrings(get(sc, "capabilities", "add")); !slices.Equal(a, tc.caps) {
			t.Errorf("%v: capabilities.add = %v, want %v", tc.args, a, tc.caps)
		}
		if get(sc, "readOnlyRootFilesystem") != true || get(sc, "privileged") != false || get(sc, "allowPrivilegeEscalation") != false {
			t.Errorf("%v: securityContext %v", tc.args, sc)
		}
		if get(pod, "hostNetwork") == true || get(pod, "automountServiceAccountToken") != false {
			t.Errorf("agent pod: hostNetwork %v, automountServiceAccountToken %v", get(pod, "hostNetwork"), get(pod, "automountServiceAccountToken"))
		}
		mounts := map[string]map[string]any{}
		for _, m := range get(pod, "containers", 0, "volumeMounts").([]any) {
			mm := m.(map[string]any)
			mounts[mm["mountPath"].(string)] = mm
		}
		for _, p := range []string{"/host/proc", "/host/sys", "/etc/tmwarden"} {
			if mounts[p] == nil || mounts[p]["readOnly"] != true {
				t.Errorf("%s is not mounted read-only: %v", p, mounts[p])
			}
		}
		if mounts["/var/lib/tmwarden/cache"] == nil {
			t.Error("no cache mount")
		}
		if tol := get(pod, "tolerations", 0, "operator"); tol != "Exists" {
			t.Errorf("agent tolerations: %v", get(pod, "tolerations"))
		}
	}
}

// TestCoordinatorRBACFollowsTheActuator: the default log-only actuator gets no ClusterRole (it
// touches no node and no pod); the Kubernetes actuator gets one. Which verbs it holds is proven
// against a real API server, from its audit log (coordinator/actuate TestRealAPIServer), not
// from a list here.
func TestCoordinatorRBACFollowsTheActuator(t *testing.T) {
	for _, d := range render(t) {
		if d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding" {
			t.Errorf("log-only actuator renders a %s %v", d["kind"], get(d, "metadata", "name"))
		}
	}
	docs := render(t, "--set", "coordinator.config.actuator.kind=kubernetes")
	find(t, docs, "ClusterRole", "t-tmwarden-coordinator")
	find(t, docs, "ClusterRoleBinding", "t-tmwarden-coordinator")
	role := find(t, docs, "Role", "t-tmwarden-coordinator-leader")
	if r := toStrings(get(role, "rules", 0, "resources")); !slices.Equal(r, []string{"leases"}) {
		t.Errorf("leader Role resources = %v", r)
	}
	find(t, docs, "PodDisruptionBudget", "t-tmwarden-coordinator")
	dep := find(t, docs, "Deployment", "t-tmwarden-coordinator")
	if get(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
		t.Error("coordinator does not run as non-root")
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestNetworkPolicies: off by default; on, each component admits traffic only on its ports and
// only from who uses them. The agent's gateway takes TaskManager pods (the configured selector)
// and the release's agents (peer transfer), and is closed while the state cache is off; the
// coordinator's gRPC port takes the release's agents (and grpcFrom); the HTTP ports take
// httpFrom, or anyone when it is empty. Whether the API server accepts the objects is checked by
// the server-side dry run in coordinator/actuate (TestRealAPIServer).
func TestNetworkPolicies(t *testing.T) {
	for _, d := range render(t) {
		if d["kind"] == "NetworkPolicy" {
			t.Fatalf("networkPolicy.enabled defaults to false, but %v renders", get(d, "metadata", "name"))
		}
	}
	agentSel := map[string]any{"app.kubernetes.io/name": "tmwarden", "app.kubernetes.io/instance": "t", "app.kubernetes.io/component": "agent"}
	coordSel := map[string]any{"app.kubernetes.io/name": "tmwarden", "app.kubernetes.io/instance": "t", "app.kubernetes.io/component": "coordinator"}
	// rules maps each port name of a policy to its from list (nil: no from, anyone).
	rules := func(t *testing.T, np map[string]any) map[string][]any {
		t.Helper()
		if pt := toStrings(get(np, "spec", "policyTypes")); !slices.Equal(pt, []string{"Ingress"}) {
			t.Errorf("%v: policyTypes %v, want [Ingress]", get(np, "metadata", "name"), pt)
		}
		out := map[string][]any{}
		for _, r := range get(np, "spec", "ingress").([]any) {
			ports := get(r, "ports").([]any)
			if len(ports) != 1 {
				t.Fatalf("rule %v: want one port per rule", r)
			}
			from, _ := get(r, "from").([]any)
			out[get(ports[0], "port").(string)] = from
		}
		return out
	}
	cache := []string{"--set", "networkPolicy.enabled=true", "--set", "agent.stateCache.enabled=true",
		"--set", "agent.stateCache.existingSecret=keys", "--set", "agent.stateCache.upstream.endpoint=http://minio:9000"}

	t.Run("state cache on", func(t *testing.T) {
		docs := render(t, cache...)
		np := find(t, docs, "NetworkPolicy", "t-tmwarden-agent")
		if !reflect.DeepEqual(get(np, "spec", "podSelector", "matchLabels"), agentSel) {
			t.Errorf("agent policy selects %v", get(np, "spec", "podSelector"))
		}
		r := rules(t, np)
		if len(r) != 2 || r["http"] != nil {
			t.Errorf("agent rules %v: want http from anyone and gateway", r)
		}
		gw := r["gateway"]
		if len(gw) != 2 || !reflect.DeepEqual(get(gw[0], "podSelector", "matchLabels"), agentSel) ||
			!reflect.DeepEqual(get(gw[1], "podSelector", "matchLabels"), map[string]any{"component": "taskmanager"}) ||
			!reflect.DeepEqual(get(gw[1], "namespaceSelector"), map[string]any{}) {
			t.Errorf("gateway from %v: want the release's agents and TaskManager pods of every namespace", gw)
		}
		np = find(t, docs, "NetworkPolicy", "t-tmwarden-coordinator")
		if !reflect.DeepEqual(get(np, "spec", "podSelector", "matchLabels"), coordSel) {
			t.Errorf("coordinator policy selects %v", get(np, "spec", "podSelector"))
		}
		r = rules(t, np)
		if len(r) != 2 || r["http"] != nil || len(r["grpc"]) != 1 || !reflect.DeepEqual(get(r["grpc"][0], "podSelector", "matchLabels"), agentSel) {
			t.Errorf("coordinator rules %v: want grpc from the release's agents only, http from anyone", r)
		}
	})

	t.Run("state cache off closes the gateway", func(t *testing.T) {
		r := rules(t, find(t, render(t, "--set", "networkPolicy.enabled=true"), "NetworkPolicy", "t-tmwarden-agent"))
		if _, ok := r["gateway"]; ok || len(r) != 1 {
			t.Errorf("agent rules %v: want http only", r)
		}
	})

	t.Run("configured peers", func(t *testing.T) {
		docs := render(t, append(cache,
			"--set", "networkPolicy.httpFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
			"--set", "networkPolicy.grpcFrom[0].ipBlock.cidr=10.20.0.0/16",
			"--set", "networkPolicy.taskManagers.podSelector.matchLabels.app=orders",
			"--set", "networkPolicy.taskManagers.namespaceSelector.matchLabels.team=data")...)
		prom := map[string]any{"kubernetes.io/metadata.name": "monitoring"}
		for _, name := range []string{"t-tmwarden-agent", "t-tmwarden-coordinator"} {
			http := rules(t, find(t, docs, "NetworkPolicy", name))["http"]
			if len(http) != 1 || !reflect.DeepEqual(get(http[0], "namespaceSelector", "matchLabels"), prom) {
				t.Errorf("%s: http from %v, want only the monitoring namespace", name, http)
			}
		}
		grpc := rules(t, find(t, docs, "NetworkPolicy", "t-tmwarden-coordinator"))["grpc"]
		if len(grpc) != 2 || get(grpc[1], "ipBlock", "cidr") != "10.20.0.0/16" {
			t.Errorf("grpc from %v: want the agents and 10.20.0.0/16", grpc)
		}
		gw := rules(t, find(t, docs, "NetworkPolicy", "t-tmwarden-agent"))["gateway"]
		if len(gw) != 2 || !reflect.DeepEqual(get(gw[1], "podSelector", "matchLabels"), map[string]any{"component": "taskmanager", "app": "orders"}) ||
			!reflect.DeepEqual(get(gw[1], "namespaceSelector", "matchLabels"), map[string]any{"team": "data"}) {
			t.Errorf("gateway from %v", gw)
		}
	})
}
