#!/bin/bash
# flowvault doctor: a healthy setup passes (exit 0); each misconfiguration
# it lists is caught with its fix and the exit code of its class.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

export APP_SECRET="app-$(openssl rand -hex 8)"
SERVE='{"listen": "127.0.0.1:1", "admin_listen": "off", "keys": ["flows"], "app_secrets": ["env:APP_SECRET"]}'
lc_setup 3 "$SERVE"
cp "$T/config.json" "$T/good.json"

# doctor_fails CODE CHECK TEXT "what": doctor exits CODE, and --json shows a
# failed CHECK whose message has TEXT and that has a fix.
doctor_fails() {
	run "$FV" doctor
	expect_rc "$1" "$4 (doctor)"
	expect_out_has "[FAIL] $2"
	expect_out_has "fix: "
	run "$FV" --json doctor
	expect_rc "$1" "$4 (doctor --json)"
	jq -e --arg c "$2" --arg t "$3" --argjson code "$1" \
		'.ok == false and .exit_code == $code and
		 any(.checks[]; .check == $c and .status == "fail" and (.message | contains($t))
		     and (.fix | type == "string") and .exit_code == $code)' <<<"$OUT" >/dev/null ||
		fail "$4: doctor --json lacks a failed '$2' check with '$3' (exit $1): $OUT"
	pass "doctor catches: $4"
}
restore() { cp "$T/good.json" "$T/config.json"; chmod 600 "$T/config.json"; }

run "$FV" doctor
expect_rc 0 "healthy setup"
for c in "[ok]   config" "[ok]   plugin   pem" "[ok]   key      flows: opens; OAEP-SHA256 test decryption ok" \
	"[ok]   graph" "[ok]   number   flows on 1000: registered, VALID, served" "[ok]   serve" \
	"[ok]   rotation"; do
	expect_out_has "$c"
done
expect_out_has "0 failed"
run "$FV" --json doctor
expect_rc 0 "healthy --json"
jcheck '.ok and .failed == 0 and .exit_code == 0 and (.checks | length) >= 9
	and all(.checks[]; (.status == "ok" or .status == "warn") and has("fix") and has("subject"))' "healthy JSON"
pass "a healthy setup passes every check (exit 0)"

# Configuration syntax and permissions.
printf '{"keys": {' >"$T/config.json"
doctor_fails 2 config "not valid JSON" "configuration syntax"
restore
chmod 620 "$T/config.json"
doctor_fails 2 config "writable by its group" "group-writable configuration"
restore
jq '.keys.flows.pth = "x"' "$T/good.json" >"$T/config.json"
doctor_fails 2 config "unknown field" "unknown field"
restore

# A plugin that does not load.
mkdir -p "$T/plugins" && chmod 755 "$T/plugins"
echo "not a shared object" >"$T/plugins/broken.so"
chmod 644 "$T/plugins/broken.so"
jq '.plugin_path = ["plugins"]' "$T/good.json" >"$T/config.json"
doctor_fails 2 plugin "" "a plugin that does not load"
restore

# Keys: missing file, wrong passphrase.
mv "$T/keys/flows.pem" "$T/keys/flows.pem.away"
doctor_fails 3 key "flows" "a missing key file"
mv "$T/keys/flows.pem.away" "$T/keys/flows.pem"
FLOWS_PASS_SAVED=$FLOWS_PASS
export FLOWS_PASS=wrong
doctor_fails 3 key "wrong passphrase" "a wrong passphrase"
export FLOWS_PASS=$FLOWS_PASS_SAVED

# Graph API: bad token, unresolvable token, no graph section.
export WHATSAPP_ACCESS_TOKEN=not-the-token
doctor_fails 4 graph "Invalid OAuth access token" "a rejected access token"
run "$FV" doctor
expect_out_has "create a new system-user token"
unset WHATSAPP_ACCESS_TOKEN
doctor_fails 2 graph "WHATSAPP_ACCESS_TOKEN" "an access token reference that does not resolve"
export WHATSAPP_ACCESS_TOKEN=$SIM_TOKEN
jq 'del(.graph)' "$T/good.json" >"$T/config.json"
doctor_fails 2 graph "no \"graph\" section" "phone numbers without a graph section"
restore

# Numbers: MISMATCH, not registered, another key than serve holds.
sim_config '{"numbers": {"1001": {"status": "MISMATCH"}}}'
doctor_fails 5 number "MISMATCH" "a number reporting MISMATCH"
run "$FV" doctor
expect_out_has "[ok]   number   flows on 1000"
sim_config '{"numbers": {"1001": {"status": "VALID"}}}'
jq '.keys.flows.phone_numbers += ["1009"]' "$T/good.json" >"$T/config.json"
doctor_fails 5 number "no business public key is registered" "a number without a key"
restore
mkdir -p "$T/other" && chmod 700 "$T/other"
jq '.keys.other = {"provider": "pem", "path": "other/other.pem", "passphrase": "env:FLOWS_PASS"}
	| .serve.keys = ["other"]' "$T/good.json" >"$T/config.json"
run "$FV" generate other
expect_rc 0 "generate other"
doctor_fails 5 number "serve.keys does not list" "a number on a key serve does not hold"
restore

# serve: app secret, TLS files.
unset APP_SECRET
doctor_fails 2 serve "APP_SECRET" "an app secret that does not resolve"
export APP_SECRET=x
jq '.serve.cert = "tls/nope.pem" | .serve.key = "tls/nope.key"' "$T/good.json" >"$T/config.json"
doctor_fails 2 serve "cannot read" "a missing TLS certificate"
restore

# An unfinished rotation.
FLOWVAULT_TEST_ROTATE_PAUSE=generated "$FV" rotate flows --new flows2 >/dev/null 2>&1 &
pid=$!
at_exit "kill -9 $pid"
wait_journal generated 1
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
doctor_fails 1 rotation "stopped at step \"generated\"" "an unfinished rotation"
run "$FV" doctor
expect_out_has "fix: flowvault rotate --resume"
run "$FV" rotate --resume
expect_rc 0 "resume"
run "$FV" --json doctor
expect_rc 0 "doctor after the switch"
jcheck 'any(.checks[]; .check == "rotation" and .status == "warn")' "switched rotation is a warning"
pass "a switched rotation in its grace window is a warning, not a failure"

# Kept in its grace window longer than planned: a warning that says so. The
# switch is moved 90000 s back, so the window (86400 s) ran out 3600 s ago,
# plus however long this test took since the switch (minutes, at most).
jq -c 'if .event == "switched" then .time -= 90000 else . end' "$(JOURNAL)" >"$T/j" &&
	cat "$T/j" >"$(JOURNAL)"
run "$FV" --json doctor
expect_rc 0 "doctor with an overdue grace window"
jcheck 'any(.checks[]; .check == "rotation" and .status == "warn"
	and (.message | test("in its grace window 3[6-9][0-9][0-9] s longer than planned")))' "overdue grace window"
pass "a rotation kept in its grace window longer than planned is named"

# The first failure decides the exit code: a key problem (3) before Graph (4).
cp "$T/config.json" "$T/good.json"
mv "$T/keys/flows2.pem" "$T/keys/flows2.pem.away"
export WHATSAPP_ACCESS_TOKEN=not-the-token
run "$FV" doctor
expect_rc 3 "key failure before graph failure"
mv "$T/keys/flows2.pem.away" "$T/keys/flows2.pem"
pass "the exit code is the first failure's"
