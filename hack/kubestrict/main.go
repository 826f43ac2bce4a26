// Command kubestrict checks rendered Kubernetes manifests offline: every document is decoded
// strictly (unknown or misspelt fields, wrong types and duplicate keys are errors) into the
// typed object of the real k8s.io/api package for its apiVersion and kind. It stands in for
// kubeconform's JSON-schema check, whose schemas would have to be downloaded. It lives in its
// own module so the main module does not depend on k8s.io/api for a lint.
//
//	helm template ... | go run . [-allow-unknown monitoring.coreos.com/v1/ServiceMonitor]
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var kinds = map[string]func() any{
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"v1/Service":                                      func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                               func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":                        func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/DaemonSet":                               func() any { return &appsv1.DaemonSet{} },
	"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return &networkingv1.NetworkPolicy{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return &rbacv1.RoleBinding{} },
}

func main() {
	var allow stringList
	flag.Var(&allow, "allow-unknown", "apiVersion/kind checked only as YAML (repeatable), e.g. CRD kinds")
	flag.Parse()
	n, err := check(os.Stdin, allow)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubestrict:", err)
		os.Exit(1)
	}
	fmt.Printf("kubestrict: %d documents decoded strictly into k8s.io/api types\n", n)
}

func check(r io.Reader, allow []string) (int, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var errs []error
	n := 0
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("reading YAML: %w", err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", n+1, err))
			continue
		}
		n++
		gvk := meta.APIVersion + "/" + meta.Kind
		name := gvk + " " + meta.Metadata.Name
		if meta.APIVersion == "" || meta.Kind == "" || meta.Metadata.Name == "" {
			errs = append(errs, fmt.Errorf("%s: apiVersion, kind and metadata.name are required", name))
			continue
		}
		newObj, ok := kinds[gvk]
		if !ok {
			if !contains(allow, gvk) {
				errs = append(errs, fmt.Errorf("%s: kind not known to this checker (pass -allow-unknown %s)", name, gvk))
			} else if err := yaml.UnmarshalStrict(doc, &map[string]any{}); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			continue
		}
		if err := yaml.UnmarshalStrict(doc, newObj()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return n, errors.Join(errs...)
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
		}
	}
	return out
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
