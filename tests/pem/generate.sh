#!/bin/bash
# `flowvault generate` with the PEM provider: RSA-2048 in encrypted PKCS#8
# (PBES2, PBKDF2, AES-256-CBC), mode 0600, never over an existing file, and
# nothing left behind when it fails.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

D=$T/store
mkdir -m 700 "$D"
write_config "$T/config.json" "{
  \"flows\":   {\"provider\": \"pem\", \"path\": \"store/flows.pem\", \"passphrase\": \"env:PW\"},
  \"taken\":   {\"provider\": \"pem\", \"path\": \"store/taken.pem\", \"passphrase\": \"env:PW\"},
  \"nopass\":  {\"provider\": \"pem\", \"path\": \"store/nopass.pem\"},
  \"unset\":   {\"provider\": \"pem\", \"path\": \"store/unset.pem\", \"passphrase\": \"env:FV_TEST_NOT_SET\"},
  \"empty\":   {\"provider\": \"pem\", \"path\": \"store/empty.pem\", \"passphrase\": \"env:EMPTY\"},
  \"nodir\":   {\"provider\": \"pem\", \"path\": \"store/no/such/dir/k.pem\", \"passphrase\": \"env:PW\"},
  \"json\":    {\"provider\": \"pem\", \"path\": \"store/json.pem\", \"passphrase\": \"env:PW\"}
}"
unset FV_TEST_NOT_SET
export EMPTY=

run "$FV" --config "$T/config.json" generate flows
expect_rc 0 "generate flows"
K=$D/flows.pem
[ -f "$K" ] || fail "generate did not write $K"
expect_file_mode 600 "$K"
[ "$(head -n1 "$K")" = "-----BEGIN ENCRYPTED PRIVATE KEY-----" ] ||
	fail "generated file is not encrypted PKCS#8: $(head -n1 "$K")"
[ "$(ls -A "$D")" = flows.pem ] || fail "files left beside the key: $(ls -A "$D")"
pass "generate: one file, mode 0600, encrypted PKCS#8"

# The encryption is PBES2 with PBKDF2 (HMAC-SHA256) and AES-256-CBC.
asn1=$(openssl asn1parse -in "$K")
for what in ":PBES2" ":PBKDF2" ":hmacWithSHA256" ":aes-256-cbc"; do
	grep -qF -- "$what" <<<"$asn1" || fail "generated key lacks $what:
$asn1"
done
# OpenSSL reads it with the passphrase, and not without it.
text=$(openssl pkey -in "$K" -passin env:PW -noout -text) ||
	fail "openssl pkey -passin cannot read the generated key"
grep -q "Private-Key: (2048 bit" <<<"$text" || fail "generated key is not RSA-2048"
grep -q "publicExponent: 65537" <<<"$text" || fail "generated key's exponent is not 65537"
! openssl pkey -in "$K" -passin pass:wrong -noout 2>/dev/null ||
	fail "the generated key opens with a wrong passphrase"
pass "generate: PBES2/PBKDF2-HMAC-SHA256/AES-256-CBC, RSA-2048, e=65537"

# The printed fingerprint is that of the key on disk, and pubkey matches openssl.
openssl_pubout "$K" >"$T/flows.expected"
expect_out_has "$(spki_sha256 "$T/flows.expected")"
run "$FV" --config "$T/config.json" pubkey flows
expect_rc 0 "pubkey of the generated key"
[ "$OUT" = "$(cat "$T/flows.expected")" ] || fail "pubkey of the generated key differs from openssl"
pass "generate: fingerprint printed, pubkey equals openssl pkey -pubout"

# Never over an existing file: neither our key nor anything else.
sha_before=$(sha256sum "$K")
ino_before=$(stat -c '%i %Y %a' "$K")
run "$FV" --config "$T/config.json" generate flows
expect_rc 3 "generate over an existing key"
expect_err_has "already exists"
expect_err_has "$K"
[ "$(sha256sum "$K")" = "$sha_before" ] || fail "existing key was changed"
[ "$(stat -c '%i %Y %a' "$K")" = "$ino_before" ] || fail "existing key was replaced"
printf 'precious data\n' >"$D/taken.pem"
chmod 644 "$D/taken.pem"
run "$FV" --config "$T/config.json" generate taken
expect_rc 3 "generate over an unrelated file"
expect_err_has "already exists"
[ "$(cat "$D/taken.pem")" = "precious data" ] || fail "unrelated file was changed"
expect_file_mode 644 "$D/taken.pem"
ln -s "$T/nowhere" "$D/dangling.pem"
write_config "$T/link.json" "{\"l\": {\"provider\": \"pem\", \"path\": \"$D/dangling.pem\", \"passphrase\": \"env:PW\"}}"
run "$FV" --config "$T/link.json" generate l
expect_rc 3 "generate over a dangling symbolic link"
[ ! -e "$T/nowhere" ] || fail "generate wrote through a dangling symbolic link"
rm "$D/dangling.pem"
pass "generate: refuses existing files and links, leaves them byte-identical"

listing_before=$(ls -A "$D")
run "$FV" --config "$T/config.json" generate nopass
expect_rc 2 "generate without a passphrase"
expect_err_has "passphrase"
run "$FV" --config "$T/config.json" generate unset
expect_rc 2 "generate with an unset passphrase variable"
expect_err_has "FV_TEST_NOT_SET"
run "$FV" --config "$T/config.json" generate empty
expect_rc 2 "generate with an empty passphrase"
expect_err_has "empty"
run "$FV" --config "$T/config.json" generate nodir
expect_rc 3 "generate into a missing directory"
[ "$(ls -A "$D")" = "$listing_before" ] || fail "a failed generate left files: $(ls -A "$D")"
pass "generate: no passphrase / unset / empty / missing dir: refused, nothing written"

run "$FV" --config "$T/config.json" --json generate json
expect_rc 0 "generate --json"
openssl_pubout "$D/json.pem" >"$T/json.expected"
json_expect key=json provider=pem "pem=@$T/json.expected" \
	"fingerprint_sha256=$(spki_sha256 "$T/json.expected")"
pass "generate --json: one document with the new key's pem and fingerprint"
