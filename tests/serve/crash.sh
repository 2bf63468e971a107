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
# gdb: execve, which no worker may make). gdb holds the worker stopped first,
# with no request in flight on it, so every request sent meanwhile must be
# answered by the other worker; then the call is made and the worker dies.
command -v gdb >/dev/null || fail "gdb is needed to inject the fault"
gdb -q -batch -p "$w1" \
	-ex "shell touch '$T/attached'" \
	-ex "shell while [ ! -e '$T/go' ]; do sleep 0.05; done" \
	-ex 'call (int)execve("/bin/true", 0, 0)' >"$T/gdb.log" 2>&1 &
gdb_pid=$!
for ((i = 0; i < 300; i++)); do
	[ -e "$T/attached" ] && break
	kill -0 "$gdb_pid" 2>/dev/null || fail "gdb could not attach to worker $w1: $(cat "$T/gdb.log")"
	sleep 0.1
done
[ -e "$T/attached" ] || fail "gdb did not attach to worker $w1 within 30 s: $(cat "$T/gdb.log")"
ok=0
for i in $(seq 20); do
	s=$(ping_status || true)
	[ "$s" = 200 ] || fail "request $i while worker $w1 was held got '$s'"
	ok=$((ok + 1))
done
touch "$T/go"
wait "$gdb_pid" || true
for ((i = 0; i < 50; i++)); do
	kill -0 "$w1" 2>/dev/null || break
	sleep 0.1
done
! kill -0 "$w1" 2>/dev/null || fail "worker $w1 survived execve: $(cat "$T/gdb.log")"
# While its replacement starts, the other worker answers.
for i in $(seq 10); do
	s=$(ping_status || true)
	[ "$s" = 200 ] || fail "request $i after worker $w1 died got '$s'"
	ok=$((ok + 1))
done
wait_workers 2
grep -q "worker 1 ($w1) was killed by its seccomp filter (a forbidden system call); starting a new one" \
	"$T/serve.log" || fail "the seccomp kill is not logged: $(tail -5 "$T/serve.log")"
children fv-worker | grep -qx "$w2" || fail "the other worker did not survive"
for i in 1 2 3 4 5; do
	s=$(ping_status || true)
	[ "$s" = 200 ] || fail "ping $i after the restart got '$s'"
done
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_process_restarts_total{process="worker"} 1'
pass "worker killed by seccomp (execve) and replaced; $ok requests meanwhile all answered 200; restart counted"

# ---- kill -SEGV of the key process under steady load.
keyproc_crash_check
pass "key process killed (SIGSEGV) under load: 503 at once, never over 1 s, 200 again within 2 s"
serve_stop
