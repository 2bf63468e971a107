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
