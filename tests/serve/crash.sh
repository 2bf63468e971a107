# Crash isolation: a worker killed by its seccomp filter is replaced while
# the other worker answers; the key process killed under load makes workers
# answer 503 at once (never a hang), and service resumes by itself.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/serve/serve_lib.sh"

sep_setup
serve_start "$T/config.json" "$PORT"
wait_workers 2
make_ping
ws=($(children fv-worker)); w1=${ws[0]}; w2=${ws[1]}

# ---- A worker makes a forbidden system call (injected from outside with
# gdb: execve, which no worker may make). While it is stopped and then
# killed, new requests are answered by the other worker.
command -v gdb >/dev/null || fail "gdb is needed to inject the fault"
gdb -q -batch -p "$w1" -ex 'call (int)execve("/bin/true", 0, 0)' >"$T/gdb.log" 2>&1 &
gdb_pid=$!
ok=0
for i in $(seq 20); do
	s=$(ping_status)
	[ "$s" = 200 ] || fail "request $i during the fault got '$s'"
	ok=$((ok + 1))
done
wait "$gdb_pid" || true
for ((i = 0; i < 50; i++)); do
	kill -0 "$w1" 2>/dev/null || break
	sleep 0.1
done
! kill -0 "$w1" 2>/dev/null || fail "worker $w1 survived execve: $(cat "$T/gdb.log")"
wait_workers 2
grep -q "worker 1 ($w1) was killed by its seccomp filter (a forbidden system call); starting a new one" \
	"$T/serve.log" || fail "the seccomp kill is not logged: $(tail -5 "$T/serve.log")"
children fv-worker | grep -qx "$w2" || fail "the other worker did not survive"
for i in 1 2 3 4 5; do [ "$(ping_status)" = 200 ] || fail "ping after the restart failed"; done
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_process_restarts_total{process="worker"} 1'
pass "worker killed by seccomp (execve) and replaced; $ok requests meanwhile all answered 200; restart counted"

# ---- kill -SEGV of the key process under steady load.
"$PY" "$SERVE_TEST_DIR/load.py" "$URL" "$T/ping.json" "$SIG" 6 "$T/load.txt" &
load=$!
sleep 2
keyproc=$(children fv-keyproc)
kill_at=$("$PY" -c 'import time; print("%.4f" % time.monotonic())')
kill -SEGV "$keyproc"
wait "$load"
"$PY" - "$T/load.txt" <<'PY' || fail "load during the key process crash: see above"
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
pass "key process killed (SIGSEGV) under load: 503 at once, never over 1 s, 200 again within 2 s"
serve_stop
