# The `tpm2` plugin with a key at a persistent handle on a swtpm: generate
# (EvictControl), refuse an occupied handle, the public key against
# tpm2_readpublic, an OAEP-SHA256 round trip, and a missing handle.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"

swtpm_start "$T/tpm"

write_config "$T/fv.json" "
  \"flows\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000010\"},
  \"absent\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000011\"},
  \"taken\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000020\"}"

run "$FV" --config "$T/fv.json" generate flows
expect_rc 0 "generate at 0x81000010"
tpm2_getcap handles-persistent | grep -qx -- '- 0x81000010' ||
	fail "0x81000010 is not persistent: $(tpm2_getcap handles-persistent)"
expect_no_transient "generate at a handle"
tpm2_readpublic -c 0x81000010 >"$T/pub.txt"
grep -q 'value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt$' "$T/pub.txt" ||
	fail "unexpected attributes: $(grep -A1 attributes "$T/pub.txt")"
pass "generate makes the key persistent at 0x81000010, decrypt-only"

run "$FV" --config "$T/fv.json" pubkey flows --out "$T/fv-pub.pem"
expect_rc 0 "pubkey of a persistent key"
tpm2_readpublic -Q -c 0x81000010 -f pem -o "$T/tpm-pub.pem"
cmp -s "$T/fv-pub.pem" "$T/tpm-pub.pem" || fail "pubkey differs from tpm2_readpublic -f pem:
$(cat "$T/fv-pub.pem")
$(cat "$T/tpm-pub.pem")"
pass "pubkey equals tpm2_readpublic -f pem"

# --json carries the same key and its fingerprint.
run "$FV" --json --config "$T/fv.json" pubkey flows
expect_rc 0 "pubkey --json"
fp=$(openssl pkey -pubin -in "$T/tpm-pub.pem" -outform DER | sha256sum | cut -d' ' -f1)
expect_out_has "$fp"
pass "fingerprint is the SHA-256 of the SPKI"

printf 'persistent flows key' >"$T/plain"
oaep_encrypt "$T/fv-pub.pem" "$T/plain" "$T/cipher"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 0 "decrypt with a persistent key"
[ "$OUT" = 'persistent flows key' ] || fail "decrypt gave '$OUT'"
expect_no_transient "decrypt with a persistent key"
pass "OAEP-SHA256 round trip with the persistent key"

run "$FV" --config "$T/fv.json" generate flows
expect_rc 3 "generate at an occupied handle"
expect_err_has "0x81000010 is occupied"
tpm2_readpublic -Q -c 0x81000010 -f pem -o "$T/tpm-pub2.pem"
cmp -s "$T/tpm-pub.pem" "$T/tpm-pub2.pem" || fail "the occupied handle changed"
# A handle taken by something else (a storage key made with tpm2-tools).
tpm2_createprimary -Q -C o -G ecc -c "$T/other.ctx"
tpm2_evictcontrol -Q -C o -c "$T/other.ctx" 0x81000020
tpm2_flushcontext -t
run "$FV" --config "$T/fv.json" generate taken
expect_rc 3 "generate at a handle tpm2-tools used"
expect_err_has "0x81000020 is occupied"
pass "generate refuses occupied handles and leaves them alone"

# What sits at 0x81000020 is not a decryption key flowvault can use.
run "$FV" --config "$T/fv.json" pubkey taken
expect_rc 3 "pubkey of a storage key"
expect_err_has "is not an RSA key"
pass "a non-RSA object at the handle is refused"

run "$FV" --config "$T/fv.json" pubkey absent
expect_rc 3 "pubkey of an empty handle"
expect_err_has "no key at this persistent handle"
expect_err_has "flowvault generate"
pass "empty handle: exit 3, says how to create the key"
expect_no_transient "handle tests"

# An owner hierarchy with a password: the standard primary cannot be made,
# so a handle key's session needs a persistent storage key, named in
# `parent` (or at 0x81000001); the message says so.
tpm2_changeauth -c o owner-secret
run "$FV" --config "$T/fv.json" pubkey flows
expect_rc 3 "handle key, owner password, no storage key"
expect_err_has "owner hierarchy has a password"
expect_err_has "keys.flows.parent"
tpm2_createprimary -Q -C o -P owner-secret -G ecc -c "$T/srk.ctx"
tpm2_evictcontrol -Q -C o -P owner-secret -c "$T/srk.ctx" 0x81000002
tpm2_flushcontext -t
write_config "$T/owner.json" "
  \"flows\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000010\",
             \"parent\": \"0x81000002\"}"
run "$DECRYPT" "$T/owner.json" flows "$T/cipher"
expect_rc 0 "handle key salted to the storage key in parent"
[ "$OUT" = 'persistent flows key' ] || fail "decrypt gave '$OUT'"
expect_no_transient "owner password"
pass "owner password: a handle key's session is salted to the storage key in parent"
