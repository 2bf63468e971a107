# The AWS simulators (KMS, STS, container endpoint, IMDSv2) against boto3
# and botocore: a simulator the official SDK rejects is wrong.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/cloud/cloud_lib.sh"

cloud_ca
aws_identities "$T/ids.json"
KMS=$(free_port)
STS=$(free_port)
META=$(free_port)
sim_start kms "$KMS" aws_kms_sim.py --cert "$T/server.pem" --key "$T/server.key" --identities "$T/ids.json"
sim_start sts "$STS" aws_creds_sim.py --cert "$T/server.pem" --key "$T/server.key" --identities "$T/ids.json"
sim_start meta "$META" aws_creds_sim.py --identities "$T/ids.json"
run "$PY" "$CLOUD_DIR/vendor_boto3.py" "https://127.0.0.1:$KMS" "https://127.0.0.1:$STS" \
	"http://127.0.0.1:$META" "$T/ca.pem" "$T/ids.json" "$T"
[ "$RC" = 0 ] || fail "boto3 against the simulators:
$OUT
$ERR"
printf '%s\n' "$OUT"
pass "boto3 and botocore accept the AWS simulators"

# The simulator refuses what KMS refuses, with KMS's error shapes.
AKID=$(ident "$T/ids.json" config access_key)
SECRET=$(ident "$T/ids.json" config secret_key)
kms() { # kms TARGET BODY [CURL ARGS...]: status and body of a signed request
	local target=$1 body=$2
	shift 2
	curl -sS --cacert "$T/ca.pem" -o "$T/kms.out" -w '%{http_code}' \
		-H "X-Amz-Target: TrentService.$target" --data "$body" "$@" "https://127.0.0.1:$KMS/"
}
expect_kms() { # expect_kms STATUS TYPE RESULT
	[ "$3" = "$1" ] && grep -q "\"__type\": \"$2\"" "$T/kms.out" ||
		fail "expected $1 $2, got $3 $(cat "$T/kms.out")"
}
SIGN=(--aws-sigv4 "aws:amz:eu-west-1:kms" -u "$AKID:$SECRET")
JSON=(-H "Content-Type: application/x-amz-json-1.1")
expect_kms 400 MissingAuthenticationTokenException "$(kms GetPublicKey '{"KeyId":"alias/vendor"}' "${JSON[@]}")"
expect_kms 400 UnknownOperationException "$(kms GetPublicKey '{"KeyId":"alias/vendor"}' -H "Content-Type: application/json" "${SIGN[@]}")"
expect_kms 400 UnknownOperationException "$(kms NoSuchOperation '{}' "${JSON[@]}" "${SIGN[@]}")"
expect_kms 400 SerializationException "$(kms GetPublicKey '{"KeyId":"alias/vendor","Bogus":1}' "${JSON[@]}" "${SIGN[@]}")"
expect_kms 400 SerializationException "$(kms GetPublicKey '{"KeyId":7}' "${JSON[@]}" "${SIGN[@]}")"
expect_kms 400 ValidationException "$(kms GetPublicKey '{}' "${JSON[@]}" "${SIGN[@]}")"
expect_kms 400 InvalidSignatureException "$(kms GetPublicKey '{"KeyId":"alias/vendor"}' "${JSON[@]}" \
	--aws-sigv4 "aws:amz:eu-west-1:kms" -u "$AKID:x$SECRET")"
expect_kms 400 InvalidSignatureException "$(kms GetPublicKey '{"KeyId":"alias/vendor"}' "${JSON[@]}" \
	--aws-sigv4 "aws:amz:us-east-1:kms" -u "$AKID:$SECRET")"
# A body changed after signing.
expect_kms 400 InvalidSignatureException "$(kms GetPublicKey '{"KeyId":"alias/vendor"}' "${JSON[@]}" "${SIGN[@]}" \
	-H "X-Amz-Date: 20200101T000000Z")"
# libcurl (7.88) signs an empty header it never sends: AWS refuses that, so must we.
expect_kms 400 InvalidSignatureException "$(kms GetPublicKey '{"KeyId":"alias/vendor"}' "${JSON[@]}" "${SIGN[@]}" -H "Expect:")"
expect_kms 400 NotFoundException "$(kms GetPublicKey '{"KeyId":"alias/nothing"}' "${JSON[@]}" "${SIGN[@]}")"
pass "the KMS simulator refuses missing auth, wrong content types, unknown targets and fields, bad signatures"
