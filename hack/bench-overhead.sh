#!/usr/bin/env bash
# Agent overhead benchmark: tmwarden-agent as the release builds it, at default settings with every collector and probe
# on, scraping two TaskManager stand-ins (Flink 1.20 and 2.x reporter output, 200 subtasks each,
# from sim/tmstandin) every interval, side by side with Debian's prometheus-node-exporter
# (default collectors) scraped at the same interval, in one run. Prints CPU as a share of one core
# from schedstat run time in nanoseconds (/proc/PID/task/*/schedstat; clock ticks beside it as a
# cross-check), peak RSS (VmHWM) for both, their ratios, and the agent's cost per collector from
# its own self-metrics (wall time and process CPU while each collector ran).
# The stand-ins run in their own process, which is not measured.
#
# The agent runs against an unreachable coordinator (a free loopback port nobody listens on), so
# it keeps collecting and buffering as it would during an outage. Run as root: the eBPF probes
# need it (without root they report themselves degraded and the figures leave them out).
#
# Environment: DURATION (seconds measured, default 120, at least 120 unless BENCH_SHORT=1),
# INTERVAL (seconds, default 5), WARMUP (seconds before measuring, default 10), SUBTASKS (per
# TaskManager stand-in, default 200), BASELINE_REV (a git revision: its agent, built the same way,
# runs beside the current one against the same stand-ins and is measured in the same window,
# a before/after in one run).
set -euo pipefail

DURATION=${DURATION:-120}
SUBTASKS=${SUBTASKS:-200}
INTERVAL=${INTERVAL:-5}
WARMUP=${WARMUP:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
WORK=$(mktemp -d -t tmwarden-bench.XXXXXX)
HZ=$(getconf CLK_TCK)

if ((DURATION < 120)) && [[ ${BENCH_SHORT:-} != 1 ]]; then
	echo "bench-node: DURATION=$DURATION is below the 120 s the benchmark requires (set BENCH_SHORT=1 for a smoke run)" >&2
	exit 2
fi

pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "bench-node: no free loopback port found" >&2
	exit 1
}

# cpu_ticks prints utime+stime of a process in clock ticks. The command name in field 2 may
# contain spaces, so fields are counted after its closing parenthesis.
cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*") "}
	# after "comm) ": state is field 1, utime field 12, stime field 13
	awk '{print $12 + $13}' <<<"$stat"
}

# run_ns prints the nanoseconds the threads of a process ran on a CPU (the sum of
# /proc/PID/task/*/schedstat), a finer cross-check of the tick-based figure. Threads that exited
# are missing from it, so it can read low; 0 when the kernel lacks schedstats.
# (%.0f, not %d: mawk clamps %d at 2^31-1, and an agent past 2.1 s of CPU, eBPF loading included, read as 0 ns.)
run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# The agent is measured as it ships: built by `make release-bin` (static, -trimpath, release
# ldflags), then installed by copying the file as the deb and the image do. How the binary got
# into the page cache matters for its resident size: the linker writes its output through large
# page-cache folios, and a fault in a large folio maps all of it, so the binary straight from
# the linker shows megabytes more RssFile than the same bytes installed by a plain copy.
echo "== building tmwarden-agent (make release-bin) and the TaskManager stand-in"
if ! (cd "$ROOT" && make --no-print-directory release-bin RELEASE_BIN="$WORK/release" VERSION=v0.0.0-bench &&
	go build -o "$BIN/" ./sim/tmstandin) >"$WORK/build.log" 2>&1; then
	echo "bench-node: tmwarden-agent does not build yet, so there is nothing to measure:" >&2
	sed 's/^/    /' "$WORK/build.log" >&2
	exit 2
fi
mkdir -p "$WORK/bin"
cp "$WORK/release/tmwarden-agent" "$WORK/bin/tmwarden-agent"
AGENT=$WORK/bin/tmwarden-agent
BASELINE=
if [[ -n ${BASELINE_REV:-} ]]; then
	echo "== building the agent of $BASELINE_REV (make release-bin of that tree) to run beside it"
	mkdir -p "$WORK/baseline-src"
	if ! (git -C "$ROOT" archive "$BASELINE_REV" | tar -x -C "$WORK/baseline-src" &&
		cd "$WORK/baseline-src" && make --no-print-directory release-bin RELEASE_BIN="$WORK/baseline-release" VERSION=v0.0.0-baseline) \
		>"$WORK/baseline-build.log" 2>&1; then
		echo "bench-node: the agent of $BASELINE_REV does not build:" >&2
		sed 's/^/    /' "$WORK/baseline-build.log" >&2
		exit 2
	fi
	cp "$WORK/baseline-release/tmwarden-agent" "$WORK/bin/tmwarden-agent-baseline"
	BASELINE=$WORK/bin/tmwarden-agent-baseline
fi

NODE_EXPORTER=$(command -v prometheus-node-exporter || true)
if [[ -z $NODE_EXPORTER ]]; then
	echo "== installing Debian's prometheus-node-exporter"
	if [[ $EUID -ne 0 ]]; then
		echo "bench-node: prometheus-node-exporter is missing and installing it needs root" >&2
		exit 2
	fi
	apt-get install -y -qq prometheus-node-exporter >/dev/null 2>"$WORK/apt.log" ||
		{ apt-get update -qq && apt-get install -y -qq prometheus-node-exporter >/dev/null; }
	NODE_EXPORTER=$(command -v prometheus-node-exporter)
fi
NE_VERSION=$("$NODE_EXPORTER" --version 2>&1 | head -1)

if [[ $EUID -ne 0 ]]; then
	echo "bench-node: not root: the eBPF probes will be degraded and their cost is not in the figures" >&2
fi

COORD_PORT=$(free_port)
NE_PORT=$(free_port)
while [[ $NE_PORT == "$COORD_PORT" ]]; do NE_PORT=$(free_port); done

# The stand-ins (sim/tmstandin) serve until their stdin closes: they share a pipe from a sleep,
# which the cleanup ends. Port 0: the kernel picks a free one (a port found free here can be
# taken by the time the stand-in binds it on a busy machine), and the stand-in prints it.
exec {standin_stdin}< <(sleep 100000)
pids+=("$!")
standin_endpoints=()
for version in 1.20.1 2.0.0; do
	TMSTANDIN_FLINK_VERSION=$version TMSTANDIN_SUBTASKS=$SUBTASKS "$BIN/tmstandin" "-Dmetrics.reporter.prom.port=0" \
		<&"$standin_stdin" >"$WORK/standin-$version.out" 2>&1 &
	pids+=("$!")
	for _ in $(seq 1 100); do
		grep -q '^listening' "$WORK/standin-$version.out" && break
		sleep 0.1
	done
	if ! grep -q '^listening' "$WORK/standin-$version.out"; then
		echo "bench-node: the Flink $version TaskManager stand-in did not start:" >&2
		cat "$WORK/standin-$version.out" >&2
		exit 1
	fi
	standin_endpoints+=("$version 127.0.0.1:$(awk '/^listening/ {print $2}' "$WORK/standin-$version.out")")
done
{
	echo "collectors:"
	echo "  taskmanagers:"
	echo "    static:"
	for e in "${standin_endpoints[@]}"; do
		echo "      - {endpoint: \"${e#* }\", resource_id: \"standin-${e%% *}\"}"
	done
} >"$WORK/agent.yaml"
echo "== TaskManager stand-ins ($SUBTASKS subtasks each; Flink version and endpoint): ${standin_endpoints[*]}"

# Every collector on, whatever its default: the agent lists them as --collector.NAME flags.
mapfile -t collectors < <("$AGENT" -h 2>&1 | grep -oE -- '-collector\.[a-z0-9_]+' | sort -u)
enable=()
for c in "${collectors[@]}"; do enable+=("-$c=true"); done

echo "== starting tmwarden-agent (coordinator 127.0.0.1:$COORD_PORT, unreachable) and node_exporter on 127.0.0.1:$NE_PORT"
"$AGENT" --config "$WORK/agent.yaml" --node-name bench-node --coordinator "127.0.0.1:$COORD_PORT" \
	--interval "${INTERVAL}s" --http-addr 127.0.0.1:0 "${enable[@]}" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
pids+=("$AGENT_PID")
BASE_PID=
if [[ -n $BASELINE ]]; then
	# The baseline knows the collectors of its own revision.
	mapfile -t base_collectors < <("$BASELINE" -h 2>&1 | grep -oE -- '-collector\.[a-z0-9_]+' | sort -u)
	base_enable=()
	for c in "${base_collectors[@]}"; do base_enable+=("-$c=true"); done
	"$BASELINE" --config "$WORK/agent.yaml" --node-name bench-node-baseline --coordinator "127.0.0.1:$COORD_PORT" \
		--interval "${INTERVAL}s" --http-addr 127.0.0.1:0 "${base_enable[@]}" >"$WORK/agent-baseline.log" 2>&1 &
	BASE_PID=$!
	pids+=("$BASE_PID")
fi
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$NE_PORT" >"$WORK/node_exporter.log" 2>&1 &
NE_PID=$!
pids+=("$NE_PID")

# http_port LOG prints the port an agent bound its HTTP endpoint to (it binds port 0: a port
# found free here can be taken before the agent binds it on a busy machine) from its log.
http_port() {
	local port
	for _ in $(seq 1 300); do
		port=$(grep -o '"msg":"agent http listening"[^}]*"addr":"[^"]*"' "$1" 2>/dev/null | head -1 | sed 's/.*:\([0-9]*\)"$/\1/')
		[[ -n $port ]] && { echo "$port"; return; }
		sleep 0.1
	done
	echo "bench-node: no HTTP address in $1:" >&2
	tail -n 20 "$1" >&2
	exit 1
}
AGENT_PORT=$(http_port "$WORK/agent.log")
[[ -z $BASE_PID ]] || BASE_PORT=$(http_port "$WORK/agent-baseline.log")

# Prometheus scrapes both at the report interval: node_exporter does its work on scrape, the
# agent serves its own /metrics besides collecting on its interval.
(
	while sleep "$INTERVAL"; do
		curl -s -o /dev/null --max-time "$INTERVAL" "http://127.0.0.1:$NE_PORT/metrics" || true
		curl -s -o /dev/null --max-time "$INTERVAL" "http://127.0.0.1:$AGENT_PORT/metrics" || true
		[[ -z $BASE_PID ]] || curl -s -o /dev/null --max-time "$INTERVAL" "http://127.0.0.1:$BASE_PORT/metrics" || true
	done
) &
pids+=("$!")

# collector_costs prints "NAME WALL_SECONDS CPU_SECONDS ROUNDS" per collector from the agent's
# own /metrics (cumulative since start).
collector_costs() {
	curl -s --max-time 5 "http://127.0.0.1:$AGENT_PORT/metrics" | awk '
		function coll(l,   m) { if (match(l, /collector="[^"]+"/)) return substr(l, RSTART + 11, RLENGTH - 12); return "" }
		/^tmwarden_collector_duration_seconds_sum\{/ { w[coll($0)] = $NF }
		/^tmwarden_collector_duration_seconds_count\{/ { n[coll($0)] = $NF }
		/^tmwarden_collector_cpu_time_seconds_total\{/ { c[coll($0)] = $NF }
		END { for (k in w) printf "%s %s %s %s\n", k, w[k], (k in c ? c[k] : 0), n[k] }'
}

sleep "$WARMUP"
for p in "$AGENT_PID" "$NE_PID" $BASE_PID; do
	if ! kill -0 "$p" 2>/dev/null; then
		echo "bench-node: a measured process exited during warm-up; its log:" >&2
		tail -n 20 "$WORK/agent.log" "$WORK/node_exporter.log" >&2
		exit 1
	fi
done

a0=$(cpu_ticks "$AGENT_PID")
[[ -z $BASE_PID ]] || { b0=$(cpu_ticks "$BASE_PID"); bs0=$(run_ns "$BASE_PID"); }
n0=$(cpu_ticks "$NE_PID")
as0=$(run_ns "$AGENT_PID")
ns0=$(run_ns "$NE_PID")
t0=$(date +%s.%N)
collector_costs >"$WORK/costs0"
echo "== measuring for ${DURATION}s (interval ${INTERVAL}s, after ${WARMUP}s warm-up)"
sleep "$DURATION"
a1=$(cpu_ticks "$AGENT_PID")
[[ -z $BASE_PID ]] || { b1=$(cpu_ticks "$BASE_PID"); bs1=$(run_ns "$BASE_PID"); }
n1=$(cpu_ticks "$NE_PID")
as1=$(run_ns "$AGENT_PID")
ns1=$(run_ns "$NE_PID")
t1=$(date +%s.%N)
collector_costs >"$WORK/costs1"
load_avg=$(cut -d' ' -f1-3 /proc/loadavg)
a_hwm=$(status_kib "$AGENT_PID" VmHWM)
n_hwm=$(status_kib "$NE_PID" VmHWM)
a_rss=$(status_kib "$AGENT_PID" VmRSS)
n_rss=$(status_kib "$NE_PID" VmRSS)
a_anon=$(status_kib "$AGENT_PID" RssAnon)
n_anon=$(status_kib "$NE_PID" RssAnon)
a_file=$(status_kib "$AGENT_PID" RssFile)
if [[ -n $BASE_PID ]]; then
	b_hwm=$(status_kib "$BASE_PID" VmHWM)
	b_rss=$(status_kib "$BASE_PID" VmRSS)
	b_anon=$(status_kib "$BASE_PID" RssAnon)
	b_file=$(status_kib "$BASE_PID" RssFile)
fi
n_file=$(status_kib "$NE_PID" RssFile)

if ! kill -0 "$AGENT_PID" 2>/dev/null; then
	echo "bench-node: the agent died while its coordinator was unreachable" >&2
	tail -n 20 "$WORK/agent.log" >&2
	exit 1
fi

# Collector states, to show which probes ran (degraded ones name their reason).
status=$(curl -s --max-time 5 "http://127.0.0.1:$AGENT_PORT/debug/status" || true)

awk -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v a0="$a0" -v a1="$a1" -v n0="$n0" -v n1="$n1" \
	-v as0="$as0" -v as1="$as1" -v ns0="$ns0" -v ns1="$ns1" -v ah="$a_hwm" -v nh="$n_hwm" -v ar="$a_rss" -v nr="$n_rss" -v aa="$a_anon" -v na="$n_anon" -v af="$a_file" -v nf="$n_file" -v ne="$NE_VERSION" -v iv="$INTERVAL" -v la="$load_avg" \
	-v brev="${BASELINE_REV:-}" -v bpid="$BASE_PID" -v b0="${b0:-0}" -v b1="${b1:-0}" -v bs0="${bs0:-0}" -v bs1="${bs1:-0}" \
	-v bh="${b_hwm:-0}" -v br="${b_rss:-0}" -v ba="${b_anon:-0}" -v bf="${b_file:-0}" '
BEGIN {
	secs = t1 - t0
	acpu = (as1 - as0) / 1e7 / secs
	ncpu = (ns1 - ns0) / 1e7 / secs
	# schedstat of live threads misses the ones that exited; when the ticks (which count them)
	# say more, the ticks are the figure, and the line below says so.
	at = (a1 - a0) / hz / secs * 100
	nt = (n1 - n0) / hz / secs * 100
	if (at > acpu * 1.2 + 0.05) { acpu = at; anote = "agent: threads exited during the run; CPU % from clock ticks" }
	if (nt > ncpu * 1.2 + 0.05) { ncpu = nt; nnote = "node_exporter: threads exited during the run; CPU % from clock ticks" }
	printf "\nagent overhead over %.1f s, %s s interval (CPU %% of one core from schedstat ns; clock ticks at %d/s beside it)\n", secs, iv, hz
	printf "%-26s %9s %14s %7s %14s %9s %10s %10s\n", "process", "CPU %", "CPU ns", "ticks", "peak RSS MiB", "RSS MiB", "anon MiB", "file MiB"
	printf "%-26s %9.3f %14.0f %7d %14.1f %9.1f %10.1f %10.1f\n", "tmwarden-agent", acpu, as1 - as0, a1 - a0, ah / 1024, ar / 1024, aa / 1024, af / 1024
	printf "%-26s %9.3f %14.0f %7d %14.1f %9.1f %10.1f %10.1f\n", "prometheus-node-exporter", ncpu, ns1 - ns0, n1 - n0, nh / 1024, nr / 1024, na / 1024, nf / 1024
	if (bpid != "") {
		bcpu = (bs1 - bs0) / 1e7 / secs
		bt = (b1 - b0) / hz / secs * 100
		if (bt > bcpu * 1.2 + 0.05) { bcpu = bt; bnote = "baseline agent: threads exited during the run; CPU % from clock ticks" }
		printf "%-26s %9.3f %14.0f %7d %14.1f %9.1f %10.1f %10.1f\n", "agent @" substr(brev, 1, 19), bcpu, bs1 - bs0, b1 - b0, bh / 1024, br / 1024, ba / 1024, bf / 1024
	}
	print "(RSS at the end split into anonymous memory and mapped file pages, mostly the binary itself)"
	printf "(%s; load average at the end %s)\n", ne, la
	if (anote != "") print anote
	if (nnote != "") print nnote
	if (ncpu > 0) printf "ratio agent / node_exporter: CPU %.2fx", acpu / ncpu; else printf "ratio agent / node_exporter: CPU n/a (node_exporter used no measurable CPU)"
	printf ", peak RSS %.2fx\n", ah / nh
	if (bpid != "") {
		if (bnote != "") print bnote
		printf "baseline %s / node_exporter: CPU %.2fx, peak RSS %.2fx; this agent / baseline: CPU %.2fx, peak RSS %.2fx\n", brev, (ncpu > 0 ? bcpu / ncpu : 0), bh / nh, (bcpu > 0 ? acpu / bcpu : 0), ah / bh
	}
	printf "goal CPU <= node_exporter: %s; goal peak RSS <= 40 MiB: %s\n", (acpu <= ncpu ? "met" : "NOT met"), (ah / 1024 <= 40 ? "met" : "NOT met")
}'
echo
echo "agent cost per collector over the measured window (its self-metrics; CPU is the process's while the collector ran):"
awk -v secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" '
	NR == FNR { w0[$1] = $2; c0[$1] = $3; n0[$1] = $4; next }
	{ rows = $4 - n0[$1]; if (rows <= 0) next
	  printf "  %-18s rounds %4d  wall %8.2f ms/round  CPU %8.2f ms/round  = %6.3f %% of one core\n", $1, rows,
		($2 - w0[$1]) * 1000 / rows, ($3 - c0[$1]) * 1000 / rows, ($3 - c0[$1]) / secs * 100 }' "$WORK/costs0" "$WORK/costs1" | sort

if [[ -n $status ]]; then
	echo
	echo "collector states (/debug/status):"
	if command -v jq >/dev/null; then
		jq -r '.. | objects | select(has("name") and has("state")) | "  \(.name): \(.state) \(.reason // "")"' <<<"$status" 2>/dev/null | sort -u ||
			echo "  $status" | head -c 2000
	else
		echo "  $status" | head -c 2000
		echo
	fi
fi
