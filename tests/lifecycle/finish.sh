#!/bin/bash
# rotate --finish: the old key is retired in the configuration before it is
# deleted in its backend (a crash in between leaves a configuration whose
# keys all exist), numbers added to the WABA during the rotation are found
# and moved (or named, with --no-register), and a configuration that is a
# symbolic link stays one.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

SHIM=${FV_TEST_KILL_SHIM:-$FV_BUILD_DIR/tests/libfv_kill_on_rename.so}
[ -f "$SHIM" ] || fail "missing $SHIM (built with the tests)"
export APP_SECRET="app-secret-$(openssl rand -hex 8)"
start_sim

# ---- --finish --destroy-old killed right before the configuration lands ----
setup_softhsm flows 246810
printf '246810\n' >"$T/pin"
chmod 600 "$T/pin"
HSM="\"provider\": \"pkcs11\", \"module\": \"$SOFTHSM_MODULE\", \"pin\": \"file:$T/pin\", \"allow_host_oaep\": true"
cat >"$T/config.json" <<JSON
{
  "keys": {"hsm": {$HSM, "uri": "pkcs11:token=flows;object=hsm", "phone_numbers": ["3001", "3002"]}},
  "graph": {"base_url": "$SIM_URL", "access_token": "env:WHATSAPP_ACCESS_TOKEN",
            "ca_file": "tls/ca.pem", "retry_base_ms": 5, "max_in_flight": 4},
  "serve": {"listen": "127.0.0.1:$(free_port)", "admin_listen": "127.0.0.1:$(free_port)", "keys": ["hsm"], "app_secrets": ["env:APP_SECRET"]}
}
JSON
chmod 600 "$T/config.json"
export FLOWVAULT_CONFIG="$T/config.json"
run "$FV" generate hsm
expect_rc 0 "generate hsm"
run "$FV" register hsm
expect_rc 0 "register hsm"
run "$FV" rotate hsm --new hsm2 --set 'uri=pkcs11:token=flows;object=hsm2'
expect_rc 0 "rotate hsm -> hsm2"
hsm_objects() { pkcs11-tool --module "$SOFTHSM_MODULE" --token-label flows --login --pin 246810 \
	--list-objects --type privkey 2>/dev/null | sed -n 's/^ *label: *//p' | sort | tr '\n' ' '; }
[ "$(hsm_objects)" = "hsm hsm2 " ] || fail "token objects before finish: $(hsm_objects)"

set +e
env LD_PRELOAD="$SHIM" FV_TEST_KILL_ON_RENAME=/config.json ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	"$FV" rotate --finish hsm2 --force --destroy-old >"$T/finish.out" 2>&1
rc=$?
set -e
[ "$rc" = 137 ] || fail "the finish was not killed at the configuration rewrite (exit $rc): $(cat "$T/finish.out")"
jq -e '.keys.hsm and .serve.keys == ["hsm2", "hsm"]' "$T/config.json" >/dev/null ||
	fail "the configuration changed although its rewrite was killed: $(cat "$T/config.json")"
# Every key the configuration names must still exist: serve can start.
run "$FV" pubkey hsm
expect_rc 0 "the old key still opens after the crash (the configuration still names it)"
run "$FV" serve --check
expect_rc 0 "serve --check after the crash"
[ "$(hsm_objects)" = "hsm hsm2 " ] || fail "a key was deleted before the configuration was rewritten: $(hsm_objects)"
pass "--finish --destroy-old killed at the configuration rewrite: nothing deleted, the configuration still starts serve"

run "$FV" --json rotate --resume
expect_rc 0 "resume the interrupted finish"
jcheck '.state == "finished" and .old_key_destroyed == true' "finished after resume"
jq -e '(.keys | has("hsm") | not) and .serve.keys == ["hsm2"]' "$T/config.json" >/dev/null ||
	fail "configuration after the resumed finish: $(cat "$T/config.json")"
[ "$(hsm_objects)" = "hsm2 " ] || fail "token objects after the resumed finish: $(hsm_objects)"
run "$FV" serve --check
expect_rc 0 "serve --check after the finish"
pass "--resume retires the old key in the configuration, then deletes it"

# A kill after the rewrite and before the deletion: the deletion happens on resume.
run "$FV" rotate hsm2 --new hsm3 --set 'uri=pkcs11:token=flows;object=hsm3'
expect_rc 0 "rotate hsm2 -> hsm3"
FLOWVAULT_TEST_ROTATE_PAUSE=retired "$FV" rotate --finish hsm3 --force --destroy-old >"$T/f2.out" 2>&1 &
pid=$!
at_exit "kill -9 $pid"
for ((i = 0; i < 500; i++)); do
	jq -e '.keys | has("hsm2") | not' "$T/config.json" >/dev/null 2>&1 && break
	sleep 0.02
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
jq -e '(.keys | has("hsm2") | not) and .serve.keys == ["hsm3"]' "$T/config.json" >/dev/null ||
	fail "the configuration was not rewritten before the kill: $(cat "$T/config.json")"
[ "$(hsm_objects)" = "hsm2 hsm3 " ] || fail "deleted before the pause: $(hsm_objects)"
run "$FV" rotate --status
expect_out_has "rotation hsm2 -> hsm3: finishing"
run "$FV" rotate --abort
expect_rc 2 "abort after --finish began"
expect_err_has "--finish hsm3 has run"
run "$FV" --json rotate --finish hsm3 --destroy-old
expect_rc 0 "the finish, run again, deletes the key"
jcheck '.state == "finished" and .old_key_destroyed == true' "finished"
[ "$(hsm_objects)" = "hsm3 " ] || fail "token objects after the second finish: $(hsm_objects)"
pass "killed between the rewrite and the deletion: running --finish again deletes the key"

# ---- a number added to the WABA between the switch and --finish ----
rm -f "$T/config.json"* "$T"/.config.json.* # (the crash above left its temporary file)
sim_reset
WABA=102290129340398
sim_config "{\"wabas\": {\"$WABA\": {\"ids\": [\"4001\", \"4002\", \"4003\"]}}}"
export FLOWS_PASS="pass-$(openssl rand -hex 8)"
mkdir -p "$T/keys" && chmod 700 "$T/keys"
P=$(free_port)
lc_config 0 "{\"listen\": \"127.0.0.1:$P\", \"admin_listen\": \"127.0.0.1:$(free_port)\", \"keys\": [\"flows\"], \"app_secrets\": [\"env:APP_SECRET\"]}"
jq --arg w "$WABA" '.keys.flows |= (del(.phone_numbers) | .waba_id = $w)' "$T/config.json" >"$T/c" &&
	cat "$T/c" >"$T/config.json"
run "$FV" generate flows
expect_rc 0 "generate flows"
run "$FV" register flows
expect_rc 0 "register flows on the WABA"
run "$FV" rotate flows --new flows2
expect_rc 0 "rotate flows -> flows2"
expect_all_on flows2 3
# The business adds a number; someone registers the old key on it.
sim_config "{\"wabas\": {\"$WABA\": {\"ids\": [\"4001\", \"4002\", \"4003\", \"4004\"]}}}"
run "$FV" register flows --phone 4004
expect_rc 0 "the old key on the new number"
cp "$T/config.json" "$T/config.before"
posts=$(sim_count POST "" 4004)

run "$FV" --json rotate --finish flows2 --force --no-register
expect_rc 5 "--no-register with a number lacking the new key"
expect_err_has "1 of 4 phone numbers of key flows2 do not hold it as VALID: 4004"
cmp -s "$T/config.json" "$T/config.before" || fail "--no-register changed the configuration"
[ "$(sim_count POST "" 4004)" = "$posts" ] || fail "--no-register uploaded"
grep '"event":"finish_check"' "$(JOURNAL)" | tail -1 | jq -e '.missing == ["4004"] and (.phone_numbers | length == 4)' >/dev/null ||
	fail "the check is not journaled: $(tail -3 "$(JOURNAL)")"
run "$FV" --json rotate --status
jcheck '.state == "switched" and ([.results[] | select(.phone_number_id == "4004")][0].state == "old_key")' "status names 4004 on the old key"
pass "--finish --no-register refuses, names the number and changes nothing"

# A number that cannot be read is not uploaded to (it could be its second
# upload), and the old key stays.
sim_config '{"faults": [{"method": "GET", "phone": "4002", "kind": "whatsapp_business_encryption", "times": 3, "fault": {"type": "http", "status": 503}}]}'
posts2=$(sim_count POST "" 4002)
run "$FV" rotate --finish flows2 --force
expect_rc 4 "--finish with a number that cannot be read"
expect_err_has "1 of 4 phone numbers of key flows2 could not be read (4002"
cmp -s "$T/config.json" "$T/config.before" || fail "--finish changed the configuration with a number unread"
[ "$(sim_count POST "" 4002)" = "$posts2" ] || fail "--finish uploaded to a number it could not read"
[ "$(sim_count POST "" 4004)" = "$posts" ] || fail "--finish uploaded although a number could not be read"
pass "--finish stops, uploading nothing, when a number cannot be read"

run "$FV" --json rotate --finish flows2 --force
expect_rc 0 "--finish registers the new key on the new number"
jcheck '.state == "finished" and .phone_numbers_total == 4 and all(.results[]; .state == "new_key")' "finish JSON"
[ "$(sim_count POST "" 4004)" = "$((posts + 1))" ] || fail "4004 did not get exactly one upload"
[ "$(sim_count POST "" 4001)" = 2 ] || fail "4001 was uploaded to again"
expect_all_on flows2 4
jq -e '.serve.keys == ["flows2"]' "$T/config.json" >/dev/null || fail "serve.keys after finish"
# A request encrypted to the key WhatsApp now has for 4004 is served.
sim_ctl GET /_sim/state | jq -r '.numbers["4004"].key' >"$T/4004.pub"
serve_start "$T/config.json" "$P"
post --url "http://127.0.0.1:$P/flows" --pub "$T/4004.pub" --secret "$APP_SECRET" \
	--payload '{"version":"3.0","action":"ping"}'
expect_field status 200
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
pass "--finish registers the new key on a number added to the WABA; serve answers requests encrypted to it"

# ---- a configuration that is a symbolic link stays one ----
# Found on the default path (XDG_CONFIG_HOME), a link to the real file.
mkdir -p "$T/real" "$T/xdg/flowvault"
chmod 700 "$T/real" "$T/xdg" "$T/xdg/flowvault"
mv "$T/config.json" "$T/real/config.json"
sed -i "s#\"tls/ca.pem\"#\"$T/tls/ca.pem\"#; s#\"keys/#\"$T/keys/#g" "$T/real/config.json"
ln -s "$T/real/config.json" "$T/xdg/flowvault/config.json"
unset FLOWVAULT_CONFIG
export XDG_CONFIG_HOME="$T/xdg"
run "$FV" rotate flows2 --new flows3 --grace 1s
expect_rc 0 "rotate through a symlinked configuration"
[ -L "$T/xdg/flowvault/config.json" ] || fail "the configuration symlink was replaced by a file"
[ "$(readlink "$T/xdg/flowvault/config.json")" = "$T/real/config.json" ] || fail "the link points elsewhere"
jq -e '.serve.keys == ["flows3", "flows2"]' "$T/real/config.json" >/dev/null || fail "the link's target was not rewritten"
expect_file_mode 600 "$T/real/config.json"
ls -a "$T/real" "$T/xdg/flowvault" | grep -q '^\.config\.json\.' && fail "a temporary file was left behind"
pass "a symlinked configuration is rewritten through the link, in the target's directory"
