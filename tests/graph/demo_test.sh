# tests/graph/demo_snippet.sh, as scripts/demo uses it: registers on three
# demo numbers, shows status, and leaves no simulator running.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/demo_snippet.sh"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/flows.pem" 2>/dev/null
chmod 600 "$T/flows.pem"
printf '{"keys": {"flows": {"provider": "pem", "path": "flows.pem"}}}\n' >"$T/config.json"
chmod 600 "$T/config.json"
fv=$FV
run demo_graph "$T" flows
expect_rc 0 "demo_graph"
expect_out_has "flowvault register flows"
grep -Eq -- '106540352242924 +yes +VALID +yes' <<<"$OUT" || fail "stdout lacks /106540352242924 +yes +VALID +yes/
$OUT"
expect_out_has "3 of 3 phone numbers OK"
expect_out_has "simulator stopped"
pid=$(grep -o 'pid [0-9]*' <<<"$OUT" | cut -d' ' -f2)
[ -n "$pid" ] || fail "no simulator pid in the output"
! kill -0 "$pid" 2>/dev/null || fail "the simulator (pid $pid) is still running"
grep -q '"access_token": "env:FLOWVAULT_DEMO_GRAPH_TOKEN"' "$T/config.json" ||
	fail "the configuration does not refer to the token by reference"
pass "demo_graph registers three numbers, shows status, stops the simulator"
