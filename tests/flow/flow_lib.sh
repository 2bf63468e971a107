# Helpers for the Flows tests; source after tests/lib.sh.
FLOW_DIR="$FV_SOURCE_DIR/tests/flow"
CLIENT="$FLOW_DIR/flows_client.js"
PYWA="$VECTORS/pywa-flows"
# The system interpreter: a version-manager shim can take a second to start.
PY=$(command -v /usr/bin/python3 || command -v python3)

# The pywa known-answer key (encrypted PKCS#8, passphrase "pywa"), mode 0600.
flow_setup_keys() {
	install -m 600 "$PYWA/private_key.pem" "$T/pywa.pem"
	export PYWA_PASSPHRASE=pywa
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/current.pem" 2>/dev/null
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/stranger.pem" 2>/dev/null
	chmod 600 "$T/current.pem" "$T/stranger.pem"
	openssl pkey -in "$T/stranger.pem" -pubout -out "$T/stranger.pub"
}

# flow_config FILE SERVE_JSON: a configuration with the keys above and the
# given "serve" section.
flow_config() {
	cat >"$1" <<EOF
{
  "keys": {
    "current": {"provider": "pem", "path": "current.pem"},
    "pywa": {"provider": "pem", "path": "pywa.pem", "passphrase": "env:PYWA_PASSPHRASE"}
  },
  "serve": $2
}
EOF
	chmod 600 "$1"
}

# serve_start CONFIG PORT: run flowvault serve in the background (log in
# $T/serve.log), wait until it listens.
serve_start() {
	"$FV" --config "$1" serve >"$T/serve.out" 2>"$T/serve.log" &
	SERVE_PID=$!
	at_exit "kill -9 $SERVE_PID"
	local i
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
		kill -0 "$SERVE_PID" 2>/dev/null || fail "flowvault serve exited: $(cat "$T/serve.log")"
		sleep 0.1
	done
	fail "flowvault serve does not listen on $2: $(cat "$T/serve.log")"
}

# serve_stop: SIGTERM and expect exit 0.
serve_stop() {
	kill -TERM "$SERVE_PID"
	local rc=0
	wait "$SERVE_PID" || rc=$?
	[ "$rc" = 0 ] || fail "flowvault serve exited $rc after SIGTERM: $(tail -5 "$T/serve.log")"
}

upstream_start() { # upstream_start PORT [SLOW]
	"$PY" "$FLOW_DIR/upstream.py" "$@" &
	local pid=$!
	at_exit "kill $pid"
	wait_port "$1"
}

# post ARGS...: run the Node client's post; $OUT is its JSON line.
post() { run node "$CLIENT" post "$@"; expect_rc 0 "flows_client post $*"; }
# field EXPR: a value from $OUT, e.g. field status, field response.data.key
field() { "$PY" -c 'import json,sys
v=json.loads(sys.argv[1])
for p in sys.argv[2].split("."):
    v = v.get(p) if isinstance(v, dict) else None
print(json.dumps(v) if not isinstance(v, str) else v)' "$OUT" "$1"; }
# elapsed_ms: how long the last post's request took, in ms, as the client
# timed it (from sending it on; node's own start-up is not the server's time).
elapsed_ms() { "$PY" -c 'import sys; print(int(float(sys.argv[1]) * 1000))' "$(field elapsed)"; }
expect_field() { # expect_field EXPR VALUE
	local got
	got=$(field "$1")
	[ "$got" = "$2" ] || fail "$1 is '$got', expected '$2' (reply: $OUT)"
}
