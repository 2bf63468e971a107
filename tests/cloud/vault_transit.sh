# The vault-transit plugin against the Vault simulator (HTTPS on loopback):
# generate, pubkey, key checks, token / AppRole / Kubernetes auth, a Flows
# round trip through `flowvault serve` with the independent Node client,
# 421 for a ciphertext Vault refuses, retries on 429 and 503, 500 within
# the budget for a slow server, namespaces, an older server, one login for
# many decrypts, and no secret in -vv output.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/cloud/cloud_lib.sh"

[ -f "$FV_BUILD_DIR/lib/flowvault/plugins/vault-transit.so" ] || fail "vault-transit.so is not built"
cloud_ca
vault_setup
V=$(free_port)
vault_start "$V" --login-ttl 9
export VAULT_TOKEN_FOR_TEST=$(cat "$T/vault/root.token") RO_TOKEN=$(cat "$T/vault/ro.token")
export SECRET_ID=$(cat "$T/vault/secret_id")
vcount() { sim_count "$1" "$2"; }

# config FILE KEY AUTH_JSON [EXTRA]: one vault-transit key "flows".
config() {
	cat >"$1" <<JSON
{"keys": {"flows": {"provider": "vault-transit", "address": "https://127.0.0.1:${PORT_OVERRIDE:-$V}",
  "key": "$2", "ca_file": "$T/ca.pem", $3${4:+, $4}}}}
JSON
	chmod 600 "$1"
}
TOKEN='"token": "env:VAULT_TOKEN_FOR_TEST"'
config "$T/c.json" flows "$TOKEN"

# ---- generate, pubkey, describe ----
run "$FV" --config "$T/c.json" generate flows
expect_rc 0 "generate"
[ "$(vcount "$V" create)" = 1 ] || fail "generate: expected one create"
run "$FV" --config "$T/c.json" generate flows
[ "$RC" != 0 ] || fail "a second generate succeeded"
expect_err_has "already exists"
[ "$(vcount "$V" create)" = 1 ] || fail "the refused generate wrote to Vault"
pass "generate: an rsa-2048, non-exportable Transit key; an existing key is never replaced"

run "$FV" --config "$T/c.json" pubkey flows
expect_rc 0 "pubkey"
printf '%s\n' "$OUT" >"$T/flows.pub"
openssl pkey -pubin -in "$T/flows.pub" -outform DER -out "$T/flows.der" 2>/dev/null || fail "pubkey: $OUT"
curl -sS --cacert "$T/ca.pem" -o "$T/sim.der" "https://127.0.0.1:$V/_sim/public/flows"
cmp -s "$T/flows.der" "$T/sim.der" || fail "pubkey differs from the simulator's key"
pass "pubkey is byte-identical to the key Vault holds"

run "$FV_BUILD_DIR/tests/cloud_describe_key" "$T/c.json" flows
expect_rc 0 "describe_key"
expect_out_has "oaep: vault-transit"
expect_out_has "backend: vault-transit"
expect_out_has "remote_id: https://127.0.0.1:$V/v1/transit/keys/flows"
expect_out_has "bits: 2048"
expect_out_has "policy: ok"
pass "key_describe: oaep and backend vault-transit, the key URL as remote identity"

# ---- keys that cannot decrypt Flows, or can leave Vault ----
vpost() { curl -sS --cacert "$T/ca.pem" -H "X-Vault-Token: $VAULT_TOKEN_FOR_TEST" -H "Content-Type: application/json" -d "$2" "https://127.0.0.1:$V/v1/$1" >/dev/null; }
vpost transit/keys/sym '{"type": "aes256-gcm96"}'
config "$T/sym.json" sym "$TOKEN"
run "$FV" --config "$T/sym.json" pubkey flows
expect_rc 3 "an AES Transit key"
expect_err_has "is of type aes256-gcm96"
vpost transit/keys/exp '{"type": "rsa-2048", "exportable": true}'
config "$T/exp.json" exp "$TOKEN"
run "$FV" --config "$T/exp.json" pubkey flows
[ "$RC" != 0 ] || fail "an exportable key was accepted"
expect_err_has "extractable"
config "$T/exp2.json" exp "$TOKEN" '"require_non_extractable": false'
run "$FV" --config "$T/exp2.json" pubkey flows
expect_rc 0 "an exportable key with require_non_extractable false"
vpost transit/keys/old '{"type": "rsa-2048"}'
vpost transit/keys/old/rotate '{}'
vpost transit/keys/old/config '{"min_decryption_version": 3}'
config "$T/old.json" old "$TOKEN"
run "$FV" --config "$T/old.json" pubkey flows
expect_rc 3 "min_decryption_version above the latest version"
expect_err_has "min_decryption_version"
pass "refused: a non-RSA key, an exportable key (unless allowed), a key that cannot decrypt"

# ---- authentication ----
export WRONG_TOKEN=hvs.wrong-token
config "$T/bad.json" flows '"token": "env:WRONG_TOKEN"'
run "$FV" --config "$T/bad.json" pubkey flows
expect_rc 3 "wrong token"
expect_err_has "token (keys.flows.token)"
expect_err_has "permission denied"
config "$T/approle.json" flows "\"role_id\": \"$VAULT_ROLE_ID\", \"secret_id\": \"env:SECRET_ID\""
run "$FV" --config "$T/approle.json" pubkey flows
expect_rc 0 "AppRole"
export WRONG_SECRET_ID=not-the-secret-id
config "$T/approle-bad.json" flows "\"role_id\": \"$VAULT_ROLE_ID\", \"secret_id\": \"env:WRONG_SECRET_ID\""
run "$FV" --config "$T/approle-bad.json" pubkey flows
expect_rc 3 "wrong secret_id"
expect_err_has "AppRole login (role_id $VAULT_ROLE_ID at auth/approle)"
expect_err_has "invalid role or secret ID"
config "$T/k8s.json" flows "\"kubernetes_role\": \"flows\", \"jwt_file\": \"$T/vault/jwt\""
run "$FV" --config "$T/k8s.json" pubkey flows
expect_rc 0 "Kubernetes"
printf 'eyJ.forged\n' >"$T/forged.jwt"
config "$T/k8s-bad.json" flows "\"kubernetes_role\": \"flows\", \"jwt_file\": \"$T/forged.jwt\""
run "$FV" --config "$T/k8s-bad.json" pubkey flows
expect_rc 3 "forged service-account token"
expect_err_has "Kubernetes login (role flows at auth/kubernetes, token file '$T/forged.jwt')"
config "$T/two.json" flows "$TOKEN, \"kubernetes_role\": \"flows\""
run "$FV" --config "$T/two.json" pubkey flows
expect_rc 2 "two auth methods"
expect_err_has "exactly one way to authenticate"
pass "token, AppRole and Kubernetes auth; refusals exit 3 naming the method"

# ---- one login for many decrypts, again before the lease ends ----
before=$(vcount "$V" login-approle)
run "$FV_BUILD_DIR/bench/cloud-bench" plugin "$T/approle.json" flows "$T/flows.pub" 2 20 0
expect_rc 0 "40 decrypts with AppRole"
[ "$(vcount "$V" login-approle)" = $((before + 1)) ] ||
	fail "40 decrypts logged in $(($(vcount "$V" login-approle) - before)) times"
before=$(vcount "$V" login-approle)
run "$FV_BUILD_DIR/bench/cloud-bench" plugin "$T/approle.json" flows "$T/flows.pub" 1 3 4000
expect_rc 0 "decrypts across a lease"
[ "$(vcount "$V" login-approle)" = $((before + 2)) ] ||
	fail "expected one more login over 12 s of 9 s leases, got $(($(vcount "$V" login-approle) - before - 1))"
pass "one AppRole login for many decrypts; a new one before the lease ends"

# ---- serve ----
PORT=$(free_port)
UP=$(free_port)
upstream_start "$UP"
export APP_SECRET=cloud-app-secret
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/stranger.pem" 2>/dev/null
openssl pkey -in "$T/stranger.pem" -pubout -out "$T/stranger.pub"
"$PY" - "$T/c.json" "$PORT" "$UP" <<'PY'
import json, sys
path, port, up = sys.argv[1:]
c = json.load(open(path))
c["serve"] = {"listen": "127.0.0.1:" + port, "admin_listen": "off", "keys": ["flows"], "app_secrets": ["env:APP_SECRET"],
              "upstream": "http://127.0.0.1:%s/" % up}
json.dump(c, open(path, "w"))
PY
serve_start "$T/c.json" "$PORT"
URL="http://127.0.0.1:$PORT/flows"
S="--secret $APP_SECRET"
decrypts() { vcount "$V" decrypt; }

post --url "$URL" --pub "$T/flows.pub" $S \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"b","data":{"k":"v"}}'
expect_field status 200
expect_field response.data.key flows
expect_field response.data.echo '{"k": "v"}'
pass "Flows round trip through serve with the key in Vault Transit"

n=$(decrypts)
post --url "$URL" --pub "$T/stranger.pub" $S --payload '{"action":"ping"}'
expect_field status 421
[ "$(decrypts)" = $((n + 1)) ] || fail "the stranger's ciphertext did not reach Vault"
pass "a ciphertext Vault cannot decrypt -> 421"

n=$(decrypts)
sim_ctl "$V" /_sim/faults '{"throttle": 2}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
sim_ctl "$V" /_sim/faults '{"fail": 2, "fail_status": 503}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
[ "$(decrypts)" = $((n + 2)) ] || fail "expected 2 decrypts to arrive, got $(($(decrypts) - n))"
pass "HTTP 429 (rate limit quota) and 503 (standby, sealed) are retried"

sim_ctl "$V" /_sim/faults '{"delay_ms": 30000, "delay_count": 10}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
ms=$(elapsed_ms)
expect_field status 500
[ "$ms" -lt 10000 ] || fail "a slow Vault answered after $ms ms"
sim_ctl "$V" /_sim/faults '{"delay_count": 0}' >/dev/null
pass "a Vault slower than the budget -> 500 after $ms ms"
serve_stop

# ---- namespace; an older server ----
NS=$(free_port)
vault_start "$NS" --namespace team/flows --legacy
PORT_OVERRIDE=$NS config "$T/ns.json" flows "$TOKEN, \"namespace\": \"team/flows\""
run "$FV" --config "$T/ns.json" generate flows
expect_rc 0 "generate in a namespace"
PORT_OVERRIDE=$NS config "$T/nons.json" flows "$TOKEN"
run "$FV" --config "$T/nons.json" pubkey flows
expect_rc 3 "the key outside its namespace"
"$FV" --config "$T/ns.json" pubkey flows >"$T/ns.pub"
run env "$FV_BUILD_DIR/bench/cloud-bench" plugin "$T/ns.json" flows "$T/ns.pub" 1 3 0
expect_rc 0 "decrypt through an older server in a namespace"
pass "namespaces (X-Vault-Namespace); an older server that ignores padding_scheme/hash_algorithm decrypts the same"

# ---- -vv never shows a secret ----
for c in c approle k8s bad approle-bad; do
	"$FV" -vv --config "$T/$c.json" pubkey flows >"$T/vv.out" 2>"$T/vv.err" || true
	[ "$c" != c ] || grep -q "Vault GET /v1/transit/keys/flows" "$T/vv.err" ||
		fail "-vv shows no request log: $(cat "$T/vv.err")"
	for s in "$VAULT_TOKEN_FOR_TEST" "$SECRET_ID" "$(cat "$T/vault/jwt")" "$WRONG_TOKEN" "$WRONG_SECRET_ID" hvs.; do
		expect_not_has "$s" "$T/vv.out" "$T/vv.err"
	done
done
pass "tokens, secret_ids and service-account tokens never appear in -vv output"
