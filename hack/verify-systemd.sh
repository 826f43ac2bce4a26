#!/usr/bin/env bash
# Checks packaging/systemd/*.service with `systemd-analyze verify` in a scratch root (so the
# binaries need not be installed on this machine) and prints each unit's exposure score.
# Any warning fails the check: verify exits 0 on unknown keys, so its output is what counts.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
	echo "SKIP systemd units: systemd-analyze is not installed (hack/packaging-deps.sh installs the systemd package)"
	exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/bin" "$root/usr/sbin"
if [ -d /usr/lib/systemd/system ]; then
	cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
else
	echo "SKIP systemd units: no /usr/lib/systemd/system to verify against"
	exit 0
fi
for b in tmwarden-agent tmwarden-coordinator; do
	printf '#!/bin/sh\n' >"$root/usr/bin/$b"
	chmod +x "$root/usr/bin/$b"
done
cp packaging/systemd/*.service "$root/etc/systemd/system/"
units=$(cd packaging/systemd && ls *.service)
out=$(systemd-analyze verify --root="$root" $units 2>&1) || { echo "$out"; echo "FAIL systemd-analyze verify"; exit 1; }
if [ -n "$out" ]; then
	echo "$out"
	echo "FAIL systemd-analyze verify printed warnings"
	exit 1
fi
for u in $units; do
	score=$(systemd-analyze security --offline=yes --root="$root" "$u" 2>/dev/null | grep -o 'Overall exposure level.*' || true)
	echo "ok  $u ${score:+($score)}"
done
