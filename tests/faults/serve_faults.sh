# flowvault serve under hostile clients: slow-loris partial requests, more
# connections than max_connections, malformed HTTP, bodies over the limit.
# Resources must stay bounded, healthy requests must still be answered, the
# server must survive, and its log must never hold a request body.
#
# The HTTP layer is the same code in a separated server's workers; it runs in
# one process here (isolation "none") so that its descriptors and threads can
# be counted.
#
# Every check runs even when an earlier one fails; the test fails at the end
# if any did, naming each.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

CONNS="$FV_SOURCE_DIR/tests/faults/serve_conns.py"
MAX_CONN=8
TIMEOUT_S=2
MAX_BODY=4096
PORT=$(free_port)
URL="http://127.0.0.1:$PORT/flows"
PING_TOKEN=PINGTOKEN-2f6a

failures=()
# check OK "what": record a failed expectation and go on.
check() {
	if [ "$1" = 1 ]; then
		echo "ok: $2"
	else
		echo "FAIL: $2" >&2
		failures+=("$2")
	fi
}
# is EXPR: 1 when the python expression is true (numbers from the checks).
is() { "$PY" -c "
try: print(1 if ($1) else 0)
except Exception: print(0)"; }
# jget FILE KEY: a field of a JSON result file.
jget() { "$PY" -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"; }
now() { echo "$EPOCHREALTIME"; }
since() { "$PY" -c "import sys; print(round($(now) - $1, 2))"; }
fds() { ls "/proc/$SERVE_PID/fd" 2>/dev/null | wc -l; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$SERVE_PID/status" 2>/dev/null; }
alive() { kill -0 "$SERVE_PID" 2>/dev/null; }

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/current.pem" 2>/dev/null
chmod 600 "$T/current.pem"
# No upstream: pings are answered by serve itself, nothing else is needed.
cat >"$T/config.json" <<EOF
{
  "keys": {"current": {"provider": "pem", "path": "current.pem"}},
  "serve": {"listen": "127.0.0.1:$PORT", "admin_listen": "off", "keys": ["current"],
            "isolation": "none",
            "allow_unsigned": true,
            "max_connections": $MAX_CONN, "request_timeout_s": $TIMEOUT_S,
            "max_body_bytes": $MAX_BODY, "threads": 2}
}
EOF
chmod 600 "$T/config.json"
"$FV" --config "$T/config.json" pubkey current >"$T/current.pub"

# -vv: libmicrohttpd's own messages go to the log too, for the body audit.
"$FV" -vv --config "$T/config.json" serve >"$T/serve.out" 2>"$T/serve.log" &
SERVE_PID=$!
at_exit "kill -9 $SERVE_PID"
for ((i = 0; i < 100; i++)); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	alive || fail "flowvault serve exited: $(cat "$T/serve.log")"
	sleep 0.1
done
((i < 100)) || fail "flowvault serve does not listen on $PORT"

# ping LABEL MAX_SECONDS: a healthy, correctly encrypted Flows ping (Node
# client) must be answered 200 {"data":{"status":"active"}} within MAX_SECONDS,
# counted from the client's request (the interpreter's start-up, slow on a
# busy machine, is not the server's time).
ping() {
	local start elapsed status
	start=$(now)
	set +e
	OUT=$(timeout $(($2 + 8)) node "$CLIENT" post --url "$URL" --pub "$T/current.pub" \
		--payload "{\"version\":\"3.0\",\"action\":\"ping\",\"flow_token\":\"$PING_TOKEN\"}" 2>&1)
	set -e
	elapsed=$(field elapsed 2>/dev/null || echo null)
	# No answer: the whole wait, start-up included, is all there is to report.
	if [ "$elapsed" = null ]; then elapsed=$(since "$start"); else elapsed=$(printf '%.2f' "$elapsed"); fi
	status=$(field status 2>/dev/null || echo none)
	check "$([ "$status" = 200 ] && [ "$(field response 2>/dev/null)" = '{"data": {"status": "active"}}' ] &&
		is "$elapsed <= $2" || echo 0)" \
		"$1: healthy ping answered 200 in ${elapsed}s (bound ${2}s; got: ${OUT:0:160})"
}

# settle: wait (bounded) until the server is back to its baseline descriptors.
settle() {
	local i
	for ((i = 0; i < 40; i++)); do
		[ "$(fds)" -le $((BASE_FDS + 1)) ] && break
		sleep 0.1
	done
	check "$(is "$(fds) <= $BASE_FDS + 1")" "$1: descriptors back to baseline ($(fds), baseline $BASE_FDS)"
	check "$(is "$(threads) <= $BASE_THREADS")" "$1: threads at baseline ($(threads), baseline $BASE_THREADS)"
}

# hold_start NAME ARGS...: background raw-socket clients (serve_conns.py hold).
hold_start() {
	local name=$1
	shift
	rm -f "$T/$name.ready"
	"$PY" "$CONNS" hold --port "$PORT" --pid "$SERVE_PID" --ready "$T/$name.ready" \
		--out "$T/$name.json" "$@" 2>"$T/$name.err" &
	HOLD_PID=$!
	at_exit "kill $HOLD_PID"
	for ((i = 0; i < 50; i++)); do
		[ -e "$T/$name.ready" ] && return 0
		kill -0 "$HOLD_PID" 2>/dev/null || fail "$name clients died: $(cat "$T/$name.err")"
		sleep 0.1
	done
	fail "$name clients could not connect: $(cat "$T/$name.err")"
}
hold_wait() {
	wait "$HOLD_PID" || fail "clients failed: $(cat "$T/$1.err")"
	echo "   $1: $(cat "$T/$1.json")"
}

ping "startup" 5
sleep 0.3
BASE_FDS=$(fds)
BASE_THREADS=$(threads)
echo "   baseline: $BASE_FDS open descriptors, $BASE_THREADS threads"

# 1. Slow-loris below the limit: connections that stop half-way (nothing
#    sent, half a request line, half a header, headers and part of a body)
#    hold slots until request_timeout_s, but a free slot still answers a
#    healthy client at once; then the server closes the stalled ones itself.
N1=$((MAX_CONN - 2))
hold_start stall "--count" $N1 --wait $((TIMEOUT_S + 4))
ping "1 slow-loris ($N1 stalled connections open)" 3
hold_wait stall
check "$(is "$(jget "$T/stall.json" closed) == $N1")" \
	"1 slow-loris: the server closed all $N1 stalled connections ($(jget "$T/stall.json" closed) closed)"
check "$(is "$(jget "$T/stall.json" first_close) >= $TIMEOUT_S - 1 and $(jget "$T/stall.json" last_close) <= $TIMEOUT_S + 3")" \
	"1 slow-loris: closed after request_timeout_s=$TIMEOUT_S (first $(jget "$T/stall.json" first_close)s, last $(jget "$T/stall.json" last_close)s)"
check "$(is "$(jget "$T/stall.json" max_fds) <= $BASE_FDS + $N1 + 2")" \
	"1 slow-loris: descriptors bounded (max $(jget "$T/stall.json" max_fds) <= $BASE_FDS + $N1 + 2)"
check "$(is "$(jget "$T/stall.json" max_threads) <= $BASE_THREADS")" \
	"1 slow-loris: no thread per connection (max $(jget "$T/stall.json" max_threads) threads)"
settle "1 slow-loris"

# 2. More connections than max_connections: 30 stalled connections against
#    8 slots. The server holds at most max_connections of them; the rest wait
#    in the kernel's accept queue (or would be refused at once) - never more
#    descriptors. A healthy client queued behind them is answered once the
#    stalled ones time out, batch by batch: within
#    ceil((30 + 1) / 8) * request_timeout_s, plus slack.
N2=30
BATCHES=$(((N2 + MAX_CONN) / MAX_CONN)) # ceil((N2 + 1) / MAX_CONN)
hold_start flood "--count" $N2 --wait $((BATCHES * TIMEOUT_S + 4))
sleep 0.2
QUEUED=$(ss -Hltn "sport = :$PORT" 2>/dev/null | awk '{print $2; exit}')
echo "   2: listen queue holds ${QUEUED:-?} connections not accepted by the server"
ping "2 over max_connections ($N2 stalled connections, $MAX_CONN slots)" $((BATCHES * TIMEOUT_S + 3))
hold_wait flood
check "$(is "$(jget "$T/flood.json" closed) == $N2 and $(jget "$T/flood.json" last_close) <= $BATCHES * $TIMEOUT_S + 3")" \
	"2 over max_connections: all $N2 closed by the server, the last after $(jget "$T/flood.json" last_close)s"
check "$(is "$(jget "$T/flood.json" max_fds) <= $BASE_FDS + $MAX_CONN + 2")" \
	"2 over max_connections: descriptors bounded by max_connections (max $(jget "$T/flood.json" max_fds) <= $BASE_FDS + $MAX_CONN + 2)"
check "$(is "$(jget "$T/flood.json" max_threads) <= $BASE_THREADS")" \
	"2 over max_connections: threads bounded (max $(jget "$T/flood.json" max_threads))"
# The extras are either left in the kernel's accept queue (libmicrohttpd
# stops accepting at the limit) or refused at once - never held open.
check "$(is "${QUEUED:-0} >= $N2 - $MAX_CONN - 2 or $(jget "$T/flood.json" closed_within_1s) >= $N2 - $MAX_CONN")" \
	"2 over max_connections: the $((N2 - MAX_CONN)) extra connections wait in the accept queue or are refused (${QUEUED:-?} queued, $(jget "$T/flood.json" closed_within_1s) closed within 1 s)"
settle "2 over max_connections"

# 3. Slow-loris proper: max_connections clients each send one more byte every
#    0.5 s (well inside the idle timeout) and never finish. request_timeout_s
#    must bound the whole request, not the gap between two bytes, or these
#    hold every slot forever and no healthy request is ever answered. Right
#    behaviour: closed within 2 * request_timeout_s + 1 s of opening, and a
#    healthy client waiting behind them answered soon after.
hold_start trickle "--count" $MAX_CONN --trickle 0.5 --wait $((2 * TIMEOUT_S + 4))
ping "3 trickling slow-loris ($MAX_CONN connections, one byte per 0.5 s)" $((2 * TIMEOUT_S + 3))
hold_wait trickle
check "$(is "$(jget "$T/trickle.json" still_open) == 0 and ($(jget "$T/trickle.json" last_close) or 99) <= 2 * $TIMEOUT_S + 1")" \
	"3 trickling slow-loris: server closed them within 2*request_timeout_s+1 ($(jget "$T/trickle.json" closed) of $MAX_CONN closed, last at $(jget "$T/trickle.json" last_close) s)"
check "$(is "$(jget "$T/trickle.json" max_fds) <= $BASE_FDS + $MAX_CONN + 2")" \
	"3 trickling slow-loris: descriptors bounded (max $(jget "$T/trickle.json" max_fds))"
settle "3 trickling slow-loris"

# 4 and 5. One raw request per case; each gets a 4xx (or is closed) and
# never hangs past request_timeout_s; the server survives every one.
# CASE | ACCEPTED OUTCOMES (status, or "close": closed without an answer;
#        "+close": the answer must be followed by closing the connection)
probe_table='
garbage-line                | 400 close
binary-junk                 | 400 close
header-without-colon        | 400 close
header-line-70k             | 400 413 414 431 close
url-70k                     | 400 414 431 close
5000-headers                | 400 413 431 close
content-length-negative     | 400 413 close
content-length-not-a-number | 400 close
content-length-overflows    | 400 413 close
content-length-twice        | 400 close
content-length-and-chunked  | 400+close 421+close close
chunk-size-not-hex          | 400 close
chunk-size-overflows        | 400 413 close
unknown-transfer-encoding   | 400 411 501 close
http-0.9                    | 400 close
http-0.9-healthz            | 400 close
nul-in-path                 | 400 404 close
http-version-9.9            | 400 505 close
length-at-limit             | 421
length-over-limit-by-1      | 413+close
length-1MiB-unsent          | 413+close
length-1MiB-expect-100      | 413+close
chunked-under-limit         | 421
chunked-over-limit          | 413+close close
'
# Why: content-length-twice (two different lengths) and -and-chunked are the
# request-smuggling shapes; RFC 9112 6.3 requires 400 and close for the first,
# and closing after the answer for the second. An over-limit Content-Length
# must be answered 413 before the body is sent, and the body then refused.
while IFS='|' read -r name want; do
	name=${name// /}
	[ -n "$name" ] || continue
	run "$PY" "$CONNS" probe --port "$PORT" --case "$name" --wait $((TIMEOUT_S + 3))
	[ "$RC" = 0 ] || fail "probe $name: $ERR"
	status=$(field status)
	closed=$(field closed)
	detail=$(field detail)
	if [ "$status" = null ] && [ "$closed" = true ]; then
		got=close
	elif [ "$status" = null ]; then
		got=hang
	elif [ "$closed" = true ]; then
		got=$status+close
	else
		got=$status
	fi
	okay=0
	for w in $want; do
		if [ "$got" = "$w" ] || { [ "$w" = "${w%+close}" ] && [ "$got" = "$w+close" ]; }; then
			okay=1
		fi
	done
	case $name in length-* | chunked-*) section=5 ;; *) section=4 ;; esac
	check "$okay" "$section $name -> $got in $(field elapsed)s${detail:+ ($detail)} (accepted: $want)"
	# Over-limit Content-Length: answered before the body was offered, which
	# the server then refuses (proves it did not read it).
	case $name in length-*-by-1 | length-1MiB-*)
		check "$([ "$detail" = "body refused" ] && echo 1 || echo 0)" \
			"5 $name: body not read after the 413 ($detail)" ;;
	esac
	alive || { check 0 "server died after $name: $(tail -5 "$T/serve.log")"; break; }
done <<<"$probe_table"
alive && ping "4/5 after every malformed and oversized request" 5
settle "4/5 malformed and oversized requests"
logged=0
if grep -qF "body larger than serve.max_body_bytes" "$T/serve.log"; then logged=1; fi
check $logged "5 chunked body over the limit: the close is logged with its reason"

# 6. The log never holds a request body or clear text (serve runs at -vv, so
#    libmicrohttpd's own messages are in it too).
leaked=()
for marker in $("$PY" "$CONNS" markers) "$PING_TOKEN"; do
	if grep -qF -- "$marker" "$T/serve.log" "$T/serve.out"; then leaked+=("$marker"); fi
done
check "$([ ${#leaked[@]} = 0 ] && echo 1 || echo 0)" \
	"6 no body marker in the serve log ($(wc -l <"$T/serve.log") lines; leaked: ${leaked[*]:-none})"

# 7. After all this, SIGTERM still stops it cleanly.
if alive; then
	kill -TERM "$SERVE_PID"
	rc=0
	timeout 10 tail --pid="$SERVE_PID" -f /dev/null || true
	wait "$SERVE_PID" || rc=$?
	check "$([ "$rc" = 0 ] && echo 1 || echo 0)" "7 SIGTERM after the faults: exit $rc"
fi

if [ ${#failures[@]} -gt 0 ]; then
	printf 'FAILED: %s\n' "${failures[@]}" >&2
	exit 1
fi
pass "serve stays bounded and answers healthy requests under hostile clients"
