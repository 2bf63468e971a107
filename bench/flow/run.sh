#!/usr/bin/env bash
# Flows benchmarks; ratios are against baselines measured in the same run.
#   bench/flow/run.sh [SECONDS]      (default 5 per measurement)
# Environment: FV_BUILD_DIR (default <source>/build), WRK_CONNECTIONS (32).
set -euo pipefail
SECONDS_EACH=${1:-5}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FV_BUILD_DIR:-$SRC/build}
FV="$BUILD/bin/flowvault"
BENCH="$BUILD/bench/fv-flow-bench"
HERE="$SRC/bench/flow"
CONNS=${WRK_CONNECTIONS:-32}
for tool in "$FV" "$BENCH"; do
	[ -x "$tool" ] || { echo "missing $tool: build first (cmake --build $BUILD)" >&2; exit 1; }
done
for cmd in node openssl wrk; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd" >&2; exit 1; }
done
PY=$(command -v /usr/bin/python3 || command -v python3)

T=$(mktemp -d "${TMPDIR:-/tmp}/fvbench.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$T"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on $1" >&2
	exit 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== setup: RSA-2048 PEM key, 64 ping requests from the Node client"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/key.pem" 2>/dev/null
chmod 600 "$T/key.pem"
FV_PORT=$(free_port)
THREADS=$(nproc)
cat >"$T/config.json" <<JSON
{"keys": {"bench": {"provider": "pem", "path": "key.pem"}},
 "serve": {"listen": "127.0.0.1:$FV_PORT", "admin_listen": "off", "keys": ["bench"],
           "allow_unsigned": true, "threads": $THREADS}}
JSON
chmod 600 "$T/config.json"
"$FV" --config "$T/config.json" pubkey bench >"$T/pub.pem"
for i in $(seq 64); do
	node "$SRC/tests/flow/flows_client.js" encrypt --pub "$T/pub.pem" \
		--payload '{"version":"3.0","action":"ping"}'
done >"$T/requests.txt"
head -1 "$T/requests.txt" >"$T/ping.json"

echo "== in-process round trip (decrypt + encrypt), one thread, ${SECONDS_EACH}s each"
# Rates per CPU second (openssl speed's default), so that other load on the
# machine does not skew the ratios; wall-clock rates are printed too.
OPENSSL_CPU=$(openssl speed -seconds "$SECONDS_EACH" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { print $6 }')
OPENSSL_WALL=$(openssl speed -elapsed -seconds "$SECONDS_EACH" rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { print $6 }')
read -r FV_WALL FV_CPU < <("$BENCH" "$T/config.json" bench "$T/requests.txt" "$SECONDS_EACH" | awk '{ print $2, $3 }')
read -r NODE_WALL NODE_CPU < <(node "$HERE/node_roundtrip.js" "$T/key.pem" "$T/requests.txt" "$SECONDS_EACH" | awk '{ print $2, $3 }')
printf '  %-40s %10s %10s\n' "" "per CPU s" "per wall s"
printf '  %-40s %10s %10s\n' "openssl speed rsa2048 private ops" "$OPENSSL_CPU" "$OPENSSL_WALL"
printf '  %-40s %10s %10s\n' "flowvault round trips (pem plugin)" "$FV_CPU" "$FV_WALL"
printf '  %-40s %10s %10s\n' "node round trips (Meta example style)" "$NODE_CPU" "$NODE_WALL"
printf '  RATIO flowvault / openssl speed     : %s per CPU s, %s per wall s (target >= 0.97)\n' \
	"$(ratio "$FV_CPU" "$OPENSSL_CPU")" "$(ratio "$FV_WALL" "$OPENSSL_WALL")"
printf '  RATIO flowvault / node              : %s per CPU s, %s per wall s\n' \
	"$(ratio "$FV_CPU" "$NODE_CPU")" "$(ratio "$FV_WALL" "$NODE_WALL")"

# wrk_run NAME PORT: ping requests for SECONDS_EACH; sets RPS, P50, P99.
wrk_run() {
	local out
	FLOW_BODY="$T/ping.json" wrk -t1 -c1 -d1s -s "$HERE/post.lua" "http://127.0.0.1:$2/flows" >/dev/null
	out=$(FLOW_BODY="$T/ping.json" wrk -t1 -c"$CONNS" -d"${SECONDS_EACH}s" --latency \
		-s "$HERE/post.lua" "http://127.0.0.1:$2/flows")
	echo "$out" | grep -q "Non-2xx" && { echo "$1: non-2xx answers:" >&2; echo "$out" >&2; exit 1; }
	RPS=$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')
	P50=$(echo "$out" | awk '$1 == "50%" { print $2 }')
	P99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
	printf '  %-28s %10s req/s   p50 %-9s p99 %s\n' "$1" "$RPS" "$P50" "$P99"
}

# cpu_ticks PID: user+system clock ticks of PID and its children (all threads).
cpu_ticks() {
	local p total=0
	for p in "$1" $(pgrep -P "$1"); do
		total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}
# serve_run NAME ISOLATION: serve with that isolation under wrk; sets RPS,
# P50, P99 and PER_CPU (requests per CPU second of all serve's processes).
serve_run() {
	local pid before after ticks
	cat >"$T/config.json" <<JSON
{"keys": {"bench": {"provider": "pem", "path": "key.pem"}},
 "serve": {"listen": "127.0.0.1:$FV_PORT", "admin_listen": "off", "keys": ["bench"],
           "allow_unsigned": true, "threads": $THREADS, "isolation": "$2"}}
JSON
	"$FV" -q --config "$T/config.json" serve &
	pid=$!
	pids+=("$pid")
	wait_port "$FV_PORT"
	sleep 0.5
	before=$(cpu_ticks "$pid")
	wrk_run "$1" "$FV_PORT"
	after=$(cpu_ticks "$pid")
	ticks=$((after - before))
	PER_CPU=$(awk -v r="$RPS" -v s="$SECONDS_EACH" -v t="$ticks" -v hz="$(getconf CLK_TCK)" \
		'BEGIN { printf "%.0f", r * s / (t / hz) }')
	printf '  %-28s %10s requests per CPU second (all its processes)\n' "" "$PER_CPU"
	kill -TERM "$pid"; wait "$pid" || true
}

echo "== serve under load: ping requests, wrk -c$CONNS, ${SECONDS_EACH}s each"
serve_run "serve, isolation none" none
NONE_RPS=$RPS NONE_P99=$P99 NONE_CPU=$PER_CPU
serve_run "serve, separated (default)" separated
FV_RPS=$RPS SEP_P99=$P99 SEP_CPU=$PER_CPU
# wrk prints latencies with units (us, ms, s): compare in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1e6 }'; }
printf '  RATIO separated / none requests/s   : %s (target >= 0.90)\n' "$(ratio "$FV_RPS" "$NONE_RPS")"
printf '  RATIO separated / none p99 latency  : %s (target <= 1.20)\n' \
	"$(ratio "$(to_us "$SEP_P99")" "$(to_us "$NONE_P99")")"
printf '  RATIO separated serve / openssl speed, per CPU s : %s (target >= 0.85)\n' \
	"$(ratio "$SEP_CPU" "$OPENSSL_CPU")"
printf '  RATIO isolation none / openssl speed, per CPU s  : %s\n' "$(ratio "$NONE_CPU" "$OPENSSL_CPU")"

NODE_PORT=$(free_port)
node "$HERE/node_server.js" "$NODE_PORT" "$T/key.pem" &
pids+=($!)
wait_port "$NODE_PORT"
wrk_run "node http (Meta example)" "$NODE_PORT"
NODE_RPS=$RPS
printf '  RATIO flowvault / node requests/s   : %s (target >= 1.5)\n' "$(ratio "$FV_RPS" "$NODE_RPS")"
