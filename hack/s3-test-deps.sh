#!/usr/bin/env bash
# Installs the S3 command-line clients the localstate tests drive (s5cmd, rclone) into ./.tools
# at pinned versions. Idempotent: a tool is built only when ./.tools lacks that exact version.
# rclone is a large build (several minutes on 2 cores, cold module cache); set SKIP_RCLONE=1 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"

S5CMD_VERSION=v2.3.0
RCLONE_VERSION=v1.76.0

install() { # name module version
	local name=$1 module=$2 version=$3 stamp="$TOOLS/.$1.version"
	if [[ -x "$TOOLS/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
		return 0
	fi
	echo "installing $name $version into $TOOLS" >&2
	if ! GOBIN="$TOOLS" CGO_ENABLED=0 go install "$module@$version"; then
		# Some proxies refuse the module's version list (go install reads it for deprecation
		# notices); build the same pinned module from the module cache instead.
		echo "go install refused; building $module@$version from the module cache" >&2
		local dir
		dir=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
		(cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$TOOLS/$name" .)
	fi
	echo "$version" >"$stamp"
}

install s5cmd github.com/peak/s5cmd/v2 "$S5CMD_VERSION"
if [[ "${SKIP_RCLONE:-0}" != 1 ]]; then
	install rclone github.com/rclone/rclone "$RCLONE_VERSION"
fi
