# The `openssl` plugin on OpenSSL's default provider alone (no "engine", no
# "providers"): an encrypted PEM key through OSSL_STORE, its passphrase from
# a secret reference through the UI method, OAEP round trip, and the errors
# for wrong passphrases and unusable URIs.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/openssl/common.sh"

export FV_TEST_PASS='correct horse' FV_TEST_BAD_PASS='wrong horse'
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc \
	-pass env:FV_TEST_PASS -out "$T/key.pem" 2>/dev/null
openssl pkey -in "$T/key.pem" -passin env:FV_TEST_PASS -pubout -out "$T/pub.pem"

write_config "$T/fv.json" "{\"provider\": \"openssl\", \"uri\": \"file:$T/key.pem\",
  \"passphrase\": \"env:FV_TEST_PASS\"}"
run "$FV" --config "$T/fv.json" pubkey flows --out "$T/fv-pub.pem"
expect_rc 0 "pubkey of an encrypted PEM"
cmp -s "$T/fv-pub.pem" "$T/pub.pem" || fail "pubkey differs from openssl pkey -pubout"
pass "pubkey equals openssl pkey -pubout"

run "$FV" --config "$T/fv.json" keys
expect_out_has "provider: default"
pass "keys shows the default provider"

head -c 190 /dev/urandom >"$T/plain" # the longest OAEP-SHA256 message for RSA-2048
oaep_encrypt "$T/pub.pem" "$T/plain" "$T/cipher"
"$DECRYPT" "$T/fv.json" flows "$T/cipher" >"$T/decrypted" ||
	fail "decrypt of a 190-byte message failed"
cmp -s "$T/plain" "$T/decrypted" || fail "decrypted bytes differ"
pass "OAEP-SHA256 round trip, 190-byte message"

head -c 255 "$T/cipher" >"$T/short"
run "$DECRYPT" "$T/fv.json" flows "$T/short"
expect_rc 3 "truncated ciphertext"
expect_err_has "255 bytes"
pass "truncated ciphertext: decrypt error naming the length"

write_config "$T/badpass.json" "{\"provider\": \"openssl\", \"uri\": \"$T/key.pem\",
  \"passphrase\": \"env:FV_TEST_BAD_PASS\"}"
run "$FV" --config "$T/badpass.json" pubkey flows
expect_rc 3 "wrong passphrase"
expect_err_has "did not accept the passphrase"
expect_not_has "wrong horse" "$T/.err" "$T/.out"
pass "wrong passphrase: exit 3, not echoed"

write_config "$T/nopass.json" "{\"provider\": \"openssl\", \"uri\": \"$T/key.pem\"}"
run "$FV" --config "$T/nopass.json" pubkey flows
expect_rc 3 "no passphrase configured"
expect_err_has "asks for a PIN or passphrase"
pass "no passphrase configured: says to set one"

write_config "$T/both.json" "{\"provider\": \"openssl\", \"uri\": \"$T/key.pem\",
  \"pin\": \"env:FV_TEST_PASS\", \"passphrase\": \"env:FV_TEST_PASS\"}"
run "$FV" --config "$T/both.json" pubkey flows
expect_rc 2 "pin and passphrase together"
pass "pin and passphrase together refused"

write_config "$T/relative.json" "{\"provider\": \"openssl\", \"uri\": \"key.pem\"}"
run "$FV" --config "$T/relative.json" pubkey flows
expect_rc 2 "relative path as uri"
expect_err_has "keys.flows.uri"
pass "relative path refused"

write_config "$T/missing.json" "{\"provider\": \"openssl\", \"uri\": \"$T/nothing.pem\"}"
run "$FV" --config "$T/missing.json" pubkey flows
expect_rc 3 "missing file"
expect_err_has "No such file"
pass "missing file: exit 3"

write_config "$T/pubonly.json" "{\"provider\": \"openssl\", \"uri\": \"$T/pub.pem\"}"
run "$FV" --config "$T/pubonly.json" pubkey flows
expect_rc 3 "public key file"
expect_err_has "holds no private key"
pass "public key file: no private key"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/ec.pem"
write_config "$T/ec.json" "{\"provider\": \"openssl\", \"uri\": \"$T/ec.pem\"}"
run "$FV" --config "$T/ec.json" pubkey flows
expect_rc 3 "EC key"
expect_err_has "not an RSA key"
pass "EC key refused"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$T/small.pem" 2>/dev/null
write_config "$T/small.json" "{\"provider\": \"openssl\", \"uri\": \"$T/small.pem\"}"
run "$FV" --config "$T/small.json" pubkey flows
expect_rc 3 "1024-bit key"
expect_err_has "1024-bit"
pass "1024-bit key refused"

write_config "$T/noprov.json" "{\"provider\": \"openssl\", \"providers\": [\"fv_no_such_provider\"],
  \"uri\": \"$T/key.pem\"}"
run "$FV" --config "$T/noprov.json" pubkey flows
expect_rc 3 "missing provider"
expect_err_has "provider 'fv_no_such_provider' failed to load"
pass "missing provider: exit 3"

# A provider is code: loaded only from a file the host checked, never from a
# directory others can write (OPENSSL_MODULES pointing there).
write_config "$T/legacy.json" "{\"provider\": \"openssl\", \"providers\": [\"legacy\"],
  \"uri\": \"file:$T/key.pem\", \"passphrase\": \"env:FV_TEST_PASS\"}"
run "$FV" --config "$T/legacy.json" pubkey flows
expect_rc 0 "provider legacy from OpenSSL's directory"
mkdir -m 0777 "$T/ww"
cp /usr/lib/x86_64-linux-gnu/ossl-modules/legacy.so "$T/ww/legacy.so"
chmod 0755 "$T/ww/legacy.so"
OPENSSL_MODULES="$T/ww" run "$FV" --config "$T/legacy.json" pubkey flows
expect_rc 3 "provider in a world-writable directory"
expect_err_has "OpenSSL provider '$T/ww/legacy.so': $T/ww is writable by others"
pass "a provider in a world-writable directory is refused"

run "$FV" --config "$T/fv.json" keys
expect_out_has "oaep: host"
run "$FV_BUILD_DIR/tests/p11-decrypt-tool" describe "$T/fv.json" flows
expect_out_has "backend=provider"
expect_out_has "oaep=host"
expect_out_has "property in-host-memory=1"
pass "key_describe: the default provider's key is in this process, OAEP here"
