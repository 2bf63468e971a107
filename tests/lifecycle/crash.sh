#!/bin/bash
# A rotation killed at each step (kill -9 after generate, in the middle of
# the registration, before the switch; SIGINT in the middle) continues with
# --resume: every number ends on the new key as VALID, no number gets the
# new key uploaded twice, the configuration stays valid.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

N=12
start_sim
# start_rotation NEW [ENV...]: rotate flows -> NEW in the background.
start_rotation() {
	local new=$1; shift
	env "$@" "$FV" rotate flows --new "$new" >"$T/rot.out" 2>"$T/rot.err" &
	ROT_PID=$!
	at_exit "kill -9 $ROT_PID"
}
kill9() {
	kill -9 "$ROT_PID"
	wait "$ROT_PID" 2>/dev/null || true
}
# fresh: a new world per scenario (simulator state, keys, journal).
fresh() {
	sim_reset
	sim_config '{"latency_ms": 0}'
	rm -rf "$T/keys" "$T/config.json"* "$T/.config.json."*
	lc_setup "$N"
	posts0=$(sim_count POST)
}
# expect_resumed NEW: --resume completes, every number holds NEW as VALID,
# each number got exactly one upload of NEW, the configuration is valid.
expect_resumed() {
	run "$FV" --json rotate --resume
	expect_rc 0 "resume to $1"
	jcheck ".state == \"switched\" and .phone_numbers_registered == $N" "resumed rotation"
	RESUMED=$OUT
	expect_all_on "$1" "$N"
	[ "$(sim_count POST)" = "$((posts0 + N))" ] ||
		fail "expected $N uploads of $1, the simulator saw $(( $(sim_count POST) - posts0 )): $(posts_per_phone)"
	[ "$(posts_per_phone | awk '$2 != 2' | wc -l)" = 0 ] || fail "a number got two uploads: $(posts_per_phone)"
	run "$FV" keys
	expect_rc 0 "the configuration loads after the resumed rotation"
	jq -e ".keys.$1.phone_numbers | length == $N" "$T/config.json" >/dev/null ||
		fail "$1 does not hold the numbers"
	jq -e '.keys.flows | has("phone_numbers") | not' "$T/config.json" >/dev/null ||
		fail "flows still holds numbers"
	grep -q '"event":"switched"' "$(JOURNAL)" || fail "no switch in the journal"
}

# ---- kill -9 right after the key was generated ----
fresh
start_rotation after_gen FLOWVAULT_TEST_ROTATE_PAUSE=generated
wait_journal generated 1
kill9
[ -f "$T/keys/after_gen.pem" ] || fail "the key was not generated before the kill"
jq -e '.keys.after_gen and (.keys.flows.phone_numbers | length == 12)' "$T/config.json" >/dev/null ||
	fail "config after the kill: $(cat "$T/config.json")"
[ "$(sim_count POST)" = "$posts0" ] || fail "something was uploaded before the kill"
run "$FV" rotate --status
expect_out_has "rotation flows -> after_gen: generated"
fp_before=$(grep '"event":"generated"' "$(JOURNAL)" | jq -r .fingerprint)
expect_resumed after_gen
[ "$(jq -r .fingerprint_sha256 <<<"$RESUMED")" = "$fp_before" ] || fail "resume generated another key"
pass "kill -9 after generate: --resume registers and switches without generating again"

# ---- kill -9 between generating the key and journaling it ----
fresh
start_rotation gap FLOWVAULT_TEST_ROTATE_PAUSE=generated
wait_journal generated 1
kill9
fp_file=$(openssl pkey -in "$T/keys/gap.pem" -passin env:FLOWS_PASS -pubout -outform DER | sha256sum | cut -d' ' -f1)
# As if the crash came before the "generated" line: drop it, and leave a
# torn line at the end as a crash in the middle of a write would.
grep -v '"event":"generated"' "$(JOURNAL)" >"$T/j" && cat "$T/j" >"$(JOURNAL)"
printf '{"event":"regis' >>"$(JOURNAL)"
run "$FV" rotate --status
expect_out_has "rotation flows -> gap: prepared"
expect_resumed gap
[ "$(jq -r .fingerprint_sha256 <<<"$RESUMED")" = "$fp_file" ] || fail "resume did not adopt the key made before the crash"
pass "a key made but not journaled (\"generating\" recorded) is adopted; a torn last line is ignored"

# ---- kill -9 in the middle of the registration ----
fresh
sim_config '{"latency_ms": 150}'
start_rotation mid
wait_journal registered 4
kill9
got=$(journal_count registered)
[ "$got" -lt "$N" ] || fail "the kill came too late ($got numbers registered)"
jq -e '.keys.flows.phone_numbers | length == 12' "$T/config.json" >/dev/null || fail "switched before the kill"
run "$FV" --json rotate --status
jcheck ".state == \"registering\" and .phone_numbers_registered == $got" "status after the kill"
sim_config '{"latency_ms": 0}'
expect_resumed mid
pass "kill -9 after $got of $N numbers: --resume uploads only to the others"

# ---- kill -9 after every number, before the switch ----
fresh
start_rotation before_switch FLOWVAULT_TEST_ROTATE_PAUSE=registered
wait_journal registered "$N"
kill9
jq -e '(.keys.flows.phone_numbers | length == 12) and (.keys.before_switch | has("phone_numbers") | not)' \
	"$T/config.json" >/dev/null || fail "config switched before the kill"
expect_resumed before_switch
pass "kill -9 before the switch: --resume switches without uploading again"

# ---- kill -9 right after the configuration got the new entry ----
fresh
start_rotation after_prep FLOWVAULT_TEST_ROTATE_PAUSE=prepared
wait_journal prepared 1
kill9
[ ! -e "$T/keys/after_prep.pem" ] || fail "generated before the pause"
expect_resumed after_prep
pass "kill -9 after the configuration change: --resume generates, registers, switches"

# ---- Ctrl-C (SIGINT) in the middle of the registration ----
fresh
sim_config '{"latency_ms": 150}'
start_rotation interrupted
wait_journal registered 4
kill -INT "$ROT_PID"
set +e
wait "$ROT_PID"
rc=$?
set -e
[ "$rc" = 1 ] || fail "SIGINT: expected exit 1, got $rc: $(cat "$T/rot.err")"
grep -q "interrupted" "$T/rot.err" || fail "SIGINT: no 'interrupted' message: $(cat "$T/rot.err")"
grep -q "rotate --resume" "$T/rot.err" || fail "SIGINT: the message does not say to resume"
got=$(journal_count registered)
[ "$got" -lt "$N" ] || fail "SIGINT came too late"
sim_config '{"latency_ms": 0}'
expect_resumed interrupted
pass "SIGINT stops after the numbers in flight (exit 1); --resume finishes the job"

# ---- a second rotate while one runs is refused by the journal lock ----
fresh
start_rotation locked FLOWVAULT_TEST_ROTATE_PAUSE=generated
wait_journal generated 1
run "$FV" rotate --resume
expect_rc 1 "resume while another rotate holds the lock"
expect_err_has "another flowvault rotate is working on this configuration"
kill9
expect_resumed locked
pass "one rotate at a time per configuration"
