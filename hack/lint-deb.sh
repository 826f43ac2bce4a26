#!/usr/bin/env bash
# Packages the binaries `make release-bin` built into BIN_DIR as `make release` does (nfpm with
# packaging/nfpm.yaml) and runs Debian's lintian on the deb: an error fails, warnings and
# informational tags are printed. Run by `make lint-deb` (part of `make test`) after
# hack/packaging-deps.sh installed nfpm and lintian.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-$PWD/.tools}
: "${BIN_DIR:?set by the Makefile (the release-bin output)}"
if ! command -v lintian >/dev/null; then
	echo "lintian is not installed (hack/packaging-deps.sh lintian could not install it); the deb is not checked" >&2
	exit 1
fi
arch=$(go env GOARCH)
v=${PACKAGE_VERSION:?set by the Makefile}
out=$(mktemp -d)
# nfpm.yaml reads the binaries from dist/stage, as in `make release`.
trap 'rm -rf "$out" dist/stage' EXIT
rm -rf dist/stage && mkdir -p dist && cp -r "$BIN_DIR" dist/stage
ARCH=$arch VERSION=$v "$TOOLS/nfpm" package --config packaging/nfpm.yaml --packager deb --target "$out/" >/dev/null
deb=$(ls "$out"/*.deb)
echo "lintian $(lintian --version | awk '{print $2}') on $(basename "$deb")"
# --fail-on error: warnings are reported, only errors fail. This machine runs as root, which
# lintian otherwise refuses.
lintian --fail-on error --allow-root --no-tag-display-limit "$deb"
