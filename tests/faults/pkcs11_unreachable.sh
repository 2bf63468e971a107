#!/bin/bash
# A SoftHSM2 token becomes unreachable under a process that opened its key
# once and keeps decrypting (tests/faults/decrypt_loop.c): every failed call
# is a clear error naming the PKCS#11 function and the CKR_* value, the
# process does not crash, and once the token is back decryption works again.
#
# Two ways to lose the token, because permission tricks do not stop root:
#  1. its token directory is moved away (SoftHSM2 re-reads its object store
#     on each call and drops the objects) and moved back;
#  2. the module is a shim in front of SoftHSM2 (p11_fault_shim.c) that
#     plays a pulled-out token: CKR_DEVICE_REMOVED / CKR_TOKEN_NOT_PRESENT,
#     every session closed and the login gone, as after a real removal.
#
# After the token is back, a key opened again in the same process must work.
# The handle opened before the fault should recover by itself too (the plugin
# re-opens and logs in once); today it answers CKR_OBJECT_HANDLE_INVALID for
# good (docs/robustness.md, "Known gaps"), so that is reported as a KNOWN GAP
# line; FV_FAULTS_EXPECT_RECOVERY=1 makes it a failure.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"

LOOP="$FV_BUILD_DIR/tests/fault-decrypt-loop"
SHIM="$FV_BUILD_DIR/tests/faults/p11-fault-shim.so"
EXPECT_RECOVERY=${FV_FAULTS_EXPECT_RECOVERY:-0}
TOKEN=flows
PIN=246810
[ -x "$LOOP" ] && [ -f "$SHIM" ] || fail "build fault-decrypt-loop and p11-fault-shim first"

setup_softhsm "$TOKEN" "$PIN"
printf '%s\n' "$PIN" >"$T/pin"
chmod 600 "$T/pin"
entry() { # entry MODULE: the key entry for that module
	printf '{"provider": "pkcs11", "module": "%s", "uri": "pkcs11:token=%s;object=flows-key", "pin": "file:%s", "allow_host_oaep": true}' \
		"$1" "$TOKEN" "$T/pin"
}
write_config "$T/direct.json" "$(entry "$SOFTHSM_MODULE")"
write_config "$T/shim.json" "$(entry "$SHIM")"
chmod 600 "$T/direct.json" "$T/shim.json"
export FV_FAULT_REAL_MODULE="$SOFTHSM_MODULE" FV_FAULT_CONTROL="$T/pulled"

run "$FV" --config "$T/direct.json" generate flows
expect_rc 0 "generate on SoftHSM2"
"$FV" --config "$T/direct.json" pubkey flows >"$T/pub.pem" || fail "pubkey"
printf 'flows request body' >"$T/plain"
oaep_encrypt "$T/pub.pem" "$T/plain" "$T/cipher"

# start_loop CONFIG: the decrypting process, fed one line per iteration.
start_loop() {
	rm -f "$T/feed" "$T/log"
	mkfifo "$T/feed"
	"$LOOP" "$1" flows "$T/cipher" "$T/plain" <"$T/feed" >"$T/log" 2>"$T/log.err" &
	LOOP_PID=$!
	at_exit "kill $LOOP_PID"
	exec 3>"$T/feed"
	STEP=0
}
# step [reopen]: run one iteration; $LINE is its result line.
step() {
	local i
	STEP=$((STEP + 1))
	echo "${1:-go}" >&3
	for ((i = 0; i < 300; i++)); do
		LINE=$(grep "^iteration $STEP:" "$T/log" || true)
		[ -n "$LINE" ] && return 0
		kill -0 "$LOOP_PID" 2>/dev/null || break
		sleep 0.05
	done
	fail "no result for iteration $STEP (process alive: $(kill -0 "$LOOP_PID" 2>/dev/null && echo yes || echo no))
$(cat "$T/log" "$T/log.err")"
}
expect_step_ok() {
	[ "$LINE" = "iteration $STEP: ok" ] || fail "$1: expected a good decrypt, got: $LINE
$(cat "$T/log.err")"
}
# expect_step_error: a failure naming a C_* function and a CKR_* value.
expect_step_error() {
	grep -qE "^iteration $STEP: error backend: key 'flows' \(pkcs11\): .*C_[A-Za-z]+.*CKR_[A-Z_]+" <<<"$LINE" \
		|| fail "$1: expected an error naming the C_ function and CKR_ value, got: $LINE"
}
stop_loop() {
	local rc
	exec 3>&-
	set +e
	wait "$LOOP_PID"
	rc=$?
	set -e
	[ "$rc" = 0 ] || fail "the decrypting process ended with status $rc (crash?)
$(cat "$T/log" "$T/log.err")"
}
# after_restore WHAT [must]: the old handle recovers (required with "must"
# or FV_FAULTS_EXPECT_RECOVERY=1); then a reopened one works.
after_restore() {
	local must=$EXPECT_RECOVERY
	[ "${2:-}" = must ] && must=1
	step
	if [ "$LINE" = "iteration $STEP: ok" ]; then
		pass "$1: the key opened before the fault decrypts again"
	elif [ "$must" = 1 ]; then
		fail "$1: the key opened before the fault does not recover: $LINE"
	else
		echo "KNOWN GAP: $1: the key opened before the fault does not recover: $LINE"
	fi
	step
	[ "$must" = 1 ] && expect_step_ok "$1, second call after restore"
	step reopen
	grep -qx "reopen: ok" "$T/log" || fail "$1: reopening the key after restore: $(cat "$T/log")"
	expect_step_ok "$1, key opened again after restore"
	pass "$1: a key opened again in the same process decrypts"
}

# ---- 1. token directory moved away and back ----
start_loop "$T/direct.json"
step; expect_step_ok "before the fault"
step; expect_step_ok "before the fault"
mv "$T/softhsm/tokens" "$T/softhsm/tokens.away"
# Really unreachable: an independent tool no longer sees the token.
! pkcs11-tool --module "$SOFTHSM_MODULE" --list-token-slots 2>/dev/null | grep -q "label: *$TOKEN" \
	|| fail "SoftHSM2 still shows the token after its directory was moved away"
step; expect_step_error "token directory gone"
FIRST=$LINE
step; expect_step_error "token directory gone, again"
pass "token directory gone: ${FIRST#iteration 3: }"
mv "$T/softhsm/tokens.away" "$T/softhsm/tokens"
after_restore "token directory restored"
stop_loop
pass "token directory: no crash, $STEP iterations"

# ---- 2. module reports the token removed, sessions and login lost ----
start_loop "$T/shim.json"
step; expect_step_ok "through the shim, before the fault"
touch "$T/pulled"
step; expect_step_error "token pulled"
grep -qE "CKR_TOKEN_NOT_PRESENT|CKR_DEVICE_REMOVED" <<<"$LINE" || fail "token pulled: $LINE"
FIRST=$LINE
step; expect_step_error "token still pulled"
grep -qE "C_OpenSession|C_GetTokenInfo|C_DecryptInit" <<<"$LINE" || fail "token still pulled: $LINE"
pass "token pulled: ${FIRST#iteration 2: }"
pass "token still pulled: ${LINE#iteration 3: }"
rm -f "$T/pulled"
after_restore "token plugged back" must
stop_loop
grep -q "opening a new session and logging in again" "$T/log.err" \
	|| fail "the plugin did not log its recovery attempt: $(cat "$T/log.err")"
pass "token pulled: no crash, $STEP iterations"
