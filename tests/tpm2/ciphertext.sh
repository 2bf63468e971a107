# Attacker-chosen ciphertext against a TPM key: wrong length, not below the
# modulus (256 x 0xFF), bad OAEP padding (libtpms answers TPM_RC_FAILURE for
# that), encrypted to another key. Each is a rejected request, never a key
# backend failure: exit 6 from `flowvault flow decrypt`, 421 from `flowvault
# serve`, and no error or warning line from flowvault or from tpm2-tss
# (whose TSS2_LOG is left unset here, as on a production host).
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
unset TSS2_LOG

swtpm_start "$T/tpm"
PORT=$(free_port)
UP=$(free_port)
URL="http://127.0.0.1:$PORT/flows"
export APP_SECRET=ciphertext-test-secret
cat >"$T/fv.json" <<JSON
{"plugin_path": ["$PLUGINS"],
 "keys": {"tpm": {"provider": "tpm2", "tcti": "$FV_TCTI", "key_file": "tpm.tss2"}},
 "serve": {"listen": "127.0.0.1:$PORT", "admin_listen": "off", "keys": ["tpm"],
           "app_secrets": ["env:APP_SECRET"], "upstream": "http://127.0.0.1:$UP/"}}
JSON
chmod 600 "$T/fv.json"
run "$FV" --config "$T/fv.json" generate tpm
expect_rc 0 "generate"
"$FV" --config "$T/fv.json" pubkey tpm >"$T/tpm.pub" || fail "pubkey"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
	openssl pkey -pubout -out "$T/stranger.pub"

# with_key NAME HEX|--stranger: a request body whose encrypted_aes_key is
# the given bytes (or a fresh AES key encrypted to another public key).
good=$(node "$CLIENT" encrypt --pub "$T/tpm.pub" --payload '{"action":"ping"}')
stranger=$(node "$CLIENT" encrypt --pub "$T/stranger.pub" --payload '{"action":"ping"}')
with_key() {
	"$PY" - "$good" "$2" >"$T/$1.json" <<'PY'
import base64, json, sys
d = json.loads(sys.argv[1])
d["encrypted_aes_key"] = base64.b64encode(bytes.fromhex(sys.argv[2])).decode()
print(json.dumps(d))
PY
}
with_key ff "$("$PY" -c 'print("ff" * 256)')"
with_key short "$(head -c 100 /dev/urandom | xxd -p | tr -d '\n')"
with_key long "$(head -c 257 /dev/urandom | xxd -p | tr -d '\n')"
# Below the modulus (leading zero byte), random: the OAEP check fails.
with_key oaep "00$(head -c 255 /dev/urandom | xxd -p | tr -d '\n')"
printf '%s\n' "$stranger" >"$T/stranger.json"
SHAPES="ff short long oaep stranger"

# --- flow decrypt ---
for shape in $SHAPES; do
	run "$FV" --config "$T/fv.json" flow decrypt tpm --in "$T/$shape.json"
	expect_rc 6 "flow decrypt, encrypted_aes_key '$shape'"
	[ -z "$OUT" ] || fail "flow decrypt ($shape) printed '$OUT'"
	! grep -qiE 'backend|error:|warning' "$T/.err" ||
		fail "flow decrypt ($shape) reports more than a rejected ciphertext: $ERR"
done
run "$FV" --config "$T/fv.json" flow decrypt tpm --in "$T/oaep.json"
expect_err_has "the ciphertext failed the OAEP check"
run "$FV" --config "$T/fv.json" flow decrypt tpm --in "$T/ff.json"
expect_err_has "not smaller than the key's modulus"
printf '%s\n' "$good" >"$T/good.json"
run "$FV" --config "$T/fv.json" flow decrypt tpm --in "$T/good.json"
expect_rc 0 "flow decrypt of a good request"
pass "flow decrypt: every bad ciphertext exits 6, with no backend error or tpm2-tss line"

# --- serve ---
upstream_start "$UP"
serve_start "$T/fv.json" "$PORT"
for shape in $SHAPES; do
	post --url "$URL" --pub "$T/tpm.pub" --secret "$APP_SECRET" --raw-body "$(cat "$T/$shape.json")"
	expect_field status 421
	expect_field body ""
done
# The key and its session still work after the rejections.
post --url "$URL" --pub "$T/tpm.pub" --secret "$APP_SECRET" --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
expect_field response '{"data": {"status": "active"}}'
serve_stop
! grep -qiE 'error|warning|500' "$T/serve.log" ||
	fail "serve logged more than rejected requests: $(cat "$T/serve.log")"
pass "serve: every bad ciphertext gets 421, no error or warning logged, the key still answers"
expect_no_transient "ciphertext tests"
