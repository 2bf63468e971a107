# systemd: the units pass systemd-analyze verify; readiness, reload, stop and
# watchdog notifications arrive on NOTIFY_SOCKET (heard by this test itself);
# a socket passed by socket activation is served.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/serve/serve_lib.sh"

# ---- The units ----
command -v systemd-analyze >/dev/null || fail "systemd-analyze is needed (package systemd)"
unit="$FV_BUILD_DIR/systemd/flowvault-serve.service"
[ -f "$unit" ] || fail "$unit was not configured"
mkdir "$T/units" "$T/broken"
# The installed path of the binary does not exist in a build tree: point at it.
sed "s|[^ =]*/bin/flowvault|$FV|" "$unit" >"$T/units/flowvault-serve.service"
cp "$FV_SOURCE_DIR/dist/systemd/flowvault-serve.socket" "$T/units/"
run systemd-analyze verify --man=no "$T/units/flowvault-serve.service" "$T/units/flowvault-serve.socket"
expect_rc 0 "systemd-analyze verify"
[ -z "$OUT$ERR" ] || fail "systemd-analyze verify complains: $OUT $ERR"
# The check notices a broken unit.
sed 's/^Type=notify/Type=notifyy/' "$T/units/flowvault-serve.service" >"$T/broken/flowvault-serve.service"
run systemd-analyze verify --man=no "$T/broken/flowvault-serve.service"
[ -n "$OUT$ERR" ] || fail "systemd-analyze verify does not notice a broken unit"
grep -qx 'Type=notify' "$unit" && grep -q '^ExecStartPre=.*flowvault serve --check$' "$unit" &&
	grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$unit" || fail "unit lacks Type, ExecStartPre or ExecReload"
pass "flowvault-serve.service and .socket pass systemd-analyze verify"

# ---- sd_notify ----
sep_setup
"$PY" "$SERVE_TEST_DIR/notify.py" "$T/notify.sock" "$T/notify.txt" &
at_exit "kill $!"
for ((i = 0; i < 50; i++)); do [ -S "$T/notify.sock" ] && break; sleep 0.1; done
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=400000 serve_start "$T/config.json" "$PORT"
wait_for() { # wait_for PATTERN COUNT
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(grep -c "$1" "$T/notify.txt")" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "no '$1' (x$2) on NOTIFY_SOCKET: $(cat "$T/notify.txt")"
}
wait_for '^READY=1' 1
grep -q "MAINPID=$SERVE_PID" "$T/notify.txt" || fail "READY without MAINPID: $(cat "$T/notify.txt")"
wait_for '^WATCHDOG=1' 2
kill -HUP "$SERVE_PID"
wait_for '^RELOADING=1' 1
wait_for '^READY=1' 2
serve_stop
wait_for '^STOPPING=1' 1
"$PY" - "$T/notify.txt" <<'PY' || fail "notifications out of order: $(cat "$T/notify.txt")"
import sys
states = [l.split()[0] for l in open(sys.argv[1]) if not l.startswith("WATCHDOG")]
want = ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
sys.exit(0 if states == want else "got %r" % states)
PY
pass "NOTIFY_SOCKET: READY=1 (with MAINPID), WATCHDOG=1, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1"

# ---- Socket activation: systemd-socket-activate binds serve.listen ----
command -v systemd-socket-activate >/dev/null || fail "systemd-socket-activate is needed (package systemd)"
systemd-socket-activate -E APP_SECRET -E PYWA_PASSPHRASE -l "127.0.0.1:$PORT" "$FV" --config "$T/config.json" serve \
	>"$T/activate.out" 2>"$T/activate.log" &
SERVE_PID=$!
at_exit "kill -9 $SERVE_PID"
wait_port "$PORT"
make_ping
[ "$(ping_status)" = 200 ] || fail "socket-activated serve does not answer: $(cat "$T/activate.log")"
grep -q "using the socket systemd passed" "$T/activate.log" || fail "the passed socket was not used: $(cat "$T/activate.log")"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || fail "socket-activated serve did not stop cleanly"
pass "socket activation: the socket systemd passes (LISTEN_FDS) is served"
