# The aws-kms plugin against the KMS simulator (HTTPS on loopback, SigV4
# checked by botocore's signer): generate, pubkey, a Flows round trip
# through `flowvault serve` with the independent Node client, 421 for a
# ciphertext KMS refuses, retries on throttling and 5xx, 500 within the
# budget for a slow or throttling service, wrong credentials, TLS checks,
# and no secret in -vv output.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/cloud/cloud_lib.sh"

[ -f "$FV_BUILD_DIR/lib/flowvault/plugins/aws-kms.so" ] || fail "aws-kms.so is not built"
export HOME="$T/home"
mkdir -p "$HOME"
unset $(env | grep -o '^AWS_[A-Z_]*') 2>/dev/null || true
export AWS_EC2_METADATA_DISABLED=true

cloud_ca
aws_identities "$T/ids.json"
KMS=$(free_port)
sim_start kms "$KMS" aws_kms_sim.py --cert "$T/server.pem" --key "$T/server.key" \
	--identities "$T/ids.json"
export CFG_AKID=$(ident "$T/ids.json" config access_key)
export CFG_SECRET=$(ident "$T/ids.json" config secret_key)

# config FILE [EXTRA_JSON_MEMBERS]: one aws-kms key "flows" at alias/flows.
config() {
	cat >"$1" <<JSON
{"keys": {"flows": {"provider": "aws-kms", "region": "eu-west-1", "key_id": "alias/flows",
  "endpoint": "https://127.0.0.1:$KMS", "ca_file": "$T/ca.pem"${2:+, $2}}}}
JSON
	chmod 600 "$1"
}
config "$T/c.json" '"access_key_id": "env:CFG_AKID", "secret_access_key": "env:CFG_SECRET"'

# ---- generate, pubkey, keys ----
run "$FV" --config "$T/c.json" generate flows
expect_rc 0 "generate"
[ "$(sim_count "$KMS" CreateKey)" = 1 ] && [ "$(sim_count "$KMS" CreateAlias)" = 1 ] ||
	fail "generate: expected one CreateKey and one CreateAlias: $(sim_ctl "$KMS" /_sim/stats)"
run "$FV" --config "$T/c.json" generate flows
[ "$RC" != 0 ] || fail "a second generate over the same alias succeeded"
expect_err_has "already names AWS KMS key"
[ "$(sim_count "$KMS" CreateKey)" = 1 ] || fail "the refused generate created a key"
pass "generate: CreateKey + CreateAlias; a taken alias is refused before anything is created"

run "$FV" --config "$T/c.json" pubkey flows
expect_rc 0 "pubkey"
printf '%s\n' "$OUT" >"$T/flows.pub"
openssl pkey -pubin -in "$T/flows.pub" -outform DER -out "$T/flows.der" 2>/dev/null ||
	fail "pubkey output is not a PEM public key: $OUT"
curl -sS --cacert "$T/ca.pem" -o "$T/sim.der" "https://127.0.0.1:$KMS/_sim/public/alias/flows"
cmp -s "$T/flows.der" "$T/sim.der" || fail "pubkey differs from the simulator's key"
pass "pubkey is byte-identical to the key KMS holds"

run "$FV" --config "$T/c.json" keys
expect_rc 0 "keys"
expect_out_has "oaep: aws-kms"
run "$FV_BUILD_DIR/tests/cloud_describe_key" "$T/c.json" flows
expect_rc 0 "describe_key"
expect_out_has "oaep: aws-kms"
expect_out_has "backend: aws-kms"
expect_out_has "remote_id: arn:aws:kms:eu-west-1:111122223333:key/"
expect_out_has "bits: 2048"
expect_out_has "warnings: 0"
expect_out_has "policy: ok"
pass "key_describe: oaep and backend aws-kms, the key ARN as remote identity, not extractable"

# ---- wrong credentials, exit 3 naming the source ----
export BAD_SECRET="x$CFG_SECRET"
config "$T/bad.json" '"access_key_id": "env:CFG_AKID", "secret_access_key": "env:BAD_SECRET"'
run "$FV" --config "$T/bad.json" pubkey flows
expect_rc 3 "wrong secret key"
expect_err_has "configuration (keys.flows.access_key_id)"
expect_err_has "InvalidSignatureException"
config "$T/env.json"
run env AWS_ACCESS_KEY_ID=AKIANOBODY0000000000 AWS_SECRET_ACCESS_KEY=nothing \
	"$FV" --config "$T/env.json" pubkey flows
expect_rc 3 "unknown access key"
expect_err_has "environment variables (AWS_ACCESS_KEY_ID"
expect_err_has "UnrecognizedClientException"
run "$FV" --config "$T/env.json" pubkey flows
expect_rc 3 "no credentials at all"
expect_err_has "no AWS credentials found"
pass "wrong or missing credentials: exit 3 naming the credential source"

# ---- TLS is verified ----
config "$T/tls.json" '"access_key_id": "env:CFG_AKID", "secret_access_key": "env:CFG_SECRET"'
sed -i "s#$T/ca.pem#$T/other-ca.pem#" "$T/tls.json"
run "$FV" --config "$T/tls.json" pubkey flows
expect_rc 3 "untrusted certificate"
expect_err_has "ca_file"
sed -i "s#https://127.0.0.1#http://127.0.0.1#" "$T/tls.json"
run "$FV" --config "$T/tls.json" pubkey flows
expect_rc 2 "http endpoint"
expect_err_has "not an https:// URL"
pass "TLS: a certificate from another CA is refused; http:// endpoints are refused"

# ---- serve: round trip, 421, retries, 500 in the budget ----
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
decrypts() { sim_count "$KMS" Decrypt; }

post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
expect_field response '{"data": {"status": "active"}}'
post --url "$URL" --pub "$T/flows.pub" $S \
	--payload '{"version":"3.0","action":"data_exchange","flow_token":"b","data":{"k":"v"}}'
expect_field status 200
expect_field response.data.key flows
expect_field response.data.echo '{"k": "v"}'
pass "Flows round trip through serve with the key in KMS"

n=$(decrypts)
post --url "$URL" --pub "$T/stranger.pub" $S --payload '{"action":"ping"}'
expect_field status 421
[ "$(decrypts)" = $((n + 1)) ] || fail "the stranger's ciphertext did not reach KMS Decrypt"
pass "a ciphertext KMS refuses (InvalidCiphertextException) -> 421"

n=$(decrypts)
sim_ctl "$KMS" /_sim/faults '{"throttle": 2}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
[ "$(decrypts)" = $((n + 3)) ] || fail "throttling: expected 3 Decrypt calls, got $(($(decrypts) - n))"
n=$(decrypts)
sim_ctl "$KMS" /_sim/faults '{"fail": 2, "fail_status": 500}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
sim_ctl "$KMS" /_sim/faults '{"fail": 1, "fail_status": 503}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
[ "$(decrypts)" = $((n + 5)) ] || fail "5xx: expected 5 Decrypt calls, got $(($(decrypts) - n))"
pass "ThrottlingException and HTTP 500/503 are retried"

sim_ctl "$KMS" /_sim/faults '{"throttle": 100000}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
ms=$(elapsed_ms)
expect_field status 500
[ "$ms" -lt 10000 ] || fail "throttled past the deadline answered after $ms ms"
sim_ctl "$KMS" /_sim/faults '{"throttle": 0}' >/dev/null
pass "throttling past the deadline -> 500 (not 421) after $ms ms"

sim_ctl "$KMS" /_sim/faults '{"delay_ms": 30000, "delay_count": 10}' >/dev/null
post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
ms=$(elapsed_ms)
expect_field status 500
[ "$ms" -lt 10000 ] || fail "a slow KMS answered after $ms ms"
sim_ctl "$KMS" /_sim/faults '{"delay_count": 0}' >/dev/null
grep -q "budget" "$T/serve.log" || fail "serve's log does not say the budget ran out: $(tail -5 "$T/serve.log")"
pass "a KMS slower than the budget -> 500 after $ms ms (under WhatsApp's 10 s)"

post --url "$URL" --pub "$T/flows.pub" $S --payload '{"version":"3.0","action":"ping"}'
expect_field status 200
serve_stop
pass "serve recovers once KMS answers again"

# ---- -vv never shows a secret ----
config "$T/tok.json" '"access_key_id": "env:TOK_AKID", "secret_access_key": "env:TOK_SECRET", "session_token": "env:TOK_TOKEN"'
export TOK_AKID=$(ident "$T/ids.json" envtoken access_key)
export TOK_SECRET=$(ident "$T/ids.json" envtoken secret_key)
export TOK_TOKEN=$(ident "$T/ids.json" envtoken token)
"$FV" -vv --config "$T/tok.json" pubkey flows >"$T/vv.out" 2>"$T/vv.err" || fail "pubkey -vv with a session token: $(cat "$T/vv.err")"
grep -q "KMS GetPublicKey" "$T/vv.err" || fail "-vv shows no request log: $(cat "$T/vv.err")"
for s in "$TOK_SECRET" "$TOK_TOKEN" "$CFG_SECRET"; do
	expect_not_has "$s" "$T/vv.out" "$T/vv.err"
done
"$FV" -vv --config "$T/bad.json" pubkey flows >"$T/vv2.out" 2>"$T/vv2.err" && fail "bad secret accepted"
expect_not_has "$BAD_SECRET" "$T/vv2.out" "$T/vv2.err"
expect_not_has "$CFG_SECRET" "$T/vv2.out" "$T/vv2.err"
pass "secret keys and session tokens never appear in -vv output"
