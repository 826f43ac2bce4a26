#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine. Idempotent: it only acts on what is missing.
#   - Go modules;
#   - Debian's chromium (the status page is tested in headless Chromium) and systemd-analyze;
#   - Debian's etcd-server (the shared store backend is tested against it);
#   - helm and kubeconform at pinned versions (packaging checks), via hack/packaging-deps.sh;
#   - the real-fault lab's tools (stress-ng, fio, iproute2, nftables), via hack/lab-deps.sh;
#   - the S3 test tools (pinned `go install`s), via hack/s3-test-deps.sh when present;
#   - a real Kubernetes control plane (kube-apiserver and kube-controller-manager built from the
#     Go module proxy, Debian's etcd), via hack/kube-control-plane.sh: long the first time only.
set -euo pipefail
cd "$(dirname "$0")/.."
go mod download
bash hack/packaging-deps.sh chromium systemd helm kubeconform etcd
missing=()
command -v setpriv >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} with apt-get"
	apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
		echo "could not install ${missing[*]}; the tests that need them skip and say so" >&2
fi
bash hack/lab-deps.sh
if [ -f hack/s3-test-deps.sh ]; then
	bash hack/s3-test-deps.sh
fi
TOOLS=${TOOLS:-$PWD/.tools} bash hack/kube-control-plane.sh
