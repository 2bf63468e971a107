# The Key Vault simulator checked against Microsoft's own client library
# (@azure/keyvault-keys: KeyClient and CryptographyClient, with the SDK's
# own bearer-challenge handling): a simulator the official client rejects is
# wrong. Also checks refusals the client never provokes.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/cloud2/cloud2_lib.sh"

cloud2_node_modules
cloud2_ca
PORT=$(free_port)
IMDS=$(free_port)
CLIENT_ID=11111111-2222-3333-4444-555555555555
TENANT=00000000-0000-0000-0000-00000000feed
head -c 24 /dev/urandom | base64 >"$T/client-secret"
cloud2_start azure azure_kv_sim.py --port "$PORT" --imds-port "$IMDS" \
	--cert "$T/server.pem" --key "$T/server.key" --tenant "$TENANT" \
	--client-id "$CLIENT_ID" --client-secret-file "$T/client-secret"

run env NODE_EXTRA_CA_CERTS="$T/ca.pem" node "$CLOUD2_DIR/azure_client_check.js" \
	"$PORT" "$CLIENT_ID" "$T/client-secret"
expect_rc 0 "@azure/keyvault-keys against the simulator"
expect_out_has '"ok":true'
pass "@azure/keyvault-keys creates an RSA-HSM key, reads its JWK and decrypts RSA-OAEP-256 through the simulator"

V="https://127.0.0.1:$PORT"
TOKEN=$(curl -sf -H 'Metadata: true' \
	"http://127.0.0.1:$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net" |
	"$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
[ -n "$TOKEN" ] || fail "no token from IMDS"
aerr() { # aerr EXPECTED_HTTP EXPECTED_CODE CURL_ARGS...
	local code=$1 ecode=$2 body; shift 2
	body=$(curl -s --cacert "$T/ca.pem" -D "$T/headers" -w '\n%{http_code}' "$@")
	[ "$(tail -1 <<<"$body")" = "$code" ] || fail "expected HTTP $code for $*: $body"
	"$PY" -c 'import json,sys
e = json.loads(sys.argv[1])["error"]
assert set(e) == {"code", "message"}, e
assert e["code"] == sys.argv[2], e' "$(sed '$d' <<<"$body")" "$ecode" || fail "error shape for $*: $body"
}
aerr 401 Unauthorized -X POST "$V/keys/k/create?api-version=7.4" -H 'Content-Type: application/json' -d '{"kty":"RSA"}'
grep -qi "^WWW-Authenticate: Bearer authorization=\"https://127.0.0.1:$PORT/$TENANT\", resource=\"https://vault.azure.net\"" \
	"$T/headers" || fail "no bearer challenge: $(cat "$T/headers")"
aerr 401 Unauthorized "$V/keys/k?api-version=7.4" -H "Authorization: Bearer forged"
aerr 400 BadParameter "$V/keys/k" -H "Authorization: Bearer $TOKEN"
aerr 400 BadParameter "$V/keys/k?api-version=1.0" -H "Authorization: Bearer $TOKEN"
aerr 415 UnsupportedMediaType -X POST "$V/keys/k/create?api-version=7.4" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: text/plain' -d '{"kty":"RSA"}'
aerr 400 BadParameter -X POST "$V/keys/k/create?api-version=7.4" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{"kty":"RSA","bogus":1}'
aerr 404 KeyNotFound "$V/keys/none?api-version=7.4" -H "Authorization: Bearer $TOKEN"
pass "missing/forged token (with the bearer challenge), missing or unknown api-version, wrong content type, unknown members refused in Key Vault's error shape"

code=$(curl -s -o /dev/null -w '%{http_code}' \
	"http://127.0.0.1:$IMDS/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net")
[ "$code" = 400 ] || fail "IMDS without Metadata: true gave $code"
body=$(curl -s --cacert "$T/ca.pem" -d "grant_type=client_credentials&client_id=$CLIENT_ID&client_secret=wrong&scope=https://vault.azure.net/.default" \
	"$V/$TENANT/oauth2/v2.0/token")
grep -q '"invalid_client"' <<<"$body" || fail "token endpoint took a wrong secret: $body"
pass "IMDS needs Metadata: true; the token endpoint refuses a wrong client secret"
