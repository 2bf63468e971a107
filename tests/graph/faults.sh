# Every fault class the simulator can inject: the right number of tries, the
# right message and the right exit code. Retries use retry_base_ms 5.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
write_config '["111"]'

# -- Retryable: each fails once, then the number registers. --------------------
sim_config '{"faults": [
 {"phone": "201", "method": "POST", "fault": {"type": "http", "status": 500}},
 {"phone": "202", "method": "POST", "fault": {"type": "http", "status": 502}},
 {"phone": "203", "method": "POST", "fault": {"type": "http", "status": 429}},
 {"phone": "204", "method": "GET", "fault": {"type": "http", "status": 503}},
 {"phone": "205", "method": "POST", "fault": {"type": "reset"}},
 {"phone": "206", "method": "GET", "fault": {"type": "reset"}},
 {"phone": "207", "method": "POST", "fault": {"type": "truncated"}},
 {"phone": "208", "method": "GET", "fault": {"type": "malformed"}},
 {"phone": "209", "method": "POST", "fault": {"type": "error", "code": 999, "status": 400, "transient": true}}
]}'
phones="201 202 203 204 205 206 207 208 209"
args=(); for p in $phones; do args+=(--phone "$p"); done
run "$FV" --json register flows "${args[@]}"
expect_rc 0 "one transient failure per number"
for p in 201 202 203 205 207 209; do
	expect_count 2 POST whatsapp_business_encryption "$p" "number $p: one retry of the upload"
	expect_count 1 GET whatsapp_business_encryption "$p" "number $p: one read-back"
done
for p in 204 206 208; do
	expect_count 1 POST whatsapp_business_encryption "$p" "number $p: one upload"
	expect_count 2 GET whatsapp_business_encryption "$p" "number $p: one retry of the read-back"
done
jcheck 'all(.results[]; .status == "VALID" and .error == null)' "all VALID after retries"
pass "HTTP 500/502/429/503, reset (upload and read), truncated, malformed JSON, is_transient: retried once each"

# -- Each retryable Graph code, once. -------------------------------------------
sim_reset
codes="2 4 17 341 80007 80008 130429 131000 131016 133004 1"
faults=""; args=()
for c in $codes; do
	faults+="${faults:+,}{\"phone\": \"3$c\", \"method\": \"POST\", \"fault\": {\"type\": \"error\", \"code\": $c}}"
	args+=(--phone "3$c")
done
sim_config "{\"faults\": [$faults]}"
run "$FV" --json register flows "${args[@]}"
expect_rc 0 "each retryable code once"
for c in $codes; do
	expect_count 2 POST whatsapp_business_encryption "3$c" "code $c: retried once"
done
pass "codes $codes: retried"

# -- Retries run out: exit 4, the message says so. -----------------------------
sim_reset
sim_config '{"faults": [
 {"phone": "401", "method": "POST", "times": 100, "fault": {"type": "http", "status": 503}},
 {"phone": "402", "method": "POST", "times": 100, "fault": {"type": "error", "code": 80007}},
 {"phone": "403", "method": "POST", "times": 100, "fault": {"type": "error", "code": 1}}
]}'
run "$FV" --json register flows --phone 401 --phone 402 --phone 403 --phone 404
expect_rc 4 "retries run out"
expect_count 4 POST whatsapp_business_encryption 401 "HTTP 503: 1 try + max_retries 3"
expect_count 4 POST whatsapp_business_encryption 402 "code 80007: 1 try + max_retries 3"
expect_count 3 POST whatsapp_business_encryption 403 "code 1: bounded to 2 retries"
json_result 401 '.error.code == 503 and (.error.message | contains("retries ran out after 4 tries")) and .registered == false and .status == null' "503 result"
json_result 402 '.error.code == 80007 and (.error.message | contains("rate limit")) and (.error.fbtrace_id | startswith("Sim"))' "80007 result"
json_result 404 '.status == "VALID" and .error == null' "the healthy number still registers"
expect_err_has "3 of 4 phone numbers failed"
pass "retries run out: exit 4 with the count; other numbers unaffected"

# A rerun after the partial failure finishes the job.
sim_reset
run "$FV" register flows --phone 401 --phone 402 --phone 403 --phone 404
expect_rc 0 "rerun after partial failure"
pass "rerun after a partial failure finishes the job"

# -- Never retried: 190, 10, 100, 200, 368, 0, another 4xx, plain 404. ---------
sim_reset
sim_config '{"faults": [
 {"phone": "502", "method": "POST", "fault": {"type": "error", "code": 10}},
 {"phone": "503", "method": "POST", "fault": {"type": "error", "code": 100, "user_msg": "Invalid key"}},
 {"phone": "504", "method": "POST", "fault": {"type": "error", "code": 200, "status": 403}},
 {"phone": "505", "method": "POST", "fault": {"type": "error", "code": 368}},
 {"phone": "506", "method": "POST", "fault": {"type": "error", "code": 0}},
 {"phone": "507", "method": "POST", "fault": {"type": "error", "code": 803, "status": 404}},
 {"phone": "508", "method": "POST", "fault": {"type": "http", "status": 404}}
]}'
args=(); for p in 502 503 504 505 506 507 508; do args+=(--phone "$p"); done
run "$FV" --json register flows "${args[@]}"
expect_rc 4 "final errors"
for p in 502 503 504 505 506 507 508; do
	expect_count 1 POST whatsapp_business_encryption "$p" "number $p: not retried"
	expect_count 0 GET whatsapp_business_encryption "$p" "number $p: no read-back after a refused upload"
done
json_result 502 '.error.code == 10 and (.error.message | contains("allow-listed"))' "10 message"
json_result 503 '.error.code == 100 and (.error.message | contains("RSA-2048")) and (.error.message | contains("phone-number id")) and (.error.message | contains("(Invalid key)"))' "100 message"
json_result 504 '.error.code == 200 and (.error.message | contains("permission"))' "200 message"
json_result 506 '.error.code == 0' "code 0 kept"
json_result 508 '.error.code == 404 and .error.fbtrace_id == null' "plain 404"
# A refused token (190, also one marked transient) stops the run: each is
# its own run, one number each.
sim_reset
sim_config '{"faults": [
 {"phone": "501", "method": "POST", "fault": {"type": "error", "code": 190}},
 {"phone": "509", "method": "POST", "fault": {"type": "error", "code": 190, "transient": true}}
]}'
for p in 501 509; do
	run "$FV" --json register flows --phone "$p"
	expect_rc 4 "190 on $p"
	expect_count 1 POST whatsapp_business_encryption "$p" "number $p: not retried"
	expect_count 0 GET whatsapp_business_encryption "$p" "number $p: no read-back after a refused upload"
	json_result "$p" '.error.code == 190 and (.error.message | contains("create a new system-user token")) and (.error.message | contains("fbtrace_id Sim"))' "190 message"
done
pass "190, 10, 100, 200, 368, 0, other 4xx: not retried, messages say what to do"

run "$FV" register flows --phone 501
expect_rc 0 "the fault was used up"
sim_reset
sim_config '{"faults": [{"phone": "501", "method": "POST", "fault": {"type": "error", "code": 190}}]}'
run "$FV" register flows --phone 501
expect_rc 4 "190 in table mode"
expect_err_has "Graph API error 190"
! grep -q "Graph API error 190" <<<"$OUT" || fail "a refused token is reported per number: $OUT"
expect_err_has "the access token is expired or invalid: create a new system-user token"
pass "table mode: a refused token (190) is said once, on stderr"

# -- Stalls longer than the timeout: retried, then given up. -------------------
sim_reset
# The timeout leaves room for a slow machine (sanitizer builds); the stall is
# well past it.
write_config '["111"]' '"timeout_seconds": 2, "max_retries": 1'
sim_config '{"faults": [
 {"phone": "601", "method": "GET", "times": 1, "fault": {"type": "stall", "seconds": 5}},
 {"phone": "602", "method": "POST", "times": 5, "fault": {"type": "stall", "seconds": 5}}
]}'
run "$FV" --json register flows --phone 601 --phone 602
expect_rc 4 "stalls"
expect_count 2 GET whatsapp_business_encryption 601 "stalled read-back retried"
json_result 601 '.status == "VALID"' "601 after a stall"
expect_count 2 POST whatsapp_business_encryption 602 "stalled upload: 1 try + 1 retry"
json_result 602 '.error.code == -1 and (.error.message | contains("graph.timeout_seconds")) and (.error.message | contains("retries ran out"))' "timeout message"
pass "stalls past graph.timeout_seconds: retried; exit 4 when retries run out"

# -- X-Business-Use-Case-Usage -------------------------------------------------
sim_reset
write_config '["111"]' '"max_wait_seconds": 5'
sim_config '{"faults": [{"phone": "701", "method": "POST", "fault": {"type": "error", "code": 80007, "usage_minutes": 0.02}}]}'
run "$FV" --json register flows --phone 701
expect_rc 0 "usage header within max_wait_seconds"
sim_ctl GET /_sim/log | jq -e '[.requests[] | select(.method == "POST") | .t] | length == 2 and .[1] - .[0] >= 1.1' >/dev/null || fail "did not wait the announced 1.2 s before the retry"
pass "a regain time within graph.max_wait_seconds is waited out"

sim_reset
write_config '["111"]' '"max_wait_seconds": 60, "max_in_flight": 1'
sim_config '{"faults": [{"phone": "801", "method": "POST", "fault": {"type": "error", "code": 80007, "usage_minutes": 30}}]}'
run "$FV" --json register flows --phone 801 --phone 802 --phone 803
expect_rc 4 "usage header beyond max_wait_seconds"
expect_count 1 POST "" "" "no request after the long rate limit"
json_result 801 '(.error.message | contains("try again after")) and (.error.message | contains("30 minutes"))' "rate-limited number"
json_result 803 '(.error.message | contains("try again after")) and .registered == false' "numbers not started"
expect_err_has "try again after"
pass "a regain time beyond graph.max_wait_seconds stops the run and says when to try again"

# A successful answer with a short regain time pauses the following requests.
sim_reset
write_config '["111"]' '"max_wait_seconds": 5, "max_in_flight": 1'
sim_config '{"faults": [{"phone": "901", "method": "GET", "fault": {"type": "usage", "minutes": 0.015}}]}'
run "$FV" register flows --phone 901 --phone 902
expect_rc 0 "usage header on a success"
sim_ctl GET /_sim/log | jq -e '.requests as $r | ([$r[] | select(.phone == "901" and .method == "GET") | .t][0]) as $first
	| [$r[] | select(.t > $first) | .t] | length > 0 and min - $first >= 0.8' >/dev/null || fail "did not pause after the usage header"
pass "a usage header on a successful answer pauses later requests"

# -- Connection refused: retried, then exit 4. ---------------------------------
dead=$(free_port)
write_config '["111"]' "\"base_url\": \"https://127.0.0.1:$dead\", \"max_retries\": 2"
# The configuration now names base_url twice; keep one (the later one).
jq . "$T/config.json" >"$T/config.tmp" && mv "$T/config.tmp" "$T/config.json"
run "$FV" -v register flows --phone 111
expect_rc 4 "connection refused"
expect_err_has "connection to 127.0.0.1:$dead failed"
expect_err_has "retries ran out after 3 tries"
[ "$(grep -c 'graph: POST .*(try' <<<"$ERR")" = 3 ] || fail "expected 3 tries in the -v log: $ERR"
pass "connection refused: retried, exit 4"
