# The gcp-kms plugin end to end against the Cloud KMS simulator: generate,
# pubkey (byte-identical to the service's key), each credential source
# (service-account key file, metadata server, access token), a Flows round
# trip through `flowvault serve` with the independent Node client, bad
# ciphertext -> 421, wrong credentials -> exit 3 naming the source, throttling
# and 5xx retried, a slow service -> 500 within the budget, one token for
# many decrypts, and no token or secret in -vv output.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/cloud2/cloud2_lib.sh"

cloud2_ca
PORT=$(free_port)
MD=$(free_port)
RING=projects/sim-project/locations/europe-west1/keyRings/flowvault
VERSION=$RING/cryptoKeys/flows/cryptoKeyVersions/1
head -c 30 /dev/urandom | base64 | tr -d '/+=' >"$T/static-token"
cloud2_start gcp gcp_kms_sim.py --port "$PORT" --metadata-port "$MD" \
	--cert "$T/server.pem" --key "$T/server.key" --sa-json "$T/sa.json" \
	--static-token "$T/static-token" --key-ring "$RING" --token-log "$T/tokens.log"
export STATIC_TOKEN=$(cat "$T/static-token") APP_SECRET=app-secret-42
SECRETS="$STATIC_TOKEN $(grep -o 'MII[A-Za-z0-9+/]\{40\}' "$T/sa.json" | head -1)"
EP="https://127.0.0.1:$PORT"

entry() { # entry EXTRA_JSON_MEMBERS: a gcp-kms key entry for the simulator
	echo "{\"provider\": \"gcp-kms\", \"key_version\": \"$VERSION\", \"endpoint\": \"$EP\",
	       \"ca_file\": \"$T/ca.pem\"${1:+, $1}}"
}
config() { # config FILE EXTRA
	printf '{"keys": {"cloud": %s}}\n' "$(entry "$2")" >"$1"
	chmod 600 "$1"
}
config "$T/sa.json.conf" "\"credentials_file\": \"$T/sa.json\""
config "$T/token.conf" '"access_token": "env:STATIC_TOKEN"'
config "$T/md.conf" ""

# generate, then the same again: refused, nothing changed.
run "$FV" --config "$T/sa.json.conf" generate cloud
expect_rc 0 "generate through a service-account key file"
[ "$(sim_stats "$PORT" keys_created)" = 1 ] || fail "generate made no key"
run "$FV" --config "$T/sa.json.conf" generate cloud
expect_rc 3 "generate of an existing key"
expect_err_has "already exists"
[ "$(sim_stats "$PORT" keys_created)" = 1 ] || fail "the second generate made a key"
pass "generate creates the key (HSM, ASYMMETRIC_DECRYPT) once and refuses to overwrite it"

# pubkey: the very key Cloud KMS holds, read independently.
curl -sf --cacert "$T/ca.pem" -H "Authorization: Bearer $STATIC_TOKEN" \
	"$EP/v1/$VERSION/publicKey" | "$PY" -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["pem"])' \
	>"$T/service.pub"
for conf in sa.json token md; do
	if [ "$conf" = md ]; then
		run env GCE_METADATA_HOST="127.0.0.1:$MD" "$FV" --config "$T/$conf.conf" pubkey cloud
	else
		run "$FV" --config "$T/$conf.conf" pubkey cloud
	fi
	expect_rc 0 "pubkey with $conf credentials"
	printf '%s\n' "$OUT" >"$T/$conf.pub"
	cmp -s <(openssl pkey -pubin -in "$T/$conf.pub" -outform DER) \
		<(openssl pkey -pubin -in "$T/service.pub" -outform DER) ||
		fail "pubkey ($conf) differs from the key in Cloud KMS"
done
cmp -s "$T/sa.json.pub" "$T/service.pub" || fail "pubkey PEM is not byte-identical to the service's"
pass "pubkey is byte-identical to the key in Cloud KMS, with each credential source (key file, metadata server, access token)"

# keys: where OAEP runs and the remote identity.
run "$FV" --config "$T/token.conf" keys
expect_rc 0 "keys"
expect_out_has "oaep: gcp-kms"
expect_out_has "$VERSION (HSM)"
pass "keys shows oaep: gcp-kms and the CryptoKeyVersion"

# flow decrypt with each credential source; bad ciphertext is exit 6.
node "$CLIENT" encrypt --pub "$T/service.pub" --payload '{"action":"ping","n":1}' >"$T/req.json"
for conf in sa.json token md; do
	run env GCE_METADATA_HOST="127.0.0.1:$MD" "$FV" -vv --config "$T/$conf.conf" flow decrypt cloud --in "$T/req.json"
	expect_rc 0 "flow decrypt with $conf credentials"
	expect_out_has '"n":1'
	printf '%s\n%s\n' "$OUT" "$ERR" >"$T/vv-$conf.log"
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/stranger.pem" 2>/dev/null
openssl pkey -in "$T/stranger.pem" -pubout -out "$T/stranger.pub"
node "$CLIENT" encrypt --pub "$T/stranger.pub" --payload '{"action":"ping"}' >"$T/stranger.json"
run "$FV" -vv --config "$T/sa.json.conf" flow decrypt cloud --in "$T/stranger.json"
expect_rc 6 "flow decrypt of a request to another key"
expect_err_has "INVALID_ARGUMENT"
printf '%s\n' "$ERR" >"$T/vv-bad.log"
pass "decrypt with each credential source; a ciphertext for another key is refused (exit 6)"

# Wrong credentials: exit 3, and the message says which source was used.
export WRONG_TOKEN=ya29.not-a-real-token
config "$T/wrong-token.conf" '"access_token": "env:WRONG_TOKEN"'
run "$FV" --config "$T/wrong-token.conf" pubkey cloud
expect_rc 3 "pubkey with a wrong access token"
expect_err_has "access_token 'env:WRONG_TOKEN'"
expect_err_has "UNAUTHENTICATED"
"$PY" - "$T/sa.json" "$T/other-sa.json" <<'PY'
import json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
doc = json.load(open(sys.argv[1]))
doc["private_key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
with open(sys.argv[2], "w") as f:
    json.dump(doc, f)
PY
chmod 600 "$T/other-sa.json"
config "$T/other-sa.conf" "\"credentials_file\": \"$T/other-sa.json\""
run "$FV" --config "$T/other-sa.conf" pubkey cloud
expect_rc 3 "pubkey with a service-account key the service does not know"
expect_err_has "service-account key file '$T/other-sa.json'"
expect_err_has "invalid_grant"
run env GOOGLE_APPLICATION_CREDENTIALS="$T/other-sa.json" "$FV" --config "$T/md.conf" pubkey cloud
expect_rc 3 "pubkey with a wrong GOOGLE_APPLICATION_CREDENTIALS"
expect_err_has "GOOGLE_APPLICATION_CREDENTIALS"
NOPE=$(free_port)
run env GCE_METADATA_HOST="127.0.0.1:$NOPE" "$FV" --config "$T/md.conf" pubkey cloud
expect_rc 3 "pubkey with no metadata server"
expect_err_has "metadata server"
expect_err_has "127.0.0.1:$NOPE"
pass "wrong credentials exit 3 naming the source (access_token, key file, GOOGLE_APPLICATION_CREDENTIALS, metadata server)"

# serve: a Flows round trip, 421, throttling and 5xx retried, one token for
# all, a revoked token replaced; a slow service -> 500 within the budget.
cloud2_serve_checks "Cloud KMS" "$(entry "\"credentials_file\": \"$T/sa.json\"")" \
	"$(entry "\"access_token\": \"env:STATIC_TOKEN\", \"timeout_ms\": 1500, \"attempt_timeout_ms\": 1000")"

# Tokens are refreshed shortly before they expire: with a 10 s lifetime a
# token serves until 5 s before its end (half the lifetime, for short ones);
# the request after that fetches one new token, the next one reuses it.
P3=$(free_port)
MD3=$(free_port)
cloud2_start gcp3 gcp_kms_sim.py --port "$P3" --metadata-port "$MD3" --cert "$T/server.pem" \
	--key "$T/server.key" --key-ring "$RING" --token-ttl 10 --pending-reads 0
EP="https://127.0.0.1:$P3"
config "$T/ttl.conf" ""
GCE_METADATA_HOST="127.0.0.1:$MD3" "$FV" --config "$T/ttl.conf" -q generate cloud >/dev/null
GCE_METADATA_HOST="127.0.0.1:$MD3" "$FV" --config "$T/ttl.conf" pubkey cloud >"$T/ttl.pub"
SPORT=$(free_port)
UP=$(free_port)
upstream_start "$UP"
cloud2_serve_config "$T/ttl-serve.conf" "$(entry "")" "$SPORT" "$UP"
GCE_METADATA_HOST="127.0.0.1:$MD3" "$FV" --config "$T/ttl-serve.conf" serve >"$T/ttl.out" 2>"$T/ttl.log" &
SERVE_PID=$!
at_exit "kill -9 $SERVE_PID"
wait_port "$SPORT" 20
URL="http://127.0.0.1:$SPORT/flows"
post --url "$URL" --pub "$T/ttl.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
expect_field status 200
sleep 6 # past the refresh point of any token fetched so far
before=$(sim_stats "$P3" tokens_issued)
post --url "$URL" --pub "$T/ttl.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
expect_field status 200
[ "$(sim_stats "$P3" tokens_issued)" = $((before + 1)) ] || fail "no new token near expiry: $(sim_stats "$P3")"
post --url "$URL" --pub "$T/ttl.pub" --secret "$APP_SECRET" --payload '{"action":"ping"}'
expect_field status 200
[ "$(sim_stats "$P3" tokens_issued)" = $((before + 1)) ] || fail "a token was fetched within the lifetime of the last one"
[ "$(sim_stats "$P3" bad_tokens)" = 0 ] || fail "an expired token was sent: $(sim_stats "$P3")"
serve_stop
pass "a token is used until shortly before it expires, then replaced before any request is refused"
