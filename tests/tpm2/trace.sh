# The TPM command stream, captured by tpm2-tss's pcap TCTI, carries neither
# the decrypted AES key nor the key's authorization value: decryption runs in
# a salted HMAC session with response parameter encryption, and generate
# sends the new key's auth value under command parameter encryption. The
# same capture of a decryption by tpm2_rsadecrypt (no parameter encryption)
# shows the AES key, so the check can see it when it is there.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"

TRACE="$FV_SOURCE_DIR/tests/tpm2/tpm_trace.py"
CC_RSA_DECRYPT=159
CC_START_AUTH_SESSION=176
CC_CREATE=153

swtpm_start "$T/tpm"
export FV_TEST_TPM_AUTH='trace-auth-5e1b7c0d'
AUTH_HEX=$(printf %s "$FV_TEST_TPM_AUTH" | xxd -p | tr -d '\n')
write_config "$T/fv.json" "
  \"handle\": {\"provider\": \"tpm2\", \"tcti\": \"pcap:$FV_TCTI\", \"handle\": \"0x81000010\",
              \"auth\": \"env:FV_TEST_TPM_AUTH\"},
  \"file\": {\"provider\": \"tpm2\", \"tcti\": \"pcap:$FV_TCTI\", \"key_file\": \"flows.tss2\",
            \"auth\": \"env:FV_TEST_TPM_AUTH\"}"

# trace_has FILE HEX: 1 when the bytes occur anywhere in the capture.
trace_has() { python3 "$TRACE" "$1" contains "$2"; }
trace_count() { python3 "$TRACE" "$1" count "$2"; }

# --- generate: the auth value goes to TPM2_Create encrypted ---
for key in handle file; do
	TCTI_PCAP_FILE="$T/gen-$key.pcap" run "$FV" --config "$T/fv.json" generate $key
	expect_rc 0 "generate $key with an auth value"
	[ "$(trace_count "$T/gen-$key.pcap" $CC_CREATE)" = 1 ] ||
		fail "no TPM2_Create in the capture of generate $key"
	[ "$(trace_has "$T/gen-$key.pcap" "$AUTH_HEX")" = 0 ] ||
		fail "generate $key: the auth value crosses the TPM interface in the clear"
done
pass "generate: the new key's auth value is not on the bus"

# --- decrypt: a Flows AES key, known to this test ---
head -c 16 /dev/urandom >"$T/aes"
AES_HEX=$(xxd -p "$T/aes" | tr -d '\n')
for key in handle file; do
	"$FV" --config "$T/fv.json" pubkey $key --out "$T/$key.pub" 2>/dev/null ||
		fail "pubkey $key"
	oaep_encrypt "$T/$key.pub" "$T/aes" "$T/$key.cipher"
	TCTI_PCAP_FILE="$T/dec-$key.pcap" "$DECRYPT" "$T/fv.json" $key "$T/$key.cipher" \
		>"$T/$key.out" 2>"$T/$key.err" || fail "decrypt with $key: $(cat "$T/$key.err")"
	cmp -s "$T/aes" "$T/$key.out" || fail "decrypt with $key gave another AES key"
	[ "$(trace_count "$T/dec-$key.pcap" $CC_RSA_DECRYPT)" = 1 ] ||
		fail "no successful TPM2_RSA_Decrypt in the capture ($key)"
	[ "$(trace_has "$T/dec-$key.pcap" "$AES_HEX")" = 0 ] ||
		fail "$key: the decrypted AES key crosses the TPM interface in the clear"
	[ "$(trace_has "$T/dec-$key.pcap" "$AUTH_HEX")" = 0 ] ||
		fail "$key: the key's auth value crosses the TPM interface in the clear"
done
pass "decrypt: neither the AES key nor the auth value is on the bus (key file and handle)"

# One session serves every decryption of the key handle.
TCTI_PCAP_FILE="$T/threads.pcap" run "$DECRYPT" "$T/fv.json" handle "$T/handle.cipher" --threads 4
expect_rc 0 "decrypt from 4 threads"
n=$(trace_count "$T/threads.pcap" $CC_RSA_DECRYPT)
s=$(trace_count "$T/threads.pcap" $CC_START_AUTH_SESSION)
[ "$n" = 41 ] || fail "expected 41 TPM2_RSA_Decrypt, captured $n"
[ "$s" = 1 ] || fail "expected one session for 41 decryptions, captured $s TPM2_StartAuthSession"
[ "$(trace_has "$T/threads.pcap" "$AES_HEX")" = 0 ] || fail "threads: the AES key is on the bus"
pass "41 decryptions in one salted session, AES key never on the bus"

# --- the control: without parameter encryption the AES key is on the bus ---
printf %s "$FV_TEST_TPM_AUTH" >"$T/auth"
TCTI_PCAP_FILE="$T/control.pcap" tpm2_rsadecrypt -T "pcap:$FV_TCTI" -c 0x81000010 \
	-p "file:$T/auth" -s oaep -o "$T/control.out" "$T/handle.cipher" 2>"$T/control.err" ||
	fail "tpm2_rsadecrypt: $(cat "$T/control.err")"
cmp -s "$T/aes" "$T/control.out" || fail "tpm2_rsadecrypt gave another AES key"
[ "$(python3 "$TRACE" "$T/control.pcap" response $CC_RSA_DECRYPT "$AES_HEX")" = 1 ] ||
	fail "the capture check does not find the AES key in tpm2_rsadecrypt's clear response"
pass "control: tpm2_rsadecrypt's response carries the AES key in the clear, and the check sees it"

expect_no_transient "trace tests"
pass "no object or session left in the TPM"
