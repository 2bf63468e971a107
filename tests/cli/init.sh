#!/bin/bash
# flowvault init: a starter configuration that the library accepts, at the
# place flowvault will look, mode 0600, never over an existing file, asking
# only on a terminal; doctor passes on it once the key is generated.
. "$FV_SOURCE_DIR/tests/lib.sh"

export FLOWVAULT_PASSPHRASE='init test passphrase'

# --config FILE, in a directory that does not exist yet.
run timeout 20 "$FV" --config "$T/etc/fv/config.json" init </dev/null
expect_rc 0 "init --config"
expect_out_has "wrote $T/etc/fv/config.json (mode 0600)"
expect_out_has "generate flows"
expect_file_mode 600 "$T/etc/fv/config.json"
expect_file_mode 700 "$T/etc/fv"
jq -e '.keys.flows == {"provider": "pem", "path": "keys/flows.pem", "passphrase": "env:FLOWVAULT_PASSPHRASE"}
	and (keys == ["keys"])' "$T/etc/fv/config.json" >/dev/null || fail "starter pem config: $(cat "$T/etc/fv/config.json")"
run "$FV" --config "$T/etc/fv/config.json" generate flows
expect_rc 0 "generate on the starter configuration"
run "$FV" --config "$T/etc/fv/config.json" doctor
expect_rc 0 "doctor on the starter configuration"
pass "init --config FILE: mode 0600, valid; generate and doctor pass on it"

# Never over an existing file.
cp "$T/etc/fv/config.json" "$T/before.json"
run "$FV" --config "$T/etc/fv/config.json" init --provider tpm2
expect_rc 2 "init over an existing file"
expect_err_has "already exists"
cmp -s "$T/before.json" "$T/etc/fv/config.json" || fail "init changed an existing file"
pass "init refuses to overwrite (exit 2), the file unchanged"

# Without --config: the first place of the search order.
run "$FV" init --no-prompt </dev/null
expect_rc 0 "init at the XDG location"
expect_file_mode 600 "$XDG_CONFIG_HOME/flowvault/config.json"
FLOWVAULT_CONFIG=$T/env.json run "$FV" init
expect_rc 0 "init at FLOWVAULT_CONFIG"
[ -f "$T/env.json" ] || fail "init did not write \$FLOWVAULT_CONFIG"
pass "init writes to \$FLOWVAULT_CONFIG, else the XDG location"

# Flags only, and a stdin that never ends: init does not wait for it.
mkfifo "$T/never-ends"
exec 3<>"$T/never-ends" # open for writing too: reading it would block forever
run timeout 20 "$FV" --json --config "$T/hsm.json" init --provider pkcs11 --key hsm \
	--set 'uri=pkcs11:token=t;object=hsm' --set allow_host_oaep=true --phone 1001 --phone 1002 <&3
exec 3<&-
expect_rc 0 "init --provider pkcs11 with flags"
jq -e '.config == "'"$T/hsm.json"'" and .key == "hsm" and .provider == "pkcs11" and (.next | length) == 2' \
	<<<"$OUT" >/dev/null || fail "init --json: $OUT"
jq -e '.keys.hsm.uri == "pkcs11:token=t;object=hsm" and .keys.hsm.allow_host_oaep == true
	and .keys.hsm.pin == "env:FLOWVAULT_PIN" and .keys.hsm.phone_numbers == ["1001", "1002"]
	and .graph.access_token == "env:WHATSAPP_ACCESS_TOKEN"' "$T/hsm.json" >/dev/null ||
	fail "pkcs11 starter: $(cat "$T/hsm.json")"
pass "init takes flags without a terminal and never waits for input"

# A result the library would refuse is not written.
run "$FV" --config "$T/bad.json" init --provider nosuch
expect_rc 2 "init with an unknown provider"
expect_err_has "nothing written"
run "$FV" --config "$T/bad.json" init --set pth=x
expect_rc 2 "init with an unknown field"
expect_err_has "pth: unknown field"
[ ! -e "$T/bad.json" ] || fail "init wrote an invalid configuration"
! compgen -G "$T/bad.json.*" >/dev/null || fail "init left a temporary file"
pass "an invalid result is refused (exit 2) and nothing is left behind"

# On a terminal, init asks, showing the defaults.
if command -v script >/dev/null; then
	printf 'tpm2\nswtpm:host=127.0.0.1,port=2321\n\n' >"$T/answers"
	run timeout 20 script -qec "'$FV' --config '$T/tty.json' init" /dev/null <"$T/answers"
	expect_rc 0 "init on a terminal"
	expect_out_has "provider (pem, pkcs11, tpm2, ...) [pem]:"
	expect_out_has "[device:/dev/tpmrm0]:"
	jq -e '.keys.flows == {"provider": "tpm2", "tcti": "swtpm:host=127.0.0.1,port=2321",
		"key_file": "keys/flows.tss2"}' "$T/tty.json" >/dev/null ||
		fail "answers not used: $(cat "$T/tty.json")"
	pass "init asks on a terminal, with defaults"
fi
