# The Vault simulator against hvac, with and without a namespace: a
# simulator the client rejects is wrong.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/cloud/cloud_lib.sh"

cloud_ca
vault_setup
for ns in "" flows-ns; do
	port=$(free_port)
	if [ -n "$ns" ]; then vault_start "$port" --namespace "$ns"; else vault_start "$port"; fi
	run "$PY" "$CLOUD_DIR/vendor_hvac.py" "https://127.0.0.1:$port" "$T/ca.pem" \
		"$(cat "$T/vault/root.token")" "$VAULT_ROLE_ID" "$(cat "$T/vault/secret_id")" flows \
		"$(cat "$T/vault/jwt")" $ns
	[ "$RC" = 0 ] || fail "hvac against the Vault simulator${ns:+ (namespace $ns)}:
$OUT
$ERR"
	printf '%s\n' "$OUT"
done
pass "hvac accepts the Vault simulator, in the root namespace and in a child one"

# The simulator refuses what Vault refuses, with Vault's status codes and
# {"errors": [...]}; unknown parameters are warnings, as in Vault.
port=$(free_port)
vault_start "$port"
ROOT=$(cat "$T/vault/root.token")
vault() { # vault METHOD PATH [BODY] [CURL ARGS...]: status, body in $T/v.out
	local method=$1 path=$2 body=${3:-}
	shift 3 || shift $#
	curl -sS --cacert "$T/ca.pem" -o "$T/v.out" -w '%{http_code}' -X "$method" \
		${body:+--data "$body"} "$@" "https://127.0.0.1:$port/v1/$path"
}
expect_vault() { # expect_vault STATUS TEXT RESULT
	[ "$3" = "$1" ] && grep -qF -- "$2" "$T/v.out" || fail "expected $1 '$2', got $3 $(cat "$T/v.out")"
}
TOK=(-H "X-Vault-Token: $ROOT" -H "Content-Type: application/json")
expect_vault 403 '"permission denied"' "$(vault POST transit/keys/k '{"type":"rsa-2048"}' -H "Content-Type: application/json")"
expect_vault 403 '"permission denied"' "$(vault GET transit/keys/k '' -H "X-Vault-Token: hvs.forged")"
expect_vault 200 '"type": "rsa-2048"' "$(vault POST transit/keys/k '{"type":"rsa-2048"}' "${TOK[@]}")"
expect_vault 200 'Endpoint ignored these unrecognized parameters: [bogus]' \
	"$(vault POST transit/keys/k2 '{"type":"rsa-2048","bogus":1}' "${TOK[@]}")"
expect_vault 400 'failed to parse JSON input' "$(vault POST transit/decrypt/k '{"ciphertext":' "${TOK[@]}")"
expect_vault 400 'missing ciphertext to decrypt' "$(vault POST transit/decrypt/k '{}' "${TOK[@]}")"
expect_vault 400 'invalid ciphertext' "$(vault POST transit/decrypt/k '{"ciphertext":"AAAA"}' "${TOK[@]}")"
expect_vault 400 'failed to RSA decrypt' "$(vault POST transit/decrypt/k "{\"ciphertext\":\"vault:v1:$(head -c 256 /dev/zero | base64 -w0)\"}" "${TOK[@]}")"
expect_vault 400 'encryption key not found' "$(vault POST transit/decrypt/nothing '{"ciphertext":"vault:v1:AAAA"}' "${TOK[@]}")"
expect_vault 404 '"errors": []' "$(vault GET transit/keys/nothing '' "${TOK[@]}")"
expect_vault 400 'invalid role or secret ID' "$(vault POST auth/approle/login '{"role_id":"x","secret_id":"y"}' -H "Content-Type: application/json")"
pass "the Vault simulator refuses missing and bad tokens, bad JSON and ciphertexts as Vault does; unknown parameters are warnings"
