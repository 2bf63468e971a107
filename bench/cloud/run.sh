#!/usr/bin/env bash
# Decrypts per second through the aws-kms and vault-transit plugins against
# their simulators, and a bare libcurl loop (one keep-alive handle per
# thread) posting the same request to the same simulator. Prints the ratio
# plugin / raw (>= 0.95: the plugin adds no round trip — no credential
# fetch, login or key lookup per decrypt) and the simulator's requests and
# connections per decrypt.
#   bench/cloud/run.sh [BUILD_DIR] [DECRYPTS_PER_THREAD] [THREADS]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
export FV_SOURCE_DIR=$SRC
export FV_BUILD_DIR=$(cd "${1:-$SRC/build}" && pwd)
COUNT=${2:-150}
THREADS=${3:-4}
BENCH="$FV_BUILD_DIR/bench/cloud-bench"
[ -x "$BENCH" ] || { echo "build first: cmake --build $FV_BUILD_DIR (target cloud-bench)" >&2; exit 2; }
. "$SRC/tests/lib.sh"
. "$SRC/tests/cloud/cloud_lib.sh"
set +e
export FLOWVAULT_PLUGIN_PATH="$FV_BUILD_DIR/lib/flowvault/plugins"
cloud_ca

rate() { sed -n 's/.*: \([0-9.]*\)\/s$/\1/p'; }
stats() { sim_ctl "$1" /_sim/stats; }
# measure NAME PORT OP PLUGIN_ARGS -- RAW_ARGS: alternate raw and plugin
# runs twice, keep the better of each, print the ratio.
measure() {
	local name=$1 port=$2 op=$3 best_raw=0 best_plugin=0 r i
	shift 3
	local plugin_args=() raw_args=()
	while [ "$1" != -- ]; do plugin_args+=("$1"); shift; done
	shift
	raw_args=("$@")
	for i in 1 2; do
		r=$("$BENCH" raw "${raw_args[@]}" | rate) || exit 1
		awk -v a="$r" -v b="$best_raw" 'BEGIN { exit !(a > b) }' && best_raw=$r
		sim_ctl "$port" /_sim/faults '{"reset_counts": true}' >/dev/null
		r=$("$BENCH" plugin "${plugin_args[@]}" "$THREADS" "$COUNT" | rate) || exit 1
		awk -v a="$r" -v b="$best_plugin" 'BEGIN { exit !(a > b) }' && best_plugin=$r
	done
	"$PY" - "$name" "$best_plugin" "$best_raw" "$(stats "$port")" "$op" "$((THREADS * COUNT))" <<'PY'
import json, sys
name, plugin, raw, stats, op, n = sys.argv[1:]
plugin, raw, n = float(plugin), float(raw), int(n)
s = json.loads(stats)
total = sum(s["counts"].values())
print("%-14s plugin %8.1f/s   raw libcurl %8.1f/s   ratio %.3f   requests/decrypt %.3f (%s %d)   connections %d"
      % (name, plugin, raw, plugin / raw, total / n, op, s["counts"].get(op, 0), s["connections"]))
PY
}

echo "== $THREADS threads x $COUNT decrypts, best of 2 (simulators are single Python processes)"

# AWS KMS: static credentials, SigV4 by libcurl on both sides.
aws_identities "$T/ids.json"
KMS=$(free_port)
sim_start kms "$KMS" aws_kms_sim.py --cert "$T/server.pem" --key "$T/server.key" --identities "$T/ids.json"
export CFG_AKID=$(ident "$T/ids.json" config access_key) CFG_SECRET=$(ident "$T/ids.json" config secret_key)
cat >"$T/aws.json" <<JSON
{"keys": {"flows": {"provider": "aws-kms", "region": "eu-west-1", "key_id": "alias/bench",
  "endpoint": "https://127.0.0.1:$KMS", "ca_file": "$T/ca.pem",
  "access_key_id": "env:CFG_AKID", "secret_access_key": "env:CFG_SECRET"}}}
JSON
chmod 600 "$T/aws.json"
"$FV" --config "$T/aws.json" -q generate flows >/dev/null
"$FV" --config "$T/aws.json" pubkey flows >"$T/aws.pub"
ARN=$("$FV_BUILD_DIR/tests/cloud_describe_key" "$T/aws.json" flows | sed -n 's/^remote_id: //p')
CT=$("$BENCH" encrypt "$T/aws.pub")
printf '{"CiphertextBlob":"%s","EncryptionAlgorithm":"RSAES_OAEP_SHA_256","KeyId":"%s"}' "$CT" "$ARN" >"$T/aws.body"
RAW_SIGV4="aws:amz:eu-west-1:kms" RAW_USERPWD="$CFG_AKID:$CFG_SECRET" \
measure aws-kms "$KMS" Decrypt "$T/aws.json" flows "$T/aws.pub" -- \
	"https://127.0.0.1:$KMS/" "$T/ca.pem" "$THREADS" "$COUNT" "$T/aws.body" \
	"Content-Type: application/x-amz-json-1.1" "X-Amz-Target: TrentService.Decrypt"

# Vault Transit: the plugin logs in with AppRole (once), raw uses a token.
vault_setup
V=$(free_port)
vault_start "$V"
export SECRET_ID=$(cat "$T/vault/secret_id")
cat >"$T/vault.json" <<JSON
{"keys": {"flows": {"provider": "vault-transit", "address": "https://127.0.0.1:$V", "key": "bench",
  "ca_file": "$T/ca.pem", "role_id": "$VAULT_ROLE_ID", "secret_id": "env:SECRET_ID"}}}
JSON
chmod 600 "$T/vault.json"
"$FV" --config "$T/vault.json" -q generate flows >/dev/null
"$FV" --config "$T/vault.json" pubkey flows >"$T/vault.pub"
CT=$("$BENCH" encrypt "$T/vault.pub")
printf '{"ciphertext":"vault:v1:%s","padding_scheme":"oaep","hash_algorithm":"sha2-256"}' "$CT" >"$T/vault.body"
RAW_SECRET_HEADER="X-Vault-Token: $(cat "$T/vault/root.token")" \
measure vault-transit "$V" decrypt "$T/vault.json" flows "$T/vault.pub" -- \
	"https://127.0.0.1:$V/v1/transit/decrypt/bench" "$T/ca.pem" "$THREADS" "$COUNT" "$T/vault.body" \
	"Content-Type: application/json"
