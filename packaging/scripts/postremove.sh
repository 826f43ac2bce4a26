#!/bin/sh
# Reloads systemd after the units are gone. The user, /etc/tmwarden and /var/lib/tmwarden
# (the decision log) stay; `purge` on Debian removes the state directory too.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/tmwarden /var/cache/tmwarden
fi
