# register/status on one number: upload, read-back, JSON shape, idempotence,
# what the simulator received, dry run, and the two GET answer shapes.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
write_config '["106540352242922"]'
spki_pem "$T/flows.pem" >"$T/flows.pub"
fp=$(openssl pkey -pubin -in "$T/flows.pub" -outform DER | sha256sum | cut -d' ' -f1)

run "$FV" status flows
expect_rc 5 "status before any upload"
grep -Eq -- '106540352242922 +no ' <<<"$OUT" || fail "stdout lacks /106540352242922 +no /
$OUT"
expect_out_has "key flows is meant for: phone numbers 106540352242922"
expect_err_has "no business public key is registered; run flowvault register"
pass "an unregistered number is reported as such (exit 5)"

run "$FV" --json status flows
expect_rc 5 "status --json before any upload"
jcheck '.results == [{"phone_number_id": "106540352242922", "registered": false, "status": null, "matches_local": false, "error": null}]' "unregistered JSON"

sim_reset
run "$FV" --json register flows
expect_rc 0 "register one number"
jcheck '(keys_unsorted == ["key", "fingerprint_sha256", "results"]) and .key == "flows"' "register JSON members"
jcheck ".fingerprint_sha256 == \"$fp\"" "fingerprint is openssl's"
jcheck '.results == [{"phone_number_id": "106540352242922", "registered": true, "status": "VALID", "matches_local": true, "error": null}]' "register JSON result"
expect_count 1 POST whatsapp_business_encryption 106540352242922 "one upload"
expect_count 1 GET whatsapp_business_encryption 106540352242922 "one read-back"
pass "register uploads once and reads back once; JSON as documented"

# What the simulator holds is our SPKI, byte for byte after DER re-encoding.
sim_ctl GET /_sim/state | jq -j '.numbers["106540352242922"].key' >"$T/stored.pem"
cmp <(openssl pkey -pubin -in "$T/stored.pem" -outform DER) \
	<(openssl pkey -pubin -in "$T/flows.pub" -outform DER) ||
	fail "the simulator holds another key than ours"
# Every request carried the bearer token in the header and our user agent.
sim_ctl GET /_sim/log | jq -e 'all(.requests[]; .authorization_ok
	and (.user_agent | startswith("flowvault/"))
	and (.query | contains("access_token") | not)
	and (if .method == "POST" then .content_type == "application/x-www-form-urlencoded"
	     else .query == "fields=business_public_key,business_public_key_signature_status" end))' >/dev/null || fail "requests lacked the bearer token, the user agent or the form encoding"
pass "stored key equals ours (DER); token in header only; form-encoded; user agent flowvault/"

run "$FV" status flows
expect_rc 0 "status after register"
grep -Eq -- '106540352242922 +yes +VALID +yes' <<<"$OUT" || fail "stdout lacks /106540352242922 +yes +VALID +yes/
$OUT"
expect_out_has "1 of 1 phone numbers OK"
expect_count 1 POST "" "" "status uploads nothing"
pass "status reports VALID and uploads nothing"

run "$FV" register flows
expect_rc 0 "register again"
expect_count 2 POST "" "" "second register uploads again"
pass "register is safe to run again"

# One Meta guide shows the answer without the "data" wrapper: accept both.
sim_config '{"numbers": {"106540352242923": {"bare": true}}}'
run "$FV" --json status flows --phone 106540352242923
expect_rc 5 "bare answer, no key"
jcheck '.results[0].registered == false' "bare answer without key"
run "$FV" --json register flows --phone 106540352242923
expect_rc 0 "register on a number answering without the data wrapper"
jcheck '.results[0].status == "VALID" and .results[0].matches_local' "bare answer with key"
pass "answers with and without the data wrapper"

before=$(sim_count POST)
run "$FV" register flows --dry-run --phone 1 --phone 2 --phone 1
expect_rc 0 "dry run"
expect_out_has "dry run: would upload key flows (fingerprint $fp) to 2 phone numbers"
run "$FV" --json register flows --dry-run
expect_rc 0 "dry run --json"
jcheck '. == {"key": "flows", "fingerprint_sha256": "'"$fp"'", "dry_run": true, "phone_number_ids": ["106540352242922"]}' "dry-run JSON"
[ "$(sim_count POST)" = "$before" ] || fail "--dry-run uploaded something"
pass "--dry-run uploads nothing"

run "$FV" register flows --phone 12ab
expect_rc 2 "non-numeric phone id"
expect_err_has "--phone '12ab' is not a Graph id"
run "$FV" register
expect_rc 2 "missing KEY"
run "$FV" register nosuchkey --phone 1
expect_rc 2 "unknown key"
write_config '[]'
run "$FV" register flows
expect_rc 2 "a key meant for no numbers"
expect_err_has 'add "phone_numbers" or "waba_id" to keys.flows'
pass "usage errors exit 2 and say what to do"

run "$FV" register --help
expect_rc 0 "register --help"
expect_out_has "Exit codes:"
expect_out_has "--dry-run"
run "$FV" status --help
expect_rc 0 "status --help"
expect_out_has "registered"
pass "help texts"
