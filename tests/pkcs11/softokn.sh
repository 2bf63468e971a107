# The PKCS#11 suite on NSS softokn (in-token OAEP-SHA256), with proof from
# OpenSC's pkcs11-spy that the padding is checked by the token. With
# FV_P11_VIA=client the token is reached through p11-kit-client.so and a
# `p11-kit server` that loads softokn through its p11-kit registration, and
# the spy sits on the server side.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"

setup_softokn
TOKEN="NSS Certificate DB"
# The database has an empty password: the PIN is an empty file.
: >"$T/pin"
chmod 600 "$T/pin"
MODULE=$SOFTOKN_MODULE
ENTRY="\"provider\": \"pkcs11\", \"module\": \"$MODULE\", \"init_args\": \"$SOFTOKN_ARGS\", \"uri\": \"pkcs11:token=NSS%20Certificate%20DB;object=flows-key\", \"pin\": \"file:$T/pin\""
if [ "${FV_P11_VIA:-direct}" = client ]; then
	softokn_server_start nss
	ENTRY="\"provider\": \"pkcs11\", \"module\": \"$CLIENT_MODULE\", \"uri\": \"pkcs11:token=NSS%20Certificate%20DB;object=flows-key\", \"pin\": \"file:$T/pin\""
fi
EXPECT_OAEP=token
HOST_OAEP=false

# pkcs11-tool cannot pass softokn's C_Initialize arguments, so a small
# ctypes script (no flowvault code) reads the attributes from the module.
attributes() {
	python3 "$ATTRS" "$MODULE" "$SOFTOKN_ARGS" "$TOKEN" flows-key "" \
		|| fail "p11attrs.py"
}
check_key_attributes() {
	local objects
	objects=$(attributes)
	grep -q "^private .*sensitive=1 always_sensitive=1 extractable=0 never_extractable=1 " <<<"$objects" \
		|| fail "private key is not sensitive/never extractable:
$objects"
	grep -q "^private .*decrypt=1 sign=0 unwrap=0" <<<"$objects" \
		|| fail "private key may do more than decrypt:
$objects"
}
token_public_modulus() {
	attributes | sed -n 's/^public .*modulus=\([0-9A-F]*\).*/\1/p'
}

. "$FV_SOURCE_DIR/tests/pkcs11/suite.sh"

# The same decryption through pkcs11-spy: the log must show OAEP with
# SHA-256 parameters going to the token, and no raw RSA. Through p11-kit
# remoting the spy is on the server side, between the server and softokn.
if [ "${FV_P11_VIA:-direct}" = client ]; then
	: >"$T/spy-home/spy.log"
	run "$TOOL" decrypt "$CONFIG" flows "$T/cipher" "$T/spy-out"
	cp "$T/spy-home/spy.log" "$T/spy.log"
else
	write_config "$T/spy.json" "{$(sed "s#\"module\": \"[^\"]*\"#\"module\": \"$SPY_MODULE\"#" <<<"$ENTRY")}"
	PKCS11SPY="$MODULE" PKCS11SPY_OUTPUT="$T/spy.log" \
		run "$TOOL" decrypt "$T/spy.json" flows "$T/cipher" "$T/spy-out"
fi
expect_rc 0 "decrypt through pkcs11-spy"
cmp -s "$T/plain" "$T/spy-out" || fail "decrypt through pkcs11-spy"
grep -q "pMechanism->type = CKM_RSA_PKCS_OAEP" "$T/spy.log" || fail "no CKM_RSA_PKCS_OAEP in the spy log"
grep -q "hashAlg = CKM_SHA256" "$T/spy.log" || fail "no CKM_SHA256 OAEP hash in the spy log"
grep -q "mgf = CKG_MGF1_SHA256" "$T/spy.log" || fail "no CKG_MGF1_SHA256 in the spy log"
grep -q "C_Decrypt$" "$T/spy.log" || fail "no C_Decrypt in the spy log"
expect_not_has "CKM_RSA_X_509" "$T/spy.log"
pass "pkcs11-spy shows C_Decrypt with CKM_RSA_PKCS_OAEP/CKM_SHA256 and no CKM_RSA_X_509"

# The empty PIN may also come from an environment variable set to "".
write_config "$T/envpin.json" "{$(sed "s#\"pin\": \"[^\"]*\"#\"pin\": \"env:FV_TEST_EMPTY_PIN\"#" <<<"$ENTRY")}"
FV_TEST_EMPTY_PIN= run "$FV" --config "$T/envpin.json" pubkey flows
expect_rc 0 "empty PIN from env"
pass "empty PIN from env: set to the empty string"
