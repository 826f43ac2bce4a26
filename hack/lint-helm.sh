#!/usr/bin/env bash
# Lints packaging/helm/tmwarden and validates what it renders, offline. For each values variant:
#   1. helm lint --strict (template errors, chart metadata, values that do not render);
#   2. kubeconform -strict on the rendered manifests. kubeconform's Kubernetes schemas are not
#      embedded in the binary and this machine cannot download them, so it runs with a local,
#      empty schema location and -ignore-missing-schemas: it checks that every document is
#      well-formed YAML with apiVersion and kind, and nothing more;
#   3. hack/kubestrict: every document decoded strictly into the typed object of k8s.io/api
#      (unknown or misspelt fields, wrong types, duplicate keys fail). This is the schema check.
#      ServiceMonitor (a CRD) is only parsed as YAML.
# What is NOT validated: CRD schemas (ServiceMonitor), server-side defaulting and admission
# (PodSecurity, quotas), and anything that needs a cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-$PWD/.tools}
chart=packaging/helm/tmwarden
# helm built with `go install` defaults to Kubernetes 1.20; render for a current cluster.
kube=${KUBE_VERSION:-1.33.0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/schemas"
# Built as the release builds (no cgo, -trimpath): it reuses the k8s.io/api packages make test's vet compiled.
CGO_ENABLED=0 go build -trimpath -o "$out/kubestrict" ./hack/kubestrict

variants=(
	"defaults::"
	"network-policy::--set networkPolicy.enabled=true --set agent.stateCache.enabled=true --set agent.stateCache.existingSecret=keys --set agent.stateCache.upstream.endpoint=http://minio:9000 --set networkPolicy.grpcFrom[0].ipBlock.cidr=10.20.0.0/16"
	"everything-on::--set serviceMonitor.enabled=true --set telemetry.otlp.endpoint=otel-collector:4317 --set telemetry.otlp.headers.x-api-key=k --set agent.sysResource=true --set agent.priorityClassName=system-node-critical --set agent.nodeSelector.pool=flink"
	"no-persistence::--set coordinator.persistence.enabled=false --set coordinator.replicas=2 --set coordinator.leaderElection.enabled=true"
	"agent-only::--set coordinator.enabled=false"
)
for v in "${variants[@]}"; do
	name=${v%%::*}
	args=${v#*::}
	# shellcheck disable=SC2086
	"$TOOLS/helm" lint --strict --kube-version "$kube" $args "$chart" >"$out/lint.txt" 2>&1 || { cat "$out/lint.txt"; echo "FAIL helm lint ($name)"; exit 1; }
	# shellcheck disable=SC2086
	"$TOOLS/helm" template tmwarden "$chart" --namespace tmwarden --kube-version "$kube" $args >"$out/$name.yaml"
	"$TOOLS/kubeconform" -strict -summary -ignore-missing-schemas \
		-schema-location "$out/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$out/$name.yaml" >"$out/kc.txt" 2>&1 ||
		{ cat "$out/kc.txt"; echo "FAIL kubeconform ($name)"; exit 1; }
	"$out/kubestrict" -allow-unknown monitoring.coreos.com/v1/ServiceMonitor <"$out/$name.yaml" >"$out/ks.txt" 2>&1 ||
		{ cat "$out/ks.txt"; echo "FAIL kubestrict ($name)"; exit 1; }
	echo "ok  helm chart, values '$name': lint, kubeconform (YAML only: $(tail -1 "$out/kc.txt" | sed 's/^Summary: //')), $(cat "$out/ks.txt" | sed 's/^kubestrict: //')"
done
