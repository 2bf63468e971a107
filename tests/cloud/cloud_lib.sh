# Helpers for the cloud plugin tests; source after tests/lib.sh.
CLOUD_DIR="$FV_SOURCE_DIR/tests/cloud"
# The system interpreter: Debian's python3-boto3, -hvac and -cryptography.
PY=/usr/bin/python3

# cloud_ca: a test CA ($T/ca.pem) and a server certificate for 127.0.0.1
# and localhost ($T/server.pem, $T/server.key) signed by it.
cloud_ca() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=flowvault test CA" \
		-keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$T/server.ext"
	openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-days 2 -extfile "$T/server.ext" -out "$T/server.pem" 2>/dev/null
	# Another CA the plugins must not trust.
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=stranger CA" \
		-keyout "$T/other-ca.key" -out "$T/other-ca.pem" 2>/dev/null
}

# sim_start NAME PORT SCRIPT ARGS...: run a simulator in the background
# (log in $T/NAME.log) and wait until it listens.
sim_start() {
	local name=$1 port=$2 script=$3
	shift 3
	"$PY" "$CLOUD_DIR/$script" --port "$port" "$@" >"$T/$name.log" 2>&1 &
	local pid=$!
	at_exit "kill $pid"
	eval "SIM_PID_$name=$pid"
	wait_port "$port" 20
}

# sim_ctl PORT PATH [JSON]: the simulators' control surface (/_sim/...).
sim_ctl() {
	if [ $# -ge 3 ]; then
		curl -sS --cacert "$T/ca.pem" -X POST -H 'Content-Type: application/json' \
			--data "$3" "https://127.0.0.1:$1$2"
	else
		curl -sS --cacert "$T/ca.pem" "https://127.0.0.1:$1$2"
	fi
}

# sim_count PORT OP: how many OP requests the simulator answered.
sim_count() {
	sim_ctl "$1" /_sim/stats | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["counts"].get(sys.argv[1], 0))' "$2"
}

# aws_identities FILE: access keys the AWS simulators accept. Each source
# of the credential chain gets its own, so tests can tell which was used.
aws_identities() {
	cat >"$1" <<'JSON'
[
 {"name": "config", "access_key": "AKIACONFIG0000000001", "secret_key": "cfgSecret/Key+0000000000000000000000001", "token": null},
 {"name": "env", "access_key": "AKIAENVIRON000000002", "secret_key": "envSecret/Key+0000000000000000000000002", "token": null},
 {"name": "envtoken", "access_key": "ASIAENVTOKEN00000003", "secret_key": "envTokSecret/Key+00000000000000000003", "token": "EnvSessionTokenVALUE0003//=="},
 {"name": "profile", "access_key": "AKIAPROFILE000000004", "secret_key": "profSecret/Key+000000000000000000000004", "token": null},
 {"name": "webid", "access_key": "ASIAWEBIDENT00000005", "secret_key": "webidSecret/Key+00000000000000000000005", "token": "WebIdSessionTokenVALUE0005//=="},
 {"name": "container", "access_key": "ASIACONTAINER0000006", "secret_key": "ctrSecret/Key+000000000000000000000006", "token": "ContainerSessionTokenVALUE0006//=="},
 {"name": "imds", "access_key": "ASIAIMDSROLE00000007", "secret_key": "imdsSecret/Key+00000000000000000000007", "token": "ImdsSessionTokenVALUE0007//=="}
]
JSON
}

# ident FILE NAME FIELD: one value of an identity.
ident() {
	"$PY" -c 'import json,sys
for i in json.load(open(sys.argv[1])):
    if i["name"] == sys.argv[2]: print(i[sys.argv[3]])' "$@"
}

# vault_setup: secrets the Vault simulator accepts, in files ($T/vault/).
vault_setup() {
	mkdir -p "$T/vault"
	printf 'hvs.root-token-for-tests-0001\n' >"$T/vault/root.token"
	printf 'hvs.read-only-token-0002\n' >"$T/vault/ro.token"
	printf 'approle-secret-id-0003\n' >"$T/vault/secret_id"
	printf 'eyJhbGciOiJSUzI1NiJ9.k8s-service-account-token-0004.sig\n' >"$T/vault/jwt"
	chmod 600 "$T"/vault/*
	VAULT_ROLE_ID=flows-role-id-0005
}

# vault_start PORT [ARGS...]: the Vault simulator with those secrets.
vault_start() {
	local port=$1
	shift
	sim_start "vault$port" "$port" vault_sim.py --cert "$T/server.pem" --key "$T/server.key" \
		--token-file "$T/vault/root.token" --read-only-token-file "$T/vault/ro.token" \
		--approle "$VAULT_ROLE_ID:$T/vault/secret_id" --k8s "flows:$T/vault/jwt" "$@"
}
