#!/usr/bin/env bash
# TPM decryptions per second through flowvault (salted session with response
# encryption), a raw Esys_RSA_Decrypt loop in the same kind of session and a
# raw loop in the clear, on one swtpm started here, printed as ratios.
#   bench/tpm2/run.sh [BUILD_DIR] [SECONDS] [ROUNDS]
# BUILD_DIR defaults to build/ next to this source tree; build it first
# (cmake --build BUILD_DIR --target bench-tpm2 plugin_tpm2 flowvault-cli).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export FV_SOURCE_DIR=$(cd "$here/../.." && pwd)
export FV_BUILD_DIR=$(cd "${1:-$FV_SOURCE_DIR/build}" && pwd)
SECONDS_TOTAL=${2:-20}
ROUNDS=${3:-20}
BENCH="$FV_BUILD_DIR/bench/bench-tpm2"
[ -x "$BENCH" ] || { echo "run.sh: $BENCH is missing: build the tree first" >&2; exit 1; }

. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/swtpm.sh"
export TSS2_LOG=all+NONE

echo "starting swtpm"
swtpm_start "$T/tpm"
cat >"$T/fv.json" <<JSON
{"plugin_path": ["$FV_BUILD_DIR/lib/flowvault/plugins"],
 "keys": {"bench": {"provider": "tpm2", "tcti": "$FV_TCTI", "handle": "0x81000010"}}}
JSON
chmod 600 "$T/fv.json"
echo "generating an RSA-2048 key at persistent handle 0x81000010 on $FV_TCTI"
"$FV" --config "$T/fv.json" generate bench >/dev/null
echo "measuring for ${SECONDS_TOTAL}s"
"$BENCH" "$T/fv.json" bench "$FV_TCTI" 0x81000010 "$SECONDS_TOTAL" "$ROUNDS"
