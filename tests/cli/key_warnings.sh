#!/bin/bash
# Key properties that weaken a key (issue: weak keys used silently): `keys`
# and `doctor` show each as a warning, as text and as structured JSON, and a
# key that require_non_extractable refuses is shown as refused with the
# reason. doctor also warns about serve.allow_unsigned.
. "$FV_SOURCE_DIR/tests/lib.sh"

PLUGINS=$FV_BUILD_DIR/tests/cli-plugins
[ -f "$PLUGINS/described.so" ] || fail "described.so is not built"
jq_true() { # jq_true FILTER "what": the one JSON document in $OUT satisfies FILTER
	jq -e "$1" <<<"$OUT" >/dev/null || fail "$2: '$1' is false for: $OUT"
}

mkdir -m 700 "$T/keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/keys/k.pem" 2>/dev/null
chmod 600 "$T/keys/k.pem"
# FV_KEY_PROP_*: 1 extractable, 2 sensitive, 4 always sensitive, 8 never
# extractable, 16 generated inside, 32 can sign.
cat >"$T/config.json" <<JSON
{"plugin_path": ["$PLUGINS"],
 "keys": {
  "clean":      {"provider": "described", "path": "keys/k.pem", "properties": 30},
  "signing":    {"provider": "described", "path": "keys/k.pem", "properties": 62},
  "exportable": {"provider": "described", "path": "keys/k.pem", "properties": 19},
  "accepted":   {"provider": "described", "path": "keys/k.pem", "properties": 19,
                 "require_non_extractable": false}
 },
 "serve": {"listen": "127.0.0.1:1", "keys": ["clean"], "app_secrets": ["env:APP_SECRET"]}}
JSON
chmod 600 "$T/config.json"
export FLOWVAULT_CONFIG=$T/config.json APP_SECRET=not-a-real-secret

run "$FV" keys
expect_rc 3 "keys with a refused key"
grep -qE '^clean +described +ok +[0-9a-f]{64}$' <<<"$OUT" || fail "clean is not ok: $OUT"
grep -qE '^signing +described +ok ' <<<"$OUT" || fail "signing is not ok: $OUT"
grep -qE '^exportable +described +refused +[0-9a-f]{64}$' <<<"$OUT" || fail "exportable is not refused: $OUT"
grep -qE '^accepted +described +ok ' <<<"$OUT" || fail "accepted is not ok: $OUT"
expect_out_has "warning (can-sign): the key can also sign"
expect_out_has "warning (extractable, refused): the key can be exported"
expect_out_has "refused: key 'exportable' (described): refusing a key that can leave its store"
expect_out_has "file: $T/keys/k.pem, 2048 bits, OAEP in host"
# The key the configuration accepts shows its warnings, not as refused.
sed -n '/^accepted /,$p' <<<"$OUT" | grep -qF "warning (extractable): the key can be exported" ||
	fail "accepted key lacks its warning: $OUT"
pass "keys: warnings per property; a refused key is 'refused' with the reason; exit 3"

run "$FV" --json keys
expect_rc 3 "keys --json"
jq_true '[.keys[].state] == ["ok", "ok", "refused", "ok"]' "states"
jq_true '.keys[0] | .warnings == [] and .oaep == "host" and .backend == "file" and .bits == 2048
	and .location == "'"$T/keys/k.pem"'" and .remote_id == null and .error == null
	and .properties.extractable == false and .properties.generated_inside == true
	and (.fingerprint_sha256 | test("^[0-9a-f]{64}$")) and .require_non_extractable == true' "clean key"
jq_true '.keys[1].warnings == [{"property": "can-sign", "message": "the key can also sign: it should be used for decryption only", "refused": false}]' "signing key"
jq_true '.keys[2] | .reachable and (.error | contains("refusing a key that can leave its store"))
	and ([.warnings[] | select(.refused) | .property] | index("extractable") != null)' "refused key"
jq_true '.keys[3] | .state == "ok" and .require_non_extractable == false and .error == null
	and any(.warnings[]; .property == "extractable" and .refused)' "accepted key"
pass "keys --json: state, oaep, backend, location, bits, properties and warnings as fields"

run "$FV" doctor
expect_rc 3 "doctor with a refused key"
expect_out_has "[warn] key      signing: can-sign: the key can also sign"
expect_out_has "[FAIL] key      exportable: key 'exportable' (described): refusing a key"
expect_out_has "[warn] key      accepted: extractable: the key can be exported"
run "$FV" --json doctor
expect_rc 3 "doctor --json"
jq_true 'any(.checks[]; .check == "key" and .subject == "exportable" and .status == "fail"
	and .state == "refused" and .exit_code == 3 and (.fix | contains("require_non_extractable")))' "refused key"
jq_true 'any(.checks[]; .check == "key" and .subject == "signing" and .status == "warn"
	and .warning.property == "can-sign" and .warning.refused == false)' "warning"
jq_true 'any(.checks[]; .check == "key" and .subject == "clean" and .status == "ok"
	and (.fingerprint_sha256 | test("^[0-9a-f]{64}$")))' "fingerprint as a field"
jq_true 'all(.checks[]; .check != "key" or .subject != "exportable" or .status != "ok")' "refused key not ok"
pass "doctor: a warning per property, the refused key fails with the reason"

# serve.allow_unsigned (the serve section's switch for unsigned requests).
jq '.serve.allow_unsigned = true | del(.serve.app_secrets)' "$T/config.json" >"$T/unsigned.json"
chmod 600 "$T/unsigned.json"
run "$FV" --config "$T/unsigned.json" doctor
if grep -qF "allow_unsigned: unknown field" <<<"$OUT$ERR"; then
	pass "skipped: this build's serve section has no allow_unsigned yet"
	exit 0
fi
expect_out_has "[warn] serve    serve.allow_unsigned: is true: requests are served without checking"
expect_out_has "fix: list the Meta app secret in serve.app_secrets"
run "$FV" --config "$T/unsigned.json" --json doctor
jq_true 'any(.checks[]; .check == "serve" and .subject == "serve.allow_unsigned" and .status == "warn")' "allow_unsigned"
pass "doctor warns when serve.allow_unsigned is true"

# Tables size their columns to the content; on a terminal a wide last
# column is cut with an ellipsis, into a pipe never.
jq '.keys["a-key-name-longer-than-any-column-width"] = .keys.clean' "$T/config.json" >"$T/long.json"
chmod 600 "$T/long.json"
run "$FV" --config "$T/long.json" keys
awk 'NR == 1 { want = index($0, "STATE") } /^[a-z]/ { if (index($0, $3) != want) bad = 1 }
	END { exit bad || !want }' <<<"$OUT" || fail "the STATE column is not aligned: $OUT"
grep -qE '^a-key-name-longer-than-any-column-width +described +ok +[0-9a-f]{64}$' <<<"$OUT" ||
	fail "a long name's row is cut or misaligned: $OUT"
if command -v script >/dev/null; then
	run script -qec "stty cols 80; '$FV' --config '$T/long.json' keys" /dev/null </dev/null
	grep -q '…' <<<"$OUT" || fail "no ellipsis on an 80-column terminal: $OUT"
	! grep -qE '[0-9a-f]{64}' <<<"$OUT" || fail "a full fingerprint on an 80-column terminal: $OUT"
fi
pass "tables: columns as wide as their content; cut with an ellipsis on a terminal only"
