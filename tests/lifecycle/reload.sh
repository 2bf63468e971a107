#!/bin/bash
# rotate with a running flowvault serve named by serve.pid_file: rotate
# reloads it (SIGHUP, no restart), waits until its /healthz holds the new
# key, then moves the numbers; requests encrypted to the old key keep
# succeeding throughout, and requests to the new key succeed afterwards.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"
CLIENT="$FV_SOURCE_DIR/tests/flow/flows_client.js"

P=$(free_port)
A=$(free_port)
export APP_SECRET="app-secret-$(openssl rand -hex 8)"
lc_setup 3 "{\"listen\": \"127.0.0.1:$P\", \"admin_listen\": \"127.0.0.1:$A\", \"keys\": [\"flows\"],
    \"app_secrets\": [\"env:APP_SECRET\"], \"pid_file\": \"$T/serve.pid\"}"
"$FV" serve >"$T/serve.log" 2>&1 &
SERVE_PID=$!
at_exit "kill $SERVE_PID"
wait_port "$P" 30
wait_port "$A" 30
[ "$(cat "$T/serve.pid" 2>/dev/null)" = "$SERVE_PID" ] || fail "serve.pid_file does not hold serve's pid"
healthz() { curl -sf "http://127.0.0.1:$A/healthz"; }
gen0=$(healthz | jq -r .generation)
[ -n "$gen0" ] && [ "$gen0" != null ] || fail "/healthz has no generation: $(healthz)"

run "$FV" pubkey flows --out "$T/old.pem"
expect_rc 0 "pubkey flows"
# Requests to the old key all through the rotation.
node "$CLIENT" load --url "http://127.0.0.1:$P/flows" --pub "$T/old.pem" --secret "$APP_SECRET" \
	--clients 4 --requests 300 >"$T/load-old.json" 2>"$T/load-old.err" &
LOAD=$!
sleep 0.5
run "$FV" rotate flows --new flows2
expect_rc 0 "rotate with serve running and serve.pid_file set"
wait "$LOAD" || fail "the load client failed: $(cat "$T/load-old.err")"
jq -e '.failed == 0 and .ok == 1200' "$T/load-old.json" >/dev/null ||
	fail "requests to the old key failed during the rotation: $(cat "$T/load-old.json")"
kill -0 "$SERVE_PID" 2>/dev/null || fail "serve is gone"
[ "$(cat "$T/serve.pid")" = "$SERVE_PID" ] || fail "serve was restarted, not reloaded"
gen1=$(healthz | jq -r .generation)
[ "$gen1" -gt "$gen0" ] || fail "serve was not reloaded (generation $gen0 -> $gen1)"
healthz | jq -e '.keys.flows2 == "ok" and .keys.flows == "ok"' >/dev/null ||
	fail "serve does not hold both keys: $(healthz)"
expect_all_on flows2 3
jq -e '.serve.keys == ["flows2", "flows"]' "$T/config.json" >/dev/null || fail "serve.keys after the switch"
pass "rotate reloads the serve of serve.pid_file; the old key answered every request meanwhile"

run "$FV" pubkey flows2 --out "$T/new.pem"
expect_rc 0 "pubkey flows2"
run node "$CLIENT" load --url "http://127.0.0.1:$P/flows" --pub "$T/new.pem" --secret "$APP_SECRET" \
	--clients 2 --requests 50
jq -e '.failed == 0 and .ok == 100' <<<"$OUT" >/dev/null || fail "requests to the new key: $OUT"
grep -q " 421 " "$T/serve.log" && fail "serve answered 421 during the rotation: $(grep ' 421 ' "$T/serve.log" | head -3)"
pass "requests to the new key succeed; no 421 at any time"
