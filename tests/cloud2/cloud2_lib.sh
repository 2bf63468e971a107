# Helpers for the cloud key-store tests (gcp-kms, azure-keyvault); source
# after tests/lib.sh. Everything runs on loopback under $T.
CLOUD2_DIR="$FV_SOURCE_DIR/tests/cloud2"
PY=$(command -v /usr/bin/python3 || command -v python3)

# cloud2_ca: a test CA and a server certificate for 127.0.0.1 and
# *.vault.localhost (curl resolves *.localhost to loopback itself):
# $T/ca.pem, $T/server.pem, $T/server.key.
cloud2_ca() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" \
		-days 2 -subj "/CN=flowvault test CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
		2>/dev/null
	openssl req -newkey rsa:2048 -nodes -keyout "$T/server.key" -out "$T/server.csr" \
		-subj "/CN=127.0.0.1" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.vault.localhost\nextendedKeyUsage=serverAuth\n' \
		>"$T/server.ext"
	openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
		-CAcreateserial -out "$T/server.pem" -days 2 -extfile "$T/server.ext" 2>/dev/null
	chmod 600 "$T/ca.key" "$T/server.key"
}

# cloud2_start NAME SCRIPT ARGS...: run a simulator in the background (log in
# $T/NAME.log) and wait until its first --port listens.
cloud2_start() {
	local name=$1 script=$2; shift 2
	"$PY" "$CLOUD2_DIR/$script" "$@" >"$T/$name.log" 2>&1 &
	local pid=$! port="" prev=""
	at_exit "kill $pid"
	for a in "$@"; do
		[ "$prev" = "--port" ] && port=$a
		prev=$a
	done
	wait_port "$port"
	kill -0 "$pid" 2>/dev/null || fail "$name simulator exited: $(cat "$T/$name.log")"
}

# sim_faults PORT JSON / sim_stats PORT [FIELD]: the simulators' /_sim/ endpoints.
sim_faults() {
	curl -sf --cacert "$T/ca.pem" -H 'Content-Type: application/json' -d "$2" \
		"https://127.0.0.1:$1/_sim/faults" >/dev/null || fail "cannot set simulator faults"
}
sim_stats() {
	local doc
	doc=$(curl -sf --cacert "$T/ca.pem" "https://127.0.0.1:$1/_sim/stats") ||
		fail "cannot read simulator stats"
	if [ $# -ge 2 ]; then
		"$PY" -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 0))' "$doc" "$2"
	else
		echo "$doc"
	fi
}

# cloud2_node_modules: the vendors' client libraries, pinned by
# tests/cloud2/package-lock.json, installed once per build tree with
# `npm ci`; sets NODE_PATH. Skips the test (77) when npm is missing.
cloud2_node_modules() {
	command -v npm >/dev/null || { echo "SKIP: npm is not installed"; exit 77; }
	local dir="$FV_BUILD_DIR/cloud2-npm" stamp want
	mkdir -p "$dir"
	want=$(sha256sum "$CLOUD2_DIR/package-lock.json" | cut -d' ' -f1)
	(
		flock 9
		stamp=$(cat "$dir/.lock-sha256" 2>/dev/null || true)
		if [ "$stamp" != "$want" ] || [ ! -d "$dir/node_modules" ]; then
			cp "$CLOUD2_DIR/package.json" "$CLOUD2_DIR/package-lock.json" "$dir/"
			(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts >"$dir/npm.log" 2>&1) ||
				{ cat "$dir/npm.log" >&2; exit 1; }
			echo "$want" >"$dir/.lock-sha256"
		fi
	) 9>"$dir/.flock" || fail "npm ci of tests/cloud2/package.json failed"
	export NODE_PATH="$dir/node_modules"
}

# cloud2_serve_config FILE KEY_ENTRY_JSON PORT UPSTREAM_PORT: a configuration
# with key "cloud" (the given entry) served by `flowvault serve`.
cloud2_serve_config() {
	cat >"$1" <<JSON
{
  "keys": { "cloud": $2 },
  "serve": {
    "listen": "127.0.0.1:$3", "admin_listen": "off",
    "keys": ["cloud"],
    "app_secrets": ["env:APP_SECRET"],
    "upstream": "http://127.0.0.1:$4/logic",
    "threads": 4
  }
}
JSON
	chmod 600 "$1"
}

# expect_no_secrets FILE...: none of the tokens the simulator issued (its
# --token-log), nor the secrets in $SECRETS (space-separated), appear.
expect_no_secrets() {
	local s
	if [ -s "$T/tokens.log" ]; then
		! grep -qFf "$T/tokens.log" "$@" || fail "an access token appears in $*"
	fi
	for s in ${SECRETS:-}; do
		expect_not_has "$s" "$@"
	done
}

# cloud2_serve_checks SERVICE ENTRY SLOW_ENTRY: flowvault serve with key entry
# ENTRY (credentials from a token service) against the simulator on $PORT: a
# Flows round trip with the Node client, 421 for $T/stranger.pub, 429 and
# 503 retried, one token for all decrypts, a revoked token replaced, no
# secret in the -vv log; then SLOW_ENTRY (timeout_ms 1500) against a slow
# service: 500 within the budget. Needs $T/service.pub and $APP_SECRET.
cloud2_serve_checks() {
	local SPORT UP URL decrypts tokens tokens_before elapsed_ms i
	SPORT=$(free_port)
	UP=$(free_port)
	upstream_start "$UP"
	cloud2_serve_config "$T/serve.conf" "$2" "$SPORT" "$UP"
	tokens_before=$(sim_stats "$PORT" tokens_issued)
	"$FV" -vv --config "$T/serve.conf" serve >"$T/serve.out" 2>"$T/serve.log" &
	SERVE_PID=$!
	at_exit "kill -9 $SERVE_PID"
	wait_port "$SPORT" 20
	URL="http://127.0.0.1:$SPORT/flows"
	for i in 1 2 3 4 5; do
		post --url "$URL" --pub "$T/service.pub" --secret "$APP_SECRET" \
			--payload "{\"version\":\"3.0\",\"action\":\"data_exchange\",\"flow_token\":\"t$i\",\"data\":{\"i\":$i}}"
		expect_field status 200
		expect_field response.data.echo "{\"i\": $i}"
	done
	pass "Flows round trip through serve (5 requests, Node client, upstream answers)"
	post --url "$URL" --pub "$T/stranger.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
	expect_field status 421
	pass "serve: a request encrypted to another key -> 421"

	decrypts=$(sim_stats "$PORT" decrypts)
	sim_faults "$PORT" '{"throttle": 2}'
	post --url "$URL" --pub "$T/service.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
	expect_field status 200
	sim_faults "$PORT" '{"error5xx": 2}'
	post --url "$URL" --pub "$T/service.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
	expect_field status 200
	[ "$(sim_stats "$PORT" decrypts)" = $((decrypts + 2)) ] || fail "decrypts after retries: $(sim_stats "$PORT")"
	grep -q "HTTP 429" "$T/serve.log" || fail "no 429 in the debug log"
	grep -q "HTTP 503" "$T/serve.log" || fail "no 503 in the debug log"
	pass "throttling (429) and 503 are retried within the deadline"

	tokens=$(( $(sim_stats "$PORT" tokens_issued) - tokens_before ))
	[ "$tokens" = 1 ] || fail "serve fetched $tokens tokens for 9 decrypts; expected 1"
	pass "serve fetched one token for all its decrypts"
	sim_faults "$PORT" '{"revoke_tokens": true}'
	post --url "$URL" --pub "$T/service.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
	expect_field status 200
	tokens=$(( $(sim_stats "$PORT" tokens_issued) - tokens_before ))
	[ "$tokens" = 2 ] || fail "after a revocation serve fetched $tokens tokens in all; expected 2"
	grep -q "refused; fetching a new one" "$T/serve.log" || fail "no token refresh in the debug log"
	pass "a revoked token (401) is replaced once and the request still succeeds"
	serve_stop
	expect_no_secrets "$T"/vv-*.log "$T/serve.log" "$T/serve.out"
	pass "no token or secret in -vv output"

	# A slow service: 500 within the plugin's budget, not a hang or a 421.
	cloud2_serve_config "$T/slow.conf" "$3" "$SPORT" "$UP"
	"$FV" --config "$T/slow.conf" serve >"$T/slow.out" 2>"$T/slow.log" &
	SERVE_PID=$!
	at_exit "kill -9 $SERVE_PID"
	wait_port "$SPORT" 20
	# Served once first: the key process opens its key (a slow start under
	# the sanitizers) before the service turns slow, not after.
	post --url "$URL" --pub "$T/service.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
	expect_field status 200
	sim_faults "$PORT" '{"delay_ms": 4000}'
	post --url "$URL" --pub "$T/service.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
	sim_faults "$PORT" '{"delay_ms": 0}'
	expect_field status 500
	elapsed_ms=$(elapsed_ms)
	[ "$elapsed_ms" -lt 4000 ] || fail "a slow $1 held the request ${elapsed_ms} ms (budget 1500 ms)"
	serve_stop
	pass "a slow $1 -> 500 after ${elapsed_ms} ms (budget 1500 ms), not 421"
}
