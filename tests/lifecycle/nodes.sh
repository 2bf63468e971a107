#!/bin/bash
# Several serve nodes that know about each other (serve.nodes): the admin
# listener with TLS (serve.admin_cert/admin_key, a test CA) and a token
# (serve.admin_token from file:); a plain-HTTP admin listener on a
# non-loopback address refused; a rotation that moves no phone number while
# one node has not loaded the new key, and names that node; --resume once
# it has; doctor with a node down.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

make_tls "$T/admin"
chmod 600 "$T/admin/server.key"
TOKEN=$(openssl rand -hex 32)
printf '%s\n' "$TOKEN" >"$T/admin.token"
chmod 600 "$T/admin.token"
export APP_SECRET="app-secret-$(openssl rand -hex 8)"
P1=$(free_port); A1=$(free_port); P2=$(free_port); A2=$(free_port)
NODES="\"nodes\": [\"https://127.0.0.1:$A1\", \"https://127.0.0.1:$A2\"], \"nodes_ca\": \"admin/ca.pem\""
ADMIN="\"admin_token\": \"file:admin.token\", \"admin_cert\": \"admin/server.pem\", \"admin_key\": \"admin/server.key\""
lc_setup 3 "{\"listen\": \"127.0.0.1:$P1\", \"admin_listen\": \"127.0.0.1:$A1\", \"keys\": [\"flows\"],
    \"app_secrets\": [\"env:APP_SECRET\"], \"pid_file\": \"$T/serve.pid\", $ADMIN, $NODES}"
# Node 2: the same configuration on its own ports, without serve.pid_file
# (rotate does not reload it: the operator's tools do).
node2_config() {
	jq --arg l "127.0.0.1:$P2" --arg a "127.0.0.1:$A2" \
		'.serve.listen = $l | .serve.admin_listen = $a | del(.serve.pid_file)' \
		"$T/config.json" >"$T/node2.json.new"
	chmod 600 "$T/node2.json.new"
	mv "$T/node2.json.new" "$T/node2.json"
}
node2_config

"$FV" serve >"$T/serve1.log" 2>&1 &
S1=$!
at_exit "kill $S1"
FLOWVAULT_CONFIG="$T/node2.json" "$FV" serve >"$T/serve2.log" 2>&1 &
S2=$!
at_exit "kill $S2"
wait_port "$A1" 30
wait_port "$A2" 30

# admin_get PORT [CURL ARGS...]: status code and body of /healthz.
admin_get() {
	local port=$1; shift
	curl -sS --cacert "$T/admin/ca.pem" -o "$T/body" -D "$T/headers" -w '%{http_code}' "$@" \
		"https://127.0.0.1:$port/healthz"
}

# ---- The admin listener: TLS and token ----
code=$(admin_get "$A1")
[ "$code" = 401 ] || fail "/healthz without a token: HTTP $code, expected 401"
grep -qi '^WWW-Authenticate: Bearer' "$T/headers" || fail "401 without WWW-Authenticate: Bearer: $(cat "$T/headers")"
code=$(admin_get "$A1" -H "Authorization: Bearer wrong-$(openssl rand -hex 16)")
[ "$code" = 401 ] || fail "/healthz with a wrong token: HTTP $code, expected 401"
code=$(admin_get "$A1" -H "Authorization: Bearer ${TOKEN:0:63}")
[ "$code" = 401 ] || fail "/healthz with a token prefix: HTTP $code, expected 401"
code=$(curl -sS --cacert "$T/admin/ca.pem" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$A2/metrics")
[ "$code" = 401 ] || fail "/metrics without a token: HTTP $code, expected 401"
for port in "$A1" "$A2"; do
	code=$(admin_get "$port" -H "Authorization: Bearer $TOKEN")
	[ "$code" = 200 ] || fail "/healthz on $port with the token: HTTP $code: $(cat "$T/body")"
	jq -e '.keys.flows == "ok" and (.fingerprints.flows | length) == 64' "$T/body" >/dev/null ||
		fail "/healthz on $port: $(cat "$T/body")"
done
code=$(curl -sS --cacert "$T/admin/ca.pem" -o /dev/null -w '%{http_code}' \
	-H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$A1/metrics")
[ "$code" = 200 ] || fail "/metrics with the token: HTTP $code"
curl -s -o /dev/null "http://127.0.0.1:$A1/healthz" && fail "the admin listener answered plain HTTP"
expect_not_has "$TOKEN" "$T/serve1.log" "$T/serve2.log"
pass "admin listeners speak TLS; /healthz and /metrics answer 401 with WWW-Authenticate: Bearer without the token"

# The same in one process (isolation "none"), where no supervisor forks.
P3=$(free_port); A3=$(free_port)
jq --arg l "127.0.0.1:$P3" --arg a "127.0.0.1:$A3" \
	'.serve.listen = $l | .serve.admin_listen = $a | .serve.isolation = "none" | del(.serve.pid_file)' \
	"$T/config.json" >"$T/single.json"
chmod 600 "$T/single.json"
FLOWVAULT_CONFIG="$T/single.json" "$FV" serve >"$T/serve3.log" 2>&1 &
S3=$!
at_exit "kill $S3"
wait_port "$A3" 30
code=$(admin_get "$A3")
[ "$code" = 401 ] || fail "isolation none: /healthz without a token: HTTP $code"
code=$(admin_get "$A3" -H "Authorization: Bearer $TOKEN")
[ "$code" = 200 ] || fail "isolation none: /healthz with the token: HTTP $code: $(cat "$T/body")"
kill "$S3"
wait "$S3" 2>/dev/null || true
expect_not_has "$TOKEN" "$T/serve3.log"
pass "the same with isolation \"none\""

# ---- serve --check: what an admin listener on the network needs ----
# check_serve JQ_EDIT: serve --check on a copy of node 2's configuration
# with the serve section edited (on addresses of its own: both nodes run).
CP=$(free_port); CA=$(free_port)
check_serve() {
	jq ".serve.listen = \"127.0.0.1:$CP\" | .serve.admin_listen = \"127.0.0.1:$CA\" | $1" \
		"$T/node2.json" >"$T/check.json"
	chmod 600 "$T/check.json"
	run env FLOWVAULT_CONFIG="$T/check.json" "$FV" serve --check
}
OPEN=$(free_port)
check_serve ".serve.admin_listen = \"0.0.0.0:$OPEN\" | del(.serve.admin_cert, .serve.admin_key)"
expect_rc 2 "serve --check, plain-HTTP admin_listen on 0.0.0.0"
expect_err_has "serve.admin_listen: '0.0.0.0:$OPEN' is reachable from other machines"
expect_err_has "serve.admin_cert"
check_serve ".serve.admin_listen = \"0.0.0.0:$OPEN\" | del(.serve.admin_token)"
expect_rc 2 "serve --check, admin_listen on 0.0.0.0 with TLS but no token"
expect_err_has "no admin_token"
check_serve ".serve.admin_listen = \"0.0.0.0:$OPEN\" | del(.serve.admin_cert, .serve.admin_key) | .serve.admin_insecure = true"
expect_rc 0 "serve --check, plain-HTTP admin_listen on 0.0.0.0 with admin_insecure"
expect_err_has "serve.admin_insecure is true"
check_serve ".serve.admin_listen = \"0.0.0.0:$OPEN\""
expect_rc 0 "serve --check, admin_listen on 0.0.0.0 with TLS and a token"
check_serve '.serve.nodes = ["http://10.0.0.5:9464"]'
expect_rc 2 "serve --check, a plain-HTTP node on another machine"
expect_err_has "serve.nodes[0]: 'http://10.0.0.5:9464' is plain HTTP to another machine"
check_serve '.serve.nodes = ["https://10.0.0.5:9464/healthz"]'
expect_rc 2 "serve --check, a node URL with a path"
expect_err_has "serve.nodes[0]"
check_serve '.serve.admin_token = "file:missing.token"'
[ "$RC" != 0 ] || fail "serve --check with a missing admin_token file succeeded"
expect_err_has "serve.admin_token"
check_serve 'del(.serve.admin_key)'
expect_rc 2 "serve --check, admin_cert without admin_key"
expect_err_has "serve.admin_key"
pass "serve --check refuses an admin listener open to the network without TLS and a token (unless admin_insecure, warned), and bad node URLs"

# ---- doctor: every node ----
run "$FV" --json doctor
expect_rc 0 "doctor with both nodes up: $OUT"
for port in "$A1" "$A2"; do
	jq -e --arg u "https://127.0.0.1:$port" '[.checks[] | select(.check == "nodes" and .subject == $u
		and .status == "ok")] | length == 1' <<<"$OUT" >/dev/null ||
		fail "doctor has no ok entry for node $port: $OUT"
done
pass "doctor reports both nodes"

# ---- Rotation: node 2 has not loaded the new key ----
posts_before=$(sim_ctl GET /_sim/log | jq '[.requests[] | select(.method == "POST")] | length')
run "$FV" rotate flows --new flows2
[ "$RC" != 0 ] || fail "rotate succeeded although node 2 does not hold flows2: $OUT $ERR"
expect_err_has "https://127.0.0.1:$A2"
expect_err_has "flowvault rotate --resume"
expect_err_has "no phone number was moved"
grep -qF "https://127.0.0.1:$A1" <<<"$ERR" && fail "the message names node 1, which holds the key: $ERR"
posts_after=$(sim_ctl GET /_sim/log | jq '[.requests[] | select(.method == "POST")] | length')
[ "$posts_after" = "$posts_before" ] || fail "the Graph API got $((posts_after - posts_before)) registrations while node 2 lacked the key"
expect_all_on flows 3
code=$(admin_get "$A1" -H "Authorization: Bearer $TOKEN")
jq -e '.keys.flows2 == "ok"' "$T/body" >/dev/null || fail "node 1 was not reloaded: $(cat "$T/body")"
pass "rotate moves no number while node 2 lacks the new key, and names node 2"

# The operator distributes the configuration and reloads node 2.
node2_config
kill -HUP "$S2"
for ((i = 0; i < 150; i++)); do
	code=$(admin_get "$A2" -H "Authorization: Bearer $TOKEN")
	jq -e '.keys.flows2 == "ok"' "$T/body" >/dev/null 2>&1 && break
	sleep 0.2
done
jq -e '.keys.flows2 == "ok"' "$T/body" >/dev/null || fail "node 2 did not load flows2: $(cat "$T/body")"
run "$FV" rotate --resume
expect_rc 0 "rotate --resume once node 2 holds the new key"
expect_all_on flows2 3
pass "rotate --resume moves the numbers once every node holds the new key"

# ---- doctor with a node down ----
kill "$S2"
wait "$S2" 2>/dev/null || true
run "$FV" --json doctor
[ "$RC" != 0 ] || fail "doctor with node 2 down exited 0: $OUT"
jq -e --arg u "https://127.0.0.1:$A2" '[.checks[] | select(.check == "nodes" and .subject == $u
	and .status == "fail")] | length == 1' <<<"$OUT" >/dev/null ||
	fail "doctor has no failing entry for node 2: $OUT"
run "$FV" doctor
expect_out_has "https://127.0.0.1:$A2"
expect_out_has "unreachable"
pass "doctor names the node that is down"

# ---- Abort: numbers go back to the old key only once every node holds it ----
posts_before=$(sim_ctl GET /_sim/log | jq '[.requests[] | select(.method == "POST")] | length')
run "$FV" rotate --abort
[ "$RC" != 0 ] || fail "rotate --abort succeeded with node 2 down: $OUT $ERR"
expect_err_has "https://127.0.0.1:$A2"
expect_err_has "flowvault rotate --abort"
expect_err_has "no phone number was moved"
posts_after=$(sim_ctl GET /_sim/log | jq '[.requests[] | select(.method == "POST")] | length')
[ "$posts_after" = "$posts_before" ] || fail "the abort uploaded $((posts_after - posts_before)) keys with node 2 down"
run "$FV" --json status flows
jcheck '(.results | length) == 3 and all(.results[]; .matches_local == false)' \
	"every number still holds flows2 (not flows)"
node2_config
FLOWVAULT_CONFIG="$T/node2.json" "$FV" serve >"$T/serve2b.log" 2>&1 &
S2=$!
at_exit "kill $S2"
wait_port "$A2" 30
run "$FV" rotate --abort
expect_rc 0 "rotate --abort with both nodes up"
expect_all_on flows 3
pass "rotate --abort moves no number back while node 2 is down, and completes once it is up"

# ---- A new token: rewrite the file, reload ----
OLD_TOKEN=$TOKEN
TOKEN=$(openssl rand -hex 32)
printf '%s\n' "$TOKEN" >"$T/admin.token"
gen_before=$(admin_get "$A1" -H "Authorization: Bearer $OLD_TOKEN" >/dev/null; jq .generation "$T/body")
kill -HUP "$S1"
for ((i = 0; i < 150; i++)); do
	code=$(admin_get "$A1" -H "Authorization: Bearer $TOKEN")
	[ "$code" = 200 ] && break
	sleep 0.2
done
[ "$code" = 200 ] || fail "node 1 does not take the new token after a reload: HTTP $code"
[ "$(jq .generation "$T/body")" -gt "$gen_before" ] || fail "node 1 did not reload"
code=$(admin_get "$A1" -H "Authorization: Bearer $OLD_TOKEN")
[ "$code" = 401 ] || fail "node 1 still takes the old token after a reload: HTTP $code"
expect_not_has "$TOKEN" "$T/serve1.log"
expect_not_has "$OLD_TOKEN" "$T/serve1.log"
pass "a reload takes the token file's new content, and the old token is refused"
