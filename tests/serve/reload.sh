# Reload without dropping a request: under wrk load, 10 SIGHUPs (one
# switching serve.keys to a new key) give no failed request and no socket
# error; /healthz shows the new generation and key; a broken configuration
# on reload keeps the running one serving.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/serve/serve_lib.sh"

command -v wrk >/dev/null || fail "wrk is needed"
sep_setup
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/next.pem" 2>/dev/null
chmod 600 "$T/next.pem"
# The configuration knows key "next" from the start; serve.keys names it later.
"$PY" - "$T/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["keys"]["next"] = {"provider": "pem", "path": "next.pem"}
json.dump(c, open(sys.argv[1], "w"))
PY
"$FV" --config "$T/config.json" pubkey next >"$T/next.pub"
serve_start "$T/config.json" "$PORT"
wait_workers 2
make_ping

FLOW_BODY="$T/ping.json" FLOW_SIGNATURE="$SIG" wrk -t2 -c16 -d20s \
	-s "$FV_SOURCE_DIR/bench/flow/post.lua" "$URL" >"$T/wrk.txt" 2>&1 &
wrk_pid=$!
sleep 1
for i in $(seq 10); do
	if [ "$i" = 5 ]; then
		# The rotation's step: serve.keys becomes [next, current].
		"$PY" - "$T/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["serve"]["keys"] = ["next", "current"]
json.dump(c, open(sys.argv[1], "w"))
PY
	fi
	kill -HUP "$SERVE_PID"
	# Signals sent during a reload coalesce: wait for this one to finish.
	for ((j = 0; j < 100; j++)); do
		[ "$(grep -c 'serve: reloaded: generation' "$T/serve.log")" -ge "$i" ] && break
		sleep 0.1
	done
	sleep 0.5
done
wait "$wrk_pid" || fail "wrk failed: $(cat "$T/wrk.txt")"
cat "$T/wrk.txt"
requests=$(awk '/requests in/ { print $1 }' "$T/wrk.txt")
! grep -q "Non-2xx" "$T/wrk.txt" || fail "failed requests during the reloads"
! grep -q "Socket errors" "$T/wrk.txt" || fail "socket errors during the reloads"
[ "${requests:-0}" -gt 100 ] || fail "wrk sent too few requests to prove anything"
[ "$(grep -c 'serve: reloaded: generation' "$T/serve.log")" = 10 ] ||
	fail "not 10 reloads: $(grep reload "$T/serve.log" | tail -3)"
run curl -sf "http://127.0.0.1:$ADMIN/healthz"
expect_field generation 11
expect_field keys.next ok
expect_field fingerprints.next "$(openssl pkey -pubin -in "$T/next.pub" -outform DER | sha256sum | cut -d' ' -f1)"
# A request to the new key is answered, and one to the previous key too.
post --url "$URL" --pub "$T/next.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
expect_field status 200
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
expect_field status 200
# Old generations finish and exit: one key process and two workers are left.
wait_workers 2
pass "10 reloads under wrk ($requests requests): no failed request, no socket error; generation 11 serves key next"

# A configuration that does not load: the running one keeps serving.
cp "$T/config.json" "$T/good.json"
echo '{"keys": {' >"$T/config.json"
kill -HUP "$SERVE_PID"
for ((i = 0; i < 50; i++)); do
	grep -q "reload failed, still serving generation 11" "$T/serve.log" && break
	sleep 0.1
done
grep -q "reload failed, still serving generation 11" "$T/serve.log" ||
	fail "a broken configuration is not reported: $(tail -3 "$T/serve.log")"
for i in 1 2 3; do [ "$(ping_status)" = 200 ] || fail "not serving after a failed reload"; done
run curl -sf "http://127.0.0.1:$ADMIN/healthz"
expect_field generation 11
# Keys that do not open (a key file gone) fail the reload the same way.
cp "$T/good.json" "$T/config.json"
mv "$T/next.pem" "$T/next.pem.away"
kill -HUP "$SERVE_PID"
for ((i = 0; i < 50; i++)); do
	[ "$(grep -c 'reload failed, still serving generation 11' "$T/serve.log")" = 2 ] && break
	sleep 0.1
done
[ "$(grep -c 'reload failed, still serving generation 11' "$T/serve.log")" = 2 ] ||
	fail "keys that do not open are not reported: $(tail -3 "$T/serve.log")"
grep -q "the key process cannot open serve.keys" "$T/serve.log" || fail "no reason given"
for i in 1 2 3; do [ "$(ping_status)" = 200 ] || fail "not serving after a failed reload"; done
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_reloads_total{result="failed"} 2'
expect_out_has 'flowvault_config_generation 11'
pass "a configuration that does not load, or keys that do not open: still serving generation 11, reason logged"
serve_stop
