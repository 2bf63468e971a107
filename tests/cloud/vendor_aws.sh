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
