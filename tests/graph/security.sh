# The token never shows (argv, -v, errors, files); TLS is always verified;
# the "graph" section refuses what it does not know; the simulator enforces
# what the real API enforces.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
write_config '["111", "112"]'

run "$FV" -v -v register flows
expect_rc 0 "register -vv"
expect_err_has "Authorization: Bearer ***"
expect_err_has "graph: POST $SIM_URL/v25.0/111/whatsapp_business_encryption"
expect_not_has "$SIM_TOKEN" "$T/.out" "$T/.err"
expect_not_has "${SIM_TOKEN:7:16}" "$T/.out" "$T/.err"
run "$FV" -v --json status flows
expect_rc 0 "status -v"
expect_err_has "Authorization: Bearer ***"
expect_not_has "$SIM_TOKEN" "$T/.out" "$T/.err"
# Nothing flowvault wrote in the test directory holds the token.
! grep -rqF -- "$SIM_TOKEN" "$T" --exclude=sim.log 2>/dev/null || fail "the token is in a file under $T"
pass "-v and -vv show 'Authorization: Bearer ***', never the token"

# The Graph API repeats the token in paging.next: it is neither logged at -vv
# nor sent in a URL (the simulator refuses a token in the query).
sim_reset
sim_config '{"wabas": {"102290129340398": {"count": 6, "first_id": 300000000000000, "page_size": 2}}}'
run "$FV" -v -v status flows --waba 102290129340398
expect_err_has "graph: < "
expect_err_has "access_token=***"
expect_not_has "$SIM_TOKEN" "$T/.out" "$T/.err"
expect_not_has "${SIM_TOKEN:7:16}" "$T/.out" "$T/.err"
expect_count 3 GET phone_numbers "" "three pages listed with the token in the header only"
pass "paging.next carries the token: stripped from the URL, redacted in -vv bodies"

sim_reset
export WHATSAPP_ACCESS_TOKEN="EAAGwrong$(openssl rand -hex 8)"
run "$FV" -v -v register flows --phone 111
expect_rc 4 "wrong token"
expect_err_has "Graph API error 190"
expect_err_has "create a new system-user token"
expect_not_has "$WHATSAPP_ACCESS_TOKEN" "$T/.out" "$T/.err"
expect_count 1 POST "" "" "an invalid token is not retried"
export WHATSAPP_ACCESS_TOKEN="$SIM_TOKEN"
pass "an invalid token: exit 4, not retried, not shown"

unset WHATSAPP_ACCESS_TOKEN
run "$FV" register flows
expect_rc 2 "token variable unset"
expect_err_has "graph.access_token"
expect_err_has "WHATSAPP_ACCESS_TOKEN"
export WHATSAPP_ACCESS_TOKEN="$SIM_TOKEN"
printf 'two words\n' >"$T/badtoken"; chmod 600 "$T/badtoken"
write_config '["111"]' "\"access_token\": \"file:$T/badtoken\""
jq . "$T/config.json" >"$T/c.tmp" && mv "$T/c.tmp" "$T/config.json"
run "$FV" register flows
expect_rc 2 "token with a space"
expect_err_has "contains spaces or control characters"
expect_not_has "two words" "$T/.out" "$T/.err"
pass "unresolvable or malformed tokens: exit 2, named, not shown"

# -- TLS is always verified. -----------------------------------------------------
sim_reset
write_config '["111"]'
jq 'del(.graph.ca_file)' "$T/config.json" >"$T/c.tmp" && mv "$T/c.tmp" "$T/config.json"
run "$FV" register flows
expect_rc 4 "server certificate from an unknown CA"
expect_err_has "is not trusted"
expect_err_has "set graph.ca_file"
mkdir -p "$T/other"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/other/ca.key" -out "$T/other/ca.pem" \
	-days 1 -subj "/CN=another CA" 2>/dev/null
write_config '["111"]' '"ca_file": "other/ca.pem"'
jq . "$T/config.json" >"$T/c.tmp" && mv "$T/c.tmp" "$T/config.json"
run "$FV" register flows
expect_rc 4 "server certificate from another CA"
expect_err_has "is not trusted"
expect_count 0 "" "" "" "no request reached the server over untrusted TLS"
pass "TLS to a server whose certificate is not trusted fails (exit 4), nothing sent"

# -- The "graph" section. ----------------------------------------------------------
config_error() { # config_error GRAPH_EXTRA_JSON EXPECTED_MESSAGE "what"
	write_config '["111"]' "$1"
	jq . "$T/config.json" >"$T/c.tmp" && mv "$T/c.tmp" "$T/config.json"
	run "$FV" register flows
	expect_rc 2 "$3"
	expect_err_has "$2"
}
config_error '"bogus": 1' "graph.bogus: unknown field" "unknown field"
config_error '"access_token": "EAAGliteralsecret"' "graph.access_token: secrets cannot be written in the configuration" "literal token"
expect_not_has "EAAGliteralsecret" "$T/.out" "$T/.err"
config_error '"base_url": "http://127.0.0.1:1"' "graph.base_url: 'http://127.0.0.1:1' is not an https:// URL" "plain http"
config_error '"api_version": "25"' "graph.api_version: '25' is not a Graph API version" "bad version"
config_error '"max_in_flight": 0' "graph.max_in_flight: 0 is out of range" "max_in_flight 0"
config_error '"timeout_seconds": "5"' "graph.timeout_seconds: expected a number of seconds" "timeout as string"
config_error '"max_retries": 1.5' "graph.max_retries: expected an integer" "fractional retries"
config_error '"ca_file": "missing.pem"' "graph.ca_file: cannot read '$T/missing.pem'" "missing CA file"
echo "not a certificate" >"$T/junk.pem"
config_error '"ca_file": "junk.pem"' "graph.ca_file: '$T/junk.pem' holds no PEM certificate" "CA file without certificates"
printf '{"keys": {"flows": {"provider": "pem", "path": "flows.pem", "phone_numbers": ["1"]}}}' >"$T/config.json"
run "$FV" register flows
expect_rc 2 "no graph section"
expect_err_has 'graph.access_token is not set'
pass "graph section errors: exit 2, naming the JSON path"

# A different API version reaches the wrong path: refused, not retried.
write_config '["111"]' '"api_version": "v24.0"'
jq . "$T/config.json" >"$T/c.tmp" && mv "$T/c.tmp" "$T/config.json"
run "$FV" register flows
expect_rc 4 "API version the server does not speak"
expect_err_has "Graph API error 2500"
pass "an API version the server does not speak: exit 4"

# -- The simulator enforces what the real API enforces. ------------------------------
post() { # post BODY [CONTENT_TYPE] [TOKEN]: HTTP status and body of an upload
	curl -sS --cacert "$T/tls/ca.pem" -H "Authorization: Bearer ${3:-$SIM_TOKEN}" \
		-H "Content-Type: ${2:-application/x-www-form-urlencoded}" --data-binary "$1" \
		-w ' %{http_code}' "$SIM_URL/v25.0/900/whatsapp_business_encryption"
}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 2>/dev/null | openssl pkey -pubout >"$T/small.pub"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null | openssl pkey -pubout >"$T/ec.pub"
spki_pem "$T/flows.pem" >"$T/flows.pub"
enc() { jq -sRr @uri <"$1"; }
[[ $(post "business_public_key=$(enc "$T/flows.pub")") == *'{"success": true} 200' ]] || fail "the simulator refused a good key"
[[ $(post "business_public_key=$(enc "$T/small.pub")") == *'"code": 100'*'RSA-2048'* ]] || fail "the simulator took an RSA-1024 key"
[[ $(post "business_public_key=$(enc "$T/ec.pub")") == *'"code": 100'* ]] || fail "the simulator took an EC key"
[[ $(post "business_public_key=$(tr '\n' '|' <"$T/flows.pub" | sed 's/|/\\n/g' | jq -sRr @uri)") == *'"code": 100'* ]] ||
	fail "the simulator took a PEM with literal \\n instead of newlines"
[[ $(post "{\"business_public_key\": 1}" application/json) == *'"code": 100'* ]] || fail "the simulator took JSON"
[[ $(post "business_public_key=$(enc "$T/flows.pub")" "" wrong) == *'"code": 190'*' 401' ]] || fail "the simulator took a wrong token"
[[ $(post "business_public_key=$(enc "$T/flows.pub")&x=1") == *'"code": 100'* ]] || fail "the simulator took an extra field"
pass "the simulator enforces token, form encoding, one field and an RSA-2048 SPKI PEM"
