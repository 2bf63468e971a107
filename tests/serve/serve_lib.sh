# Helpers for the separated server's tests; source after tests/lib.sh and
# tests/flow/flow_lib.sh.
SERVE_TEST_DIR="$FV_SOURCE_DIR/tests/serve"
export APP_SECRET=serve-test-secret

# sep_setup: keys (flow_setup_keys), free ports, a config in $T/config.json
# with EXTRA (JSON members) appended to the serve section.
sep_setup() {
	flow_setup_keys
	PORT=$(flow_free_port)
	ADMIN=$(flow_free_port)
	URL="http://127.0.0.1:$PORT/flows"
	sep_config "${1:-}"
	"$FV" --config "$T/config.json" pubkey current >"$T/current.pub"
}
sep_config() {
	flow_config "$T/config.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"127.0.0.1:$ADMIN\",
    \"keys\": [\"current\"], \"app_secrets\": [\"env:APP_SECRET\"], \"threads\": 4${1:+, $1}}"
}

# children NAME: pids of the serve's children called NAME (fv-worker, fv-keyproc).
children() { pgrep -P "$SERVE_PID" -x "$1" | sort -n; }

# wait_workers N: until N workers and one key process run and /healthz is ok.
wait_workers() {
	local i
	for ((i = 0; i < 100; i++)); do
		if [ "$(children fv-worker | wc -l)" = "$1" ] && [ "$(children fv-keyproc | wc -l)" = 1 ] &&
			curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	fail "serve does not run $1 workers and a key process: $(ps -o pid,comm --ppid "$SERVE_PID"; tail -5 "$T/serve.log")"
}

# A signed ping body and its signature, for curl and wrk.
make_ping() {
	node "$CLIENT" encrypt --pub "${1:-$T/current.pub}" --payload '{"version":"3.0","action":"ping"}' >"$T/ping.json"
	truncate -s -1 "$T/ping.json"
	SIG="sha256=$(openssl dgst -sha256 -hmac "$APP_SECRET" -r "$T/ping.json" | cut -d' ' -f1)"
}
ping_status() { # ping_status: the HTTP status of one signed ping on a new connection
	curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "X-Hub-Signature-256: $SIG" \
		-H 'Content-Type: application/json' --data-binary "@$T/ping.json" "$URL"
}
