#!/bin/sh
# Stops and disables the services when the package is removed (not on upgrade).
set -e
case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now tmwarden-agent.service tmwarden-coordinator.service >/dev/null 2>&1 || true
	fi
	;;
esac
