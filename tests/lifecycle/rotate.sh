#!/bin/bash
# flowvault rotate, start to finish, with a pem key on several numbers and a
# serve section: configuration rewrites, serve.keys order, one upload per
# number, --status, --finish before/after the grace window, --destroy-old on
# a plugin that cannot delete, and usage errors.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

SERVE_PORT=$(free_port)
lc_setup 10 "{\"listen\": \"127.0.0.1:$(free_port)\", \"admin_listen\": \"127.0.0.1:$SERVE_PORT\",
    \"keys\": [\"flows\"]}"
old_fp=$(openssl pkey -in "$T/keys/flows.pem" -passin env:FLOWS_PASS -pubout -outform DER | sha256sum | cut -d' ' -f1)
stat -c %a "$T/config.json" >"$T/mode.before"

run "$FV" rotate --status
expect_rc 0 "status without a journal"
expect_out_has "no rotation recorded"

run "$FV" --json rotate flows --new flows2
expect_rc 0 "rotate flows -> flows2"
new_fp=$(openssl pkey -in "$T/keys/flows2.pem" -passin env:FLOWS_PASS -pubout -outform DER | sha256sum | cut -d' ' -f1)
jcheck ".state == \"switched\" and .key == \"flows\" and .new_key == \"flows2\"
	and .fingerprint_sha256 == \"$new_fp\" and .phone_numbers_total == 10
	and .phone_numbers_registered == 10 and .error == null
	and .grace_seconds == 86400 and .grace_until == .switched_at + 86400
	and (.serve_note | contains(\"restart\"))" "rotate --json document"
[ "$new_fp" != "$old_fp" ] || fail "the new key is the old one"
expect_file_mode 600 "$T/keys/flows2.pem"
pass "rotate generates flows2 (encrypted PEM, derived path keys/flows2.pem) and switches"

# The configuration: flows2 holds the numbers, serve tries flows2 then flows.
jq -e '.keys.flows2 == {"provider": "pem", "path": "keys/flows2.pem", "passphrase": "env:FLOWS_PASS",
	"phone_numbers": [range(1000; 1010) | tostring]}
	and (.keys.flows | has("phone_numbers") | not) and .keys.flows.path == "keys/flows.pem"
	and .serve.keys == ["flows2", "flows"]' "$T/config.json" >/dev/null ||
	fail "configuration after the switch: $(cat "$T/config.json")"
[ "$(stat -c %a "$T/config.json")" = "$(cat "$T/mode.before")" ] || fail "config mode changed"
ls -a "$T" | grep -q '^\.config\.json\.' && fail "a temporary configuration file was left behind"
expect_all_on flows2 10
# One upload per number for the new key: the first register made one, rotate one more.
[ "$(posts_per_phone | awk '$2 != 2' | wc -l)" = 0 ] || fail "uploads per number: $(posts_per_phone)"
[ "$(posts_per_phone | wc -l)" = 10 ] || fail "not every number got an upload"
pass "config switched atomically (same mode); all 10 numbers VALID on flows2, one upload each"

run "$FV" rotate --status
expect_rc 0 "status"
expect_out_has "rotation flows -> flows2: switched"
expect_out_has "phone numbers 10 of 10 on flows2"
expect_out_has "next: flowvault rotate --finish flows2"

# A second rotation cannot start before this one is finished.
run "$FV" rotate flows2 --new flows3
expect_rc 2 "rotate during the grace window"
expect_err_has "a rotation flows -> flows2 is not finished"
run "$FV" rotate --resume
expect_rc 0 "resume after the switch is a no-op"
[ "$(posts_per_phone | awk '$2 != 2' | wc -l)" = 0 ] || fail "resume after the switch uploaded"

cp "$T/config.json" "$T/config.before-finish"
run "$FV" rotate --finish flows2
expect_rc 1 "finish before the grace window"
expect_err_has "the grace window of rotation flows -> flows2 lasts until"
expect_err_has "pass --force"
run "$FV" rotate --finish flows3 --force
expect_rc 2 "finish of another name"
expect_err_has "the last rotation is flows -> flows2"
run "$FV" rotate --finish flows2 --force --destroy-old
expect_rc 3 "--destroy-old on pem"
expect_err_has "the pem plugin cannot delete keys"
expect_err_has "nothing was changed"
cmp -s "$T/config.json" "$T/config.before-finish" || fail "a refused finish changed the configuration"
[ -f "$T/keys/flows.pem" ] || fail "the old key file vanished"
pass "--finish refused before the grace window, for another name, and --destroy-old without delete support"

run "$FV" --json rotate --finish flows2 --force
expect_rc 0 "finish --force"
jcheck '.state == "finished" and .finished_at != null and .old_key_destroyed == false' "finish JSON"
jq -e '.serve.keys == ["flows2"] and (.keys | has("flows"))' "$T/config.json" >/dev/null ||
	fail "after finish: $(cat "$T/config.json")"
run "$FV" rotate --finish flows2 --force
expect_rc 2 "finish twice"
expect_err_has "already finished"
pass "--finish --force retires flows from serve.keys and keeps its entry"

# A finished rotation lets the next one start; --grace is recorded, and an
# elapsed grace window needs no --force.
run "$FV" --json rotate flows2 --new flows3 --grace 1s
expect_rc 0 "second rotation"
jcheck '.grace_seconds == 1 and .state == "switched"' "grace recorded"
jq -e '.serve.keys == ["flows3", "flows2"]' "$T/config.json" >/dev/null || fail "serve.keys after the second switch"
sleep 1.2
run "$FV" rotate --finish flows3
expect_rc 0 "finish after the grace window"
expect_all_on flows3 10
pass "a second rotation after the first one finished; --grace honoured"

# Usage errors change nothing.
cp "$T/config.json" "$T/config.before-usage"
jbefore=$(wc -l <"$(JOURNAL)")
run "$FV" rotate flows3 --new flows4 --set nonsense=1
expect_rc 2 "unknown --set field"
expect_err_has "--set nonsense: not a field of the pem provider (its fields: path, passphrase, allow_group_readable)"
run "$FV" rotate flows3 --new flows4 --set path
expect_rc 2 "--set without ="
expect_err_has "expected FIELD=VALUE"
run "$FV" rotate flows3 --new flows4 --set allow_group_readable=maybe
expect_rc 2 "bad boolean"
expect_err_has "expected true or false"
run "$FV" rotate flows3 --new flows4 --set phone_numbers=1
expect_rc 2 "--set of a host field"
expect_err_has "the phone numbers move to the new key at the switch"
run "$FV" rotate flows3 --new flows
expect_rc 2 "--new names an existing key"
expect_err_has "keys.flows already exists"
run "$FV" rotate flows3 --new 'bad name'
expect_rc 2 "--new with a space"
run "$FV" rotate nokey --new flows4
expect_rc 2 "unknown KEY"
run "$FV" rotate flows3
expect_rc 2 "no --new"
expect_err_has "needs --new NAME"
run "$FV" rotate flows3 --new flows4 --grace soon
expect_rc 2 "bad --grace"
run "$FV" rotate --resume --status
expect_rc 2 "two modes"
# A reference whose file is already there is refused before anything changes.
cp "$T/keys/flows3.pem" "$T/keys/taken.pem"
run "$FV" rotate flows3 --new taken
expect_rc 3 "new key file exists"
expect_err_has "a key already exists where keys.taken would point"
cmp -s "$T/config.json" "$T/config.before-usage" || fail "a refused rotate changed the configuration"
[ "$(wc -l <"$(JOURNAL)")" = "$jbefore" ] || fail "a refused rotate wrote to the journal"
pass "bad --set, names and durations are usage errors that change nothing"

# References that are not file paths must be given with --set.
cat >"$T/other.json" <<JSON
{"keys": {
  "hsm": {"provider": "pkcs11", "module": "/usr/lib/softhsm/libsofthsm2.so",
          "uri": "pkcs11:token=flows;object=flows-key", "pin": "env:PIN"},
  "eng": {"provider": "openssl", "uri": "/etc/keys/flows.pem"}}}
JSON
chmod 600 "$T/other.json"
run "$FV" --config "$T/other.json" rotate hsm --new hsm2
expect_rc 2 "pkcs11 without --set uri"
expect_err_has "keys.hsm.uri names the key inside the pkcs11 backend and cannot be derived"
expect_err_has "--set 'uri=pkcs11:token=flows;object=hsm2'"
run "$FV" --config "$T/other.json" rotate eng --new eng2
expect_rc 2 "openssl without --set uri"
expect_err_has "pass --set uri=VALUE"
[ ! -e "$T/other.json.rotation.journal" ] || [ ! -s "$T/other.json.rotation.journal" ] ||
	fail "a refused rotate journaled something"
pass "non-path key references need --set, with a hint"
