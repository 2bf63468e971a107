# Helpers for the key-lifecycle tests; source after tests/lib.sh and
# tests/graph/graph_lib.sh.

JOURNAL() { echo "$T/config.json.rotation.journal"; }

# lc_config N [SERVE_JSON]: $T/config.json with key "flows" (a pem key,
# passphrase from $FLOWS_PASS) on N phone numbers 1000..(1000+N-1), and the
# simulator as Graph API; max_in_flight 4 so registration runs in batches.
lc_config() {
	local n=$1 serve=${2:-} phones="" i
	for ((i = 0; i < n; i++)); do
		phones+="${phones:+, }\"$((1000 + i))\""
	done
	cat >"$T/config.json" <<JSON
{
  "keys": {
    "flows": {"provider": "pem", "path": "keys/flows.pem", "passphrase": "env:FLOWS_PASS",
              "phone_numbers": [$phones]}
  },
  "graph": {
    "base_url": "$SIM_URL",
    "access_token": "env:WHATSAPP_ACCESS_TOKEN",
    "ca_file": "tls/ca.pem",
    "timeout_seconds": 5,
    "retry_base_ms": 5,
    "max_retries": 2,
    "max_in_flight": 4,
    "max_wait_seconds": 10
  }${serve:+,
  \"serve\": $serve}
}
JSON
	chmod 600 "$T/config.json"
	export FLOWVAULT_CONFIG="$T/config.json"
}

# lc_setup N [SERVE_JSON]: simulator, config, key "flows" generated and
# registered on its N numbers.
lc_setup() {
	export FLOWS_PASS="pass-$(openssl rand -hex 8)"
	mkdir -p "$T/keys"
	chmod 700 "$T/keys"
	[ -n "${SIM_URL:-}" ] || start_sim
	lc_config "$@"
	run "$FV" generate flows
	expect_rc 0 "generate flows"
	run "$FV" register flows
	expect_rc 0 "register flows"
}

# journal_count EVENT: lines of the journal recording EVENT.
journal_count() {
	[ -f "$(JOURNAL)" ] || { echo 0; return; }
	grep -c "\"event\":\"$1\"" "$(JOURNAL)" || true
}

# wait_journal EVENT N [SECONDS]: until the journal records EVENT N times.
wait_journal() {
	local i
	for ((i = 0; i < ${3:-30} * 50; i++)); do
		[ "$(journal_count "$1")" -ge "$2" ] && return 0
		sleep 0.02
	done
	fail "the journal never recorded $2 x $1: $(cat "$(JOURNAL)" 2>/dev/null)"
}

# uploads_of FINGERPRINT: POSTs the simulator received carrying that key.
# (The simulator keeps the last key per number; the request log has the
# phone, so count POSTs per phone after the rotation started.)
posts_per_phone() {
	sim_ctl GET /_sim/log | jq -r '[.requests[] | select(.method == "POST") | .phone]
		| group_by(.) | map("\(.[0]) \(length)") | .[]'
}

# expect_all_on KEY N: `flowvault status KEY` says all N numbers hold KEY, VALID.
expect_all_on() {
	run "$FV" --json status "$1"
	expect_rc 0 "status $1"
	jcheck "(.results | length) == $2 and all(.results[]; .status == \"VALID\" and .matches_local)" \
		"every number holds $1 as VALID"
}
