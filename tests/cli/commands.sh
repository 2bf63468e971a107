#!/bin/bash
# plugins, keys, generate and pubkey through the real binary: output,
# --json documents and exit codes.
. "$FV_SOURCE_DIR/tests/lib.sh"

export PW='cli test passphrase'
json_check() { # json_check PYTHON_EXPRESSION: true for the one document in $OUT
	python3 -I -c '
import json, sys
doc = json.loads(sys.stdin.read())   # exactly one document, nothing after it
if not eval("(" + sys.argv[1] + ")"):
    sys.exit("not true: " + sys.argv[1])
' "$1" <<<"$OUT" || fail "--json output fails '$1': $OUT"
}

# ---- plugins (no configuration needed) ----
run "$FV" plugins
expect_rc 0 "plugins"
line=$(grep -E '^pem ' <<<"$OUT") || fail "plugins does not list pem: $OUT"
grep -qE '^pem +[0-9]+\.[0-9]+\.[0-9]+ +1\.[0-9]+ +generate,info(,describe)? ' <<<"$line" ||
	fail "pem line lacks version / ABI / capabilities: $line"
expect_out_has "$FV_BUILD_DIR/lib/flowvault/plugins/pem.so"
run "$FV" --json plugins
expect_rc 0 "plugins --json"
json_check 'any(p["name"] == "pem" and p["loaded"] and p["abi_version"].startswith("1.")
	and p["version"] and p["capabilities"][:2] == ["generate", "info"] and p["refused"] is None
	and p["path"].endswith("/lib/flowvault/plugins/pem.so") for p in doc["plugins"])'
json_check '"lib/flowvault/plugins" in doc["search_path"]'
pass "plugins: pem with version, ABI, capabilities; --json is one document"

# A refused plugin is listed with its reason and the fix.
mkdir -m 775 "$T/unsafe-plugins"
cp "$FV_BUILD_DIR/lib/flowvault/plugins/pem.so" "$T/unsafe-plugins/pem.so"
FLOWVAULT_PLUGIN_PATH="$T/unsafe-plugins" run "$FV" plugins
expect_rc 0 "plugins with a refused plugin"
expect_out_has "$T/unsafe-plugins/pem.so"
expect_out_has "refused:"
expect_out_has "writable by its group"
expect_out_has "chmod go-w"
FLOWVAULT_PLUGIN_PATH="$T/unsafe-plugins" run "$FV" --json plugins
json_check 'any(p["path"] == "'"$T/unsafe-plugins/pem.so"'" and not p["loaded"]
	and p["version"] is None and "writable by its group" in p["refused"] for p in doc["plugins"])'
pass "plugins: a plugin in a group-writable directory is listed as refused, with the fix"

# ---- generate, keys, pubkey ----
mkdir -m 700 "$T/keys"
cat >"$T/config.json" <<JSON
{"keys": {
  "flows":   {"provider": "pem", "path": "keys/flows.pem", "passphrase": "env:PW",
              "phone_numbers": ["15550001111"], "waba_id": "102290129340398"},
  "missing": {"provider": "pem", "path": "keys/missing.pem"}
}}
JSON
chmod 600 "$T/config.json"
C=(--config "$T/config.json")

run "$FV" "${C[@]}" generate flows
expect_rc 0 "generate flows"
expect_out_has "generated key 'flows'"
expect_file_mode 600 "$T/keys/flows.pem"
openssl pkey -in "$T/keys/flows.pem" -passin env:PW -pubout >"$T/flows.pub.expected" ||
	fail "openssl cannot read the generated key"
fp=$(openssl pkey -pubin -in "$T/flows.pub.expected" -outform DER | sha256sum | cut -d' ' -f1)
expect_out_has "$fp"
run "$FV" "${C[@]}" generate flows
expect_rc 3 "generate over an existing key"
expect_err_has "already exists"
pass "generate: writes the key, prints its fingerprint; refuses to overwrite (exit 3)"

run "$FV" "${C[@]}" keys
expect_rc 3 "keys with one unreachable key"
grep -qE "^flows +pem +ok +$fp\$" <<<"$OUT" || fail "keys: flows line wrong: $OUT"
grep -qE "^missing +pem +unreachable" <<<"$OUT" || fail "keys: missing line wrong: $OUT"
expect_out_has "no such file"
expect_out_has "15550001111"
expect_out_has "102290129340398"
run "$FV" "${C[@]}" --json keys
expect_rc 3 "keys --json"
json_check '[k["name"] for k in doc["keys"]] == ["flows", "missing"]'
json_check 'doc["keys"][0]["reachable"] is True and doc["keys"][0]["fingerprint_sha256"] == "'"$fp"'"
	and doc["keys"][0]["provider"] == "pem" and doc["keys"][0]["phone_numbers"] == ["15550001111"]'
json_check 'doc["keys"][1]["reachable"] is False and doc["keys"][1]["fingerprint_sha256"] is None
	and "no such file" in doc["keys"][1]["error"]'
pass "keys: reachable with fingerprint, or why not; exit 3 when one is unreachable"

run "$FV" "${C[@]}" pubkey flows
expect_rc 0 "pubkey"
[ "$OUT" = "$(cat "$T/flows.pub.expected")" ] || fail "pubkey differs from openssl pkey -pubout"
run "$FV" "${C[@]}" pubkey flows --out "$T/out.pem"
expect_rc 0 "pubkey --out"
[ -z "$OUT" ] || fail "pubkey --out also printed on stdout: $OUT"
cmp -s "$T/out.pem" "$T/flows.pub.expected" || fail "pubkey --out file differs from openssl"
# --out replaces an existing public key file.
printf 'old\n' >"$T/out.pem"
run "$FV" "${C[@]}" pubkey --out "$T/out.pem" flows
expect_rc 0 "pubkey --out over an old file"
cmp -s "$T/out.pem" "$T/flows.pub.expected" || fail "pubkey --out did not replace the file"
! compgen -G "$T/out.pem?*" >/dev/null || fail "pubkey --out left temporary files: $(ls "$T")"
run "$FV" "${C[@]}" pubkey flows --out "$T/no/such/dir/out.pem"
expect_rc 1 "pubkey --out into a missing directory"
expect_err_has "$T/no/such/dir/out.pem"
pass "pubkey and pubkey --out FILE: byte-identical to openssl pkey -pubout"

run "$FV" "${C[@]}" pubkey flows --json
expect_rc 0 "pubkey --json (option after the command)"
json_check 'set(doc) == {"key", "provider", "pem", "fingerprint_sha256"}'
json_check 'doc["key"] == "flows" and doc["provider"] == "pem" and doc["fingerprint_sha256"] == "'"$fp"'"'
json_check 'doc["pem"] == open("'"$T/flows.pub.expected"'").read()'
run "$FV" "${C[@]}" --json pubkey missing
expect_rc 3 "pubkey --json of an unreachable key"
expect_err_has "no such file"
pass "pubkey --json: exactly the documented members; errors on stderr"

# -q keeps stderr quiet on success; -v does not break stdout.
run "$FV" "${C[@]}" -q pubkey flows --out "$T/q.pem"
expect_rc 0 "pubkey -q"
[ -z "$ERR" ] || fail "-q still wrote to stderr: $ERR"
run "$FV" "${C[@]}" -v -v pubkey flows
expect_rc 0 "pubkey -v -v"
[ "$OUT" = "$(cat "$T/flows.pub.expected")" ] || fail "-v changed stdout"
expect_not_has "$PW" "$T/.out" "$T/.err"
pass "-q and -v; the passphrase never appears in output"
