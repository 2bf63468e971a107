#!/bin/bash
# rotate and a running flowvault serve: no number moves to the new key while
# the serve listening at serve.listen does not hold it (serve reads
# serve.keys at start); after a restart, --resume moves them.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

P=$(free_port)
A=$(free_port)
lc_setup 3 "{\"listen\": \"127.0.0.1:$P\", \"admin_listen\": \"127.0.0.1:$A\", \"keys\": [\"flows\"],
    \"allow_unsigned\": true}"
start_serve() {
	"$FV" serve >"$T/serve.log" 2>&1 &
	SERVE_PID=$!
	at_exit "kill $SERVE_PID"
	wait_port "$P"
}
stop_serve() { kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; }
start_serve
posts0=$(sim_count POST)

run "$FV" rotate flows --new flows2
expect_rc 1 "rotate while serve lacks the new key"
expect_err_has "does not decrypt with key flows2 yet"
expect_err_has "restart it, then run flowvault rotate --resume; no phone number was moved"
[ "$(sim_count POST)" = "$posts0" ] || fail "numbers were moved while serve lacked the new key"
jq -e '.serve.keys == ["flows", "flows2"]' "$T/config.json" >/dev/null || fail "serve.keys not prepared"
run "$FV" rotate --resume
expect_rc 1 "resume before the restart"
pass "no number moves while the running serve does not hold the new key"

stop_serve
start_serve
curl -sf "http://127.0.0.1:$A/healthz" | jq -e '.keys.flows2 == "ok"' >/dev/null || fail "serve lacks flows2 after restart"
run "$FV" rotate --resume
expect_rc 0 "resume after the restart"
expect_out_has "rotation flows -> flows2: switched"
expect_out_has "restart it"
expect_all_on flows2 3
jq -e '.serve.keys == ["flows2", "flows"]' "$T/config.json" >/dev/null || fail "serve.keys after the switch"
pass "after a restart of serve, --resume moves the numbers and switches"
