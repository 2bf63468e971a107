# A WABA's phone numbers over several pages: 250 numbers over 3 pages, short
# pages that are not the end, paging links to other servers, unknown WABAs.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

start_sim
make_key flows
write_config '[]' '"max_in_flight": 16' '"waba_id": "102290129340398"'
sim_config '{"wabas": {"102290129340398": {"count": 250, "first_id": 200000000000000, "page_size": 100}}}'

run "$FV" --json register flows
expect_rc 0 "register on a 250-number WABA"
expect_count 3 GET phone_numbers "" "three listing pages"
expect_count 250 POST whatsapp_business_encryption "" "250 uploads"
expect_count 250 GET whatsapp_business_encryption "" "250 read-backs"
jcheck '(.results | length) == 250 and ([.results[].phone_number_id] | unique | length) == 250' "250 distinct results"
jcheck '[.results[].phone_number_id] == [range(250) | 200000000000000 + . | tostring]' "results in WABA order"
jcheck 'all(.results[]; .registered and .status == "VALID" and .matches_local and .error == null)' "all VALID"
sim_ctl GET /_sim/log | jq -e '[.requests[] | select(.kind == "phone_numbers") | .query]
	| (.[0] | startswith("fields=id,display_phone_number,verified_name,status&limit=100"))
	  and (.[1] | contains("after=")) and (.[2] | contains("after="))' >/dev/null ||
	fail "listing requests lack the documented fields/limit or the cursor"
pass "250 numbers from a WABA over 3 pages registered"

# Pages shorter than the limit are not the end: only a missing paging.next is.
sim_reset
sim_config '{"wabas": {"102290129340398": {"count": 250, "first_id": 200000000000000, "page_size": 90}}}'
run "$FV" --json status flows --waba 102290129340398 --phone 200000000000005 --phone 7
expect_rc 5 "status over short pages (nothing registered after reset)"
expect_count 3 GET phone_numbers "" "three short pages"
jcheck '(.results | length) == 251 and .results[0].phone_number_id == "200000000000005" and .results[1].phone_number_id == "7"' "explicit numbers first, duplicates dropped"
jcheck 'all(.results[]; .registered == false and .error == null)' "none registered after reset"
pass "short pages followed to the end; numbers deduplicated"

run "$FV" --json register flows --dry-run
expect_rc 0 "dry run lists the WABA"
jcheck '(.phone_number_ids | length) == 250' "dry run shows 250 numbers"
expect_count 0 POST "" "" "dry run uploads nothing"
pass "--dry-run lists a WABA's numbers, uploads nothing"

# A next-page link to another server must not receive the token.
sim_reset
sim_config '{"wabas": {"555": {"count": 150, "next_origin": "https://127.0.0.2:1"}}}'
run "$FV" register flows --waba 555
expect_rc 4 "paging to another server"
expect_err_has "refusing to send the access token there"
pass "a next-page link to another server is refused"

run "$FV" register flows --waba 999
expect_rc 4 "unknown WABA"
expect_err_has "WABA 999: listing its phone numbers failed: Graph API error 100"
expect_count 0 POST "" "" "nothing uploaded for an unknown WABA"
pass "an unknown WABA: exit 4 with code 100 and what to do"

sim_config '{"wabas": {"556": {"count": 0}}}'
run "$FV" register flows --waba 556
expect_rc 2 "empty WABA"
expect_err_has "WABA 556 has no phone numbers"
pass "an empty WABA: nothing to do, exit 2"
