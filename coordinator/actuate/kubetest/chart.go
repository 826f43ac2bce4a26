package kubetest

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// HelmRun runs the pinned helm against this cluster (admin kubeconfig) and returns its output.
func (c *Cluster) HelmRun(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Helm(t), append(args, "--kubeconfig", c.Kubeconfig)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ChartPath is the repository's Helm chart.
func ChartPath(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "packaging", "helm", "tmwarden")
}

// DryRunChart renders the chart with args and submits every object to the API server with
// server-side dry run (validation, defaulting and admission, nothing stored). It returns one
// line per refused object.
func (c *Cluster) DryRunChart(t testing.TB, name, namespace string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(Helm(t), append([]string{"template", name, ChartPath(t), "--namespace", namespace, "--kube-version", c.Version}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	dc, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(c.Admin.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	var refused []string
	for _, doc := range strings.Split(out.String(), "\n---") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil || string(j) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			refused = append(refused, fmt.Sprintf("undecodable document: %v", err))
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			refused = append(refused, fmt.Sprintf("%s %s: the API server does not serve it: %v", gvk.Kind, u.GetName(), err))
			continue
		}
		var ri dynamic.ResourceInterface = dc.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			if u.GetNamespace() == "" {
				u.SetNamespace(namespace)
			}
			ri = dc.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Create(context.Background(), u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
			refused = append(refused, fmt.Sprintf("%s %s: %v", gvk.Kind, u.GetName(), err))
		}
	}
	return refused
}

//go:embed servicemonitor-crd.yaml
var serviceMonitorCRD []byte

// InstallServiceMonitorCRD creates the Prometheus Operator's ServiceMonitor CRD (a committed
// copy, see the file's header) and waits until the API server serves the kind, so the chart's
// serviceMonitor variant can be dry-run like the others.
func (c *Cluster) InstallServiceMonitorCRD(t testing.TB) {
	t.Helper()
	j, err := yaml.YAMLToJSON(serviceMonitorCRD)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := dc.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the ServiceMonitor CRD: %v", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		groups, err := restmapper.GetAPIGroupResources(c.Admin.Discovery())
		if err == nil {
			if _, err = restmapper.NewDiscoveryRESTMapper(groups).RESTMapping(schema.GroupKind{Group: "monitoring.coreos.com", Kind: "ServiceMonitor"}, "v1"); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server does not serve ServiceMonitor two minutes after its CRD was created: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
