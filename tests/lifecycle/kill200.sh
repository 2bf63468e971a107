#!/bin/bash
# kill -9 at random points of a 200-number registration, several times per
# rotation and over several rotations: --resume never uploads the new key to
# a number twice (POSTs counted in the simulator's log, including those of
# killed processes) and every number ends on the new key as VALID.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"

N=200
RUNS=${FV_KILL200_RUNS:-3}
start_sim
export FLOWS_PASS="pass-$(openssl rand -hex 8)"
mkdir -p "$T/keys" && chmod 700 "$T/keys"
lc_config "$N"
run "$FV" generate flows
expect_rc 0 "generate flows"
# The first registration, before any kill, with the default timeouts and
# retries: it only sets the scene, and a loaded machine may be slow.
run "$FV" register flows
expect_rc 0 "register flows on $N numbers"
# Then a short request timeout (a resume waits up to one for the uploads a
# killed run left in flight) and no retries: a POST retried after a timeout
# on a loaded machine would count as a second upload that no kill caused.
jq '.graph.max_in_flight = 8 | .graph.timeout_seconds = 3 | .graph.max_retries = 0' \
	"$T/config.json" >"$T/c" && cat "$T/c" >"$T/config.json"

log_mark() { sim_ctl GET /_sim/log | jq '.requests | length'; }
posts_since() {
	sim_ctl GET /_sim/log | jq -r --argjson m "$1" '[.requests[$m:][] | select(.method == "POST") | .phone]
		| group_by(.) | map("\(.[0]) \(length)") | .[]'
}

old=flows
kills_total=0
for ((run_no = 1; run_no <= RUNS; run_no++)); do
	new="k$run_no"
	sim_config '{"latency_ms": 15}'
	mark=$(log_mark)
	cmd=(rotate "$old" --new "$new")
	kills=0
	# Two or three kills at random points, each after a random number of
	# journaled numbers plus a random delay (mid-batch, requests in flight).
	want_kills=$((2 + RANDOM % 2))
	while ((kills < want_kills)); do
		"$FV" "${cmd[@]}" >"$T/rot.out" 2>&1 &
		pid=$!
		at_exit "kill -9 $pid"
		done_now=$(journal_count registered)
		target=$((done_now + 1 + RANDOM % 40))
		for ((i = 0; i < 1500; i++)); do
			[ "$(journal_count registered)" -ge "$target" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.02
		done
		sleep "0.0$((RANDOM % 10))"
		kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
		wait "$pid" 2>/dev/null || true
		cmd=(rotate --resume)
		grep -q '"event":"switched"' <(sed -n "/\"new\":\"$new\"/,\$p" "$(JOURNAL)") && break
	done
	kills_total=$((kills_total + kills))
	sim_config '{"latency_ms": 0}'
	# Timeouts on a loaded machine stop a run (exit 4) without harm: resume.
	for ((i = 0; i < 3; i++)); do
		run "$FV" --json rotate --resume
		[ "$RC" = 4 ] || break
	done
	expect_rc 0 "final resume of run $run_no"
	jcheck ".state == \"switched\" and .new_key == \"$new\" and .phone_numbers_registered == $N
		and all(.results[]; .state == \"new_key\")" "run $run_no switched"
	uploads=$(posts_since "$mark")
	[ "$(wc -l <<<"$uploads")" = "$N" ] || fail "run $run_no: $(wc -l <<<"$uploads") numbers got an upload, not $N"
	twice=$(awk '$2 != 1' <<<"$uploads")
	[ -z "$twice" ] || fail "run $run_no: numbers uploaded more than once after $kills kills: $twice
$(sim_ctl GET /_sim/log | jq -c --argjson m "$mark" --arg p "$(awk '{print $1}' <<<"$twice" | head -1)" \
	'.requests[$m:][] | select(.phone == $p) | {method, status, t, fault}')"
	expect_all_on "$new" "$N"
	for ((i = 0; i < 3; i++)); do
		run "$FV" rotate --finish "$new" --force
		[ "$RC" = 4 ] || break
	done
	expect_rc 0 "finish run $run_no"
	pass "run $run_no: $kills kill -9 during the registration of $N numbers, each number uploaded once"
	old=$new
done
echo "kill -9 in total: $kills_total over $RUNS runs"
