# The Cloud KMS simulator checked against Google's own client library
# (@google-cloud/kms over its REST transport, token from the simulated
# metadata server through google-auth-library): a simulator the official
# client rejects is wrong. Also checks refusals the client never provokes.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/cloud2/cloud2_lib.sh"

cloud2_node_modules
cloud2_ca
PORT=$(free_port)
MD=$(free_port)
cloud2_start gcp gcp_kms_sim.py --port "$PORT" --metadata-port "$MD" \
	--cert "$T/server.pem" --key "$T/server.key"

run env GCE_METADATA_HOST="127.0.0.1:$MD" NODE_EXTRA_CA_CERTS="$T/ca.pem" \
	node "$CLOUD2_DIR/gcp_client_check.js" "$PORT"
expect_rc 0 "@google-cloud/kms against the simulator"
expect_out_has '"ok":true'
pass "@google-cloud/kms creates a key, reads the public key and decrypts through the simulator"

# What the client never sends: each is refused in Google's error shape.
API="https://127.0.0.1:$PORT/v1/projects/sim-project/locations/global/keyRings"
TOKEN=$(curl -sf -H 'Metadata-Flavor: Google' \
	"http://127.0.0.1:$MD/computeMetadata/v1/instance/service-accounts/default/token" |
	"$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
[ -n "$TOKEN" ] || fail "no token from the metadata server"
gerr() { # gerr EXPECTED_HTTP EXPECTED_STATUS CURL_ARGS...
	local code=$1 status=$2 body; shift 2
	body=$(curl -s --cacert "$T/ca.pem" -w '\n%{http_code}' "$@")
	[ "$(tail -1 <<<"$body")" = "$code" ] || fail "expected HTTP $code for $*: $body"
	"$PY" -c 'import json,sys
e = json.loads(sys.argv[1])["error"]
assert set(e) == {"code", "message", "status"}, e
assert e["status"] == sys.argv[2] and e["code"] == int(sys.argv[3]), e' \
		"$(sed '$d' <<<"$body")" "$status" "$code" || fail "error shape for $*: $body"
}
gerr 401 UNAUTHENTICATED -X POST "$API?keyRingId=r1" -H 'Content-Type: application/json' -d '{}'
gerr 401 UNAUTHENTICATED -X POST "$API?keyRingId=r1" -H "Authorization: Bearer ya29.forged" \
	-H 'Content-Type: application/json' -d '{}'
gerr 400 INVALID_ARGUMENT -X POST "$API?keyRingId=r1" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: text/plain' -d '{}'
gerr 400 INVALID_ARGUMENT -X POST "$API?keyRingId=r1" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{"bogus": 1}'
gerr 400 INVALID_ARGUMENT -X POST "$API?keyRingId=r1&bogus=1" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{}'
curl -sf --cacert "$T/ca.pem" -X POST "$API?keyRingId=r1" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{}' >/dev/null || fail "keyRings.create"
gerr 409 ALREADY_EXISTS -X POST "$API?keyRingId=r1" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{}'
gerr 400 INVALID_ARGUMENT -X POST "$API/r1/cryptoKeys?cryptoKeyId=k" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' \
	-d '{"purpose":"ASYMMETRIC_DECRYPT","versionTemplate":{"algorithm":"RSA_DECRYPT_OAEP_2048_SHA256","bogus":1}}'
curl -sf --cacert "$T/ca.pem" -X POST "$API/r1/cryptoKeys?cryptoKeyId=k" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' \
	-d '{"purpose":"ASYMMETRIC_DECRYPT","versionTemplate":{"algorithm":"RSA_DECRYPT_OAEP_2048_SHA256"}}' \
	>/dev/null || fail "cryptoKeys.create"
V="$API/r1/cryptoKeys/k/cryptoKeyVersions/1"
gerr 400 FAILED_PRECONDITION "$V/publicKey" -H "Authorization: Bearer $TOKEN"
gerr 400 INVALID_ARGUMENT -X POST "$V:asymmetricDecrypt" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{"ciphertext":"AAAA","ciphertextCrc32c":"1"}'
gerr 404 NOT_FOUND "$API/r1/cryptoKeys/k/cryptoKeyVersions/9/publicKey" -H "Authorization: Bearer $TOKEN"
pass "missing/forged token, wrong content type, unknown fields and query parameters, bad CRC32C refused in Google's error shape"

# The metadata server wants its header, and the token endpoint a signed JWT.
code=$(curl -s -o /dev/null -w '%{http_code}' \
	"http://127.0.0.1:$MD/computeMetadata/v1/instance/service-accounts/default/token")
[ "$code" = 403 ] || fail "metadata server without Metadata-Flavor: $code"
body=$(curl -s --cacert "$T/ca.pem" -d 'grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=a.b.c' \
	"https://127.0.0.1:$PORT/token")
grep -q '"invalid_grant"' <<<"$body" || fail "token endpoint accepted a junk assertion: $body"
pass "metadata server needs Metadata-Flavor; token endpoint refuses a junk JWT"
