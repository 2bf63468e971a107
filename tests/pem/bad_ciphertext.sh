# A ciphertext above the modulus (256 x 0xFF) with a PEM key: `flow decrypt`
# exits 6 and `serve` answers 421 with no ERROR line and no key-error count.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/bad_ciphertext_lib.sh"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/key.pem" 2>/dev/null
chmod 600 "$T/key.pem"
printf '{"keys": {"file": {"provider": "pem", "path": "%s"}}}\n' \
	"$T/key.pem" >"$T/config.json"
chmod 600 "$T/config.json"
check_bad_ciphertext "$T/config.json" file "pem"
