#!/usr/bin/env bash
# Installs what the real-fault lab (`make lab`, and its short form in `make test`) needs from
# Debian: stress-ng (the CPU neighbour), fio, iproute2 (netns, veth), nftables (packet loss: this
# kernel has no netem qdisc) and iptables. Idempotent: apt runs only when a tool is missing, and
# only as root (without root the lab cannot run anyway and its test says so).
set -euo pipefail
missing=()
for t in stress-ng:stress-ng fio:fio ip:iproute2 nft:nftables iptables:iptables; do
	command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "lab-deps: not root, not installing ${missing[*]} (the lab needs root)" >&2
	exit 0
fi
apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
