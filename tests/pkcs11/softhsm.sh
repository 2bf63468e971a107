# The PKCS#11 suite on SoftHSM2 (2.6.1 has no SHA-256 OAEP: host unpadding),
# and the documented error when host unpadding is not allowed. With
# FV_P11_VIA=client the token is reached through p11-kit-client.so and a
# `p11-kit server` exporting it; with FV_P11_VIA=proxy through
# p11-kit-proxy.so (SoftHSM2 is registered with p11-kit system-wide).
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"

TOKEN=flows
PIN=246810
setup_softhsm "$TOKEN" "$PIN"
printf '%s\n' "$PIN" >"$T/pin"
chmod 600 "$T/pin"
MODULE=$SOFTHSM_MODULE
case "${FV_P11_VIA:-direct}" in
client)
	p11kit_server_start hsm "pkcs11:token=$TOKEN" --provider "$SOFTHSM_MODULE"
	MODULE=$CLIENT_MODULE ;;
proxy)
	MODULE=$PROXY_MODULE ;;
esac
ENTRY="\"provider\": \"pkcs11\", \"module\": \"$MODULE\", \"uri\": \"pkcs11:token=$TOKEN;object=flows-key\", \"pin\": \"file:$T/pin\""
EXPECT_OAEP=host
HOST_OAEP=true

check_key_attributes() {
	local objects
	objects=$(pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$TOKEN" --login --pin "$PIN" \
		--list-objects --type privkey) || fail "pkcs11-tool --list-objects"
	grep -qF "Access:     sensitive, always sensitive, never extractable, local" <<<"$objects" \
		|| fail "pkcs11-tool does not report the key as sensitive/never extractable/local:
$objects"
	grep -qE "Usage: +decrypt$" <<<"$objects" || fail "private key may do more than decrypt:
$objects"
}

token_public_modulus() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$TOKEN" --read-object --type pubkey \
		--label flows-key -o "$T/token-pub.der" >/dev/null 2>&1 || fail "pkcs11-tool --read-object"
	openssl pkey -pubin -inform DER -in "$T/token-pub.der" -out "$T/token-pub.pem"
	# The whole SPKI must be byte-identical, not only the modulus.
	cmp -s "$T/token-pub.pem" "$T/pub.pem" || fail "SPKI from pkcs11-tool differs from flowvault pubkey"
	openssl rsa -pubin -in "$T/token-pub.pem" -noout -modulus | sed 's/^Modulus=//'
}

. "$FV_SOURCE_DIR/tests/pkcs11/suite.sh"

# Without allow_host_oaep the token's lack of SHA-256 OAEP is an error that
# explains both ways out.
write_config "$T/strict.json" "{$ENTRY}"
run "$FV" --config "$T/strict.json" keys
expect_out_has "oaep: unavailable"
run "$TOOL" decrypt "$T/strict.json" flows "$T/cipher" "$T/strict-out"
expect_rc 3 "decrypt without allow_host_oaep"
expect_err_has "CKR_ARGUMENTS_BAD"
expect_err_has "\"allow_host_oaep\": true"
expect_err_has "CKM_RSA_PKCS_OAEP with CKM_SHA256"
pass "allow_host_oaep false: documented error"

# The module named as registered with p11-kit, not by path.
write_config "$T/byname.json" "{$(sed "s#\"module\": \"[^\"]*\"#\"module\": \"softhsm2\"#" <<<"$ENTRY"), \"allow_host_oaep\": true}"
run "$TOOL" decrypt "$T/byname.json" flows "$T/cipher" "$T/byname-out"
expect_rc 0 "module by p11-kit name"
cmp -s "$T/plain" "$T/byname-out" || fail "decrypt through the p11-kit module name"
pass "module given as the p11-kit module name 'softhsm2'"

# pin-source in the URI, when no pin field is given.
write_config "$T/pinsource.json" "{\"provider\": \"pkcs11\", \"module\": \"$MODULE\", \"uri\": \"pkcs11:token=$TOKEN;object=flows-key;pin-source=file:$T/pin\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/pinsource.json" pubkey flows
expect_rc 0 "pin-source"
pass "PIN from the URI's pin-source"
