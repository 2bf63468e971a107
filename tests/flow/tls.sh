# serve over TLS (libmicrohttpd with GnuTLS), checked by the Node client
# against the test CA.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"

flow_setup_keys
PORT=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null
chmod 600 "$T/tls.key"
flow_config "$T/config.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"off\",
    \"keys\": [\"current\"], \"allow_unsigned\": true,
    \"cert\": \"tls.crt\", \"key\": \"tls.key\"}"
"$FV" --config "$T/config.json" pubkey current >"$T/current.pub"

chmod 644 "$T/tls.key"
run "$FV" --config "$T/config.json" serve --check
expect_rc 3 "a TLS key readable by others"
expect_err_has "readable by others"
chmod 600 "$T/tls.key"

serve_start "$T/config.json" "$PORT"
post --url "https://127.0.0.1:$PORT/flows" --pub "$T/current.pub" --ca "$T/tls.crt" \
	--payload '{"version":"3.0","action":"ping"}'
expect_field status 200
expect_field response '{"data": {"status": "active"}}'
run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/flows"
[ "$OUT" != 200 ] || fail "plain HTTP answered on a TLS port"
serve_stop
pass "ping over TLS"
