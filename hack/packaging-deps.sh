#!/usr/bin/env bash
# Installs what packaging checks and releases need; idempotent (acts only on what is missing).
#   hack/packaging-deps.sh [helm] [kubeconform] [nfpm] [chromium] [systemd] [etcd] [lintian]   (default: helm kubeconform)
# Go tools are pinned (versions from the Makefile's environment) and built into $TOOLS with
# `go install`; a tool is rebuilt only when its recorded version differs. chromium,
# systemd-analyze, etcd and lintian come from Debian with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-$PWD/.tools}
HELM_VERSION=${HELM_VERSION:-v3.19.0}
KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-v0.8.0}
NFPM_VERSION=${NFPM_VERSION:-v2.45.0}
mkdir -p "$TOOLS"

go_tool() { # name module version
	local name=$1 module=$2 version=$3 stamp="$TOOLS/.$1.version"
	if [ -x "$TOOLS/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
		return 0
	fi
	echo "installing $name $version (go install $module@$version)"
	local start=$SECONDS
	GOBIN="$TOOLS" go install "$module@$version"
	echo "$version" >"$stamp"
	echo "installed $name $version in $((SECONDS - start))s"
}

apt_pkg() { # command package
	command -v "$1" >/dev/null && return 0
	echo "installing $2 with apt-get"
	if ! { apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }; then
		echo "could not install $2 (no root or no Debian mirror); the checks that need it will skip and say so" >&2
	fi
}

[ $# -gt 0 ] || set -- helm kubeconform
for t in "$@"; do
	case $t in
	helm) go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" ;;
	kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
	nfpm) go_tool nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm "$NFPM_VERSION" ;;
	chromium) apt_pkg chromium chromium ;;
	systemd) apt_pkg systemd-analyze systemd ;;
	etcd) apt_pkg etcd etcd-server ;;
	lintian) apt_pkg lintian lintian ;;
	*) echo "unknown tool $t" >&2; exit 2 ;;
	esac
done
