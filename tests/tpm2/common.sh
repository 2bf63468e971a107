# Helpers shared by the `tpm2` plugin tests. Source after tests/lib.sh; it
# brings the swtpm helpers too.
. "$FV_SOURCE_DIR/tests/tpm2/swtpm.sh"
DECRYPT="$FV_BUILD_DIR/tests/fv-tpm2-decrypt"
PLUGINS="$FV_BUILD_DIR/lib/flowvault/plugins"
[ -x "$DECRYPT" ] || fail "$DECRYPT is missing: build the tree first"
[ -f "$PLUGINS/tpm2.so" ] || fail "$PLUGINS/tpm2.so is missing: build the tree first"
# tpm2-tss logs its own errors to stderr; the tests check flowvault's.
export TSS2_LOG=all+NONE

# write_config FILE KEYS_JSON: KEYS_JSON is the body of "keys".
write_config() {
	cat >"$1" <<JSON
{"plugin_path": ["$PLUGINS"],
 "keys": {$2}}
JSON
	chmod 600 "$1"
}

# oaep_encrypt PUBKEY_PEM PLAIN_FILE OUT: what a WhatsApp Flows client does.
oaep_encrypt() {
	openssl pkeyutl -encrypt -pubin -inkey "$1" -in "$2" -out "$3" \
		-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
		-pkeyopt rsa_mgf1_md:sha256
}

# transient_handles: objects and sessions left in the TPM (should be none).
transient_handles() {
	tpm2_getcap handles-transient
	tpm2_getcap handles-loaded-session
	tpm2_getcap handles-saved-session
}
expect_no_transient() {
	local left
	left=$(transient_handles)
	[ -z "$left" ] || fail "$1: transient objects or sessions left in the TPM: $left"
}

# tss2_part FILE N OUT: the N-th OCTET STRING (1 pubkey, 2 privkey) of a
# TSS2 key file, raw.
tss2_part() {
	python3 - "$1" "$2" "$3" <<'PY'
import base64, sys
text = open(sys.argv[1]).read().split("-----")[2]
der = base64.b64decode("".join(text.split()))
def tlv(b, i):
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return tag, i, n
_, i, _ = tlv(der, 0)
found = 0
while i < len(der):
    tag, start, n = tlv(der, i)
    if tag == 0x04:
        found += 1
        if found == int(sys.argv[2]):
            open(sys.argv[3], "wb").write(der[start:start + n])
            break
    i = start + n
PY
}
