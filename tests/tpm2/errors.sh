# The `tpm2` plugin's refusals on a swtpm: wrong authorization value (and
# the dictionary-attack lockout), corrupt and truncated key files, bad
# configuration, a TPM with no free object slot, a TCTI that cannot be
# loaded, and a TPM that is not reachable.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"

swtpm_start "$T/tpm"
write_config "$T/fv.json" "
  \"flows\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"flows.tss2\",
             \"auth\": \"env:FV_TEST_TPM_AUTH\"},
  \"noauth\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"flows.tss2\"},
  \"fresh\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"fresh.tss2\"},
  \"bad\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"bad.tss2\"}"

# --- authorization value ---
export FV_TEST_TPM_AUTH='correct horse'
run "$FV" --config "$T/fv.json" generate flows
expect_rc 0 "generate with an authorization value"
openssl asn1parse -in "$T/flows.tss2" >"$T/asn1"
! grep -q BOOLEAN "$T/asn1" || fail "a key with auth must not say emptyAuth: $(cat "$T/asn1")"
expect_not_has 'correct horse' "$T/flows.tss2"
run "$FV" --config "$T/fv.json" pubkey flows --out "$T/pub.pem"
expect_rc 0 "pubkey"
printf 'with auth' >"$T/plain"
oaep_encrypt "$T/pub.pem" "$T/plain" "$T/cipher"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 0 "decrypt with the right auth"
[ "$OUT" = 'with auth' ] || fail "decrypt gave '$OUT'"
pass "key with an authorization value: emptyAuth absent, round trip"

FV_TEST_TPM_AUTH='wrong horse' run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 3 "decrypt with the wrong auth"
expect_err_has "auth: "
expect_err_has "refuses the key's authorization value"
expect_err_has "keys.flows.auth"
[ -z "$OUT" ] || fail "wrong auth printed '$OUT'"
expect_not_has 'wrong horse' "$T/.err"
run "$DECRYPT" "$T/fv.json" noauth "$T/cipher"
expect_rc 3 "decrypt without the auth the key needs"
expect_err_has "refuses the key's authorization value"
expect_err_has "keys.noauth.auth is not set"
pass "wrong or missing auth: exit 3, status auth, secret not echoed"

# swtpm locks out after 3 failures (TPM2_PT_MAX_AUTH_FAIL); say so.
FV_TEST_TPM_AUTH='wrong again' run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
FV_TEST_TPM_AUTH='wrong again' run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 3 "decrypt in lockout"
expect_err_has "dictionary-attack lockout"
tpm2_dictionarylockout -Q -c
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 0 "decrypt after clearing the lockout"
pass "lockout is reported as such"
expect_no_transient "auth tests"

# --- damaged key files ---
KEY="$T/flows.tss2"
check_bad() { # check_bad WHAT TEXT...: the key 'bad' is refused with TEXT
	local what=$1 text
	shift
	run "$FV" --config "$T/fv.json" pubkey bad
	expect_rc 3 "$what"
	for text in "$@"; do expect_err_has "$text"; done
	expect_err_has "keys.bad.key_file '$T/bad.tss2'"
}
head -c 400 "$KEY" >"$T/bad.tss2"
check_bad "truncated key file" "damaged or truncated"
pass "truncated key file: exit 3, damaged or truncated"

# Only the base64 body cut short, with a proper END line.
{ head -5 "$KEY"; tail -1 "$KEY"; } >"$T/bad.tss2"
check_bad "key file with a short body" "damaged or truncated"
sed '3s/^..../!!!!/' "$KEY" >"$T/bad.tss2"
check_bad "base64 damaged" "damaged or truncated"
: >"$T/bad.tss2"
check_bad "empty key file" "is empty"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/bad.tss2" 2>/dev/null
check_bad "software PEM key" "'PRIVATE KEY' PEM block" "pem provider"
echo 'not a key' >"$T/bad.tss2"
check_bad "text file" "no '-----BEGIN TSS2 PRIVATE KEY-----' line"
pass "damaged, empty and foreign files: exit 3 with the reason"

# ASN.1 intact, private blob altered: the TPM's integrity check refuses it.
python3 - "$KEY" "$T/bad.tss2" <<'PY'
import base64, sys
lines = open(sys.argv[1]).read().split("\n")
der = bytearray(base64.b64decode("".join(lines[1:-2])))
der[-20] ^= 0x01
b64 = base64.encodebytes(bytes(der)).decode().replace("\n", "")
body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
open(sys.argv[2], "w").write(lines[0] + "\n" + body + "\n" + lines[-2] + "\n")
PY
check_bad "altered private part" "refuses to load it" "another TPM"
expect_no_transient "damaged files"
pass "altered private part: the TPM refuses it, exit 3"

rm -f "$T/bad.tss2"
check_bad "missing key file" "no such file" "flowvault generate"
pass "missing key file: exit 3, says how to create it"

# --- configuration ---
write_config "$T/both.json" "\"k\": {\"provider\": \"tpm2\", \"key_file\": \"a\", \"handle\": \"0x81000010\"}"
run "$FV" --config "$T/both.json" pubkey k
expect_rc 2 "key_file and handle together"
expect_err_has "exactly one of key_file"
write_config "$T/h.json" "\"k\": {\"provider\": \"tpm2\", \"handle\": \"0x01000010\"}"
run "$FV" --config "$T/h.json" pubkey k
expect_rc 2 "transient handle"
expect_err_has "keys.k.handle: '0x01000010' is not a persistent handle"
write_config "$T/lit.json" "\"k\": {\"provider\": \"tpm2\", \"key_file\": \"a\", \"auth\": \"hunter2\"}"
run "$FV" --config "$T/lit.json" pubkey k
expect_rc 2 "literal auth"
expect_not_has hunter2 "$T/.err" "$T/.out"
pass "configuration errors: exit 2"

# --- a full TPM: the same advice for a handle key as for a key file ---
write_config "$T/full.json" "
  \"file\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"full.tss2\"},
  \"handle\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000010\"}"
for key in file handle; do
	run "$FV" --config "$T/full.json" generate $key
	expect_rc 0 "generate $key for the full-TPM test"
done
# Another program leaves its objects loaded: swtpm has three slots.
for i in 1 2 3; do tpm2_createprimary -Q -C o -G ecc -c "$T/fill$i.ctx"; done
for key in file handle; do
	run "$FV" --config "$T/full.json" pubkey $key
	expect_rc 3 "$key key with every transient slot taken"
	expect_err_has "TPM has no free transient object slot"
	expect_err_has "tpm2_flushcontext -t"
done
tpm2_flushcontext -t
run "$FV" --config "$T/full.json" pubkey handle
expect_rc 0 "handle key once the slots are free"
pass "object limit: key file and handle keys both say to flush or use a resource manager"

# --- a TCTI whose library cannot be loaded ---
write_config "$T/tcti.json" "
  \"unknown\": {\"provider\": \"tpm2\", \"tcti\": \"nosuchtcti\", \"key_file\": \"flows.tss2\"},
  \"notlib\": {\"provider\": \"tpm2\", \"tcti\": \"$T/fv.json:x\", \"key_file\": \"flows.tss2\"},
  \"abrmd\": {\"provider\": \"tpm2\", \"tcti\": \"tabrmd:bus_type=session\", \"key_file\": \"flows.tss2\"}"
run "$FV" --config "$T/tcti.json" pubkey unknown
expect_rc 2 "unknown TCTI name"
expect_err_has "keys.unknown.tcti: unknown TCTI 'nosuchtcti'"
expect_err_has "libtss2-tcti-nosuchtcti.so.0"
case "$ERR" in *"not reachable"*) fail "an unknown TCTI is reported as an unreachable TPM: $ERR" ;; esac
run "$FV" --config "$T/tcti.json" pubkey notlib
expect_rc 2 "a TCTI path that is not a library"
expect_err_has "'$T/fv.json' cannot be loaded as a TCTI library"
if ! ldconfig -p | grep -q 'libtss2-tcti-tabrmd\.so\.0 '; then
	run "$FV" --config "$T/tcti.json" pubkey abrmd
	expect_rc 3 "tabrmd without its TCTI library"
	expect_err_has "TCTI 'tabrmd': its library libtss2-tcti-tabrmd.so.0 cannot be loaded"
	expect_err_has "Debian package libtss2-tcti-tabrmd0"
	case "$ERR" in *"not reachable"*) fail "a missing TCTI library is reported as an unreachable TPM: $ERR" ;; esac
	pass "tabrmd without libtss2-tcti-tabrmd0: names the library and the package"
else
	echo "note: libtss2-tcti-tabrmd0 is installed; the missing-library case runs with nosuchtcti only"
fi
pass "a TCTI that cannot be loaded says so instead of 'TPM not reachable'"

# --- TPM not reachable ---
swtpm_stop
run "$FV" --config "$T/fv.json" pubkey flows
expect_rc 3 "TPM not reachable"
expect_err_has "TPM not reachable through TCTI '$FV_TCTI'"
expect_err_has "keys.flows.tcti"
run "$FV" --config "$T/fv.json" generate fresh
expect_rc 3 "generate with the TPM not reachable"
[ ! -e "$T/fresh.tss2" ] || fail "a failed generate left fresh.tss2 behind"
expect_err_has "TPM not reachable"
pass "TPM not reachable: exit 3, the message names the TCTI"

# --- a TCTI named by path is code: checked like every module, loaded from
# the checked file ---
swtpm_start "$T/tpm-path"
lib=$(ls /usr/lib/*/libtss2-tcti-swtpm.so.0 2>/dev/null | head -1)
[ -n "$lib" ] || fail "libtss2-tcti-swtpm.so.0 not found"
conf=${FV_TCTI#swtpm:}
mkdir -p "$T/ww"
chmod 0777 "$T/ww"
cp "$lib" "$T/ww/libtss2-tcti-swtpm.so.0"
write_config "$T/path.json" "
  \"bypath\": {\"provider\": \"tpm2\", \"tcti\": \"$lib:$conf\", \"key_file\": \"bypath.tss2\"},
  \"ww\": {\"provider\": \"tpm2\", \"tcti\": \"$T/ww/libtss2-tcti-swtpm.so.0:$conf\", \"key_file\": \"ww.tss2\"}"
run "$FV" --config "$T/path.json" generate bypath
expect_rc 0 "generate through a TCTI named by its path in a system directory"
run "$FV" --config "$T/path.json" generate ww
[ "$RC" != 0 ] || fail "a TCTI library in a world-writable directory was loaded"
expect_err_has "TCTI library"
expect_err_has "is writable by others"
[ ! -e "$T/ww.tss2" ] || fail "a refused TCTI left a key file"
pass "a TCTI named by path: loaded from the checked file; refused in a world-writable directory"
