#!/bin/bash
# --json prints exactly one JSON document on stdout for every command and
# every failure; a failure's document is {"error": {"status", "message",
# "exit_code"}} with the process's exit code, and the message also goes to
# stderr for people.
. "$FV_SOURCE_DIR/tests/lib.sh"

export PW='json test passphrase'
mkdir -m 700 "$T/keys"
cat >"$T/config.json" <<JSON
{"keys": {
  "flows":   {"provider": "pem", "path": "keys/flows.pem", "passphrase": "env:PW"},
  "missing": {"provider": "pem", "path": "keys/missing.pem"}
}}
JSON
chmod 600 "$T/config.json"
export FLOWVAULT_CONFIG=$T/config.json
"$FV" generate flows >/dev/null || fail "generate flows"
printf '{"keys": {}}\n' >"$T/empty.json"
chmod 600 "$T/empty.json"
: >"$T/empty-input"

# json_case RC "ARGS...": flowvault --json ARGS exits RC with one document;
# a failure's error object carries the same exit code.
json_case() {
	local want=$1
	shift
	run "$FV" --json "$@"
	expect_rc "$want" "--json $*"
	"$PYTHON" -I -c '
import json, sys
text, rc = sys.stdin.read(), int(sys.argv[1])
try:
    doc = json.loads(text)  # one document and nothing after it
except ValueError as e:
    sys.exit("not exactly one JSON document (%s): %r" % (e, text))
if not isinstance(doc, dict):
    sys.exit("not an object: %r" % text)
err = doc.get("error")
if isinstance(err, dict):
    if err.get("exit_code") != rc or not err.get("message") or not err.get("status"):
        sys.exit("error object does not match exit %d: %r" % (rc, err))
elif rc != 0 and not ({"keys", "checks", "results", "rotation"} & set(doc)):
    sys.exit("exit %d without an error object: %r" % (rc, doc))
' "$want" <<<"$OUT" || fail "--json $*: $OUT"
}

# Before any command: unknown commands and options, missing values.
json_case 2 kyes
expect_err_has "did you mean 'keys'"
json_case 2 --jsn keys
json_case 2 --config
json_case 2
json_case 2 help nosuch
json_case 0 help
json_case 0 help keys
json_case 0 keys --help
json_case 0 version
json_case 0 --version
pass "--json: usage errors, help and version are one document each"

# Each command, succeeding and failing.
json_case 0 plugins
json_case 2 plugins extra
json_case 3 keys
json_case 2 keys extra
json_case 0 pubkey flows
json_case 2 pubkey
json_case 2 pubkey flows --out
json_case 2 pubkey flows --bogus
json_case 2 pubkey nosuch
json_case 3 pubkey missing
json_case 3 generate flows
json_case 2 generate
json_case 2 --config "$T/nonexistent.json" keys
json_case 2 register
json_case 2 status flows
json_case 2 rotate
json_case 2 rotate --finsh x
json_case 2 serve --bogus
json_case 3 doctor
json_case 2 flow decrpyt flows
expect_err_has "did you mean 'decrypt'"
json_case 6 flow decrypt flows --in "$FV_SOURCE_DIR/tests/vectors/pywa-flows/request.json"
json_case 2 flow decrypt flows --in "$T/nonexistent.json"
json_case 2 flow decrypt flows --in "$T/empty-input"
expect_err_has "empty input"
json_case 2 flow encrypt flows --request "$T/empty-input"
pass "--json: every command, on success and on failure, prints one document"

# Without --json, nothing on stdout for a failure; the message on stderr.
run "$FV" flow decrypt flows --in "$FV_SOURCE_DIR/tests/vectors/pywa-flows/request.json"
expect_rc 6 "flow decrypt of another key's request"
[ -z "$OUT" ] || fail "a failure printed on stdout: $OUT"
expect_err_has "cannot be decrypted"
run "$FV" flow decrypt flows </dev/null
expect_rc 2 "flow decrypt of empty stdin"
expect_err_has "standard input': empty input"
pass "without --json: failures on stderr only"
