# Helpers for the Graph API tests; source after tests/lib.sh. They create a
# private CA and a server certificate, run the Graph API simulator on a free
# loopback port, and write a configuration pointing flowvault at it.

SIM="$FV_SOURCE_DIR/tests/graph/graph_sim.py"
# A token that must never show up in output, logs or files.
SIM_TOKEN="EAAGsim$(openssl rand -hex 20)"
export WHATSAPP_ACCESS_TOKEN="$SIM_TOKEN"

# make_tls DIR: DIR/ca.pem (a CA), DIR/server.pem + DIR/server.key (for
# 127.0.0.1 and localhost, signed by that CA).
make_tls() {
	local d=$1
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" \
		-days 2 -subj "/CN=flowvault test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
		fail "openssl cannot create the test CA"
	openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" \
		-subj "/CN=127.0.0.1" 2>/dev/null || fail "openssl cannot create the server key"
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
		>"$d/server.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
		-CAcreateserial -out "$d/server.pem" -days 2 -extfile "$d/server.ext" \
		2>/dev/null || fail "openssl cannot sign the server certificate"
}

# start_sim [ARGS...]: run the simulator (extra serve ARGS such as
# --latency-ms 50); sets SIM_URL and SIM_PID.
start_sim() {
	[ -f "$T/tls/ca.pem" ] || make_tls "$T/tls"
	rm -f "$T/sim.port"
	python3 "$SIM" serve --cert "$T/tls/server.pem" --key "$T/tls/server.key" \
		--port 0 --port-file "$T/sim.port" --token "$SIM_TOKEN" "$@" \
		>"$T/sim.log" 2>&1 &
	SIM_PID=$!
	at_exit "kill $SIM_PID"
	local i
	for ((i = 0; i < 100; i++)); do
		[ -s "$T/sim.port" ] && break
		kill -0 "$SIM_PID" 2>/dev/null || fail "the simulator died: $(cat "$T/sim.log")"
		sleep 0.1
	done
	[ -s "$T/sim.port" ] || fail "the simulator did not start"
	SIM_URL="https://127.0.0.1:$(cat "$T/sim.port")"
}

# The checks use curl and jq: starting python for each one costs more than
# the rest of a test.
command -v jq >/dev/null && command -v curl >/dev/null ||
	fail "the Graph tests need jq and curl (scripts/install-deps --test)"

# sim_ctl METHOD PATH [JSON]: talk to the simulator's control endpoints.
sim_ctl() {
	curl -sS --fail --cacert "$T/tls/ca.pem" -X "$1" -H 'Content-Type: application/json' \
		${3:+--data-binary "$3"} "$SIM_URL$2" || fail "simulator control $1 $2 failed"
}
sim_config() { sim_ctl POST /_sim/config "$1" >/dev/null; }
sim_reset() { sim_ctl POST /_sim/reset >/dev/null; }

# sim_count [METHOD] [KIND] [PHONE]: how many API requests matched ("" = any).
sim_count() {
	sim_ctl GET /_sim/log | jq --arg m "${1:-}" --arg k "${2:-}" --arg p "${3:-}" \
		'[.requests[] | select(($m == "" or .method == $m) and ($k == "" or .kind == $k)
		                       and ($p == "" or .phone == $p))] | length'
}

# expect_count N [METHOD] [KIND] [PHONE] "what"
expect_count() {
	local want=$1 what=${!#} got
	shift
	set -- "${@:1:$(($# - 1))}"
	got=$(sim_count "$@")
	[ "$got" = "$want" ] || fail "$what: expected $want requests ($*), the simulator saw $got"
}

# make_key NAME: an unencrypted RSA-2048 key $T/NAME.pem.
make_key() {
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/$1.pem" \
		2>/dev/null || fail "openssl cannot generate $1"
	chmod 600 "$T/$1.pem"
}

# write_config PHONES_JSON [EXTRA_GRAPH_JSON] [EXTRA_KEY_JSON]: $T/config.json
# with key "flows" ($T/flows.pem) meant for PHONES_JSON, and a graph section
# for the simulator with fast retries; EXTRA_GRAPH_JSON members replace the
# defaults (merged with jq: the configuration refuses duplicate members).
write_config() {
	local phones=$1 graph_extra=${2:-} key_extra=${3:-}
	cat >"$T/config.json" <<JSON
{
  "keys": {
    "flows": {"provider": "pem", "path": "flows.pem",
              "phone_numbers": $phones${key_extra:+, $key_extra}}
  },
  "graph": {
    "base_url": "$SIM_URL",
    "access_token": "env:WHATSAPP_ACCESS_TOKEN",
    "ca_file": "tls/ca.pem",
    "timeout_seconds": 20,
    "retry_base_ms": 5,
    "max_retries": 3,
    "max_wait_seconds": 10
  }
}
JSON
	if [ -n "$graph_extra" ]; then
		jq --argjson extra "{$graph_extra}" '.graph += $extra' "$T/config.json" >"$T/config.json.new"
		mv "$T/config.json.new" "$T/config.json"
	fi
	chmod 600 "$T/config.json"
	export FLOWVAULT_CONFIG="$T/config.json"
}

# jcheck JQ_EXPR "what": JQ_EXPR is true for the JSON document in $OUT.
jcheck() {
	jq -e "$1" <<<"$OUT" >/dev/null || fail "$2: JSON check failed: $1
stdout: $OUT
stderr: $ERR"
}

# json_result PHONE JQ_EXPR "what": JQ_EXPR is true for PHONE's result in $OUT.
json_result() {
	jq -e --arg p "$1" "[.results[] | select(.phone_number_id == \$p)] | length == 1 and (.[0] | $2)" \
		<<<"$OUT" >/dev/null || fail "$3: JSON check failed for $1: $2
stdout: $OUT
stderr: $ERR"
}

# spki_pem FILE: the public key PEM of a private key file.
spki_pem() { openssl pkey -in "$1" -pubout; }
