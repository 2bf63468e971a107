# The azure-keyvault plugin end to end against the Key Vault simulator:
# generate, pubkey (byte-identical to the vault's JWK), each credential source
# (client credentials, managed identity through IMDS, access token) with Key
# Vault's bearer challenge, a Flows round trip through `flowvault serve` with
# the independent Node client, bad ciphertext -> 421, wrong credentials ->
# exit 3 naming the source, a challenge for another domain refused, throttling
# and 5xx retried, a slow vault -> 500 within the budget, one token for many
# decrypts, and no token or secret in -vv output.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/cloud2/cloud2_lib.sh"

cloud2_ca
PORT=$(free_port)
IMDS=$(free_port)
TENANT=00000000-0000-0000-0000-00000000feed
CLIENT_ID=11111111-2222-3333-4444-555555555555
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$T/client-secret"
head -c 30 /dev/urandom | base64 | tr -d '/+=' >"$T/static-token"
# curl resolves *.localhost to loopback: the vault is a host under the
# resource's domain, as https://NAME.vault.azure.net is under vault.azure.net.
cloud2_start azure azure_kv_sim.py --port "$PORT" --imds-port "$IMDS" \
	--cert "$T/server.pem" --key "$T/server.key" --tenant "$TENANT" --client-id "$CLIENT_ID" \
	--client-secret-file "$T/client-secret" --resource https://vault.localhost \
	--static-token "$T/static-token" --token-log "$T/tokens.log"
export CLIENT_SECRET=$(cat "$T/client-secret") STATIC_TOKEN=$(cat "$T/static-token") APP_SECRET=app-secret-42
SECRETS="$CLIENT_SECRET $STATIC_TOKEN"
VAULT="https://sim.vault.localhost:$PORT"

entry() { # entry EXTRA_JSON_MEMBERS: an azure-keyvault key entry for the simulator
	echo "{\"provider\": \"azure-keyvault\", \"vault_url\": \"$VAULT\", \"key_name\": \"flows\",
	       \"ca_file\": \"$T/ca.pem\"${1:+, $1}}"
}
config() { # config FILE EXTRA
	printf '{"keys": {"cloud": %s}}\n' "$(entry "$2")" >"$1"
	chmod 600 "$1"
}
CC="\"tenant_id\": \"$TENANT\", \"client_id\": \"$CLIENT_ID\", \"authority_host\": \"https://127.0.0.1:$PORT\""
config "$T/cc.conf" "$CC, \"client_secret\": \"env:CLIENT_SECRET\""
config "$T/mi.conf" "\"managed_identity\": true, \"imds_endpoint\": \"http://127.0.0.1:$IMDS/metadata/identity/oauth2/token\""
config "$T/token.conf" '"access_token": "env:STATIC_TOKEN"'

run "$FV" --config "$T/cc.conf" generate cloud
expect_rc 0 "generate with client credentials"
[ "$(sim_stats "$PORT" keys_created)" = 1 ] || fail "generate made no key"
[ "$(sim_stats "$PORT" challenges)" -ge 1 ] || fail "no bearer challenge was answered"
run "$FV" --config "$T/cc.conf" generate cloud
expect_rc 3 "generate of an existing key"
expect_err_has "already exists"
[ "$(sim_stats "$PORT" keys_created)" = 1 ] || fail "the second generate added a version"
pass "generate creates an RSA-HSM key once (through the bearer challenge) and refuses to add a version"

# pubkey: the vault's JWK, turned into SPKI independently (python3-cryptography).
curl -sf --cacert "$T/ca.pem" -H "Authorization: Bearer $STATIC_TOKEN" \
	"$VAULT/keys/flows?api-version=7.4" >"$T/bundle.json"
"$PY" - "$T/bundle.json" >"$T/service.pub" <<'PY'
import base64, json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
jwk = json.load(open(sys.argv[1]))["key"]
assert jwk["kty"] == "RSA-HSM" and jwk["key_ops"] == ["decrypt"], jwk
num = lambda s: int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")
pub = rsa.RSAPublicNumbers(num(jwk["e"]), num(jwk["n"])).public_key()
sys.stdout.write(pub.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode())
PY
KID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"]["kid"])' "$T/bundle.json")
for conf in cc mi token; do
	run "$FV" --config "$T/$conf.conf" pubkey cloud
	expect_rc 0 "pubkey with $conf credentials"
	printf '%s\n' "$OUT" >"$T/$conf.pub"
	cmp -s "$T/$conf.pub" "$T/service.pub" || fail "pubkey ($conf) is not byte-identical to the vault's key"
done
pass "pubkey is byte-identical to the vault's key, with each credential source (client credentials, managed identity, access token)"

run "$FV" --config "$T/mi.conf" keys
expect_rc 0 "keys"
expect_out_has "oaep: azure-keyvault"
expect_out_has "$KID (RSA-HSM)"
pass "keys shows oaep: azure-keyvault and the kid"

node "$CLIENT" encrypt --pub "$T/service.pub" --payload '{"action":"ping","n":2}' >"$T/req.json"
for conf in cc mi token; do
	run "$FV" -vv --config "$T/$conf.conf" flow decrypt cloud --in "$T/req.json"
	expect_rc 0 "flow decrypt with $conf credentials"
	expect_out_has '"n":2'
	printf '%s\n%s\n' "$OUT" "$ERR" >"$T/vv-$conf.log"
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/stranger.pem" 2>/dev/null
openssl pkey -in "$T/stranger.pem" -pubout -out "$T/stranger.pub"
node "$CLIENT" encrypt --pub "$T/stranger.pub" --payload '{"action":"ping"}' >"$T/stranger.json"
run "$FV" -vv --config "$T/cc.conf" flow decrypt cloud --in "$T/stranger.json"
expect_rc 6 "flow decrypt of a request to another key"
expect_err_has "BadParameter"
printf '%s\n' "$ERR" >"$T/vv-bad.log"
pass "decrypt with each credential source; a ciphertext for another key is refused (exit 6)"

# Wrong credentials: exit 3, and the message says which source was used.
export WRONG=not-the-secret
config "$T/wrong-secret.conf" "$CC, \"client_secret\": \"env:WRONG\""
run "$FV" --config "$T/wrong-secret.conf" pubkey cloud
expect_rc 3 "pubkey with a wrong client secret"
expect_err_has "client credentials (tenant $TENANT, client_id $CLIENT_ID, client_secret 'env:WRONG'"
expect_err_has "invalid_client"
config "$T/wrong-tenant.conf" "\"tenant_id\": \"99999999-0000-0000-0000-000000000000\", \"client_id\": \"$CLIENT_ID\", \"authority_host\": \"https://127.0.0.1:$PORT\", \"client_secret\": \"env:CLIENT_SECRET\""
run "$FV" --config "$T/wrong-tenant.conf" pubkey cloud
expect_rc 3 "pubkey with another tenant than the vault's"
expect_err_has "belongs to tenant $TENANT, not tenant_id 99999999"
config "$T/wrong-token.conf" '"access_token": "env:WRONG"'
run "$FV" --config "$T/wrong-token.conf" pubkey cloud
expect_rc 3 "pubkey with a wrong access token"
expect_err_has "access_token 'env:WRONG'"
NOPE=$(free_port)
config "$T/no-imds.conf" "\"imds_endpoint\": \"http://127.0.0.1:$NOPE/metadata/identity/oauth2/token\", \"timeout_ms\": 1500"
run "$FV" --config "$T/no-imds.conf" pubkey cloud
expect_rc 3 "pubkey with no IMDS"
expect_err_has "IMDS"
expect_err_has "127.0.0.1:$NOPE"
pass "wrong credentials exit 3 naming the source (client secret, tenant, access token, managed identity)"

# A vault whose challenge names a resource outside its domain gets no token.
P2=$(free_port)
cloud2_start azure2 azure_kv_sim.py --port "$P2" --cert "$T/server.pem" --key "$T/server.key" \
	--tenant "$TENANT" --client-id "$CLIENT_ID" --client-secret-file "$T/client-secret"
printf '{"keys": {"cloud": {"provider": "azure-keyvault", "vault_url": "https://sim.vault.localhost:%s", "key_name": "flows", "ca_file": "%s", %s, "client_secret": "env:CLIENT_SECRET"}}}\n' \
	"$P2" "$T/ca.pem" "$(sed "s/$PORT/$P2/" <<<"$CC")" >"$T/foreign.conf"
chmod 600 "$T/foreign.conf"
run "$FV" --config "$T/foreign.conf" pubkey cloud
expect_rc 3 "a challenge for https://vault.azure.net from sim.vault.localhost"
expect_err_has "whose domain it is not in"
[ "$(sim_stats "$P2" tokens_issued)" = 0 ] || fail "a token was fetched for a foreign resource"
pass "a challenge naming a resource outside the vault's domain is refused before any token is fetched"

# serve: a Flows round trip, 421, throttling and 5xx retried, one token for
# all, a revoked token replaced; a slow service -> 500 within the budget.
cloud2_serve_checks "Key Vault" "$(entry "$CC, \"client_secret\": \"env:CLIENT_SECRET\"")" \
	"$(entry "\"access_token\": \"env:STATIC_TOKEN\", \"timeout_ms\": 1500, \"attempt_timeout_ms\": 1000")"
