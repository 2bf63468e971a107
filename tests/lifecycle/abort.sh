#!/bin/bash
# rotate --abort: after the switch, in the middle of the registration, and
# killed with kill -9 in the middle of its own work and resumed. After each,
# every number holds the old key as VALID (read from the Graph API
# simulator), only numbers that had moved got it uploaded (once), serve.keys
# is back to the old key alone, and serve answers requests encrypted to the
# old key.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
. "$FV_SOURCE_DIR/tests/lifecycle/lifecycle_lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

N=12
export APP_SECRET="app-secret-$(openssl rand -hex 8)"
P=$(free_port)
SERVE="{\"listen\": \"127.0.0.1:$P\", \"admin_listen\": \"127.0.0.1:$(free_port)\", \"keys\": [\"flows\"], \"app_secrets\": [\"env:APP_SECRET\"]}"
start_sim

fresh() {
	sim_reset
	sim_config '{"latency_ms": 0}'
	rm -rf "$T/keys" "$T/config.json"* "$T"/.config.json.*
	lc_setup "$N" "$SERVE"
	"$FV" pubkey flows >"$T/old.pub"
}
# log_mark: the number of requests the simulator has logged so far.
log_mark() { sim_ctl GET /_sim/log | jq '.requests | length'; }
# posts_since MARK: "PHONE COUNT" lines for the POSTs logged after MARK.
posts_since() {
	sim_ctl GET /_sim/log | jq -r --argjson m "$1" '[.requests[$m:][] | select(.method == "POST") | .phone]
		| group_by(.) | map("\(.[0]) \(length)") | .[]'
}
# on_key PUBFILE: how many numbers the simulator holds that key for.
on_key() {
	sim_ctl GET /_sim/state | jq --rawfile k "$1" '[.numbers[] | select(.key == $k)] | length'
}
start_bg() { # start_bg OUT CMD...: run CMD in the background
	local out=$1; shift
	"$@" >"$out" 2>&1 &
	BG_PID=$!
	at_exit "kill -9 $BG_PID"
}
kill9() { kill -9 "$BG_PID"; wait "$BG_PID" 2>/dev/null || true; }
serve_up() { serve_start "$T/config.json" "$P"; }
serve_down() { kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; }
# expect_aborted: the end state every abort must reach.
expect_aborted() {
	expect_all_on flows "$N"
	jq -e --argjson n "$N" '(.keys.flows.phone_numbers | length == $n) and .serve.keys == ["flows"]
		and (.keys.new | has("phone_numbers") | not)' "$T/config.json" >/dev/null ||
		fail "configuration after the abort: $(cat "$T/config.json")"
	[ -f "$T/keys/new.pem" ] || fail "the new key was deleted without --destroy-new"
	run "$FV" --json rotate --status
	expect_rc 0 "status after the abort"
	jcheck ".state == \"aborted\" and .aborted_at != null and (.results | length) == $N
		and all(.results[]; .state == \"old_key\" and .error == null)" "status after the abort"
	serve_up
	post --url "http://127.0.0.1:$P/flows" --pub "$T/old.pub" --secret "$APP_SECRET" \
		--payload '{"version":"3.0","action":"ping"}'
	expect_field status 200
	post --url "http://127.0.0.1:$P/flows" --pub "$T/new.pub" --secret "$APP_SECRET" \
		--payload '{"version":"3.0","action":"ping"}'
	expect_field status 421
	serve_down
}

# ---- abort after the switch, with serve running on the configuration ----
fresh
run "$FV" rotate flows --new new
expect_rc 0 "rotate flows -> new"
"$FV" pubkey new >"$T/new.pub"
[ "$(on_key "$T/new.pub")" = "$N" ] || fail "not every number moved"
cp "$T/config.json" "$T/config.switched"
run "$FV" rotate --abort --destroy-new
expect_rc 3 "--destroy-new with pem"
expect_err_has "the pem plugin cannot delete keys"
cmp -s "$T/config.json" "$T/config.switched" || fail "a refused abort changed the configuration"
grep -q '"event":"aborting"' "$(JOURNAL)" && fail "a refused abort was journaled"
serve_up # holds new and flows
sim_config '{"latency_ms": 50}'
mark=$(log_mark)
run "$FV" --json rotate --abort
expect_rc 0 "abort after the switch"
jcheck '.state == "aborted" and (.serve_note | contains("restart"))' "abort JSON"
[ "$(posts_since "$mark" | awk '$2 == 1' | wc -l)" = "$N" ] || fail "uploads during the abort: $(posts_since "$mark")"
# The running serve still has its old list and answers both keys until restarted.
post --url "http://127.0.0.1:$P/flows" --pub "$T/old.pub" --secret "$APP_SECRET" \
	--payload '{"version":"3.0","action":"ping"}'
expect_field status 200
serve_down
sim_config '{"latency_ms": 0}'
expect_aborted
mark=$(log_mark)
run "$FV" rotate --abort
expect_rc 0 "abort again"
[ "$(log_mark)" = "$mark" ] || fail "a second abort talked to the Graph API"
run "$FV" rotate --finish new --force
expect_rc 2 "finish after abort"
expect_err_has "was aborted"
run "$FV" rotate --resume
expect_rc 2 "resume after abort"
pass "abort after the switch: every number back on the old key (one upload each), serve.keys restored, idempotent"

# A new rotation can start after an abort.
run "$FV" rotate flows --new newer --grace 1s
expect_rc 0 "a rotation after an abort"
expect_all_on newer "$N"
pass "a new rotation starts after an aborted one"

# ---- abort in the middle of the registration ----
# The abort starts right after the kill, while uploads of the new key that
# the killed process sent are still being answered (they take 3 s; the
# abort's own requests none): they must not land after the abort read
# their numbers.
fresh
sim_config '{"latency_ms": 3000}'
mark0=$(log_mark)
start_bg "$T/rot.out" "$FV" rotate flows --new new
wait_journal registered 4 60
kill9
sim_config '{"latency_ms": 0}'
mark=$(log_mark)
run "$FV" rotate --abort
expect_rc 0 "abort mid-registration"
expect_out_has "rotation flows -> new: aborted"
sleep 3.2 # every upload of the killed process has landed by now
"$FV" pubkey new >"$T/new.pub"
moved=$(sim_ctl GET /_sim/log | jq -r --argjson a "$mark0" --argjson b "$mark" \
	'[.requests[$a:$b][] | select(.method == "POST") | .phone] | unique | join(" ")')
restored=$(posts_since "$mark" | awk '{print $1}' | sort -n | tr '\n' ' ' | sed 's/ $//')
[ "$restored" = "$moved" ] || fail "uploads during the abort went to [$restored], the killed rotation had uploaded to [$moved]"
[ "$(posts_since "$mark" | awk '$2 != 1' | wc -l)" = 0 ] || fail "a number got two uploads: $(posts_since "$mark")"
moved=$(wc -w <<<"$moved")
[ "$moved" -ge 4 ] && [ "$moved" -lt "$N" ] || fail "$moved numbers moved before the kill"
sim_config '{"latency_ms": 0}'
expect_aborted
pass "abort mid-registration: only the $moved moved numbers get the old key back"

# ---- the abort killed with kill -9 and resumed ----
fresh
run "$FV" rotate flows --new new
expect_rc 0 "rotate flows -> new"
"$FV" pubkey new >"$T/new.pub"
sim_config '{"latency_ms": 150}'
mark=$(log_mark)
start_bg "$T/abort.out" "$FV" rotate --abort
wait_journal restored 4
kill9
got=$(journal_count restored)
[ "$got" -lt "$N" ] || fail "the abort ended before the kill"
run "$FV" --json rotate --status
jcheck ".state == \"aborting\" and ([.results[] | select(.state == \"old_key\")] | length) == $got" "status of the killed abort"
run "$FV" rotate flows --new other
expect_rc 2 "a new rotation while an abort is unfinished"
expect_err_has "complete the abort with flowvault rotate --abort"
sim_config '{"latency_ms": 20}'
run "$FV" rotate --resume
expect_rc 0 "resume the abort"
expect_out_has "rotation flows -> new: aborted"
[ "$(posts_since "$mark" | wc -l)" = "$N" ] || fail "not every number got the old key back: $(posts_since "$mark")"
[ "$(posts_since "$mark" | awk '$2 != 1' | wc -l)" = 0 ] || fail "a number got the old key twice: $(posts_since "$mark")"
sim_config '{"latency_ms": 0}'
expect_aborted
pass "abort killed after $got numbers: --resume completes it, one upload per number"
