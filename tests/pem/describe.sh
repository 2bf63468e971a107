# key_describe of a PEM key: a file, OAEP on this host, the key in process
# memory (a fact, not a refusal: a file key is used by choice).
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"
TOOL="$FV_BUILD_DIR/tests/p11-decrypt-tool"

new_rsa "$T/key.pem"
write_config "$T/config.json" "{\"flows\": {\"provider\": \"pem\", \"path\": \"$T/key.pem\"}}"
run "$TOOL" describe "$T/config.json" flows
expect_rc 0 "describe"
for line in "oaep=host" "backend=file" "location=$T/key.pem" "bits=2048" \
	"property in-host-memory=1" "policy: ok"; do
	expect_out_has "$line"
done
expect_not_has "warning" "$T/.out"
pass "pem key_describe: file, host OAEP, in host memory"
