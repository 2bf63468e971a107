#!/bin/bash
# doctor's reporting: a WABA's numbers as one summary line (each with -v,
# failures always), a refused token said once, fixes specific to the
# failure, structured members in --json.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
write_config '["1001"]' '"max_in_flight": 4' '"waba_id": "777"'
sim_config '{"wabas": {"777": {"ids": [2001, 2002, 2003, 2004]}}}'
run "$FV" register flows
expect_rc 0 "register on the configured number and the WABA's"

run "$FV" doctor
expect_rc 0 "doctor, all registered"
expect_out_has "[ok]   number   flows on 1001: registered, VALID"
expect_out_has "[ok]   waba     flows on WABA 777: 4 of 4 numbers registered, VALID (-v lists them)"
! grep -q "flows on 200[1-4]" <<<"$OUT" || fail "WABA numbers listed one by one without -v: $OUT"
run "$FV" -v doctor
expect_rc 0 "doctor -v"
for n in 2001 2002 2003 2004; do expect_out_has "[ok]   number   flows on $n: registered, VALID"; done
run "$FV" --json doctor
jq -e 'any(.checks[]; .check == "waba" and .key == "flows" and .waba_id == "777" and .numbers == 4
	and .numbers_ok == 4) and any(.checks[]; .check == "number" and .phone_number_id == "1001"
	and .key == "flows" and (.fingerprint_sha256 | test("^[0-9a-f]{64}$")))
	and any(.checks[]; .check == "plugin" and .subject == "pem" and (.path | endswith("/pem.so")))' \
	<<<"$OUT" >/dev/null || fail "doctor --json lacks the structured members: $OUT"
pass "doctor: a summary per WABA, each number with -v; subject, path and fingerprints as members"

# A number of the WABA that lost its key is listed, with its own fix.
sim_config '{"numbers": {"2003": {"key": null, "status": null}}}'
run "$FV" doctor
expect_rc 5 "doctor with a WABA number without a key"
expect_out_has "[FAIL] number   flows on 2003: no business public key is registered"
expect_out_has "fix: run flowvault register KEY"
expect_out_has "flows on WABA 777: 3 of 4 numbers registered, VALID (the others are listed above)"
pass "doctor: a failing WABA number is listed with its fix"

# A refused token: one failure, the numbers not checked one by one.
WHATSAPP_ACCESS_TOKEN=not-the-token run "$FV" doctor
expect_rc 4 "doctor with a refused token"
[ "$(grep -c "Invalid OAuth" <<<"$OUT")" = 1 ] || fail "the 190 message is repeated: $OUT"
expect_out_has "not checked: the access token was refused"
expect_out_has "fix: the access token is expired or invalid"
pass "doctor: a refused token is one failure"

# Fix lines add to the message instead of repeating a generic one.
chmod 644 "$T/flows.pem"
run "$FV" doctor
grep -A1 '^\[FAIL\] key' <<<"$OUT" | grep -q "fix: run the command the message gives" ||
	fail "no specific fix for an unsafe key file: $OUT"
! grep -q "check the key's entry" <<<"$OUT" || fail "a generic fix after a specific message: $OUT"
chmod 600 "$T/flows.pem"
mv "$T/flows.pem" "$T/away.pem"
run "$FV" doctor
expect_out_has "fix: create it with flowvault generate KEY"
mv "$T/away.pem" "$T/flows.pem"
pass "doctor: fixes specific to the failure"

# The same when the refusal comes at a number rather than a WABA listing.
jq 'del(.keys.flows.waba_id) | .keys.flows.phone_numbers = ["1001", "1002", "1003"]' \
	"$T/config.json" >"$T/phones.json" && chmod 600 "$T/phones.json"
WHATSAPP_ACCESS_TOKEN=not-the-token run "$FV" --config "$T/phones.json" doctor
expect_rc 4 "doctor with a refused token, numbers only"
[ "$(grep -c "Invalid OAuth" <<<"$OUT")" = 1 ] || fail "the 190 message is repeated: $OUT"
expect_out_has "not checked: the access token was refused"
pass "doctor: a refused token at a number is one failure too"

# A switched rotation says that a running serve started before it needs a reload.
export APP_SECRET=x
jq '.serve = {"listen": "127.0.0.1:1", "keys": ["flows"], "app_secrets": ["env:APP_SECRET"]}
	| del(.keys.flows.waba_id)' "$T/config.json" >"$T/c.json" && mv "$T/c.json" "$T/config.json"
chmod 600 "$T/config.json"
export NEW_PASS='new key passphrase'
run "$FV" rotate flows --new flows2 --set passphrase=env:NEW_PASS
expect_rc 0 "rotate flows --new flows2"
run "$FV" doctor
expect_out_has "[warn] rotation flows -> flows2 switched at"
expect_out_has "a flowvault serve started before the switch and not reloaded since still lacks flows2"
expect_out_has "fix: reload flowvault serve if it runs since before the switch"
expect_out_has "flowvault rotate --finish flows2"
pass "doctor: a rotation waiting for a serve restart says so"
