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
keyproc_crash_check
pass "key process killed (SIGSEGV) under load: 503 at once, never over 1 s, 200 again within 2 s"
serve_stop
