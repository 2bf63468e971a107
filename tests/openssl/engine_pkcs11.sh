# The `openssl` plugin through ENGINE pkcs11 (libp11) on a SoftHSM2 token:
# the exported public key is the token's, OAEP-SHA256 decrypts round trip,
# and PIN and configuration mistakes give their documented errors. An ENGINE
# does not say where it checks the OAEP padding and libp11 falls back to raw
# RSA with host unpadding (pkcs11-spy shows it), so ENGINE keys need
# "allow_host_oaep": true. The ENGINE and its PKCS#11 module are loaded only
# from files the host checked.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/openssl/common.sh"

SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
mkdir -m 700 "$T/tokens"
cat >"$T/softhsm2.conf" <<CONF
directories.tokendir = $T/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$T/softhsm2.conf"
softhsm2-util --init-token --free --label fvtest --so-pin 87654321 \
	--pin 123456 >/dev/null
pkcs11-tool --module "$SOFTHSM" --token-label fvtest --login --pin 123456 \
	--keypairgen --key-type rsa:2048 --label flows --id 0f >/dev/null 2>&1 ||
	fail "pkcs11-tool could not generate the token key"
pkcs11-tool --module "$SOFTHSM" --token-label fvtest --read-object \
	--type pubkey --label flows -o "$T/token-pub.der" >/dev/null 2>&1
openssl pkey -pubin -inform DER -in "$T/token-pub.der" -out "$T/token-pub.pem"

export FV_TEST_PIN=123456 FV_TEST_BAD_PIN=000000
URI="pkcs11:token=fvtest;object=flows;type=private"
# QUIET keeps libp11's own diagnostics off stderr.
COMMANDS="[\"MODULE_PATH=$SOFTHSM\", \"QUIET\"]"
write_config "$T/fv.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": $COMMANDS, \"uri\": \"$URI\", \"pin\": \"env:FV_TEST_PIN\",
  \"allow_host_oaep\": true}"

# Without allow_host_oaep the ENGINE key is refused, saying why.
write_config "$T/strict.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": $COMMANDS, \"uri\": \"$URI\", \"pin\": \"env:FV_TEST_PIN\"}"
run "$FV" --config "$T/strict.json" pubkey flows
expect_rc 3 "ENGINE key without allow_host_oaep"
expect_err_has "does not say whether the OAEP padding is checked"
expect_err_has "\"allow_host_oaep\": true"
pass "ENGINE key refused without allow_host_oaep"

run "$FV" --config "$T/fv.json" pubkey flows --out "$T/fv-pub.pem"
expect_rc 0 "pubkey through ENGINE pkcs11"
cmp -s "$T/fv-pub.pem" "$T/token-pub.pem" ||
	fail "flowvault pubkey differs from the token's public key"
pass "pubkey equals pkcs11-tool's public key"

run "$FV" --config "$T/fv.json" keys
expect_rc 0 "keys"
expect_out_has "engine: pkcs11"
expect_out_has "oaep: host assumed"
pass "keys shows the engine, and that OAEP is taken to be checked here"

printf '{"aes_key":"0123456789abcdef0123456789abcdef"}' >"$T/plain"
oaep_encrypt "$T/token-pub.pem" "$T/plain" "$T/cipher"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 0 "OAEP-SHA256 decrypt through the token"
[ "$OUT" = "$(cat "$T/plain")" ] || fail "decrypted text differs: $OUT"
pass "OAEP-SHA256 round trip through ENGINE pkcs11"

# What libp11 does with it, seen by pkcs11-spy between the ENGINE and
# SoftHSM2: the token refuses OAEP with SHA-256, and the ENGINE quietly
# decrypts with raw RSA instead (the padding is removed on this host).
SPY=/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so
write_config "$T/spy.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": [\"MODULE_PATH=$SPY\", \"QUIET\"], \"uri\": \"$URI\",
  \"pin\": \"env:FV_TEST_PIN\", \"allow_host_oaep\": true}"
PKCS11SPY="$SOFTHSM" PKCS11SPY_OUTPUT="$T/spy.log" run "$DECRYPT" "$T/spy.json" flows "$T/cipher"
expect_rc 0 "decrypt through pkcs11-spy"
grep -q "CKM_RSA_X_509" "$T/spy.log" || fail "no raw RSA (CKM_RSA_X_509) in the spy log: the fallback this policy is about did not happen"
pass "pkcs11-spy: libp11's ENGINE decrypts with CKM_RSA_X_509 (host unpadding) on SoftHSM2"

# The ENGINE and its module are code: not from a directory others can write.
mkdir -m 0777 "$T/ww"
cp /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so "$T/ww/pkcs11.so"
chmod 0755 "$T/ww/pkcs11.so"
OPENSSL_ENGINES="$T/ww" run "$FV" --config "$T/fv.json" pubkey flows
expect_rc 3 "ENGINE in a world-writable directory"
expect_err_has "OpenSSL ENGINE '$T/ww/pkcs11.so': $T/ww is writable by others"
cp "$SOFTHSM" "$T/ww/libsofthsm2.so"
chmod 0755 "$T/ww/libsofthsm2.so"
write_config "$T/wwmodule.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": [\"MODULE_PATH=$T/ww/libsofthsm2.so\", \"QUIET\"], \"uri\": \"$URI\",
  \"pin\": \"env:FV_TEST_PIN\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/wwmodule.json" pubkey flows
expect_rc 3 "MODULE_PATH in a world-writable directory"
expect_err_has "PKCS#11 module '$T/ww/libsofthsm2.so': $T/ww is writable by others"
write_config "$T/sopath.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": [\"SO_PATH=$T/ww/pkcs11.so\"], \"uri\": \"$URI\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/sopath.json" pubkey flows
expect_rc 2 "SO_PATH in engine_commands"
expect_err_has "'SO_PATH' is refused"
pass "ENGINE and MODULE_PATH in a world-writable directory refused; SO_PATH refused"

# A ciphertext for another key is a decryption error, not a backend one,
# whether it fails the padding check or lies above this key's modulus
# (SoftHSM reports the latter as a general error).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	-out "$T/other.pem" 2>/dev/null
openssl pkey -in "$T/other.pem" -pubout -out "$T/other-pub.pem"
oaep_encrypt "$T/other-pub.pem" "$T/plain" "$T/cipher-other"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher-other"
expect_rc 3 "ciphertext for another key"
expect_err_has "decrypt: "
pass "ciphertext for another key: decrypt error"

python3 -c 'import sys; sys.stdout.buffer.write(b"\xff" * 256)' >"$T/cipher-high"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher-high"
expect_rc 3 "ciphertext above the modulus"
expect_err_has "decrypt: "
expect_err_has "not below the key's modulus"
pass "ciphertext above the modulus: decrypt error"

python3 -c 'import sys; sys.stdout.buffer.write(b"\x00" + b"\x5a" * 255)' >"$T/cipher-garbage"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher-garbage"
expect_rc 3 "garbage ciphertext"
expect_err_has "decrypt: "
expect_err_has "padding check failed"
pass "garbage ciphertext: padding check failed"

# PKCS#1 v1.5 is never tried instead of OAEP.
openssl pkeyutl -encrypt -pubin -inkey "$T/token-pub.pem" -in "$T/plain" \
	-out "$T/cipher-v15"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher-v15"
expect_rc 3 "PKCS#1 v1.5 ciphertext"
expect_err_has "padding check failed"
pass "PKCS#1 v1.5 ciphertext refused"

write_config "$T/badpin.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": $COMMANDS, \"uri\": \"$URI\", \"pin\": \"env:FV_TEST_BAD_PIN\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/badpin.json" pubkey flows
expect_rc 3 "wrong PIN"
expect_err_has "did not accept the pin"
expect_not_has "$FV_TEST_BAD_PIN" "$T/.err" "$T/.out"
pass "wrong PIN: exit 3, PIN not echoed"

write_config "$T/nopin.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": $COMMANDS, \"uri\": \"$URI\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/nopin.json" pubkey flows
expect_rc 3 "no PIN configured"
expect_err_has "asks for a PIN"
pass "no PIN configured: says to set pin"

write_config "$T/noobj.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": $COMMANDS, \"uri\": \"pkcs11:token=fvtest;object=nothing;type=private\",
  \"pin\": \"env:FV_TEST_PIN\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/noobj.json" pubkey flows
expect_rc 3 "no such object"
expect_err_has "found no private key"
pass "missing object: not found"

write_config "$T/pincmd.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": [\"MODULE_PATH=$SOFTHSM\", \"PIN=123456\"], \"uri\": \"$URI\"}"
run "$FV" --config "$T/pincmd.json" pubkey flows
expect_rc 2 "PIN in engine_commands"
expect_err_has "engine_commands[1]"
pass "PIN in engine_commands refused"

write_config "$T/badcmd.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"engine_commands\": [\"NO_SUCH_COMMAND=1\"], \"uri\": \"$URI\"}"
run "$FV" --config "$T/badcmd.json" pubkey flows
expect_rc 2 "unknown engine command"
expect_err_has "refused command 'NO_SUCH_COMMAND'"
pass "unknown engine command refused"

write_config "$T/noengine.json" "{\"provider\": \"openssl\", \"engine\": \"fv_no_such_engine\",
  \"uri\": \"$URI\"}"
run "$FV" --config "$T/noengine.json" pubkey flows
expect_rc 3 "missing ENGINE"
expect_err_has "cannot load ENGINE 'fv_no_such_engine'"
pass "missing ENGINE: exit 3"

write_config "$T/both.json" "{\"provider\": \"openssl\", \"engine\": \"pkcs11\",
  \"providers\": [\"tpm2\"], \"uri\": \"$URI\"}"
run "$FV" --config "$T/both.json" pubkey flows
expect_rc 2 "engine and providers together"
expect_err_has "not both"
pass "engine and providers together refused"

run "$FV" --config "$T/fv.json" generate flows
expect_rc 3 "generate"
expect_err_has "cannot generate"
pass "generate is not offered"
