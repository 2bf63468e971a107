#!/bin/bash
# A key rotation across two serve nodes behind HAProxy (serve.nodes lists
# both admin endpoints, TLS and the admin token): the new key is generated
# in the shared SoftHSM2 token through the p11-kit server; rotate reloads
# its own node (serve.pid_file) but stops, naming node 2, while node 2 does
# not hold the new key: no phone number moves (the Graph API simulator saw
# no upload). Once the configuration is on node 2 and node 2 is reloaded,
# `rotate --resume` moves the numbers. Requests encrypted to the old key
# succeed throughout, and to either key once both nodes hold both.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/deploy/deploy_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

deploy_setup
# shellcheck disable=SC2119 # no simulator options
start_sim
PHONES='"1000", "1001", "1002"'
GRAPH_JSON="\"graph\": {\"base_url\": \"$SIM_URL\", \"access_token\": \"env:WHATSAPP_ACCESS_TOKEN\",
    \"ca_file\": \"$T/tls/ca.pem\", \"timeout_seconds\": 5, \"retry_base_ms\": 5, \"max_retries\": 2}"
NODES_JSON="\"nodes\": [\"$(admin_url 1)\", \"$(admin_url 2)\"], \"nodes_ca\": \"$T/tls/ca.pem\""
KEY_EXTRA="\"phone_numbers\": [$PHONES]"
node_config 1 "" "$NODES_JSON" "$GRAPH_JSON"
node_config 2 "" "$NODES_JSON" "$GRAPH_JSON"
# rotate, status and register run as node 1's operator would.
export FLOWVAULT_CONFIG="$T/node1/config.json"
run "$FV" register flows
expect_rc 0 "register flows on its numbers"
node_start 1
node_start 2
haproxy_config
haproxy_start "$T/haproxy.cfg"
wait_check node1 L7OK 10
wait_check node2 L7OK 10
pass "two nodes behind HAProxy, health checks over TLS with the admin token"

# healthz_has N KEY: node N's /healthz reports KEY as ok.
healthz_has() {
	admin_get "$1" /healthz | jq -e --arg k "$2" \
		'.keys[$k] == "ok" or .keys[$k].status == "ok"' >/dev/null 2>&1
}

load_start old "$FLOWS_PUB"
wait_load old 40

run "$FV" rotate flows --new flows2 --set "uri=pkcs11:token=$TOKEN_LABEL;object=flows2"
expect_rc 1 "rotate while node 2 does not hold flows2"
expect_err_has "$(admin_url 2)"
expect_err_has "flowvault rotate --resume"
expect_err_has "no phone number was moved"
healthz_has 1 flows2 || fail "rotate did not reload node 1 with flows2: $(admin_get 1 /healthz)"
healthz_has 2 flows2 && fail "node 2 holds flows2 without its configuration"
[ "$(posts_per_phone | awk '$2 != 1' | wc -l)" = 0 ] ||
	fail "a number moved while node 2 lacked the new key: $(posts_per_phone)"
expect_all_on flows 3
pass "rotate stops before moving any number, naming node 2 ($(admin_url 2)); the simulator saw no upload"

# What the stop protects: node 2 cannot decrypt for the new key yet.
"$FV" pubkey flows2 >"$T/flows2.pub"
post_to() { # post_to PORT PUB: one signed ping straight to a node; $OUT is the JSON line
	run node "$CLIENT" post --url "https://127.0.0.1:$1/flows" --ca "$T/tls/ca.pem" --pub "$2" \
		--secret "$APP_SECRET" --payload '{"version":"3.0","action":"ping"}'
	expect_rc 0 "flows_client post to $1"
}
CLIENT="$FV_SOURCE_DIR/tests/flow/flows_client.js"
post_to "${NODE_PORT[1]}" "$T/flows2.pub"
jq -e '.status == 200' <<<"$OUT" >/dev/null || fail "node 1 does not answer for flows2: $OUT"
post_to "${NODE_PORT[2]}" "$T/flows2.pub"
jq -e '.status != 200' <<<"$OUT" >/dev/null || fail "node 2 answered for a key it does not hold: $OUT"

# The operator distributes the configuration (keys and serve.keys) to node 2
# and reloads it; then the rotation resumes and moves the numbers.
jq --slurpfile one "$T/node1/config.json" '.keys = $one[0].keys | .serve.keys = $one[0].serve.keys' \
	"$T/node2/config.json" >"$T/node2/config.new"
chmod 600 "$T/node2/config.new"
mv "$T/node2/config.new" "$T/node2/config.json"
kill -HUP "${NODE_PID[2]}"
for ((i = 0; i < 300; i++)); do
	healthz_has 2 flows2 && break
	sleep 0.1
done
healthz_has 2 flows2 || fail "node 2 does not hold flows2 after its reload: $(admin_get 2 /healthz)"
load_start both "$FLOWS_PUB,$T/flows2.pub"
wait_load both 40
run "$FV" rotate --resume
expect_rc 0 "rotate --resume with both nodes holding flows2"
[ "$(posts_per_phone | awk '$2 != 2' | wc -l)" = 0 ] || fail "uploads per number: $(posts_per_phone)"
expect_all_on flows2 3
wait_load both 40
wait_load old 40
load_stop old
load_stop both
for name in old both; do
	! grep -qv ' ok$' "$T/$name.txt" ||
		fail "requests ($name) failed during the rotation: $(grep -v ' ok$' "$T/$name.txt" | head -3)"
done
[ "$(awk '$3 == 1' "$T/both.txt" | wc -l)" -gt 0 ] || fail "no request was encrypted to flows2"
expect_not_has " is DOWN" "$T/haproxy.log"
pass "both nodes reloaded, rotate --resume moved the 3 numbers; $(load_count old) requests to the old key and $(load_count both) to either key, none failed"

run "$FV" --json doctor
expect_rc 0 "doctor after the rotation"
for n in 1 2; do
	jq -e --arg u "$(admin_url "$n")" '[.checks[] | select(.check == "nodes" and .subject == $u
		and .status == "ok")] | length == 1' <<<"$OUT" >/dev/null ||
		fail "doctor does not report node $n as ok: $OUT"
done
pass "doctor reports both nodes ok"
