# p11-kit remoting and registered module names:
#  - a SoftHSM2 token through p11-kit-client.so whose `p11-kit server` is
#    killed and started again: decryptions fail while it is away and work
#    again once it is back, in the same process, as for a pulled token;
#  - an NSS softokn token exported by a `p11-kit server` that reaches it
#    through its p11-kit registration (x-init-reserved, wrapped in
#    pkcs11-spy): the spy log on the server side shows the OAEP-SHA256
#    decryption running in the token, never raw RSA;
#  - registered names as p11-kit reads them from the user's configuration
#    ($XDG_CONFIG_HOME/pkcs11/modules): softokn with x-init-reserved, and a
#    "remote:" registration; p11-kit skips that configuration for root, which
#    the message for an unknown name then says.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"

# ---- SoftHSM2 through p11-kit-client.so; the server goes away and comes back
TOKEN=remote
PIN=246810
setup_softhsm "$TOKEN" "$PIN"
printf '%s\n' "$PIN" >"$T/pin"
chmod 600 "$T/pin"
p11kit_server_start hsm "pkcs11:token=$TOKEN" --provider "$SOFTHSM_MODULE"
write_config "$T/hsm.json" "{\"provider\": \"pkcs11\", \"module\": \"$CLIENT_MODULE\", \"allow_host_oaep\": true,
  \"uri\": \"pkcs11:token=$TOKEN;object=flows-key\", \"pin\": \"file:$T/pin\"}"
run "$FV" --config "$T/hsm.json" generate flows
expect_rc 0 "generate through p11-kit-client.so"
"$FV" --config "$T/hsm.json" pubkey flows >"$T/hsm.pub"
printf '{"aes_key":"%s"}' "$(openssl rand -hex 16)" >"$T/plain"
oaep_encrypt "$T/hsm.pub" "$T/plain" "$T/hsm.cipher"

mkdir "$T/steps"
P11_TOOL_DEBUG=1 "$TOOL" steps "$T/hsm.json" flows "$T/hsm.cipher" "$T/plain" "$T/steps" \
	2>"$T/steps.err" &
STEPS_PID=$!
at_exit "kill $STEPS_PID"
step() { # step N: let the tool decrypt once more; its result in $RESULT
	local i
	touch "$T/steps/go.$1"
	for ((i = 0; i < 300; i++)); do
		[ -e "$T/steps/result.$1" ] && break
		kill -0 "$STEPS_PID" 2>/dev/null || fail "the decrypting process died: $(cat "$T/steps.err")"
		sleep 0.1
	done
	RESULT=$(cat "$T/steps/result.$1" 2>/dev/null) || fail "no result for step $1"
}
step 1
[ "$RESULT" = ok ] || fail "decrypt through the server: $RESULT"
p11kit_server_stop
step 2
grep -q "^error -7: .*token '$TOKEN'" <<<"$RESULT" || fail "decrypt with the server gone: $RESULT"
step 3
grep -q "^error -7: " <<<"$RESULT" || fail "decrypt with the server still gone: $RESULT"
p11kit_server_start hsm "pkcs11:token=$TOKEN" --provider "$SOFTHSM_MODULE"
step 4
[ "$RESULT" = ok ] || fail "decrypt after the server came back: $RESULT
$(cat "$T/steps.err")"
step 5
[ "$RESULT" = ok ] || fail "second decrypt after the server came back: $RESULT"
touch "$T/steps/stop"
wait "$STEPS_PID" || fail "the decrypting process failed: $(cat "$T/steps.err")"
grep -q "initialized it again" "$T/steps.err" || fail "no re-initialization logged: $(cat "$T/steps.err")"
pass "p11-kit server killed: backend errors; started again: the same process decrypts again"
p11kit_server_stop

# ---- NSS softokn exported by a p11-kit server that reaches it through its
# p11-kit registration (the server runs as nobody: see softokn_server_start)
setup_softokn
softokn_server_start nss
: >"$T/empty-pin"
chmod 600 "$T/empty-pin"
write_config "$T/nss.json" "{\"provider\": \"pkcs11\", \"module\": \"$CLIENT_MODULE\",
  \"uri\": \"pkcs11:token=NSS%20Certificate%20DB;object=flows-key\", \"pin\": \"file:$T/empty-pin\"}"
run "$FV" --config "$T/nss.json" generate flows
expect_rc 0 "generate in softokn through p11-kit server"
run "$FV" --config "$T/nss.json" keys
expect_out_has "oaep: token"
"$FV" --config "$T/nss.json" pubkey flows >"$T/nss.pub"
oaep_encrypt "$T/nss.pub" "$T/plain" "$T/nss.cipher"
: >"$T/spy-home/spy.log"
run "$TOOL" decrypt "$T/nss.json" flows "$T/nss.cipher" "$T/nss.out"
expect_rc 0 "decrypt in softokn through p11-kit server"
cmp -s "$T/plain" "$T/nss.out" || fail "softokn through p11-kit server: wrong plain text"
grep -q "pMechanism->type = CKM_RSA_PKCS_OAEP" "$T/spy-home/spy.log" || fail "no CKM_RSA_PKCS_OAEP in the server's spy log"
grep -q "hashAlg = CKM_SHA256" "$T/spy-home/spy.log" || fail "no CKM_SHA256 OAEP hash in the server's spy log"
grep -q "mgf = CKG_MGF1_SHA256" "$T/spy-home/spy.log" || fail "no CKG_MGF1_SHA256 in the server's spy log"
grep -q "C_Decrypt$" "$T/spy-home/spy.log" || fail "no C_Decrypt in the server's spy log"
expect_not_has "CKM_RSA_X_509" "$T/spy-home/spy.log"
pass "softokn through p11-kit server: the server-side spy shows OAEP-SHA256 in the token, no raw RSA"

# flowvault itself as nobody, with the user's own registrations (p11-kit
# reads them only outside root): softokn by name with x-init-reserved, and a
# "remote:" registration of the server above.
mkdir -p "$T/nobody/xdg/pkcs11/modules"
printf 'module: %s\nx-init-reserved: %s\n' "$SOFTOKN_MODULE" "$SOFTOKN_ARGS" \
	>"$T/nobody/xdg/pkcs11/modules/fvsoftokn.module"
printf 'remote: %s\n' "$P11_KIT_SERVER_ADDRESS" >"$T/nobody/xdg/pkcs11/modules/fvremote.module"
# An unrelated registration that cannot load is skipped, as p11-kit does.
printf 'module: %s\n' "$T/nobody/no-such-module.so" >"$T/nobody/xdg/pkcs11/modules/fvbroken.module"
chown -R nobody:nogroup "$T/nobody"
chmod -R go+rX "$T/nobody"
AS_NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
NOBODY_ENV="env XDG_CONFIG_HOME=$T/nobody/xdg HOME=$T/nobody"
export FV_EMPTY_PIN=
names="fvremote fvsoftokn"
# A build tree under a directory only root may enter (a clone in a 0700
# temporary directory) cannot be run as nobody: say so instead of failing.
if ! $AS_NOBODY test -x "$TOOL"; then
	echo "note: nobody cannot run $TOOL (a directory above it is closed): registered names not checked as nobody"
	names=""
fi
for name in $names; do
	printf '{"keys": {"flows": {"provider": "pkcs11", "module": "%s", "uri": "pkcs11:token=NSS%%20Certificate%%20DB;object=flows-key", "pin": "env:FV_EMPTY_PIN"}}}\n' \
		"$name" >"$T/nobody/$name.json"
	chmod 644 "$T/nobody/$name.json"
	cp "$T/nss.cipher" "$T/nobody/cipher"
	chmod 644 "$T/nobody/cipher"
	run timeout 30 $AS_NOBODY $NOBODY_ENV "$TOOL" decrypt "$T/nobody/$name.json" flows "$T/nobody/cipher" "$T/nobody/$name.out"
	expect_rc 0 "decrypt with the p11-kit module named '$name'"
	cmp -s "$T/plain" "$T/nobody/$name.out" || fail "module '$name': wrong plain text"
done
pass "registered names: softokn with x-init-reserved, and a remote: registration (a broken one beside them skipped)"

# As root p11-kit ignores those registrations, and the message says so.
write_config "$T/root-byname.json" "{\"provider\": \"pkcs11\", \"module\": \"fvsoftokn\",
  \"uri\": \"pkcs11:token=NSS%20Certificate%20DB;object=flows-key\", \"pin\": \"env:FV_EMPTY_PIN\"}"
run env XDG_CONFIG_HOME="$T/nobody/xdg" "$FV" --config "$T/root-byname.json" pubkey flows
expect_rc 2 "registered name as root"
expect_err_has "no module 'fvsoftokn' is registered with p11-kit"
expect_err_has "running as root"
pass "as root: the user's registrations are ignored, and the message says so"
