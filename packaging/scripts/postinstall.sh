#!/bin/sh
# Owns the state directory and the configuration by the service user, enables the agent on
# install (the coordinator runs on one host only: enable it there by hand), and restarts
# running services on upgrade.
set -e
chown tmwarden:tmwarden /var/lib/tmwarden
chgrp tmwarden /etc/tmwarden/agent.yaml /etc/tmwarden/coordinator.yaml 2>/dev/null || true
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# $1 is "configure" (deb) or the number of installed versions (rpm: 1 on install, 2 on upgrade).
	case "$1" in
	configure | 1)
		if [ -z "$2" ] || [ "$1" = 1 ]; then
			systemctl enable --now tmwarden-agent.service >/dev/null 2>&1 || true
		fi
		;;
	esac
	for u in tmwarden-agent.service tmwarden-coordinator.service; do
		if systemctl is-active --quiet "$u"; then
			systemctl try-restart "$u" >/dev/null 2>&1 || true
		fi
	done
fi
