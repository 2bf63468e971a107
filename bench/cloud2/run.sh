#!/usr/bin/env bash
# Decrypts per second through the gcp-kms and azure-keyvault plugins against
# a bare libcurl loop posting the same decrypt request with the same token to
# the same simulator (tests/cloud2), 1 and 4 threads. Prints the ratios
# (plugin / raw; the target is >= 0.95: no token fetch or key lookup per
# decrypt). The simulators are Python, so absolute numbers say little; the
# ratio says what the plugin adds.
#   [ROUNDS=5] bench/cloud2/run.sh [BUILD_DIR] [COUNT_PER_THREAD]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
COUNT=${2:-200}
FV="$BUILD/bin/flowvault"
BENCH="$BUILD/bench/cloud-bench"
PY=$(command -v /usr/bin/python3 || command -v python3)
[ -x "$BENCH" ] || { echo "build first: cmake --build $BUILD (target cloud-bench)" >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/fvbench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
chmod 700 "$T"
unset FLOWVAULT_CONFIG
export FLOWVAULT_PLUGIN_PATH="$BUILD/lib/flowvault/plugins"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 1 \
	-subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$T/server.key" -out "$T/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:*.vault.localhost\n' >"$T/ext"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-out "$T/server.pem" -days 1 -extfile "$T/ext" 2>/dev/null
head -c 30 /dev/urandom | base64 | tr -d '/+=' >"$T/token"
export BENCH_TOKEN=$(cat "$T/token")
export RAW_SECRET_HEADER="Authorization: Bearer $BENCH_TOKEN"

# requests_per_decrypt NAME PORT PLUGIN_CMD...: the simulator's API request
# count for one plugin run (4 threads x COUNT decrypts, plus the one key read
# when the key is opened, and the bearer challenge for Key Vault), and the
# tokens fetched: what no noise can blur.
requests_per_decrypt() {
	local name=$1 port=$2 before after; shift 2
	before=$(curl -sf --cacert "$T/ca.pem" "https://127.0.0.1:$port/_sim/stats")
	"$@" >/dev/null
	after=$(curl -sf --cacert "$T/ca.pem" "https://127.0.0.1:$port/_sim/stats")
	"$PY" -c 'import json,sys
b, a = json.loads(sys.argv[2]), json.loads(sys.argv[3])
d = lambda k: a.get(k, 0) - b.get(k, 0)
n = 4 * int(sys.argv[4])
print("%s: %d decrypts, %d API requests (%.3f per decrypt, key read included), %d token(s) fetched" % (
    sys.argv[1], n, d("api_requests"), d("api_requests") / n, d("tokens_issued")))' \
		"$name" "$before" "$after" "$COUNT"
}

ROUNDS=${ROUNDS:-5}
# compare NAME THREADS PLUGIN_CMD... -- RAW_CMD...: ROUNDS rounds, plugin and
# raw back to back in each (the machine's load drifts), then the median of
# the per-round ratios.
compare() {
	local name=$1 threads=$2 i; shift 2
	local plugin_cmd=() raw_cmd=()
	while [ "$1" != "--" ]; do plugin_cmd+=("$1"); shift; done
	shift
	raw_cmd=("$@")
	for ((i = 0; i < ROUNDS; i++)); do
		echo "$("${plugin_cmd[@]}") | $("${raw_cmd[@]}")"
	done | "$PY" -c 'import re,statistics,sys
rows = [[float(x) for x in re.findall(r"([0-9.]+)/s", line)] for line in sys.stdin]
ratios = sorted(p / r for p, r in rows)
print("%-16s %d thread(s): plugin %7.1f/s  raw %7.1f/s (medians of %d rounds)  ratio %.2f (range %.2f-%.2f)" % (
    sys.argv[1], int(sys.argv[2]), statistics.median(p for p, _ in rows),
    statistics.median(r for _, r in rows), len(rows), statistics.median(ratios), ratios[0], ratios[-1]))' \
		"$name" "$threads"
}

echo "== gcp-kms against tests/cloud2/gcp_kms_sim.py"
GP=$(free_port)
RING=projects/bench/locations/global/keyRings/bench
"$PY" "$SRC/tests/cloud2/gcp_kms_sim.py" --port "$GP" --cert "$T/server.pem" --key "$T/server.key" \
	--static-token "$T/token" --key-ring "$RING" --sa-json "$T/sa.json" >"$T/gcp.log" 2>&1 &
pids+=($!)
wait_port "$GP"
printf '{"keys": {"bench": {"provider": "gcp-kms", "key_version": "%s/cryptoKeys/k/cryptoKeyVersions/1", "endpoint": "https://127.0.0.1:%s", "ca_file": "%s", "access_token": "env:BENCH_TOKEN"}}}\n' \
	"$RING" "$GP" "$T/ca.pem" >"$T/gcp.json"
sed "s|\"access_token\": \"env:BENCH_TOKEN\"|\"credentials_file\": \"$T/sa.json\"|" "$T/gcp.json" >"$T/gcp-sa.json"
chmod 600 "$T/gcp.json" "$T/gcp-sa.json"
"$FV" --config "$T/gcp.json" -q generate bench >/dev/null
"$FV" --config "$T/gcp.json" pubkey bench >"$T/gcp.pub"
"$PY" - "$("$BENCH" encrypt "$T/gcp.pub")" >"$T/gcp.body" <<'PY'
import base64, json, sys
import crcmod.predefined
ct = base64.b64decode(sys.argv[1])
print(json.dumps({"ciphertext": sys.argv[1],
                  "ciphertextCrc32c": str(crcmod.predefined.mkCrcFun("crc-32c")(ct))}))
PY
for threads in 1 4; do
	compare gcp-kms "$threads" "$BENCH" plugin "$T/gcp.json" bench "$T/gcp.pub" "$threads" "$COUNT" -- \
		"$BENCH" raw "https://127.0.0.1:$GP/v1/$RING/cryptoKeys/k/cryptoKeyVersions/1:asymmetricDecrypt" \
		"$T/ca.pem" "$threads" "$COUNT" "$T/gcp.body" "Content-Type: application/json"
done
requests_per_decrypt "gcp-kms (key file)" "$GP" "$BENCH" plugin "$T/gcp-sa.json" bench "$T/gcp.pub" 4 "$COUNT"

echo "== azure-keyvault against tests/cloud2/azure_kv_sim.py"
AP=$(free_port)
"$PY" "$SRC/tests/cloud2/azure_kv_sim.py" --port "$AP" --cert "$T/server.pem" --key "$T/server.key" \
	--static-token "$T/token" --resource https://vault.localhost --tenant bench-tenant \
	--client-id bench-client --client-secret-file "$T/token" >"$T/azure.log" 2>&1 &
pids+=($!)
wait_port "$AP"
VAULT="https://bench.vault.localhost:$AP"
printf '{"keys": {"bench": {"provider": "azure-keyvault", "vault_url": "%s", "key_name": "bench", "ca_file": "%s", "access_token": "env:BENCH_TOKEN"}}}\n' \
	"$VAULT" "$T/ca.pem" >"$T/azure.json"
sed "s|\"access_token\": \"env:BENCH_TOKEN\"|\"tenant_id\": \"bench-tenant\", \"client_id\": \"bench-client\", \"client_secret\": \"env:BENCH_TOKEN\", \"authority_host\": \"https://127.0.0.1:$AP\"|" \
	"$T/azure.json" >"$T/azure-cc.json"
chmod 600 "$T/azure.json" "$T/azure-cc.json"
"$FV" --config "$T/azure.json" -q generate bench >/dev/null
"$FV" --config "$T/azure.json" pubkey bench >"$T/azure.pub"
KID=$(curl -sf --cacert "$T/ca.pem" -H "$RAW_SECRET_HEADER" "$VAULT/keys/bench?api-version=7.4" |
	"$PY" -c 'import json,sys; print(json.load(sys.stdin)["key"]["kid"])')
"$PY" - "$("$BENCH" encrypt "$T/azure.pub")" >"$T/azure.body" <<'PY'
import base64, json, sys
ct = base64.b64decode(sys.argv[1])
print(json.dumps({"alg": "RSA-OAEP-256", "value": base64.urlsafe_b64encode(ct).rstrip(b"=").decode()}))
PY
for threads in 1 4; do
	compare azure-keyvault "$threads" "$BENCH" plugin "$T/azure.json" bench "$T/azure.pub" "$threads" "$COUNT" -- \
		"$BENCH" raw "$KID/decrypt?api-version=7.4" "$T/ca.pem" "$threads" "$COUNT" \
		"$T/azure.body" "Content-Type: application/json"
done
requests_per_decrypt "azure-keyvault (client credentials)" "$AP" "$BENCH" plugin "$T/azure-cc.json" bench "$T/azure.pub" 4 "$COUNT"
