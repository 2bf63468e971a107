# The key process killed under load, with a key in a PKCS#11 token (SoftHSM2)
# and in a TPM (swtpm): workers answer 503 at once, the key process is
# restarted, logs in or reconnects, and requests succeed again within 2 s.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/serve/serve_lib.sh"

PLUGINS="$FV_BUILD_DIR/lib/flowvault/plugins"
flow_setup_keys

# crash_with CONFIG KEY: generate KEY, serve it separated, kill its key process.
crash_with() {
	run "$FV" --config "$1" generate "$2"
	expect_rc 0 "generate $2"
	"$FV" --config "$1" pubkey "$2" >"$T/$2.pub"
	PORT=$(free_port)
	ADMIN=$(free_port)
	URL="http://127.0.0.1:$PORT/flows"
	"$PY" - "$1" "$2" "$PORT" "$ADMIN" <<'PY'
import json, sys
path, key, port, admin = sys.argv[1:]
c = json.load(open(path))
c["serve"] = {"listen": "127.0.0.1:" + port, "admin_listen": "127.0.0.1:" + admin, "keys": [key],
              "app_secrets": ["env:APP_SECRET"], "threads": 4}
json.dump(c, open(path, "w"))
PY
	serve_start "$1" "$PORT"
	wait_workers 2
	make_ping "$T/$2.pub"
	keyproc_crash_check
	serve_stop
}

[ -f "$PLUGINS/pkcs11.so" ] || fail "the pkcs11 plugin is not built"
mkdir -p "$T/softhsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$T/softhsm/tokens" >"$T/softhsm/softhsm2.conf"
export SOFTHSM2_CONF="$T/softhsm/softhsm2.conf" FLOW_PIN=246810
softhsm2-util --init-token --free --label flowtest --pin "$FLOW_PIN" --so-pin 13579111 \
	>/dev/null || fail "softhsm2-util --init-token"
cat >"$T/hsm.json" <<JSON
{"keys": {"hsm": {"provider": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so",
  "uri": "pkcs11:token=flowtest;object=flows", "pin": "env:FLOW_PIN", "allow_host_oaep": true}}}
JSON
chmod 600 "$T/hsm.json"
crash_with "$T/hsm.json" hsm
pass "SoftHSM2 key: key process killed under load, 503 at once, back within 2 s"

[ -f "$PLUGINS/tpm2.so" ] || fail "the tpm2 plugin is not built"
. "$FV_SOURCE_DIR/tests/tpm2/swtpm.sh"
export TSS2_LOG=all+NONE
swtpm_start "$T/tpm"
cat >"$T/tpm.json" <<JSON
{"keys": {"tpm": {"provider": "tpm2", "tcti": "$FV_TCTI", "key_file": "tpm.tss2"}}}
JSON
chmod 600 "$T/tpm.json"
crash_with "$T/tpm.json" tpm
pass "swtpm key: key process killed under load, 503 at once, back within 2 s"
