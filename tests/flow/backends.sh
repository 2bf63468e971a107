# The same round trip through `flowvault serve` with a key in a PKCS#11 token
# (SoftHSM2) and in a TPM (swtpm), for each of those plugins this build has.
# Exit 77 (skipped) when neither plugin is built.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

PLUGINS="$FV_BUILD_DIR/lib/flowvault/plugins"
tested=0

# round_trip CONFIG KEY: generate KEY, serve it, ping and a data exchange.
round_trip() {
	local port up admin
	run "$FV" --config "$1" generate "$2"
	expect_rc 0 "generate $2"
	"$FV" --config "$1" pubkey "$2" >"$T/$2.pub"
	port=$(free_port)
	up=$(free_port)
	upstream_start "$up"
	admin=$(free_port)
	"$PY" - "$1" "$2" "$port" "$up" "$admin" <<'PY'
import json, sys
path, key, port, up, admin = sys.argv[1:]
c = json.load(open(path))
c["serve"] = {"listen": "127.0.0.1:" + port, "admin_listen": "127.0.0.1:" + admin, "keys": [key],
              "allow_unsigned": True, "upstream": "http://127.0.0.1:%s/" % up}
json.dump(c, open(path, "w"))
PY
	serve_start "$1" "$port"
	post --url "http://127.0.0.1:$port/flows" --pub "$T/$2.pub" --payload '{"version":"3.0","action":"ping"}'
	expect_field status 200
	expect_field response '{"data": {"status": "active"}}'
	post --url "http://127.0.0.1:$port/flows" --pub "$T/$2.pub" \
		--payload '{"version":"3.0","action":"data_exchange","flow_token":"b","data":{"k":"v"}}'
	expect_field status 200
	expect_field response.data.key "$2"
	expect_field response.data.echo '{"k": "v"}'
	post --url "http://127.0.0.1:$port/flows" --pub "$T/stranger.pub" --payload '{"action":"ping"}'
	expect_field status 421
	run curl -sf "http://127.0.0.1:$admin/healthz"
	expect_field "keys.$2" ok
	serve_stop
	tested=$((tested + 1))
}

flow_setup_keys

if [ -f "$PLUGINS/pkcs11.so" ]; then
	mkdir -p "$T/softhsm/tokens"
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$T/softhsm/tokens" >"$T/softhsm/softhsm2.conf"
	export SOFTHSM2_CONF="$T/softhsm/softhsm2.conf" FLOW_PIN=246810
	softhsm2-util --init-token --free --label flowtest --pin "$FLOW_PIN" --so-pin 13579111 \
		>/dev/null || fail "softhsm2-util --init-token"
	cat >"$T/hsm.json" <<JSON
{"keys": {"hsm": {"provider": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so",
  "uri": "pkcs11:token=flowtest;object=flows", "pin": "env:FLOW_PIN",
  "allow_host_oaep": true}}}
JSON
	chmod 600 "$T/hsm.json"
	round_trip "$T/hsm.json" hsm
	pass "PKCS#11 (SoftHSM2) key answers through serve"
fi

if [ -f "$PLUGINS/tpm2.so" ]; then
	. "$FV_SOURCE_DIR/tests/tpm2/swtpm.sh"
	export TSS2_LOG=all+NONE
	swtpm_start "$T/tpm"
	cat >"$T/tpm.json" <<JSON
{"keys": {"tpm": {"provider": "tpm2", "tcti": "$FV_TCTI", "key_file": "tpm.tss2"}}}
JSON
	chmod 600 "$T/tpm.json"
	round_trip "$T/tpm.json" tpm
	pass "TPM 2.0 (swtpm) key answers through serve"
fi

if [ "$tested" = 0 ]; then
	echo "skipped: neither the pkcs11 nor the tpm2 plugin is built"
	exit 77
fi
