#!/bin/bash
# The configuration is strict JSON and its key names are safe to send:
#  - a duplicate member (two "serve" objects, the second without
#    app_secrets) is refused, naming the member and both lines; so are
#    comments and trailing commas; `doctor` reports such a file as invalid;
#  - key names are [A-Za-z0-9._-]{1,64} (they go into an HTTP header);
#  - relative file: references of the core's own secret fields
#    (serve.app_secrets) are relative to the configuration's directory.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

mkdir -m 700 "$T/keys" "$T/cfg" "$T/cfg/secrets"
new_rsa "$T/keys/flows.pem"
KEY="{\"provider\": \"pem\", \"path\": \"$T/keys/flows.pem\"}"

cfg() { # cfg NAME TEXT: $T/cfg/NAME, mode 0600
	printf '%s\n' "$2" >"$T/cfg/$1"
	chmod 600 "$T/cfg/$1"
}
invalid() { # invalid NAME TEXT...: keys and doctor refuse it with exit 2, naming TEXT
	local name=$1 text
	shift
	run "$FV" --config "$T/cfg/$name" keys
	expect_rc 2 "$name"
	for text in "$@"; do expect_err_has "$text"; done
	run "$FV" --config "$T/cfg/$name" doctor
	expect_rc 2 "doctor on $name"
	for text in "$@"; do expect_out_has "$text"; done
}

# ---- the control: a strict, valid file ----
cfg good.json "{
  \"keys\": {\"flows\": $KEY},
  \"serve\": {\"listen\": \"127.0.0.1:1\", \"keys\": [\"flows\"], \"app_secrets\": [\"env:APP\"]}
}"
run "$FV" --config "$T/cfg/good.json" keys
expect_rc 0 "a valid configuration"

# ---- duplicate members ----
cfg dup-serve.json "{
  \"keys\": {\"flows\": $KEY},
  \"serve\": {
    \"listen\": \"127.0.0.1:1\",
    \"keys\": [\"flows\"],
    \"app_secrets\": [\"env:APP\"]
  },
  \"serve\": {
    \"listen\": \"127.0.0.1:1\",
    \"keys\": [\"flows\"]
  }
}"
invalid dup-serve.json "serve: duplicate member (first at line 3, again at line 8)"
cfg dup-nested.json "{\"keys\": {\"flows\": $KEY,
\"flows\": $KEY}}"
invalid dup-nested.json "keys.flows: duplicate member (first at line 1, again at line 2)"
cfg dup-field.json "{\"keys\": {\"flows\": {\"provider\": \"pem\", \"path\": \"$T/keys/flows.pem\", \"path\": \"/x\"}}}"
invalid dup-field.json "keys.flows.path: duplicate member"
# The same name written with an escape is the same member.
cfg dup-escaped.json "{\"keys\": {\"flows\": $KEY}, \"keys\": {}, \"\\u0073erve\": {}, \"serve\": {}}"
invalid dup-escaped.json "duplicate member"
cfg dup-array.json "{\"plugin_path\": [\"/a\", \"/a\"], \"keys\": {\"a\": {\"provider\": \"pem\", \"x\": [{\"k\": 1, \"k\": 2}]}}}"
invalid dup-array.json "keys.a.x[0].k: duplicate member"
pass "duplicate members refused, naming the member and both lines (doctor too)"

# ---- comments, trailing commas, other extensions ----
cfg comment.json "{
  // the production key
  \"keys\": {\"flows\": $KEY}
}"
invalid comment.json "comment.json:2" "comments are not allowed"
cfg block-comment.json "{\"keys\": {\"flows\": $KEY} /* here */}"
invalid block-comment.json "comments are not allowed"
cfg comma-object.json "{\"keys\": {\"flows\": $KEY,},}"
invalid comma-object.json "trailing comma"
cfg comma-array.json "{\"plugin_path\": [\"/a\",], \"keys\": {\"flows\": $KEY}}"
invalid comma-array.json "trailing comma"
cfg single-quote.json "{'keys': {}}"
invalid single-quote.json "not valid JSON"
cfg nan.json "{\"keys\": {\"flows\": {\"provider\": \"pem\", \"path\": \"$T/keys/flows.pem\", \"x\": NaN}}}"
invalid nan.json "not valid JSON"
pass "comments, trailing commas, single quotes and NaN refused"

# ---- key names ----
for name in 'has space' 'crlf\r\nX-Injected: 1' 'slash/name' 'é' \
	"$(printf 'k%.0s' {1..65})" ''; do
	cfg badname.json "{\"keys\": {\"$name\": $KEY}}"
	invalid badname.json "not a valid key name" "letters, digits"
	! grep -q '^X-Injected' "$T/.out" "$T/.err" || fail "a key name's line break was echoed"
done
name64=$(printf 'k%.0s' {1..64})
cfg goodnames.json "{\"keys\": {\"flows-2.prod_A\": $KEY, \"$name64\": $KEY}}"
run "$FV" --config "$T/cfg/goodnames.json" keys
expect_rc 0 "key names of letters, digits, . _ - up to 64"
pass "key names outside [A-Za-z0-9._-]{1,64} refused at load"

# ---- relative file: references of serve.app_secrets ----
printf 'relative-app-secret\n' >"$T/cfg/secrets/app"
chmod 600 "$T/cfg/secrets/app"
cfg relsecret.json "{
  \"keys\": {\"flows\": $KEY},
  \"serve\": {\"listen\": \"127.0.0.1:1\", \"keys\": [\"flows\"], \"app_secrets\": [\"file:secrets/app\"]}
}"
cd /
run "$FV" --config "$T/cfg/relsecret.json" doctor
cd - >/dev/null
grep -q '^\[ok\] *serve' <<<"$OUT" ||
	fail "doctor run from / cannot resolve app_secrets file:secrets/app: $OUT"
expect_rc 0 "doctor run from / with a relative app secret"
pass "a relative file: app secret is resolved against the configuration's directory"
