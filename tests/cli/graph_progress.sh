#!/bin/bash
# register/status against the Graph API simulator: progress on a terminal
# only; a refused token (190) stops the run after the first answer, with one
# message.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
write_config '["1001", "1002", "1003", "1004", "1005"]' '"max_in_flight": 1'

# A refused token: one request, one message, exit 4.
WHATSAPP_ACCESS_TOKEN=not-the-token run "$FV" status flows
expect_rc 4 "status with a refused token"
expect_count 1 "" "" "" "requests after a 190 answer"
[ "$(grep -c "Invalid OAuth access token" <<<"$ERR")" = 1 ] ||
	fail "the 190 message is not said exactly once on stderr: $ERR"
expect_err_has "the access token was refused (Graph error 190), so the run stopped"
expect_err_has "create a new system-user token"
! grep -q "Invalid OAuth" <<<"$OUT" || fail "the 190 message is repeated on stdout: $OUT"
WHATSAPP_ACCESS_TOKEN=not-the-token run "$FV" --json register flows
expect_rc 4 "register --json with a refused token"
jq -e '[.results[] | select(.error.code == 190)] | length == 1' <<<"$OUT" >/dev/null ||
	fail "register --json: not exactly one number answered 190: $OUT"
expect_count 2 "" "" "" "requests after two runs with a refused token"
pass "a refused token stops the run after one request, with one message (exit 4)"

# Progress: on a terminal, done/total and failures so far; nothing otherwise.
run "$FV" register flows
expect_rc 0 "register"
! grep -q "phone numbers, .* failed so far" <<<"$ERR" || fail "progress without a terminal: $ERR"
run "$FV" --json status flows
expect_rc 0 "status --json"
[ -z "$ERR" ] || fail "status --json wrote to stderr: $ERR"
run timeout 60 script -qec "'$FV' status flows" /dev/null </dev/null
expect_rc 0 "status on a terminal"
expect_out_has "checking: 5/5 phone numbers, 0 failed so far"
expect_out_has "5 of 5 phone numbers OK"
pass "status/register show progress on a terminal only"
