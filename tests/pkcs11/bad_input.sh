# Bad input to the PKCS#11 provider: each case fails with a message that
# says what to fix, exits 3 (2 for a URI or module name the configuration
# gets wrong), and leaves the token as it was.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"

TOKEN=flows
PIN=246810
setup_softhsm "$TOKEN" "$PIN"
printf '%s\n' "$PIN" >"$T/pin"
printf '13579\n' >"$T/wrong-pin"
chmod 600 "$T/pin" "$T/wrong-pin"
M=$SOFTHSM_MODULE
URI="pkcs11:token=$TOKEN;object=flows-key"

# attempt RC TEXT ENTRY-JSON: generate and pubkey both fail that way, and
# the token still holds no object.
attempt() {
	local rc=$1 text=$2 entry=$3 cmd
	write_config "$T/bad.json" "$entry"
	for cmd in generate pubkey; do
		run "$FV" --config "$T/bad.json" "$cmd" flows
		expect_rc "$rc" "$cmd with: $text"
		expect_err_has "$text"
	done
	[ "$(count_objects "$TOKEN" "$PIN")" = 0 ] || fail "objects were created by a failed '$text' case"
}

attempt 3 "C_Login failed: CKR_PIN_INCORRECT: wrong PIN" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"$URI\", \"pin\": \"file:$T/wrong-pin\"}"
expect_err_has "CKF_USER_PIN_COUNT_LOW"
# One attempt per run, never a retry (pkcs11-spy counts the C_Login calls).
write_config "$T/spy.json" "{\"provider\": \"pkcs11\", \"module\": \"$SPY_MODULE\", \"uri\": \"$URI\", \"pin\": \"file:$T/wrong-pin\"}"
PKCS11SPY="$M" PKCS11SPY_OUTPUT="$T/spy.log" run "$FV" --config "$T/spy.json" pubkey flows
expect_rc 3 "wrong PIN through pkcs11-spy"
[ "$(grep -c "C_Login$" "$T/spy.log")" = 1 ] || fail "wrong PIN was tried more than once"
expect_not_has "13579" "$T/.err"
pass "wrong PIN: exit 3, token flags reported, one C_Login only, PIN not echoed"

attempt 3 "no token matches; tokens present in '$M': '$TOKEN' (serial" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"pkcs11:token=nosuch;object=flows-key\", \"pin\": \"file:$T/pin\"}"
pass "no matching token: lists the tokens present"

attempt 2 "is not a valid PKCS#11 URI" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"pkcs11:token=fl%zows;object=x\", \"pin\": \"file:$T/pin\"}"
attempt 2 "URI scheme must be 'pkcs11:'" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"pkcs:token=flows\", \"pin\": \"file:$T/pin\"}"
attempt 2 "name the key with object=LABEL" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"pkcs11:token=flows\", \"pin\": \"file:$T/pin\"}"
attempt 2 "type must be 'private'" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"$URI;type=cert\", \"pin\": \"file:$T/pin\"}"
pass "URI syntax errors"

attempt 2 "pin-value is refused" \
	"{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"$URI;pin-value=$PIN\"}"
expect_not_has "$PIN" "$T/.err"
pass "pin-value in the URI is refused without echoing it"

attempt 3 "no such file '$T/nosuch.so'" \
	"{\"provider\": \"pkcs11\", \"module\": \"$T/nosuch.so\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
echo "not a library" >"$T/text.so"
attempt 3 "cannot be loaded as a PKCS#11 module (couldn't load module" \
	"{\"provider\": \"pkcs11\", \"module\": \"$T/text.so\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
libz=$(ls /usr/lib/x86_64-linux-gnu/libz.so.1 /lib/x86_64-linux-gnu/libz.so.1 2>/dev/null | head -1)
attempt 3 "cannot be loaded as a PKCS#11 module (couldn't find C_GetFunctionList" \
	"{\"provider\": \"pkcs11\", \"module\": \"$libz\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
attempt 2 "no module 'nosuchmodule' is registered with p11-kit" \
	"{\"provider\": \"pkcs11\", \"module\": \"nosuchmodule\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
pass "missing module, non-library, library that is not a PKCS#11 module, unknown p11-kit name"

# A module is code run in this process: a copy (owned by root or us) in a
# directory others can write, or a link there to the real module, is
# refused, since whoever writes the directory can swap the file.
mkdir -m 0777 "$T/ww"
cp "$M" "$T/ww/libsofthsm2.so"
chmod 0755 "$T/ww/libsofthsm2.so"
attempt 3 "PKCS#11 module '$T/ww/libsofthsm2.so': $T/ww is writable by others" \
	"{\"provider\": \"pkcs11\", \"module\": \"$T/ww/libsofthsm2.so\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
ln -s "$M" "$T/ww/link.so"
attempt 3 "$T/ww is writable by others" \
	"{\"provider\": \"pkcs11\", \"module\": \"$T/ww/link.so\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
cp "$M" "$T/groupw.so"
chmod 0775 "$T/groupw.so"
attempt 3 "is writable by its group" \
	"{\"provider\": \"pkcs11\", \"module\": \"$T/groupw.so\", \"uri\": \"$URI\", \"pin\": \"file:$T/pin\"}"
pass "module in a world-writable directory, linked from one, or group-writable: refused"

write_config "$T/missing.json" "{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"pkcs11:token=$TOKEN;object=nosuch\", \"pin\": \"file:$T/pin\", \"allow_host_oaep\": true}"
run "$FV" --config "$T/missing.json" pubkey flows
expect_rc 3 "missing key object"
expect_err_has "token '$TOKEN' has no private key with object 'nosuch'"
head -c 256 /dev/urandom >"$T/cipher"
run "$TOOL" decrypt "$T/missing.json" flows "$T/cipher" "$T/out"
expect_rc 3 "decrypt with a missing key object"
[ ! -e "$T/out" ] || fail "output written without a key"
pass "key object missing"

write_config "$T/nopin.json" "{\"provider\": \"pkcs11\", \"module\": \"$M\", \"uri\": \"$URI\"}"
run "$FV" --config "$T/nopin.json" pubkey flows
expect_rc 2 "no PIN configured"
expect_err_has "needs a PIN: set pin"
pass "token that needs a PIN, none configured: configuration error"
[ "$(count_objects "$TOKEN" "$PIN")" = 0 ] || fail "the token is not empty at the end"
