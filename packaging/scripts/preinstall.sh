#!/bin/sh
# Creates the tmwarden system user before files are unpacked (sysusers.d covers later boots).
set -e
if ! getent group tmwarden >/dev/null 2>&1; then
	groupadd --system tmwarden
fi
if ! getent passwd tmwarden >/dev/null 2>&1; then
	useradd --system --gid tmwarden --home-dir /var/lib/tmwarden --no-create-home \
		--shell /usr/sbin/nologin --comment "tmwarden agent and coordinator" tmwarden
fi
