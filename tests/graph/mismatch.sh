# MISMATCH, another key, an unknown status: exit 5 while the other numbers
# register; a Graph error together with a mismatch gives exit 4.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
make_key other
write_config '["101", "102", "103", "104", "105"]'

sim_config '{"numbers": {"103": {"status": "MISMATCH"}}}'
run "$FV" --json register flows
expect_rc 5 "one number reports MISMATCH"
expect_count 5 POST whatsapp_business_encryption "" "every number was uploaded"
for p in 101 102 104 105; do
	json_result "$p" '.registered and .status == "VALID" and .matches_local and .error == null' "number $p registers"
done
json_result 103 '.registered and .status == "MISMATCH" and .matches_local and .error == null' "number 103 MISMATCH"
expect_err_has "1 of 5 phone numbers failed"
expect_err_has "signature status MISMATCH, not VALID"
pass "a MISMATCH number gives exit 5 while the rest register"

# Another key stored on a number: status says so (exit 5), register fixes it.
sim_reset
other_pem=$(spki_pem "$T/other.pem" | jq -Rs .)
sim_config "{\"numbers\": {\"201\": {\"key\": $other_pem}}}"
run "$FV" --json status flows --phone 201
expect_rc 5 "another key is registered"
json_result 201 '.registered and .status == "VALID" and (.matches_local | not) and .error == null' "different key"
other_fp=$(openssl pkey -in "$T/other.pem" -pubout -outform DER | sha256sum | cut -d' ' -f1)
run "$FV" status flows --phone 201
expect_rc 5 "another key, table"
expect_out_has "201: the registered key (fingerprint $other_fp) is not this key"
run "$FV" register flows --phone 201
expect_rc 0 "register replaces the other key"
run "$FV" status flows --phone 201
expect_rc 0 "status after replacing"
pass "another key: exit 5 naming its fingerprint; register replaces it"

# A status Graph does not document is reported as unknown, not as VALID.
sim_reset
sim_config '{"numbers": {"301": {"status": "PENDING"}}}'
run "$FV" --json register flows --phone 301
expect_rc 5 "unknown status"
json_result 301 '.status == "UNKNOWN" and .matches_local' "unknown status"
run "$FV" status flows --phone 301
expect_rc 5 "unknown status, table"
grep -Eq -- 'UNKNOWN +yes +1 +mismatch \(status "PENDING"\)' <<<"$OUT" || fail "stdout lacks /UNKNOWN +yes +1 +mismatch \(status \"PENDING\"\)/
$OUT"
pass "an unknown status value is reported as UNKNOWN (exit 5)"

# A Graph error and a mismatch in one run: 4 wins.
sim_reset
sim_config '{"numbers": {"401": {"status": "MISMATCH"}}, "faults": [{"phone": "402", "method": "POST", "fault": {"type": "error", "code": 10}}]}'
run "$FV" --json register flows --phone 401 --phone 402 --phone 403
expect_rc 4 "Graph error and mismatch"
json_result 403 '.status == "VALID"' "the healthy number"
pass "a Graph API error wins over a mismatch (exit 4)"
