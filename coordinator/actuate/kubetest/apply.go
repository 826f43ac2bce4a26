package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Helm returns the pinned helm that `make test-deps` installs into .tools, or skips t.
func Helm(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if p := filepath.Join(root, ".tools", "helm"); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	t.Skip("helm is not installed: `make test-deps` installs the pinned version into .tools")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// RenderChart runs `helm template` of the repository's chart as release name in namespace, for
// this cluster's Kubernetes version.
func (c *Cluster) RenderChart(t testing.TB, name, namespace string, args ...string) []runtime.Object {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Helm(t), append([]string{"template", name, filepath.Join(root, "packaging", "helm", "tmwarden"), "--namespace", namespace, "--kube-version", c.Version}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	var objs []runtime.Object
	for _, doc := range strings.Split(out.String(), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("rendered chart: %v\n%s", err, doc)
		}
		if string(j) == "null" {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(j, nil, nil)
		if err != nil {
			continue // kinds client-go does not know (ServiceMonitor)
		}
		objs = append(objs, obj)
	}
	return objs
}

// ApplyRBAC creates the ServiceAccounts, Roles, ClusterRoles and their bindings among objs (as
// admin) and returns them.
func (c *Cluster) ApplyRBAC(t testing.TB, namespace string, objs []runtime.Object) []runtime.Object {
	t.Helper()
	ctx := context.Background()
	var applied []runtime.Object
	for _, o := range objs {
		var err error
		switch v := o.(type) {
		case *corev1.ServiceAccount:
			_, err = c.Admin.CoreV1().ServiceAccounts(namespace).Create(ctx, v, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.Admin.RbacV1().ClusterRoles().Create(ctx, v, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.Admin.RbacV1().ClusterRoleBindings().Create(ctx, v, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = c.Admin.RbacV1().Roles(namespace).Create(ctx, v, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = c.Admin.RbacV1().RoleBindings(namespace).Create(ctx, v, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
		applied = append(applied, o)
	}
	return applied
}

// Granted lists the "group/resource verb" pairs the rules of the Roles and ClusterRoles in objs grant.
func Granted(objs []runtime.Object) []string {
	set := map[string]bool{}
	add := func(rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						set[fmt.Sprintf("%s/%s %s", g, res, v)] = true
					}
				}
			}
		}
	}
	for _, o := range objs {
		switch v := o.(type) {
		case *rbacv1.ClusterRole:
			add(v.Rules)
		case *rbacv1.Role:
			add(v.Rules)
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
