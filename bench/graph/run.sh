#!/usr/bin/env bash
# Register one key on N phone numbers (default 1000) against the TLS Graph API
# simulator with 50 ms added latency per request, with the default settings
# (graph.max_in_flight 8) and one at a time (max_in_flight 1), and print the
# ratio of wall times. Extra max_in_flight values to compare: IN_FLIGHT="8 16".
#   bench/graph/run.sh [BUILD_DIR]          (default: build)
#   NUMBERS=200 LATENCY_MS=50 bench/graph/run.sh build-graph
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
build=$(cd "${1:-build}" && pwd)
fv="$build/bin/flowvault"
numbers=${NUMBERS:-1000}
latency=${LATENCY_MS:-50}
in_flight=${IN_FLIGHT:-8}
[ -x "$fv" ] || { echo "no $fv: build first" >&2; exit 1; }

t=$(mktemp -d "${TMPDIR:-/tmp}/fvbench.XXXXXX")
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$t"; }
trap cleanup EXIT
chmod 700 "$t"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/ca.pem" -days 1 \
	-subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$t/server.key" -out "$t/server.csr" \
	-subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$t/server.ext"
openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
	-out "$t/server.pem" -days 1 -extfile "$t/server.ext" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$t/flows.pem" 2>/dev/null
chmod 600 "$t/flows.pem"

export BENCH_TOKEN="bench-$(openssl rand -hex 12)"
python3 "$src/tests/graph/graph_sim.py" serve --cert "$t/server.pem" --key "$t/server.key" \
	--port 0 --port-file "$t/port" --token "$BENCH_TOKEN" --latency-ms "$latency" \
	>"$t/sim.log" 2>&1 &
sim_pid=$!
for ((i = 0; i < 100; i++)); do [ -s "$t/port" ] && break; sleep 0.1; done
port=$(cat "$t/port")

# config MAX_IN_FLIGHT: numbers from a WABA listing, as in production.
config() {
	cat >"$t/config.json" <<JSON
{"keys": {"flows": {"provider": "pem", "path": "flows.pem", "waba_id": "4242"}},
 "graph": {"base_url": "https://127.0.0.1:$port", "access_token": "env:BENCH_TOKEN",
           "ca_file": "ca.pem", "max_in_flight": $1}}
JSON
	chmod 600 "$t/config.json"
}
curl -sS --cacert "$t/ca.pem" -X POST "https://127.0.0.1:$port/_sim/config" \
	--data-binary "{\"wabas\": {\"4242\": {\"count\": $numbers}}}" >/dev/null

# run_once MAX_IN_FLIGHT: wall seconds of one `register` over all numbers.
run_once() {
	local start end
	config "$1"
	curl -sS --cacert "$t/ca.pem" -X POST "https://127.0.0.1:$port/_sim/reset" >/dev/null
	curl -sS --cacert "$t/ca.pem" -X POST "https://127.0.0.1:$port/_sim/config" \
		--data-binary "{\"wabas\": {\"4242\": {\"count\": $numbers}}}" >/dev/null
	start=$(date +%s.%N)
	"$fv" --config "$t/config.json" -q register flows >"$t/out.txt" ||
		{ echo "register failed:" >&2; tail -5 "$t/out.txt" >&2; exit 1; }
	end=$(date +%s.%N)
	grep -q "^$numbers of $numbers phone numbers OK" "$t/out.txt" ||
		{ echo "not every number registered" >&2; exit 1; }
	python3 -c "print($end - $start)"
}

echo "register on $numbers numbers ($((numbers * 2 + (numbers + 99) / 100)) requests), ${latency} ms added latency per request"
base=$(run_once 1)
printf '  max_in_flight=1 (one at a time): %7.2f s  (baseline)\n' "$base"
for n in $in_flight; do
	s=$(run_once "$n")
	printf '  max_in_flight=%-2s               : %7.2f s  ratio %.1fx\n' "$n" "$s" \
		"$(python3 -c "print($base / $s)")"
done
