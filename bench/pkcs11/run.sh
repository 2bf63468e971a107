#!/usr/bin/env bash
# Decrypts per second through flowvault's pkcs11 plugin against a raw
# C_Decrypt loop with the same token, key and mechanism, 1 and 2 threads,
# on SoftHSM2 (raw RSA + host OAEP) and NSS softokn (OAEP in the token).
# Prints the ratios (flowvault / raw; the target is >= 0.95). Then the same
# SoftHSM2 token through p11-kit remoting (p11-kit-client.so against a
# `p11-kit server` on a Unix socket) against loading it directly: the ratio
# remote / direct is the cost of the network-HSM path.
#   bench/pkcs11/run.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
SECONDS_PER_PHASE=${2:-2}
FV="$BUILD/bin/flowvault"
BENCH="$BUILD/bench/p11-bench"
[ -x "$BENCH" ] || { echo "build first: cmake --build $BUILD (target p11-bench)" >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/fvbench.XXXXXX")
SERVER_PGID=
trap '[ -n "$SERVER_PGID" ] && kill -- -"$SERVER_PGID" 2>/dev/null; rm -rf "$T"' EXIT
chmod 700 "$T"
unset FLOWVAULT_CONFIG
export FLOWVAULT_PLUGIN_PATH="$BUILD/lib/flowvault/plugins"
printf 'hello flows, this is a 32-byte AES key......' >"$T/plain"

encrypt() {
	openssl pkeyutl -encrypt -pubin -inkey "$1" -in "$T/plain" -out "$2" \
		-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
}

echo "== SoftHSM2: token OAEP-SHA256 unavailable, CKM_RSA_X_509 + host unpadding"
mkdir -p "$T/softhsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$T/softhsm/tokens" >"$T/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$T/softhsm/softhsm2.conf"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
printf 1234 >"$T/hsm-pin"; chmod 600 "$T/hsm-pin"
M=/usr/lib/softhsm/libsofthsm2.so
printf '{"keys": {"bench": {"provider": "pkcs11", "module": "%s", "uri": "pkcs11:token=bench;object=bench-key", "pin": "file:%s", "allow_host_oaep": true}}}\n' \
	"$M" "$T/hsm-pin" >"$T/hsm.json"
"$FV" --config "$T/hsm.json" -q generate bench >/dev/null
"$FV" --config "$T/hsm.json" pubkey bench --out "$T/hsm.pem"
encrypt "$T/hsm.pem" "$T/hsm.bin"
for threads in 1 2; do
	"$BENCH" "$T/hsm.json" bench "$T/hsm.bin" "$M" "" bench bench-key "$T/hsm-pin" host \
		"$SECONDS_PER_PHASE" "$threads"
done

echo "== SoftHSM2 through p11-kit-client.so and p11-kit server vs directly"
setsid p11-kit server -f -n "$T/hsm.sock" --provider "$M" "pkcs11:token=bench" \
	>/dev/null 2>"$T/server.err" &
SERVER_PGID=$!
for _ in $(seq 100); do [ -S "$T/hsm.sock" ] && break; sleep 0.1; done
export P11_KIT_SERVER_ADDRESS="unix:path=$T/hsm.sock"
sed "s#\"module\": \"$M\"#\"module\": \"/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so\"#" \
	"$T/hsm.json" >"$T/remote.json"
chmod 600 "$T/remote.json"
for threads in 1 2; do
	"$BENCH" --compare "$T/hsm.json" "$T/remote.json" bench "$T/hsm.bin" \
		"$SECONDS_PER_PHASE" "$threads"
done
kill -- -"$SERVER_PGID"
SERVER_PGID=

echo "== NSS softokn: CKM_RSA_PKCS_OAEP with SHA-256 in the token"
mkdir -p "$T/nssdb"
certutil -N -d "sql:$T/nssdb" --empty-password
: >"$T/nss-pin"; chmod 600 "$T/nss-pin"
M=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
ARGS="configdir='sql:$T/nssdb' certPrefix='' keyPrefix='' secmod='secmod.db' flags="
printf '{"keys": {"bench": {"provider": "pkcs11", "module": "%s", "init_args": "%s", "uri": "pkcs11:token=NSS%%20Certificate%%20DB;object=bench-key", "pin": "file:%s"}}}\n' \
	"$M" "$ARGS" "$T/nss-pin" >"$T/nss.json"
"$FV" --config "$T/nss.json" -q generate bench >/dev/null
"$FV" --config "$T/nss.json" pubkey bench --out "$T/nss.pem"
encrypt "$T/nss.pem" "$T/nss.bin"
for threads in 1 2; do
	"$BENCH" "$T/nss.json" bench "$T/nss.bin" "$M" "$ARGS" "NSS Certificate DB" bench-key \
		"$T/nss-pin" token "$SECONDS_PER_PHASE" "$threads"
done
