# 50 concurrent keep-alive clients x 200 requests through serve and its
# upstream pool: none may fail.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

flow_setup_keys
PORT=$(free_port)
UP=$(free_port)
upstream_start "$UP"
flow_config "$T/config.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"off\",
    \"keys\": [\"current\"], \"allow_unsigned\": true,
    \"upstream\": \"http://127.0.0.1:$UP/\", \"threads\": 8}"
"$FV" --config "$T/config.json" pubkey current >"$T/current.pub"
serve_start "$T/config.json" "$PORT"

run node "$CLIENT" load --url "http://127.0.0.1:$PORT/flows" --pub "$T/current.pub" \
	--clients 50 --requests 200 --expect-key 'key="current"' \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"load","data":{"x":1}}'
expect_rc 0 "load client"
[ "$(field ok)" = 10000 ] && [ "$(field failed)" = 0 ] || fail "load: $OUT"
serve_stop
[ "$(grep -c 'serve: 200 answered' "$T/serve.log")" = 10000 ] || fail "expected 10000 log lines"
pass "50 clients x 200 requests: 10000 answered, none failed"
