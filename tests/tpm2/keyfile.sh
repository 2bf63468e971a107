# The `tpm2` plugin with TSS2 key files on a swtpm: generate under the owner
# primary and under a persistent SRK at 0x81000001, the file format, the
# public key against tpm2-openssl, OAEP-SHA256 round trips, and tpm2-openssl
# using our file.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"

swtpm_start "$T/tpm"

write_config "$T/fv.json" "
  \"flows\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"keys/flows.tss2\"},
  \"srk\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"keys/srk.tss2\"}"
mkdir -m 700 "$T/keys"

# --- generate without 0x81000001: parent is the owner-hierarchy primary ---
run "$FV" --config "$T/fv.json" generate flows
expect_rc 0 "generate to a key file"
expect_out_has "generated key 'flows' (tpm2)"
KEY="$T/keys/flows.tss2"
[ -f "$KEY" ] || fail "generate did not write $KEY"
expect_file_mode 600 "$KEY"
head -1 "$KEY" | grep -qx -- '-----BEGIN TSS2 PRIVATE KEY-----' || fail "not a TSS2 PEM: $(head -1 "$KEY")"
openssl asn1parse -in "$KEY" >"$T/asn1" || fail "openssl cannot parse $KEY"
grep -q 'OBJECT *:2.23.133.10.1.3' "$T/asn1" || fail "type is not loadable key: $(cat "$T/asn1")"
grep -q 'BOOLEAN *:255' "$T/asn1" || fail "emptyAuth TRUE missing: $(cat "$T/asn1")"
grep -q 'INTEGER *:40000001' "$T/asn1" || fail "parent is not the owner hierarchy: $(cat "$T/asn1")"
expect_no_transient "generate"
pass "generate writes a 0600 TSS2 key file, parent 0x40000001, nothing left loaded"

# The TPM public area: decrypt only, scheme NULL, RSA-2048.
tss2_part "$KEY" 1 "$T/pub.bin"
tpm2_print -t TPM2B_PUBLIC "$T/pub.bin" >"$T/pub.txt" || fail "tpm2_print cannot read the public part"
grep -q 'value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt$' "$T/pub.txt" ||
	fail "unexpected object attributes: $(grep -A1 attributes "$T/pub.txt")"
grep -q 'bits: 2048' "$T/pub.txt" || fail "not RSA-2048: $(cat "$T/pub.txt")"
grep -A1 '^scheme:' "$T/pub.txt" | grep -q 'value: null' || fail "scheme is not NULL: $(cat "$T/pub.txt")"
pass "key attributes: fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|decrypt, no sign, scheme NULL"

# --- never overwrite ---
sum=$(sha256sum <"$KEY")
run "$FV" --config "$T/fv.json" generate flows
expect_rc 3 "generate over an existing key file"
expect_err_has "exists; refusing to overwrite"
[ "$(sha256sum <"$KEY")" = "$sum" ] || fail "generate changed the existing key file"
pass "generate refuses to overwrite the key file"

# --- public key equals tpm2-openssl's and tpm2-openssl can use the file ---
run "$FV" --config "$T/fv.json" pubkey flows --out "$T/fv-pub.pem"
expect_rc 0 "pubkey"
openssl pkey -provider tpm2 -provider default -in "$KEY" -pubout -out "$T/ossl-pub.pem" ||
	fail "tpm2-openssl cannot read $KEY"
cmp -s "$T/fv-pub.pem" "$T/ossl-pub.pem" || fail "pubkey differs from openssl -provider tpm2:
$(cat "$T/fv-pub.pem")
$(cat "$T/ossl-pub.pem")"
pass "pubkey equals openssl pkey -provider tpm2 -pubout"

# PKCS#1 v1.5 is all tpm2-openssl 1.1.1 decrypts with; it proves that it
# loads our file under the same parent inside the TPM.
printf 'interop' >"$T/p15.plain"
openssl pkeyutl -encrypt -pubin -inkey "$T/fv-pub.pem" -in "$T/p15.plain" -out "$T/p15.bin"
openssl pkeyutl -provider tpm2 -provider default -propquery '?provider=tpm2' -decrypt \
	-inkey "$KEY" -in "$T/p15.bin" -out "$T/p15.out" || fail "tpm2-openssl cannot use $KEY"
cmp -s "$T/p15.plain" "$T/p15.out" || fail "tpm2-openssl decrypted something else"
expect_no_transient "tpm2-openssl"
pass "tpm2-openssl loads and uses the key file in the TPM"

# --- OAEP-SHA256 round trip ---
printf '{"aes_key":"flows request key"}' >"$T/plain"
oaep_encrypt "$T/fv-pub.pem" "$T/plain" "$T/cipher"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 0 "decrypt"
[ "$OUT" = '{"aes_key":"flows request key"}' ] || fail "decrypt gave '$OUT'"
head -c 190 /dev/urandom >"$T/plain2" # the most OAEP-SHA256 carries in RSA-2048
oaep_encrypt "$T/fv-pub.pem" "$T/plain2" "$T/cipher2"
"$DECRYPT" "$T/fv.json" flows "$T/cipher2" >"$T/out2" || fail "decrypt of 190 random bytes"
cmp -s "$T/plain2" "$T/out2" || fail "190-byte round trip differs"
expect_no_transient "decrypt"
pass "OAEP-SHA256 round trip (openssl pkeyutl -> TPM), the key flushed afterwards"

# One key handle, decrypting from several threads at once: the plugin
# serializes its ESYS context.
run "$DECRYPT" "$T/fv.json" flows "$T/cipher" --threads 4
expect_rc 0 "decrypt from 4 threads"
expect_out_has "4 threads x 10 decryptions: all equal"
pass "concurrent decryption on one key handle"

# A ciphertext for another key, and one of the wrong length.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/other.pem" 2>/dev/null
openssl pkey -in "$T/other.pem" -pubout -out "$T/other-pub.pem"
oaep_encrypt "$T/other-pub.pem" "$T/plain" "$T/cipher-other"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher-other"
expect_rc 6 "ciphertext for another key"
# Refused by the TPM's OAEP check, or before it when the value is not below
# this key's modulus (about half of all ciphertexts for another key).
expect_err_has "it was not encrypted to this key"
[ -z "$OUT" ] || fail "a rejected ciphertext printed '$OUT'"
head -c 100 "$T/cipher" >"$T/cipher-short"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher-short"
expect_rc 6 "short ciphertext"
expect_err_has "ciphertext is 100 bytes"
pass "foreign and short ciphertexts are rejected (exit 6)"

# --- with a persistent SRK at 0x81000001, generate uses it ---
tpm2_createprimary -Q -C o -g sha256 -G rsa2048:aes128cfb -c "$T/srk.ctx"
tpm2_evictcontrol -Q -C o -c "$T/srk.ctx" 0x81000001
tpm2_flushcontext -t
run "$FV" --config "$T/fv.json" generate srk
expect_rc 0 "generate under 0x81000001"
openssl asn1parse -in "$T/keys/srk.tss2" | grep -q 'INTEGER *:81000001' ||
	fail "parent is not 0x81000001: $(openssl asn1parse -in "$T/keys/srk.tss2")"
run "$FV" --config "$T/fv.json" pubkey srk --out "$T/srk-pub.pem"
expect_rc 0 "pubkey under 0x81000001"
openssl pkey -provider tpm2 -provider default -in "$T/keys/srk.tss2" -pubout -out "$T/srk-ossl.pem"
cmp -s "$T/srk-pub.pem" "$T/srk-ossl.pem" || fail "pubkey (0x81000001) differs from openssl -provider tpm2"
oaep_encrypt "$T/srk-pub.pem" "$T/plain" "$T/srk-cipher"
run "$DECRYPT" "$T/fv.json" srk "$T/srk-cipher"
expect_rc 0 "decrypt under 0x81000001"
[ "$OUT" = '{"aes_key":"flows request key"}' ] || fail "decrypt under 0x81000001 gave '$OUT'"
expect_no_transient "0x81000001"
pass "0x81000001 is the default parent when present: pubkey and round trip"

# The first key still loads: its file names the owner primary, not 0x81000001.
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 0 "owner-primary key after 0x81000001 appeared"
pass "a key file's own parent is used to load it"

# `keys` lists both as reachable, with the TPM details.
run "$FV" --config "$T/fv.json" keys
expect_rc 0 "keys"
expect_out_has "oaep: tpm"
pass "keys shows the tpm2 keys"
