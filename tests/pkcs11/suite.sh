# The suite both software tokens run. The caller (softhsm.sh, softokn.sh)
# sources lib.sh and tokens.sh, creates the token, and sets:
#   ENTRY       JSON members of the key entry (provider, module, uri, pin ...)
#   MODULE      the module file, TOKEN the token label
#   EXPECT_OAEP "token" or "host": where the OAEP padding is checked
#   HOST_OAEP   true/false: the allow_host_oaep the suite runs with
# FV_P11_VIA (client or proxy; default direct) says how the module is reached.
# and defines check_key_attributes and token_public_modulus.

CONFIG="$T/config.json"
write_config "$CONFIG" "{$ENTRY, \"allow_host_oaep\": $HOST_OAEP}"

# Generated inside the token, through the CLI.
run "$FV" --config "$CONFIG" generate flows
expect_rc 0 "generate"
expect_out_has "fingerprint"

run "$FV" --config "$CONFIG" generate flows
expect_rc 3 "second generate"
expect_err_has "already holds an object labelled 'flows-key'"
pass "generate in the token; a second generate is refused"

# An independent tool confirms the private key cannot leave the token.
check_key_attributes
pass "private key is sensitive, never extractable, decrypt-only"

# flowvault pubkey equals the public key as the token itself gives it.
run "$FV" --config "$CONFIG" pubkey flows --out "$T/pub.pem"
expect_rc 0 "pubkey"
token_public_modulus >"$T/token-modulus"
openssl rsa -pubin -in "$T/pub.pem" -noout -modulus | sed 's/^Modulus=//' >"$T/fv-modulus"
[ -s "$T/token-modulus" ] || fail "no modulus read from the token"
cmp -s "$T/token-modulus" "$T/fv-modulus" || fail "flowvault pubkey differs from the token's public key"
openssl rsa -pubin -in "$T/pub.pem" -noout -text | grep -q "Exponent: 65537" \
	|| fail "public exponent is not 65537"
pass "pubkey equals the token's public key"

run "$FV" --config "$CONFIG" keys
expect_rc 0 "keys"
expect_out_has "oaep: $EXPECT_OAEP"
pass "keys shows oaep: $EXPECT_OAEP"

# Round trip: encrypted by openssl as Meta's client does, decrypted by the token.
printf '{"aes_key":"%s"}' "$(openssl rand -hex 16)" >"$T/plain"
oaep_encrypt "$T/pub.pem" "$T/plain" "$T/cipher"
run "$TOOL" decrypt "$CONFIG" flows "$T/cipher" "$T/decrypted"
expect_rc 0 "decrypt"
cmp -s "$T/plain" "$T/decrypted" || fail "decrypted text differs"
pass "OAEP-SHA256 round trip through fv_key_decrypt"

# Ciphertext of the wrong length, and one that fails the padding check.
head -c 255 "$T/cipher" >"$T/short"
run "$TOOL" decrypt "$CONFIG" flows "$T/short" "$T/out"
expect_rc 3 "short ciphertext"
expect_err_has "needs exactly 256"
cp "$T/cipher" "$T/tampered"
printf '\x42' | dd of="$T/tampered" bs=1 seek=100 conv=notrunc 2>/dev/null
cmp -s "$T/cipher" "$T/tampered" && printf '\x43' | dd of="$T/tampered" bs=1 seek=100 conv=notrunc 2>/dev/null
run "$TOOL" decrypt "$CONFIG" flows "$T/tampered" "$T/out"
expect_rc 3 "tampered ciphertext"
expect_err_has "not encrypted to this key"
[ ! -e "$T/out" ] || fail "output written for a rejected ciphertext"
pass "wrong length and bad padding are refused (exit 3)"

# Two threads x 500 decryptions on one key handle.
run "$TOOL" threads "$CONFIG" flows "$T/cipher" "$T/plain" 2 500
expect_rc 0 "threads"
expect_out_has "decrypts ok: 1000, failed: 0"
pass "2 threads x 500 decrypts, all correct"

# fork(): the child initializes the module again and logs in again.
P11_TOOL_DEBUG=1 run "$TOOL" fork "$CONFIG" flows "$T/cipher" "$T/plain"
expect_rc 0 "fork"
expect_err_has "initialized again in process"
pass "decrypts in the parent and in a forked child"

# Sessions closed behind the plugin's back: one re-open and re-login. (A
# remote module hands out a new instance per C_GetFunctionList, so the tool
# cannot reach the plugin's sessions; remote_recovery.sh covers that path.)
[ "${FV_P11_VIA:-direct}" != direct ] && return 0
P11_TOOL_DEBUG=1 run "$TOOL" recover "$CONFIG" flows "$T/cipher" "$T/plain" "$MODULE"
expect_rc 0 "recover"
expect_err_has "CKR_SESSION_HANDLE_INVALID; opening a new session and logging in again"
pass "recovers once from CKR_SESSION_HANDLE_INVALID"
