#!/bin/bash
# Every key file the PEM provider must refuse is refused with the documented
# exit code and a message that says what is wrong and what to do.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

K=$T/keys
mkdir -m 700 "$K"
new_rsa "$K/good.pem"
openssl pkey -in "$K/good.pem" -aes256 -passout env:PW -out "$K/pkcs8-enc.pem"
openssl rsa -in "$K/good.pem" -traditional -aes256 -passout env:PW \
	-out "$K/pkcs1-enc.pem" 2>/dev/null
openssl genrsa -out "$K/rsa1024.pem" 1024 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$K/ec-pkcs8.pem"
openssl ecparam -name prime256v1 -genkey -noout -out "$K/ec-sec1.pem"
openssl pkey -in "$K/ec-pkcs8.pem" -aes256 -passout env:PW -out "$K/ec-enc.pem"
openssl genpkey -algorithm ED25519 -out "$K/ed25519.pem"
# RSA-PSS keys are RSA keys restricted to signing: no OAEP.
openssl genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 -out "$K/rsa-pss.pem" 2>/dev/null
openssl pkey -in "$K/good.pem" -pubout -out "$K/public.pem"
size=$(stat -c %s "$K/good.pem")
head -c $((size / 2)) "$K/good.pem" >"$K/truncated.pem"
head -c $((size - 40)) "$K/good.pem" >"$K/no-end.pem"      # END line cut off
head -c 1200 /dev/urandom >"$K/garbage.pem"
printf 'just some text\n' >"$K/text.pem"
: >"$K/empty.pem"
# OpenSSH's own format (no need for ssh-keygen: the label is what counts).
printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n' >"$K/openssh.pem"
chmod 600 "$K"/*.pem
mkdir -m 700 "$K/dir.pem"
mkfifo -m 600 "$K/fifo.pem"   # must be refused, not block the reader

key() { # key NAME FILE [PASSREF]: one key entry
	if [ -n "${3:-}" ]; then
		printf '"%s": {"provider": "pem", "path": "%s", "passphrase": "%s"}' "$1" "$2" "$3"
	else
		printf '"%s": {"provider": "pem", "path": "%s"}' "$1" "$2"
	fi
}
write_config "$T/config.json" "{
  $(key good "$K/good.pem"),
  $(key wrong-p8 "$K/pkcs8-enc.pem" env:WRONG),
  $(key wrong-p1 "$K/pkcs1-enc.pem" env:WRONG),
  $(key nopass-p8 "$K/pkcs8-enc.pem"),
  $(key nopass-p1 "$K/pkcs1-enc.pem"),
  $(key unset-var "$K/pkcs8-enc.pem" env:FV_TEST_NOT_SET),
  $(key rsa1024 "$K/rsa1024.pem"),
  $(key ec-pkcs8 "$K/ec-pkcs8.pem"),
  $(key ec-sec1 "$K/ec-sec1.pem"),
  $(key ec-enc "$K/ec-enc.pem" env:PW),
  $(key ed25519 "$K/ed25519.pem"),
  $(key rsa-pss "$K/rsa-pss.pem"),
  $(key public "$K/public.pem"),
  $(key truncated "$K/truncated.pem"),
  $(key no-end "$K/no-end.pem"),
  $(key garbage "$K/garbage.pem"),
  $(key text "$K/text.pem"),
  $(key empty "$K/empty.pem"),
  $(key openssh "$K/openssh.pem"),
  $(key directory "$K/dir.pem"),
  $(key fifo "$K/fifo.pem"),
  $(key missing "$K/nonexistent.pem")
}"
export WRONG='not the passphrase'
unset FV_TEST_NOT_SET

# refused NAME EXIT TEXT...: `pubkey NAME` exits EXIT, stderr has every TEXT,
# stdout is empty.
refused() {
	local name=$1 code=$2 text
	shift 2
	run "$FV" --config "$T/config.json" pubkey "$name"
	expect_rc "$code" "pubkey $name"
	[ -z "$OUT" ] || fail "pubkey $name printed something on stdout: $OUT"
	expect_err_has "key '$name' (pem)"
	for text in "$@"; do
		expect_err_has "$text"
	done
}

run "$FV" --config "$T/config.json" pubkey good
expect_rc 0 "the control key"

refused wrong-p8 3 "keys.wrong-p8.passphrase" "wrong passphrase" "encrypted PKCS#8"
refused wrong-p1 3 "keys.wrong-p1.passphrase" "wrong passphrase" "encrypted PKCS#1"
for name in wrong-p8 wrong-p1; do
	run "$FV" --config "$T/config.json" pubkey "$name"
	! grep -qi "not a PEM" <<<"$ERR" || fail "$name: a wrong passphrase is reported as a bad file: $ERR"
	expect_not_has "$WRONG" "$T/.err" "$T/.out"
done
pass "wrong passphrase: exit 3, says passphrase (PKCS#8 and PKCS#1), never echoes it"

refused nopass-p8 2 "is encrypted" 'set "passphrase" in keys.nopass-p8'
refused nopass-p1 2 "is encrypted" 'set "passphrase" in keys.nopass-p1'
pass "encrypted key without a passphrase: exit 2, says to set passphrase"

refused unset-var 2 "FV_TEST_NOT_SET"
pass "passphrase variable not set: exit 2, names the variable"

refused rsa1024 3 "1024-bit RSA key" "2048"
pass "1024-bit RSA: refused"

refused ec-pkcs8 3 "non-RSA" "EC" "RSA-2048"
refused ec-sec1 3 "non-RSA" "EC PRIVATE KEY"
refused ec-enc 3 "non-RSA" "EC"
refused ed25519 3 "non-RSA" "ED25519"
refused rsa-pss 3 "non-RSA" "RSA-PSS"
pass "EC keys (PKCS#8, SEC1, encrypted), Ed25519, RSA-PSS: refused as not RSA"

refused public 3 "not a PEM private key" "PUBLIC KEY"
refused truncated 3 "not a PEM private key" "truncated or damaged"
refused no-end 3 "not a PEM private key"
refused garbage 3 "not a PEM private key"
refused text 3 "not a PEM private key"
refused empty 3 "not a PEM private key"
refused openssh 3 "OpenSSH" "ssh-keygen"
refused directory 3 "not a regular file"
refused fifo 3 "not a regular file"
pass "truncated, damaged, empty, public-only, OpenSSH, directory, FIFO: refused"

refused missing 3 "keys.missing.path" "no such file" "$K/nonexistent.pem" "flowvault generate missing"
pass "missing file: exit 3, names keys.missing.path"

# File permissions: a private key readable or writable by others is refused.
for mode in 640 604 644; do
	chmod "$mode" "$K/good.pem"
	refused good 3 "keys.good.path" "mode $mode" "chmod 600 '$K/good.pem'" "allow_group_readable"
done
chmod 620 "$K/good.pem"
refused good 3 "writable by its group" "chmod 600"
chmod 600 "$K/good.pem"
pass "key file readable or writable by group/others: exit 3 with the chmod fix"

# allow_group_readable relaxes reading, for mounts whose mode cannot be fixed,
# but never writing.
write_config "$T/allow.json" "{
  \"k\": {\"provider\": \"pem\", \"path\": \"$K/good.pem\", \"allow_group_readable\": true},
  \"off\": {\"provider\": \"pem\", \"path\": \"$K/good.pem\", \"allow_group_readable\": false}}"
openssl_pubout "$K/good.pem" >"$T/good.expected"
for mode in 640 644 444; do
	chmod "$mode" "$K/good.pem"
	run "$FV" --config "$T/allow.json" pubkey k
	expect_rc 0 "allow_group_readable with mode $mode"
	[ "$OUT" = "$(cat "$T/good.expected")" ] || fail "allow_group_readable: wrong key"
	run "$FV" --config "$T/allow.json" pubkey off
	expect_rc 3 "allow_group_readable false with mode $mode"
done
chmod 660 "$K/good.pem"
run "$FV" --config "$T/allow.json" pubkey k
expect_rc 3 "allow_group_readable with a group-writable file"
expect_err_has "writable by its group"
chmod 600 "$K/good.pem"
pass "allow_group_readable: accepts group/other-readable, still refuses writable"

# Configuration mistakes in a pem entry are configuration errors (exit 2).
write_config "$T/bad.json" "{
  \"typo\": {\"provider\": \"pem\", \"path\": \"$K/good.pem\", \"passwd\": \"env:PW\"},
  \"literal\": {\"provider\": \"pem\", \"path\": \"$K/pkcs8-enc.pem\", \"passphrase\": \"hunter2-literal\"},
  \"allow-type\": {\"provider\": \"pem\", \"path\": \"$K/good.pem\", \"allow_group_readable\": \"yes\"},
  \"path-type\": {\"provider\": \"pem\", \"path\": 42},
  \"no-path\": {\"provider\": \"pem\"}}"
run "$FV" --config "$T/bad.json" pubkey typo
expect_rc 2 "unknown field"
expect_err_has "keys.typo.passwd: unknown field"
run "$FV" --config "$T/bad.json" pubkey literal
expect_rc 2 "literal passphrase"
expect_err_has "keys.literal.passphrase"
expect_not_has "hunter2-literal" "$T/.err" "$T/.out"
run "$FV" --config "$T/bad.json" pubkey allow-type
expect_rc 2 "allow_group_readable type"
expect_err_has "keys.allow-type.allow_group_readable: expected a boolean"
run "$FV" --config "$T/bad.json" pubkey path-type
expect_rc 2 "path type"
expect_err_has "keys.path-type.path: expected a string"
run "$FV" --config "$T/bad.json" pubkey no-path
expect_rc 2 "missing path"
expect_err_has "keys.no-path.path: missing"
pass "pem entry: unknown field, literal secret, wrong types, missing path: exit 2"

# `keys` lists every key, saying why each unreachable one is.
run "$FV" --config "$T/config.json" keys
expect_rc 3 "keys with unreachable keys"
expect_out_has "wrong passphrase"
expect_out_has "1024-bit"
expect_out_has "no such file"
[ "$(grep -c unreachable <<<"$OUT")" = 21 ] || fail "expected 21 unreachable keys: $OUT"
pass "keys: each unreachable key with its reason"
