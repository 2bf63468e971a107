# What the `tpm2` plugin says about a key (key_describe) and what the host
# does with it: keys made with tpm2-tools without fixedTPM/fixedParent (a
# duplicable key) are refused by default, naming the attribute, and used
# with a warning under "require_non_extractable": false; a key that can also
# sign is used with a warning. Both as a TSS2 key file and at a handle.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"

swtpm_start "$T/tpm"
cd "$T"
# A persistent storage key for tpm2-tools' keys (and the key files' parent).
tpm2_createprimary -Q -C o -g sha256 -G rsa2048:aes128cfb -c srk.ctx
tpm2_evictcontrol -Q -C o -c srk.ctx 0x81000001
tpm2_flushcontext -t

# tools_key NAME ATTRIBUTES HANDLE: a key made by tpm2-tools, as the TSS2
# key file NAME.tss2 and persistent at HANDLE.
tools_key() {
	tpm2_create -Q -C 0x81000001 -G rsa2048 -a "$2" -u "$1.pub" -r "$1.priv"
	tpm2_encodeobject -Q -C 0x81000001 -u "$1.pub" -r "$1.priv" -o "$1.tss2"
	tpm2_load -Q -C 0x81000001 -u "$1.pub" -r "$1.priv" -c "$1.ctx"
	tpm2_evictcontrol -Q -C o -c "$1.ctx" "$3"
	# tpm2-tools leaves its objects and a session behind on a direct TCTI.
	tpm2_flushcontext -t
	tpm2_flushcontext -l
	tpm2_flushcontext -s
}
tools_key dup 'sensitivedataorigin|userwithauth|decrypt' 0x81000020
tools_key sign 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|decrypt|sign' 0x81000021

write_config "$T/fv.json" "
  \"ours\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"ours.tss2\"},
  \"ours_h\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000010\"},
  \"dup\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"dup.tss2\"},
  \"dup_h\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000020\"},
  \"dup_ok\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"dup.tss2\",
              \"require_non_extractable\": false},
  \"dup_h_ok\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000020\",
                \"require_non_extractable\": false},
  \"sign\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"sign.tss2\"},
  \"sign_h\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000021\"}"

# --- a key flowvault generated: described, no warnings ---
run "$FV" --config "$T/fv.json" generate ours
expect_rc 0 "generate ours"
run "$FV" --config "$T/fv.json" generate ours_h
expect_rc 0 "generate ours_h"
run "$DECRYPT" "$T/fv.json" ours --describe
expect_rc 0 "describe ours"
[ "$OUT" = "oaep: tpm
backend: tpm
location: TPM key file '$T/ours.tss2' (parent 0x81000001), TCTI $FV_TCTI
bits: 2048" ] || fail "describe ours gave:
$OUT"
run "$DECRYPT" "$T/fv.json" ours_h --describe
expect_rc 0 "describe ours_h"
expect_out_has "location: TPM handle 0x81000010, TCTI $FV_TCTI"
expect_out_has "bits: 2048"
case "$OUT" in *warning:*) fail "a generated key has warnings: $OUT" ;; esac
pass "generated keys: oaep tpm, backend tpm, location, 2048 bits, no warnings"

# --- duplicable keys are refused by default, naming the attributes ---
for key in dup dup_h; do
	run "$DECRYPT" "$T/fv.json" $key --describe
	expect_rc 3 "open the duplicable key $key"
	expect_err_has "refusing a key that can leave its store"
	expect_err_has "fixedTPM is clear"
	expect_err_has "fixedParent is clear"
	expect_err_has "keys.$key.require_non_extractable"
	run "$FV" --config "$T/fv.json" pubkey $key
	[ "$RC" != 0 ] || fail "pubkey of the duplicable key $key succeeded"
	expect_err_has "fixedTPM is clear"
done
pass "a duplicable tpm2-tools key (file and handle) is refused by default"

# --- ... and used, with the warnings, when the configuration allows it ---
printf 'allowed anyway' >"$T/plain"
for key in dup_ok dup_h_ok; do
	run "$DECRYPT" "$T/fv.json" $key --describe
	expect_rc 0 "open $key with require_non_extractable false"
	expect_out_has "warning: not-fixed-tpm refused: the TPM key can be duplicated to another TPM"
	expect_out_has "warning: not-fixed-parent refused: the TPM key can be duplicated under another parent"
	"$FV" --config "$T/fv.json" pubkey $key --out "$T/$key.pub" || fail "pubkey $key"
	oaep_encrypt "$T/$key.pub" "$T/plain" "$T/$key.cipher"
	run "$DECRYPT" "$T/fv.json" $key "$T/$key.cipher"
	expect_rc 0 "decrypt with $key"
	[ "$OUT" = 'allowed anyway' ] || fail "decrypt with $key gave '$OUT'"
done
pass "require_non_extractable false: the duplicable key is used, with both warnings"

# --- a key that can also sign: a warning, not a refusal ---
for key in sign sign_h; do
	run "$DECRYPT" "$T/fv.json" $key --describe
	expect_rc 0 "open the signing key $key"
	expect_out_has "warning: can-sign warned: the key can also sign"
	case "$OUT" in *refused*) fail "$key: a refused property: $OUT" ;; esac
	"$FV" --config "$T/fv.json" pubkey $key --out "$T/$key.pub" || fail "pubkey $key"
	oaep_encrypt "$T/$key.pub" "$T/plain" "$T/$key.cipher"
	run "$DECRYPT" "$T/fv.json" $key "$T/$key.cipher"
	expect_rc 0 "decrypt with $key"
done
pass "a key with sign is used, with the can-sign warning"
expect_no_transient "properties"
