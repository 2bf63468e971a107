# The aws-kms credential chain, each source served by a test server on
# loopback: environment, shared credentials and config files with
# AWS_PROFILE, web identity (STS AssumeRoleWithWebIdentity), the container
# credentials endpoint, IMDSv2. Checks which source was used, that
# temporary credentials are fetched once and refreshed before they expire,
# and that no secret reaches -vv output.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/cloud/cloud_lib.sh"

export HOME="$T/home"
mkdir -p "$HOME"
unset $(env | grep -o '^AWS_[A-Z_]*') 2>/dev/null || true

cloud_ca
aws_identities "$T/ids.json"
KMS=$(free_port)
STS=$(free_port)
META=$(free_port)
sim_start kms "$KMS" aws_kms_sim.py --cert "$T/server.pem" --key "$T/server.key" --identities "$T/ids.json"
# Short-lived credentials (20 s): refreshed 10 s before they expire.
sim_start sts "$STS" aws_creds_sim.py --cert "$T/server.pem" --key "$T/server.key" \
	--identities "$T/ids.json" --lifetime 20
sim_start meta "$META" aws_creds_sim.py --identities "$T/ids.json"
meta_count() { curl -sS "http://127.0.0.1:$META/_sim/stats" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["counts"].get(sys.argv[1], 0))' "$1"; }

cat >"$T/c.json" <<JSON
{"keys": {"flows": {"provider": "aws-kms", "region": "eu-west-1", "key_id": "alias/flows",
  "endpoint": "https://127.0.0.1:$KMS", "ca_file": "$T/ca.pem"}}}
JSON
chmod 600 "$T/c.json"
# Every source is off unless a case turns it on: no files, no IMDS.
export AWS_SHARED_CREDENTIALS_FILE="$T/none" AWS_CONFIG_FILE="$T/none"
export AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$(free_port)"

# with_source NAME ENV...: run `pubkey -vv` with ENV; the debug log must say
# NAME's source was used, and none of the identity's secrets may show.
with_source() {
	local name=$1 what=$2
	shift 2
	run env "$@" "$FV" -vv --config "$T/c.json" pubkey flows
	expect_rc 0 "pubkey with credentials from $name"
	expect_err_has "credentials from $what"
	for field in secret_key token; do
		s=$(ident "$T/ids.json" "$name" "$field")
		[ "$s" = None ] || expect_not_has "$s" "$T/.out" "$T/.err"
	done
	expect_not_has "eyJ.test-web-identity-token.sig" "$T/.out" "$T/.err"
	expect_not_has "container-auth-token-0006" "$T/.out" "$T/.err"
}

# The key to read, made with configured credentials.
export CFG_AKID=$(ident "$T/ids.json" config access_key) CFG_SECRET=$(ident "$T/ids.json" config secret_key)
"$PY" - "$T/c.json" "$T/gen.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["keys"]["flows"].update({"access_key_id": "env:CFG_AKID", "secret_access_key": "env:CFG_SECRET"})
json.dump(c, open(sys.argv[2], "w"))
PY
chmod 600 "$T/gen.json"
run "$FV" --config "$T/gen.json" generate flows
expect_rc 0 "generate"

with_source env "environment variables" \
	AWS_ACCESS_KEY_ID=$(ident "$T/ids.json" env access_key) \
	AWS_SECRET_ACCESS_KEY=$(ident "$T/ids.json" env secret_key)
with_source envtoken "environment variables" \
	AWS_ACCESS_KEY_ID=$(ident "$T/ids.json" envtoken access_key) \
	AWS_SECRET_ACCESS_KEY=$(ident "$T/ids.json" envtoken secret_key) \
	AWS_SESSION_TOKEN=$(ident "$T/ids.json" envtoken token)
pass "environment variables, with and without a session token"

cat >"$T/credentials" <<EOF
[default]
aws_access_key_id = AKIANOTTHISONE000000
aws_secret_access_key = not-this-one

# the one AWS_PROFILE names
[flows]
aws_access_key_id = $(ident "$T/ids.json" profile access_key)
aws_secret_access_key = $(ident "$T/ids.json" profile secret_key)
EOF
chmod 600 "$T/credentials"
with_source profile "shared credentials file '$T/credentials' (profile 'flows')" \
	AWS_SHARED_CREDENTIALS_FILE="$T/credentials" AWS_PROFILE=flows
cat >"$T/config" <<EOF
[profile flows]
region = eu-west-1
aws_access_key_id=$(ident "$T/ids.json" profile access_key)
aws_secret_access_key=$(ident "$T/ids.json" profile secret_key)
EOF
chmod 600 "$T/config"
with_source profile "shared config file '$T/config' (profile 'flows')" \
	AWS_CONFIG_FILE="$T/config" AWS_PROFILE=flows
run env AWS_SHARED_CREDENTIALS_FILE="$T/credentials" AWS_PROFILE=nosuch "$FV" --config "$T/c.json" pubkey flows
expect_rc 3 "unknown AWS_PROFILE"
expect_err_has "AWS_PROFILE=nosuch"
run env AWS_SHARED_CREDENTIALS_FILE="$T/credentials" "$FV" --config "$T/c.json" pubkey flows
expect_rc 3 "the default profile's unknown key"
expect_err_has "shared credentials file '$T/credentials' (profile 'default')"
expect_err_has "UnrecognizedClientException"
printf '[profile sso]\nsso_session = corp\n' >"$T/config-sso"
run env AWS_CONFIG_FILE="$T/config-sso" AWS_PROFILE=sso "$FV" --config "$T/c.json" pubkey flows
expect_rc 3 "an SSO profile"
expect_err_has "uses sso_session"
pass "shared credentials and config files with AWS_PROFILE; wrong keys name the file and profile"

printf 'eyJ.test-web-identity-token.sig\n' >"$T/webid.jwt"
WEBID=(AWS_WEB_IDENTITY_TOKEN_FILE="$T/webid.jwt" AWS_ROLE_ARN=arn:aws:iam::111122223333:role/flows
       AWS_ENDPOINT_URL_STS="https://127.0.0.1:$STS/")
with_source webid "web identity (AWS_ROLE_ARN=arn:aws:iam::111122223333:role/flows" "${WEBID[@]}"
printf 'eyJ.forged.sig\n' >"$T/forged.jwt"
run env AWS_WEB_IDENTITY_TOKEN_FILE="$T/forged.jwt" AWS_ROLE_ARN=arn:aws:iam::111122223333:role/flows \
	AWS_ENDPOINT_URL_STS="https://127.0.0.1:$STS/" "$FV" --config "$T/c.json" pubkey flows
expect_rc 3 "a forged web identity token"
expect_err_has "InvalidIdentityToken"
expect_err_has "token file '$T/forged.jwt'"
pass "web identity through STS AssumeRoleWithWebIdentity; a refused token names the source"

with_source container "container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)" \
	AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$META/container/creds" \
	AWS_CONTAINER_AUTHORIZATION_TOKEN=container-auth-token-0006
printf 'container-auth-token-0006\n' >"$T/ctr.token"
with_source container "container credentials endpoint" \
	AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$META/container/creds" \
	AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="$T/ctr.token"
run env AWS_CONTAINER_CREDENTIALS_FULL_URI="http://192.0.2.1:$META/container/creds" \
	"$FV" --config "$T/c.json" pubkey flows
expect_rc 3 "container endpoint over plain HTTP to a remote host"
expect_err_has "plain HTTP is allowed only to loopback"
pass "container credentials endpoint (token and token file); plain HTTP only to local hosts"

with_source imds "instance metadata (IMDSv2 at http://127.0.0.1:$META, role 'flows-role')" \
	AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$META"
run "$FV" --config "$T/c.json" pubkey flows
expect_rc 3 "no source at all"
expect_err_has "no AWS credentials found"
expect_err_has "no instance metadata service at"
pass "IMDSv2 (token, role, credentials); with no source the message lists what was tried"

# Precedence: the environment wins over everything after it in the chain.
with_source env "environment variables" \
	AWS_ACCESS_KEY_ID=$(ident "$T/ids.json" env access_key) \
	AWS_SECRET_ACCESS_KEY=$(ident "$T/ids.json" env secret_key) \
	AWS_SHARED_CREDENTIALS_FILE="$T/credentials" AWS_PROFILE=flows "${WEBID[@]}" \
	AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$META"
pass "the chain's order: environment before files, web identity and IMDS"

# Fetched once, not per decrypt; refreshed before expiry: many decrypts
# in one process (fv_key_decrypt through cloud-bench), threads included.
"$FV" --config "$T/gen.json" pubkey flows >"$T/flows.pub"
before=$(sim_count "$STS" AssumeRoleWithWebIdentity)
run env "${WEBID[@]}" "$FV_BUILD_DIR/bench/cloud-bench" plugin "$T/c.json" flows "$T/flows.pub" 2 20 0
expect_rc 0 "20 decrypts with web identity credentials"
[ "$(sim_count "$STS" AssumeRoleWithWebIdentity)" = $((before + 1)) ] ||
	fail "20 decrypts fetched credentials $(($(sim_count "$STS" AssumeRoleWithWebIdentity) - before)) times"
before=$(sim_count "$STS" AssumeRoleWithWebIdentity)
run env "${WEBID[@]}" "$FV_BUILD_DIR/bench/cloud-bench" plugin "$T/c.json" flows "$T/flows.pub" 1 3 6000
expect_rc 0 "decrypts across a refresh"
[ "$(sim_count "$STS" AssumeRoleWithWebIdentity)" = $((before + 2)) ] ||
	fail "expected one refresh over 12 s of 20 s credentials, got $(($(sim_count "$STS" AssumeRoleWithWebIdentity) - before - 1))"
pass "temporary credentials: one fetch for many decrypts, refreshed before they expire"
