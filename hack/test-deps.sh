#!/usr/bin/env bash
# Installs what `make test` needs on a fresh machine. Idempotent: it only acts on what is missing.
#   - Go modules;
#   - Debian's chromium (the status page is tested in headless Chromium) and systemd-analyze;
#   - Debian's etcd-server (the shared store backend is tested against it);
#   - helm, kubeconform and nfpm at pinned versions and Debian's lintian (packaging checks: the
#     deb is built and linted in `make test`), via hack/packaging-deps.sh;
#   - TypeScript (pinned, npm into $TOOLS/typescript): the status page is type-checked against
#     the API's generated types (coordinator/statuspage);
#   - the real-fault lab's tools (stress-ng, fio, iproute2, nftables), via hack/lab-deps.sh;
#   - the S3 test tools (pinned `go install`s), via hack/s3-test-deps.sh when present;
#   - a real Kubernetes control plane (kube-apiserver and kube-controller-manager built from the
#     Go module proxy, Debian's etcd), via hack/kube-control-plane.sh: long the first time only.
set -euo pipefail
cd "$(dirname "$0")/.."
go mod download
bash hack/packaging-deps.sh chromium systemd helm kubeconform nfpm lintian etcd
missing=()
command -v setpriv >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} with apt-get"
	apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
		echo "could not install ${missing[*]}; the tests that need them skip and say so" >&2
fi
TS_VERSION=5.9.3
ts_dir=${TOOLS:-$PWD/.tools}/typescript
if [ "$(cat "$ts_dir/.version" 2>/dev/null)" != "$TS_VERSION" ] || [ ! -x "$ts_dir/node_modules/.bin/tsc" ]; then
	command -v npm >/dev/null || apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; } ||
		echo "could not install npm; the page's type check skips and says so" >&2
	if command -v npm >/dev/null; then
		echo "installing typescript $TS_VERSION into $ts_dir (npm)"
		mkdir -p "$ts_dir" && npm install --prefix "$ts_dir" --no-audit --no-fund --silent "typescript@$TS_VERSION" && echo "$TS_VERSION" >"$ts_dir/.version"
	fi
fi
bash hack/lab-deps.sh
if [ -f hack/s3-test-deps.sh ]; then
	bash hack/s3-test-deps.sh
fi
TOOLS=${TOOLS:-$PWD/.tools} bash hack/kube-control-plane.sh
