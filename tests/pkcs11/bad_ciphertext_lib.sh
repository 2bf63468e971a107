# An attacker-chosen ciphertext must never look like a key-store failure:
# for `flow decrypt` it is exit 6 (undecryptable), for `serve` a 421 with no
# ERROR log line and no key-error count. Otherwise the answer tells whether a
# value lies below the modulus (an oracle), raises false alarms, and keeps
# WhatsApp from the 421 that makes it fetch a rotated key.
# Source after tests/lib.sh and tests/flow/flow_lib.sh.

# ff_request FILE: a Flows request whose encrypted_aes_key is 256 bytes of
# 0xFF, above any RSA-2048 modulus.
ff_request() {
	"$PY" - "$1" <<'PY'
import base64, json, os, sys
b64 = lambda b: base64.b64encode(b).decode()
json.dump({"encrypted_aes_key": b64(b"\xff" * 256),
           "encrypted_flow_data": b64(os.urandom(48)),
           "initial_vector": b64(os.urandom(16))}, open(sys.argv[1], "w"))
PY
}

# check_bad_ciphertext CONFIG KEY WHAT: flow decrypt and serve with KEY of
# CONFIG (a configuration without a "serve" section).
check_bad_ciphertext() {
	local config=$1 key=$2 what=$3 port admin metrics_url body
	ff_request "$T/ff.json"

	run "$FV" --config "$config" flow decrypt "$key" --in "$T/ff.json"
	expect_rc 6 "$what: flow decrypt of 256 x 0xFF"
	pass "$what: flow decrypt of an out-of-range encrypted_aes_key exits 6"

	port=$(free_port)
	admin=$(free_port)
	export FV_BAD_CT_SECRET=bad-ciphertext-secret
	"$PY" - "$config" "$T/serve-$key.json" "$key" "$port" "$admin" <<'PY'
import json, sys
src, dst, key, port, admin = sys.argv[1:]
c = json.load(open(src))
c["serve"] = {"listen": "127.0.0.1:" + port, "keys": [key],
              "app_secrets": ["env:FV_BAD_CT_SECRET"], "admin_listen": "127.0.0.1:" + admin}
json.dump(c, open(dst, "w"))
PY
	chmod 600 "$T/serve-$key.json"
	# Where /metrics is served: the admin listener where this build has one.
	metrics_url="http://127.0.0.1:$admin/metrics"
	if ! "$FV" --config "$T/serve-$key.json" serve --check >/dev/null 2>&1; then
		"$PY" - "$T/serve-$key.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); del c["serve"]["admin_listen"]
json.dump(c, open(sys.argv[1], "w"))
PY
		metrics_url="http://127.0.0.1:$port/metrics"
	fi
	serve_start "$T/serve-$key.json" "$port"
	body=$(cat "$T/ff.json")
	"$FV" --config "$config" pubkey "$key" >"$T/$key.pub"
	post --url "http://127.0.0.1:$port/flows" --pub "$T/$key.pub" --secret "$FV_BAD_CT_SECRET" \
		--raw-body "$body"
	expect_field status 421
	run curl -s "$metrics_url"
	expect_out_has 'flowvault_flow_outcomes_total{outcome="undecryptable"} 1'
	expect_out_has 'flowvault_flow_outcomes_total{outcome="key-error"} 0'
	expect_out_has 'flowvault_requests_total{status="500"} 0'
	serve_stop
	if grep -iE '(^|: )error: ' "$T/serve.log"; then
		fail "$what: serve logged an error for a bad ciphertext: $(cat "$T/serve.log")"
	fi
	pass "$what: serve answers 421 to 256 x 0xFF, no ERROR line, no key-error count"
}
