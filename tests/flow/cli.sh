# flowvault flow decrypt/encrypt: the known-answer vector, exit codes, and the
# serve section's configuration errors.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

flow_setup_keys
flow_config "$T/config.json" '{"keys": ["pywa"]}'
C="--config $T/config.json"

# Known answer: decrypt gives the exact clear bytes.
run "$FV" $C flow decrypt pywa --in "$PYWA/request.json"
expect_rc 0 "flow decrypt of the known-answer request"
[ "$OUT" = "$(cat "$PYWA/request_plaintext.json")" ] || fail "clear request differs: $OUT"
run "$FV" $C flow decrypt pywa <"$PYWA/request.json"
expect_rc 0 "flow decrypt from stdin"
[ "$OUT" = "$(cat "$PYWA/request_plaintext.json")" ] || fail "clear request (stdin) differs"
run "$FV" $C --json flow decrypt pywa --in "$PYWA/request.json"
expect_rc 0 "flow decrypt --json"
[ "$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["key"], d["request"]["flow_token"])' "$OUT")" = "pywa my_flow_token" ] ||
	fail "--json output: $OUT"
pass "known-answer request decrypts to the exact bytes"

# Known answer: encrypt gives the exact response body.
run "$FV" $C flow encrypt pywa --request "$PYWA/request.json" --response "$PYWA/response_plaintext.json"
expect_rc 0 "flow encrypt"
[ "$OUT" = "$(cat "$PYWA/response_body.txt")" ] || fail "response body differs:
got      $OUT
expected $(cat "$PYWA/response_body.txt")"
pass "known-answer response body is byte-identical"

# Undecryptable requests: exit 6 with a reason.
printf 'not json' >"$T/junk.json"
run "$FV" $C flow decrypt pywa --in "$T/junk.json"
expect_rc 6 "flow decrypt of junk"
expect_err_has "cannot be decrypted"
node "$CLIENT" encrypt --pub "$T/stranger.pub" >"$T/stranger.json"
run "$FV" $C flow decrypt pywa --in "$T/stranger.json"
expect_rc 6 "request encrypted to another key"
expect_err_has "RSA-OAEP"
"$PY" - "$PYWA/request.json" "$T/tampered.json" <<'PY'
import base64, json, sys
d = json.load(open(sys.argv[1]))
b = bytearray(base64.b64decode(d["encrypted_flow_data"])); b[0] ^= 1
d["encrypted_flow_data"] = base64.b64encode(b).decode()
json.dump(d, open(sys.argv[2], "w"))
PY
run "$FV" $C flow decrypt pywa --in "$T/tampered.json"
expect_rc 6 "tampered cipher text"
expect_err_has "tag"
run "$FV" $C flow encrypt pywa --request "$T/tampered.json" --response "$PYWA/response_plaintext.json"
expect_rc 6 "flow encrypt with an undecryptable request"
pass "undecryptable requests exit 6"

# Usage and backend errors keep their own codes.
run "$FV" $C flow encrypt pywa --request "$PYWA/request.json"
expect_rc 2 "flow encrypt without --response"
run "$FV" $C flow frobnicate pywa
expect_rc 2 "unknown action"
printf 'nope' >"$T/notjson.txt"
run "$FV" $C flow encrypt pywa --request "$PYWA/request.json" --response "$T/notjson.txt"
expect_rc 2 "response that is not JSON"
PYWA_PASSPHRASE=wrong run "$FV" $C flow decrypt pywa --in "$PYWA/request.json"
expect_rc 3 "wrong passphrase is a backend error, not 6"
run "$FV" $C flow --help
expect_rc 0 "flow --help"
expect_out_has "Exit status 6"
pass "usage errors exit 2, backend errors exit 3"

# The serve section: every field checked, errors name the JSON path.
serve_error() { # serve_error SECTION EXPECTED-TEXT
	flow_config "$T/bad.json" "$1"
	run "$FV" --config "$T/bad.json" serve --check
	expect_rc 2 "serve section $1"
	expect_err_has "$2"
}
serve_error '{"keys": ["pywa"], "lisen": "x"}' "serve.lisen: unknown field"
serve_error '{"keys": ["nope"]}' "serve.keys[0]: no key 'nope'"
serve_error '{"keys": []}' "serve.keys: empty"
serve_error '{}' "serve.keys: missing"
serve_error '{"keys": ["pywa", "pywa"]}' "serve.keys[1]: 'pywa' is listed twice"
serve_error '{"keys": ["pywa"], "listen": "8080"}' "serve.listen: '8080' is not HOST:PORT"
serve_error '{"keys": ["pywa"], "listen": "localhost:99999"}' "serve.listen: 'localhost:99999': port 99999 is out of range (0 to 65535)"
serve_error '{"keys": ["pywa"], "app_secrets": ["hunter2"]}' "serve.app_secrets[0]: secrets cannot be written"
serve_error '{"keys": ["pywa"], "app_secrets": ["env:A", "env:B", "env:C"]}' "serve.app_secrets: at most 2"
serve_error '{"keys": ["pywa"], "upstream": "ftp://x"}' "serve.upstream: 'ftp://x' is not an http"
serve_error '{"keys": ["pywa"], "upstream_timeout_ms": 10000}' "serve.upstream_timeout_ms: 10000 is out of range"
serve_error '{"keys": ["pywa"], "max_body_bytes": "big"}' "serve.max_body_bytes: expected an integer"
serve_error '{"keys": ["pywa"], "cert": "c.pem"}' "serve.key: TLS needs both cert and key"
serve_error '{"keys": ["pywa"], "path": "flows"}' "serve.path: 'flows' must start with '/'"
expect_not_has hunter2 "$T/.err"
flow_config "$T/bad.json" '{"keys": ["pywa"], "app_secrets": ["env:UNSET_SECRET_VAR"]}'
run "$FV" --config "$T/bad.json" serve --check
expect_rc 2 "unset app secret"
expect_err_has "UNSET_SECRET_VAR is not set"
pass "serve section errors name the JSON path (exit 2)"
