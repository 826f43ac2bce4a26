#!/usr/bin/env bash
# Installs the real Kubernetes control plane the Kubernetes tests start (coordinator/actuate/kubetest):
#   - kube-apiserver and kube-controller-manager built from k8s.io/kubernetes at $KUBE_VERSION
#     through the Go module proxy (module hack/kubecontrolplane, which replaces the staging
#     modules by their published tags), into $TOOLS/kube-$KUBE_VERSION/;
#   - Debian's etcd-server.
# Idempotent: a binary is built only when missing. The first build takes long (about 15-25
# minutes of CPU on 2 cores); later ones hit Go's build cache.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-$PWD/.tools}
KUBE_VERSION=$(cd hack/kubecontrolplane && go list -m -f "{{.Version}}" k8s.io/kubernetes)
out="$TOOLS/kube-$KUBE_VERSION"

if ! command -v etcd >/dev/null && [ ! -x /usr/bin/etcd ]; then
	echo "installing etcd-server with apt-get"
	if ! { apt-get install -y -qq etcd-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }; }; then
		echo "could not install etcd-server (no root or no Debian mirror); the real-API-server tests will skip and say so" >&2
	fi
	# The package starts a system etcd on the default ports; the tests run their own.
	if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
		systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
fi

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ]; then
	exit 0
fi
mkdir -p "$out"
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
echo "building kube-apiserver and kube-controller-manager $KUBE_VERSION into $out (first time: long)"
start=$SECONDS
(cd hack/kubecontrolplane && nice -n 5 go build -trimpath -ldflags "$ldflags" -o "$out/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
echo "built the Kubernetes control plane in $((SECONDS - start))s"
