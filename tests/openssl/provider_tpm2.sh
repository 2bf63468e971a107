# The `openssl` plugin with providers ["tpm2"] (tpm2-openssl) on a swtpm it
# starts itself: the public key is the one `openssl -provider tpm2` prints,
# and decryption fails with the documented "no OAEP" error, because Debian
# 12's tpm2-openssl 1.1.1 decrypts with PKCS#1 v1.5 only.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/openssl/common.sh"

# swtpm on a free loopback port pair (server P, control P+1); another test
# may grab a port between the check and the bind, so try a few pairs.
mkdir -m 700 "$T/tpmstate"
start_swtpm() {
	local attempt
	for attempt in 1 2 3 4 5; do
		PORT=$(free_port)
		(exec 3<>"/dev/tcp/127.0.0.1/$((PORT + 1))") 2>/dev/null && continue
		swtpm socket --tpm2 --tpmstate dir="$T/tpmstate" \
			--server type=tcp,port=$PORT,bindaddr=127.0.0.1 \
			--ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
			--flags not-need-init,startup-clear \
			--pid file="$T/swtpm.pid" --daemon 2>"$T/swtpm.err" && return 0
	done
	fail "swtpm did not start: $(cat "$T/swtpm.err")"
}
start_swtpm
at_exit 'kill "$(cat "$T/swtpm.pid")"'
wait_port "$PORT"
export TPM2OPENSSL_TCTI="swtpm:host=127.0.0.1,port=$PORT"

openssl genpkey -provider tpm2 -algorithm RSA -pkeyopt bits:2048 \
	-out "$T/tpm-key.pem" 2>/dev/null || fail "tpm2-openssl could not create a key"
grep -q -- '-----BEGIN TSS2 PRIVATE KEY-----' "$T/tpm-key.pem" ||
	fail "tpm-key.pem is not a TSS2 key file"
openssl pkey -provider tpm2 -provider default -propquery '?provider=tpm2' \
	-in "$T/tpm-key.pem" -pubout -out "$T/tpm-pub.pem"

write_config "$T/fv.json" "{\"provider\": \"openssl\", \"providers\": [\"tpm2\"],
  \"uri\": \"$T/tpm-key.pem\"}"

run "$FV" --config "$T/fv.json" pubkey flows --out "$T/fv-pub.pem"
expect_rc 0 "pubkey through provider tpm2"
cmp -s "$T/fv-pub.pem" "$T/tpm-pub.pem" ||
	fail "flowvault pubkey differs from openssl -provider tpm2 -pubout"
pass "pubkey equals openssl -provider tpm2 output"

run "$FV" --config "$T/fv.json" keys
expect_rc 0 "keys"
expect_out_has "provider: tpm2"
pass "keys shows the provider holding the key"

printf 'flows request key' >"$T/plain"
oaep_encrypt "$T/tpm-pub.pem" "$T/plain" "$T/cipher"
run "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_rc 3 "decrypt with tpm2-openssl 1.1.1"
expect_err_has "unsupported: "
expect_err_has "refuses RSA-OAEP"
expect_err_has "'tpm2' plugin"
[ -z "$OUT" ] || fail "a refused decryption printed plain text: $OUT"
pass "decrypt: documented OAEP refusal naming the tpm2 plugin"

# Without the tpm2 provider the default provider cannot read the file.
write_config "$T/noprov.json" "{\"provider\": \"openssl\", \"uri\": \"$T/tpm-key.pem\"}"
run "$FV" --config "$T/noprov.json" pubkey flows
expect_rc 3 "TSS2 key without the tpm2 provider"
expect_err_has "providers"
pass "TSS2 key without the provider: says to add it"

# The providers live in the plugin's own library context: the process's
# default context, which libflowvault and the application use, has not
# loaded tpm2 (the tool checks right after opening the key).
run env FV_TEST_CHECK_DEFAULT_CTX=tpm2 "$DECRYPT" "$T/fv.json" flows "$T/cipher"
expect_err_has "default context: tpm2 not loaded"
pass "default library context untouched"

kill "$(cat "$T/swtpm.pid")"
for i in $(seq 50); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
	sleep 0.1
done
run "$FV" --config "$T/fv.json" pubkey flows
expect_rc 3 "TPM not reachable"
expect_err_has "provider 'tpm2' failed to load"
expect_err_has "TPM2OPENSSL_TCTI"
pass "TPM not reachable: exit 3 with the TCTI hint"
