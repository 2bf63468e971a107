#!/usr/bin/env bash
# Requests per second through HAProxy (dist/haproxy/flowvault.cfg) to one
# and to two `flowvault serve` nodes, both decrypting with one SoftHSM2 key
# exported by one `p11-kit server` (the set-up of tests/deploy), signed and
# encrypted Flows pings sent by wrk over TLS. Ratios, all from this run:
#   two nodes / one node        what a second node adds (on this machine:
#                               every process shares its cores, see below)
#   HAProxy / node directly     the balancer's cost, one node
#   remote key / local key      one node, its key through p11-kit remoting
#                               against the same token loaded directly
# bench/pkcs11/run.sh measures the key path alone (decrypts/s, remote/direct).
#   bench/deploy/run.sh [BUILD_DIR] [SECONDS]     (default: build, 5 s each)
# Environment: WRK_CONNECTIONS (default 16), ROUNDS (one node against two
# nodes, taking turns; default 3, the median ratio is printed).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FV_SOURCE_DIR="$SRC"
FV_BUILD_DIR=$(cd "${1:-$SRC/build}" && pwd)
export FV_BUILD_DIR
SECONDS_EACH=${2:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${WRK_CONNECTIONS:-16}
[ -x "$FV_BUILD_DIR/bin/flowvault" ] || { echo "build first: cmake --build $FV_BUILD_DIR" >&2; exit 2; }
for cmd in haproxy wrk node openssl; do
	command -v "$cmd" >/dev/null || { echo "missing $cmd (scripts/install-deps --test)" >&2; exit 2; }
done
# The test helpers: temporary directory, cleanup, nodes, HAProxy.
. "$SRC/tests/lib.sh"
. "$SRC/tests/deploy/deploy_lib.sh"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# wrk_rps NAME URL: signed pings for SECONDS_EACH after a 1 s warm-up; sets RPS.
wrk_rps() {
	local out
	FLOW_BODY="$T/ping.json" FLOW_SIGNATURE="$SIG" wrk -t1 -c"$CONNS" -d1s \
		-s "$SRC/bench/flow/post.lua" "$2" >/dev/null
	out=$(FLOW_BODY="$T/ping.json" FLOW_SIGNATURE="$SIG" wrk -t2 -c"$CONNS" -d"${SECONDS_EACH}s" \
		--latency -s "$SRC/bench/flow/post.lua" "$2")
	if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
		echo "$1: failed requests:" >&2
		echo "$out" >&2
		exit 1
	fi
	RPS=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
	printf '  %-44s %9s req/s   p50 %-9s p99 %s\n' "$1" "$RPS" \
		"$(awk '$1 == "50%" { print $2 }' <<<"$out")" "$(awk '$1 == "99%" { print $2 }' <<<"$out")"
}

echo "== setup: SoftHSM2 key behind p11-kit server, two nodes, HAProxy ($(nproc) cores)"
deploy_setup
node_config 1
node_config 2
node_start 1
node_start 2
HAPROXY_INTER=1s haproxy_config
haproxy_start "$T/haproxy.cfg"
wait_check node1 L7OK 10
wait_check node2 L7OK 10
node "$SRC/tests/flow/flows_client.js" encrypt --pub "$FLOWS_PUB" \
	--payload '{"version":"3.0","action":"ping"}' | tr -d '\n' >"$T/ping.json"
SIG="sha256=$(openssl dgst -sha256 -hmac "$APP_SECRET" -r "$T/ping.json" | cut -d' ' -f1)"
FRONT="https://127.0.0.1:$FRONT_PORT/flows"

echo "== wrk -c$CONNS, ${SECONDS_EACH}s each"
wrk_rps "node1 directly (remote key)" "https://127.0.0.1:${NODE_PORT[1]}/flows"
DIRECT=$RPS
# One node and two nodes take turns, ROUNDS times: the ratio of each round
# is measured under the same background load; the median is reported.
SCALING=()
for ((round = 1; round <= ROUNDS; round++)); do
	haproxy_cmd "set server flowvault_nodes/node2 state maint" >/dev/null
	before=$(server_stat node2 stot)
	wrk_rps "HAProxy, one node (round $round)" "$FRONT"
	ONE=$RPS
	[ "$round" != 1 ] || ONE_FIRST=$RPS
	[ "$(server_stat node2 stot)" = "$before" ] || { echo "node2 took requests in maintenance" >&2; exit 1; }
	haproxy_cmd "set server flowvault_nodes/node2 state ready" >/dev/null
	wait_status node2 UP 10
	wrk_rps "HAProxy, two nodes (round $round)" "$FRONT"
	SCALING+=("$(ratio "$RPS" "$ONE")")
done
echo "  requests per node (HAProxy's stot): node1 $(server_stat node1 stot), node2 $(server_stat node2 stot)"

# The same token loaded directly by node1: its own SoftHSM2 module.
node_kill 1
KEY_JSON=${KEY_JSON/$CLIENT_MODULE/$SOFTHSM_MODULE} node_config 1
node_start 1
wrk_rps "node1 directly (local key)" "https://127.0.0.1:${NODE_PORT[1]}/flows"
LOCAL=$RPS

printf '  RATIO two nodes / one node through HAProxy : %s (median; rounds: %s)\n' \
	"$(printf '%s\n' "${SCALING[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" \
	"${SCALING[*]}"
printf '  RATIO HAProxy / node directly, one node    : %s\n' "$(ratio "$ONE_FIRST" "$DIRECT")"
printf '  RATIO remote key / local key, one node     : %s\n' "$(ratio "$DIRECT" "$LOCAL")"
if [ "$(nproc)" -le 2 ]; then
	echo "  note: $(nproc) cores run wrk, HAProxy, the p11-kit server and every node: a second node"
	echo "        adds no CPU here, so two / one shows the cost of spreading, not the scaling across machines"
fi
