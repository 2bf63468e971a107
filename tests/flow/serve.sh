# flowvault serve against an independent Node client and a Python upstream:
# every status code, rotation grace, app secrets, health, metrics, shutdown.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

flow_setup_keys
PORT=$(free_port)
UP=$(free_port)
DOWN=$(free_port) # nothing listens there
ADMIN=$(free_port)
URL="http://127.0.0.1:$PORT/flows"
export APP_SECRET_NEW=new-secret-123 APP_SECRET_OLD=old-secret-456

export UPSTREAM_SLOW_MARK="$T/slow.mark"
upstream_start "$UP" 3
flow_config "$T/config.json" "{
    \"listen\": \"127.0.0.1:$PORT\",
    \"admin_listen\": \"127.0.0.1:$ADMIN\",
    \"keys\": [\"current\", \"pywa\"],
    \"app_secrets\": [\"env:APP_SECRET_NEW\", \"env:APP_SECRET_OLD\"],
    \"upstream\": \"http://127.0.0.1:$UP/logic\",
    \"upstream_timeout_ms\": 1000,
    \"max_body_bytes\": 4096,
    \"threads\": 4
  }"
"$FV" --config "$T/config.json" pubkey current >"$T/current.pub"
"$FV" --config "$T/config.json" pubkey pywa >"$T/pywa.pub"

run "$FV" --config "$T/config.json" serve --check
expect_rc 0 "serve --check"

serve_start "$T/config.json" "$PORT"
S="--secret $APP_SECRET_NEW"

# Round trip through upstream, with the current key.
post --url "$URL" --pub "$T/current.pub" $S \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"t1","screen":"A","data":{"n":1}}'
expect_field status 200
expect_field contentType text/plain
expect_field response.screen NEXT
expect_field response.data.echo '{"n": 1}'
expect_field response.data.key current
expect_field response.data.action data_exchange
pass "round trip through upstream (200, encrypted answer)"

# Rotation grace: a request encrypted to the previous key is still accepted.
post --url "$URL" --pub "$T/pywa.pub" $S \
	--payload '{"version":"3.0","action":"INIT","flow_token":"t2","data":{}}'
expect_field status 200
expect_field response.data.key pywa
pass "request to the previous key accepted during rotation"

# A key nobody configured: 421, empty body.
post --url "$URL" --pub "$T/stranger.pub" $S --payload '{"action":"ping"}'
expect_field status 421
expect_field body ""
pass "request to an unknown key -> 421, empty body"

# Undecryptable bodies: not JSON, bad base64, wrong IV length, tag mismatch.
good=$(node "$CLIENT" encrypt --pub "$T/current.pub" --payload '{"action":"ping"}')
bad_iv=$("$PY" -c 'import json,sys;d=json.loads(sys.argv[1]);d["initial_vector"]="AAAAAAAAAAAAAAAAAAAA";print(json.dumps(d))' "$good")
bad_tag=$("$PY" -c 'import json,sys,base64;d=json.loads(sys.argv[1]);b=bytearray(base64.b64decode(d["encrypted_flow_data"]));b[-1]^=1;d["encrypted_flow_data"]=base64.b64encode(b).decode();print(json.dumps(d))' "$good")
bad_b64=$("$PY" -c 'import json,sys;d=json.loads(sys.argv[1]);d["encrypted_aes_key"]=d["encrypted_aes_key"][:-2]+"!=";print(json.dumps(d))' "$good")
for body in 'not json' '{}' "$bad_iv" "$bad_tag" "$bad_b64"; do
	post --url "$URL" --pub "$T/current.pub" $S --raw-body "$body"
	expect_field status 421
	expect_field body ""
done
# Clear text that is not JSON, under valid encryption.
post --url "$URL" --pub "$T/current.pub" $S --payload 'this is not json'
expect_field status 421
pass "undecryptable requests (5 shapes + clear text not JSON) -> 421"

# Signatures: missing, wrong -> 432; the old secret still works.
post --url "$URL" --pub "$T/current.pub" --payload '{"action":"ping"}'
expect_field status 432
expect_field body ""
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET_NEW" --signature bad \
	--payload '{"action":"ping"}'
expect_field status 432
post --url "$URL" --pub "$T/current.pub" --secret wrong-secret --payload '{"action":"ping"}'
expect_field status 432
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET_OLD" --payload '{"action":"ping"}'
expect_field status 200
pass "X-Hub-Signature-256 missing/wrong -> 432; second app secret accepted"

# Ping and error notification: answered without upstream.
post --url "$URL" --pub "$T/current.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
expect_field response '{"data": {"status": "active"}}'
post --url "$URL" --pub "$T/current.pub" $S \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"boom","data":{"error":"INVALID_SCREEN","error_message":"x"}}'
expect_field status 200
expect_field response '{"data": {"acknowledged": true}}'
pass "ping and error notification answered (upstream not called)"

# 427 from upstream passes through with the encrypted error_msg.
post --url "$URL" --pub "$T/current.pub" $S \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"expired","data":{}}'
expect_field status 427
expect_field response.error_msg "flow token expired"
pass "upstream 427 passes through (encrypted error_msg)"

# Upstream errors: 500 answer, not JSON, too slow.
for token in boom notjson slow; do
	post --url "$URL" --pub "$T/current.pub" $S \
		--payload "{\"version\":\"3.0\",\"action\":\"data_exchange\",\"flow_token\":\"$token\",\"data\":{}}"
	expect_field status 500
	expect_field body ""
done
grep -qF "Timeout" "$T/serve.log" || fail "the upstream timeout is not logged"
pass "upstream error, non-JSON answer, timeout -> 500 (logged)"

# Oversized body: 413 before it is read.
post --url "$URL" --pub "$T/current.pub" $S --raw-body "$(head -c 5000 /dev/zero | tr '\0' a)"
expect_field status 413
pass "body over max_body_bytes -> 413"

# Other paths and methods.
run curl -s -o /dev/null -w '%{http_code}' "$URL"
[ "$OUT" = 405 ] || fail "GET $URL gave $OUT, expected 405"
run curl -s -o /dev/null -w '%{http_code}' -X POST -d x "http://127.0.0.1:$PORT/other"
[ "$OUT" = 404 ] || fail "POST /other gave $OUT, expected 404"
# The Flows listener answers serve.path only: health and metrics are not public.
for p in /healthz /metrics /; do
	run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$p"
	[ "$OUT" = 404 ] || fail "GET $p on the Flows listener gave $OUT, expected 404"
done
run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/flows"
[ "$OUT" = 404 ] || fail "GET /flows on the admin listener gave $OUT, expected 404"
run curl -s -o /dev/null -w '%{http_code}' -X POST -d x "http://127.0.0.1:$ADMIN/metrics"
[ "$OUT" = 405 ] || fail "POST /metrics on the admin listener gave $OUT, expected 405"
pass "Flows listener: only serve.path (404 for /healthz, /metrics); admin: only those two"

# Health and metrics, on serve.admin_listen.
run curl -s -w '\n%{http_code}' "http://127.0.0.1:$ADMIN/healthz"
[ "$(tail -1 <<<"$OUT")" = 200 ] || fail "healthz: $OUT"
OUT=$(head -1 <<<"$OUT")
expect_field status ok
expect_field keys.current ok
expect_field keys.pywa ok
fp=$(openssl pkey -pubin -in "$T/current.pub" -outform DER | sha256sum | cut -d' ' -f1)
expect_field fingerprints.current "$fp"
[ "$(field generation)" -ge 1 ] || fail "healthz has no generation: $OUT"
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_requests_total{status="421"} 7'
expect_out_has 'flowvault_requests_total{status="432"} 3'
expect_out_has 'flowvault_requests_total{status="427"} 1'
expect_out_has 'flowvault_requests_total{status="413"} 1'
expect_out_has 'flowvault_key_requests_total{key="pywa"} 1'
expect_out_has 'flowvault_decrypt_seconds_bucket{le="+Inf"}'
expect_out_has 'flowvault_upstream_seconds_count 6'
pass "/healthz and /metrics"

# One log line per request, and never clear data or secrets in the log.
grep -qE 'serve: 200 answered key=current .*decrypt_ms=[0-9.]+ upstream_ms=[0-9.]+' "$T/serve.log" ||
	fail "no request log line: $(cat "$T/serve.log")"
for secret in '"n":1' t1 INVALID_SCREEN "flow token expired" "$APP_SECRET_NEW" "$APP_SECRET_OLD" NEXT; do
	expect_not_has "$secret" "$T/serve.log"
done
pass "request log lines carry no clear data or secrets"

# Graceful stop: a request in flight (the upstream takes 3 s) still gets its answer.
serve_stop
flow_config "$T/slow.json" "{
    \"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"127.0.0.1:$ADMIN\", \"keys\": [\"current\"],
    \"allow_unsigned\": true,
    \"upstream\": \"http://127.0.0.1:$UP/logic\", \"upstream_timeout_ms\": 5000 }"
serve_start "$T/slow.json" "$PORT"
rm -f "$T/slow.mark"
node "$CLIENT" post --url "$URL" --pub "$T/current.pub" \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"slow","data":{}}' >"$T/inflight.json" &
client=$!
# SIGTERM once the request is in flight (at the upstream), however slow the
# client is to start.
for ((i = 0; i < 100; i++)); do [ -e "$T/slow.mark" ] && break; sleep 0.1; done
[ -e "$T/slow.mark" ] || fail "the slow request never reached the upstream"
kill -TERM "$SERVE_PID"
# While it drains, a new connection is refused at once, so that a load
# balancer's health check marks the node down and its retry goes elsewhere;
# a connection queued where no process accepts it any more would only time out.
# The workers close their copies of the sockets when the supervisor tells
# them to: wait (bounded) until no process listens on either port.
wait_port_free "$PORT" 5
wait_port_free "$ADMIN" 5
kill -0 "$client" 2>/dev/null ||
	fail "the request in flight ended before serve stopped listening (it must stop at once): $(cat "$T/inflight.json")"
for probe in "http://127.0.0.1:$ADMIN/healthz" "$URL"; do
	rc=0
	curl -s -o /dev/null --max-time 2 "$probe" || rc=$?
	[ "$rc" = 7 ] || fail "$probe while serve drains: curl exit $rc, expected 7 (connection refused)"
done
pass "SIGTERM: new connections are refused while requests in flight finish"
rc=0
wait "$SERVE_PID" || rc=$?
[ "$rc" = 0 ] || fail "flowvault serve exited $rc after SIGTERM: $(tail -5 "$T/serve.log")"
wait "$client" || fail "the in-flight client failed"
OUT=$(cat "$T/inflight.json")
expect_field status 200
expect_field response.screen NEXT
pass "SIGTERM: request in flight answered, exit 0"

# No upstream configured: ping works, anything else 500 with a logged configuration error.
flow_config "$T/noup.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"off\",
    \"keys\": [\"current\"], \"allow_unsigned\": true}"
serve_start "$T/noup.json" "$PORT"
post --url "$URL" --pub "$T/current.pub" --payload '{"action":"ping"}'
expect_field status 200
post --url "$URL" --pub "$T/current.pub" --payload '{"action":"INIT","flow_token":"x","data":{}}'
expect_field status 500
serve_stop
grep -qF "serve.upstream is not configured" "$T/serve.log" || fail "no configuration error logged"
pass "no upstream: ping 200, other actions 500 with a logged reason"

# Upstream down.
flow_config "$T/down.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"off\",
    \"keys\": [\"current\"], \"allow_unsigned\": true,
    \"upstream\": \"http://127.0.0.1:$DOWN/\"}"
serve_start "$T/down.json" "$PORT"
post --url "$URL" --pub "$T/current.pub" --payload '{"action":"INIT","flow_token":"x","data":{}}'
expect_field status 500
serve_stop
grep -qF "upstream failed" "$T/serve.log" || fail "upstream failure not logged"
pass "upstream down -> 500 (logged)"

# No app secret: serve and serve --check refuse, saying what to add...
flow_config "$T/unsigned.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"off\",
    \"keys\": [\"current\"]}"
for args in "serve --check" "serve"; do
	run timeout 10 "$FV" --config "$T/unsigned.json" $args
	expect_rc 2 "$args without app_secrets"
	expect_err_has 'serve.app_secrets: missing; add'
	expect_err_has '"allow_unsigned": true'
done
# ...unless allow_unsigned says so explicitly: then unsigned requests are
# served, and the start says it loudly.
flow_config "$T/unsigned.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"off\",
    \"keys\": [\"current\"], \"allow_unsigned\": true}"
serve_start "$T/unsigned.json" "$PORT"
post --url "$URL" --pub "$T/current.pub" --payload '{"action":"ping"}'
expect_field status 200
serve_stop
grep -q 'warning: serve: serve.allow_unsigned is true' "$T/serve.log" ||
	fail "no warning about unsigned requests: $(cat "$T/serve.log")"
pass "app_secrets required; allow_unsigned serves unsigned requests with a warning"

# --check binds the addresses: a port in use fails the check (exit 1, naming it).
"$PY" -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$ADMIN" &
blocker=$!
at_exit "kill $blocker"
wait_port "$ADMIN"
run "$FV" --config "$T/config.json" serve --check
expect_rc 1 "serve --check with admin_listen in use"
expect_err_has "serve.admin_listen: cannot listen on 127.0.0.1:$ADMIN"
kill "$blocker"; wait "$blocker" 2>/dev/null || true
run "$FV" --config "$T/config.json" serve --check
expect_rc 0 "serve --check once the port is free"
pass "serve --check binds and releases listen and admin_listen"
