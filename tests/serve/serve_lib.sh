# Helpers for the separated server's tests; source after tests/lib.sh and
# tests/flow/flow_lib.sh.
SERVE_TEST_DIR="$FV_SOURCE_DIR/tests/serve"
# Under AddressSanitizer a SIGSEGV sent from outside must end the process as
# it does in the plain build, not turn into the sanitizer's report.
[ -z "${FV_SANITIZE_FLAGS:-}" ] || export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0"
export APP_SECRET=serve-test-secret

# sep_setup: keys (flow_setup_keys), free ports, a config in $T/config.json
# with EXTRA (JSON members) appended to the serve section.
sep_setup() {
	flow_setup_keys
	PORT=$(free_port)
	ADMIN=$(free_port)
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

# keyproc_crash_check: kill -SEGV the key process under a steady load of
# signed pings ($T/ping.json, $SIG): workers answer 503 at once (never over
# 1 s), the key process is restarted and requests succeed again within 2 s.
keyproc_crash_check() {
	local load keyproc i
	: >"$T/load.txt"
	"$PY" "$SERVE_TEST_DIR/load.py" "$URL" "$T/ping.json" "$SIG" 6 "$T/load.txt" &
	load=$!
	# The kill comes once the load runs steadily (its interpreter may take a
	# while to start on a busy machine), with most of its 6 s still to go.
	for ((i = 0; i < 300; i++)); do
		[ "$(awk '$2 == 200' "$T/load.txt" | wc -l)" -ge 20 ] && break
		kill -0 "$load" 2>/dev/null || fail "the load client ended early: $(tail -3 "$T/load.txt")"
		sleep 0.05
	done
	[ "$(awk '$2 == 200' "$T/load.txt" | wc -l)" -ge 20 ] || fail "the load got no 20 answers in 15 s: $(tail -3 "$T/load.txt")"
	keyproc=$(children fv-keyproc)
	kill -SEGV "$keyproc"
	wait "$load"
	"$PY" - "$T/load.txt" <<-'PY' || fail "load during the key process crash: see above"
	import sys
	rows = [l.split() for l in open(sys.argv[1])]
	rows = [(float(t), s, float(d)) for t, s, d in rows]
	slow = [r for r in rows if r[2] > 1.0]
	bad = [r for r in rows if r[1] not in ("200", "503")]
	first503 = next((r for r in rows if r[1] == "503"), None)
	last503 = max((r[0] for r in rows if r[1] == "503"), default=None)
	after = [r for r in rows if last503 is not None and r[0] > last503]
	print("requests %d, 503s %d, slowest %.3f s" % (len(rows), sum(r[1] == "503" for r in rows),
	      max(r[2] for r in rows)))
	if slow or bad:
	    sys.exit("slow (>1 s) or failed requests: %r" % (slow + bad)[:5])
	if first503 is None:
	    sys.exit("no 503 while the key process was down")
	if last503 - first503[0] > 2.0:
	    sys.exit("503s for %.2f s (more than 2 s)" % (last503 - first503[0]))
	if not after or any(r[1] != "200" for r in after):
	    sys.exit("service did not come back")
	print("503s from %.2f s to %.2f s, then 200 (%d requests)" % (first503[0], last503, len(after)))
	PY
	grep -q "the key process ($keyproc) was killed by signal 11" "$T/serve.log" || fail "key process crash not logged"
	grep -q "key process restarted; workers answer again" "$T/serve.log" || fail "key process restart not logged"
	run curl -s "http://127.0.0.1:$ADMIN/metrics"
	expect_out_has 'flowvault_process_restarts_total{process="key"} 1'
}
