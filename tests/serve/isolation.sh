# The separated server's boundary, checked on the running processes: workers
# are sandboxed (seccomp, no_new_privs, not root), map no plugin or key
# library, and hold no byte of the key; only the key process does.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/serve/serve_lib.sh"

sep_setup
# A secret the workers never need: the passphrase of a key serve does not
# use here (the supervisor takes every env: secret of the configuration).
PYWA_PASSPHRASE=$(openssl rand -hex 16)
export PYWA_PASSPHRASE
printf %s "$PYWA_PASSPHRASE" | od -An -tx1 | tr -d ' \n' >"$T/passphrase.hex"
serve_start "$T/config.json" "$PORT"
wait_workers 2
make_ping
for i in 1 2 3 4 5 6; do [ "$(ping_status)" = 200 ] || fail "ping $i failed"; done
workers=$(children fv-worker)
keyproc=$(children fv-keyproc)

for w in $workers; do
	status=$(cat "/proc/$w/status")
	grep -qP '^Seccomp:\t2$' <<<"$status" || fail "worker $w: not in seccomp filter mode: $(grep Seccomp <<<"$status")"
	grep -qP '^NoNewPrivs:\t1$' <<<"$status" || fail "worker $w: NoNewPrivs not set"
	uid=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' <<<"$status")
	if [ "$(id -u)" = 0 ]; then
		for u in $uid; do [ "$u" != 0 ] || fail "worker $w runs as root (Uid: $uid)"; done
	fi
	# (libp11-kit.so itself comes with GnuTLS; no PKCS#11 module is loaded.)
	for lib in /plugins/ libsofthsm2 libp11.so libtss2 p11-kit-proxy p11-kit-client libsoftokn pkcs11/; do
		! grep -q "$lib" "/proc/$w/maps" || fail "worker $w maps $lib"
	done
	# Every thread, libmicrohttpd's included, is filtered.
	for t in /proc/$w/task/*; do
		grep -qP '^Seccomp:\t2$' "$t/status" || fail "worker $w thread ${t##*/} not filtered"
	done
done
pass "workers: Seccomp 2 and NoNewPrivs 1 on every thread, uid not 0 ($(id -u) started them), no plugin or key library mapped"

grep -q plugins/pem.so "/proc/$keyproc/maps" || fail "the key process does not map the pem plugin"
! grep -q plugins/pem.so "/proc/$SERVE_PID/maps" || fail "the supervisor loaded a plugin"
pass "only the key process maps the plugin; the supervisor never loads one"

# The key's modulus: in the key process's memory, nowhere in a worker's or
# the supervisor's (big-endian as in DER, and as OpenSSL's little-endian limbs).
openssl rsa -in "$T/current.pem" -noout -modulus | cut -d= -f2 >"$T/modulus.hex"
scan() { "$PY" "$SERVE_TEST_DIR/memscan.py" "$1" "$T/modulus.hex"; }
[ "$(scan "$keyproc")" = found ] || fail "the modulus is not in the key process's memory: the scan cannot see it"
for p in $workers "$SERVE_PID"; do
	[ "$(scan "$p")" = absent ] || fail "the key's modulus is in the memory of process $p ($(cat /proc/$p/comm))"
done
pass "the key's modulus is in the key process's memory only (workers and supervisor scanned: absent)"

# env: secret values: the supervisor keeps them for the processes it starts
# (the control that the scan sees them); a worker has wiped them.
pscan() { "$PY" "$SERVE_TEST_DIR/memscan.py" "$1" "$T/passphrase.hex"; }
[ "$(pscan "$SERVE_PID")" = found ] || fail "the env: passphrase is not in the supervisor's memory: the scan cannot see it"
if [ -n "${FV_SANITIZE_FLAGS:-}" ]; then
	# The sanitizer runtime keeps its own copy of the initial environment
	# (read from /proc/self/environ before main), which every process inherits.
	echo "note: sanitizer build: the workers' env: secrets are checked in the plain build"
else
	for w in $workers; do
		[ "$(pscan "$w")" = absent ] || fail "worker $w holds the value of env:PYWA_PASSPHRASE"
	done
	pass "workers hold no env: secret value they do not use"
fi

# Descriptors: a worker keeps its listeners, channels, control socket, 0-2.
for w in $workers; do
	for fd in /proc/$w/fd/*; do
		target=$(readlink "$fd")
		case $target in socket:* | /dev/null | pipe:* | anon_inode:*) ;;
		*) [ "${fd##*/}" -le 2 ] || fail "worker $w has descriptor ${fd##*/} -> $target" ;;
		esac
	done
done
pass "workers hold no file descriptor but sockets, anonymous inodes and 0-2"
serve_stop

# With -q the supervisor logs nothing before it forks, so nothing it did by
# chance (reading the time zone) is inherited: workers must have loaded all
# they need themselves (libmicrohttpd's Date header reads the time zone).
"$FV" -q --config "$T/config.json" serve >"$T/quiet.out" 2>"$T/quiet.log" &
SERVE_PID=$!
at_exit "kill -9 $SERVE_PID"
wait_workers 2
for i in $(seq 10); do [ "$(ping_status)" = 200 ] || fail "quiet serve: ping $i failed: $(cat "$T/quiet.log")"; done
! grep -q "seccomp" "$T/quiet.log" || fail "a quiet serve's worker was killed: $(cat "$T/quiet.log")"
serve_stop
pass "serve -q: workers answer (nothing they need is loaded only by chance)"
