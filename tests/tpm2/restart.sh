# The `tpm2` plugin across a TPM restart: one process decrypts, swtpm is
# stopped and started again (transient objects and the connection are gone),
# and the same key handle decrypts again after reloading the key once.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/tpm2/common.sh"

swtpm_start "$T/tpm"
write_config "$T/fv.json" "
  \"file\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"key_file\": \"flows.tss2\"},
  \"persistent\": {\"provider\": \"tpm2\", \"tcti\": \"$FV_TCTI\", \"handle\": \"0x81000010\"}"

for key in file persistent; do
	run "$FV" --config "$T/fv.json" generate $key
	expect_rc 0 "generate $key"
	"$FV" --config "$T/fv.json" pubkey $key --out "$T/$key.pub"
	printf 'across a restart: %s' $key >"$T/$key.plain"
	oaep_encrypt "$T/$key.pub" "$T/$key.plain" "$T/$key.cipher"

	rm -f "$T/ready" "$T/go"
	"$DECRYPT" "$T/fv.json" $key "$T/$key.cipher" --pause "$T/ready" "$T/go" \
		>"$T/$key.out" 2>"$T/$key.err" &
	pid=$!
	for i in $(seq 300); do
		[ -e "$T/ready" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	[ -e "$T/ready" ] || fail "first decrypt ($key) did not finish: $(cat "$T/$key.err")"
	swtpm_restart
	touch "$T/go"
	rc=0
	wait $pid || rc=$?
	[ $rc = 0 ] || fail "decrypt after the restart ($key) exited $rc: $(cat "$T/$key.err")"
	plain=$(cat "$T/$key.plain")
	[ "$(cat "$T/$key.out")" = "$plain$plain" ] ||
		fail "two decrypts ($key) gave '$(cat "$T/$key.out")'"
	# A transient key is gone after the reset and gets loaded again; a
	# persistent one survives it.
	if [ $key = file ]; then
		grep -q "TPM reset.*reconnecting" "$T/$key.err" ||
			fail "no reload was logged: $(cat "$T/$key.err")"
	fi
	expect_no_transient "after the restart ($key)"
	pass "$key key: decrypt, TPM restart, decrypt again in the same process"
done

# The TPM stays down: the second decrypt fails cleanly (exit 3).
rm -f "$T/ready" "$T/go"
"$DECRYPT" "$T/fv.json" file "$T/file.cipher" --pause "$T/ready" "$T/go" \
	>"$T/down.out" 2>"$T/down.err" &
pid=$!
for i in $(seq 300); do
	[ -e "$T/ready" ] && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
[ -e "$T/ready" ] || fail "first decrypt did not finish: $(cat "$T/down.err")"
swtpm_stop
touch "$T/go"
rc=0
wait $pid || rc=$?
[ $rc = 3 ] || fail "decrypt with the TPM gone exited $rc: $(cat "$T/down.err")"
grep -q "TPM not reachable through TCTI '$FV_TCTI'" "$T/down.err" ||
	fail "no clear error with the TPM gone: $(cat "$T/down.err")"
pass "TPM gone for good: exit 3, names the TCTI"

# Another program flushes the plugin's session (tpm2_flushcontext -l on a
# direct TCTI): the next decryption starts a new session, and the key that
# was loaded with the old one is flushed rather than left in the TPM.
swtpm_restart
# The TPM counts each restart without an orderly shutdown against the
# dictionary-attack limit; the kills above reached it.
tpm2_dictionarylockout -Q -c
rm -f "$T/ready" "$T/go"
"$DECRYPT" "$T/fv.json" file "$T/file.cipher" --pause "$T/ready" "$T/go" \
	>"$T/flushed.out" 2>"$T/flushed.err" &
pid=$!
for i in $(seq 300); do
	[ -e "$T/ready" ] && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
[ -e "$T/ready" ] || fail "first decrypt did not finish: $(cat "$T/flushed.err")"
[ -n "$(tpm2_getcap handles-loaded-session)" ] || fail "no session while the key is open"
tpm2_flushcontext -l
touch "$T/go"
rc=0
wait $pid || rc=$?
[ $rc = 0 ] || fail "decrypt after the session was flushed exited $rc: $(cat "$T/flushed.err")"
plain=$(cat "$T/file.plain")
[ "$(cat "$T/flushed.out")" = "$plain$plain" ] || fail "two decrypts gave '$(cat "$T/flushed.out")'"
grep -q "reconnecting" "$T/flushed.err" || fail "no reload was logged: $(cat "$T/flushed.err")"
expect_no_transient "after the session was flushed"
pass "session flushed by another program: a new session, nothing left behind"
