# Two `flowvault serve` nodes behind HAProxy, sharing one SoftHSM2 key that
# one `p11-kit server` exports. Source after tests/lib.sh; sources the
# PKCS#11 token helpers and the Graph API helpers (make_tls, the simulator).
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"
DEPLOY_DIR="$FV_SOURCE_DIR/tests/deploy"
HAPROXY_TEMPLATE="$FV_SOURCE_DIR/dist/haproxy/flowvault.cfg"
PY=$(command -v /usr/bin/python3 || command -v python3)
command -v haproxy >/dev/null || fail "the deploy tests need haproxy (scripts/install-deps --test)"
command -v node >/dev/null || fail "the deploy tests need node (scripts/install-deps --test)"

TOKEN_LABEL=fv
APP_SECRET="app-secret-$(openssl rand -hex 8)"
export APP_SECRET
# HAProxy reads the admin token from its environment (see the template).
FLOWVAULT_ADMIN_TOKEN="admin-$(openssl rand -hex 24)"
export FLOWVAULT_ADMIN_TOKEN

# node_cert NAME: $T/tls/NAME.pem and NAME.key for the DNS name NAME and
# 127.0.0.1, signed by the CA of make_tls.
node_cert() {
	local d="$T/tls"
	openssl req -newkey rsa:2048 -nodes -keyout "$d/$1.key" -out "$d/$1.csr" -subj "/CN=$1" \
		2>/dev/null || fail "openssl cannot create the key of $1"
	printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
		"$1" >"$d/$1.ext"
	openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
		-out "$d/$1.pem" -days 2 -extfile "$d/$1.ext" 2>/dev/null ||
		fail "openssl cannot sign the certificate of $1"
	chmod 600 "$d/$1.key"
}

# deploy_setup: certificates (a CA; node1.flows.internal and
# node2.flows.internal, the names dist/haproxy/flowvault.cfg gives the
# nodes; HAProxy's own for 127.0.0.1), the admin token file, a SoftHSM2
# token exported by a `p11-kit server`, and in it the key "flows",
# generated through p11-kit-client.so. Sets KEY_JSON (the key's
# configuration entry), FLOWS_PUB (its public key) and the ports NODE_PORT[1..2],
# ADMIN_PORT[1..2], FRONT_PORT.
deploy_setup() {
	make_tls "$T/tls"
	node_cert node1.flows.internal
	node_cert node2.flows.internal
	cat "$T/tls/server.pem" "$T/tls/server.key" >"$T/tls/front.pem"
	chmod 600 "$T/tls/front.pem"
	printf '%s' "$FLOWVAULT_ADMIN_TOKEN" >"$T/admin-token"
	chmod 600 "$T/admin-token"

	PIN=$(openssl rand -hex 4)
	setup_softhsm "$TOKEN_LABEL" "$PIN"
	printf '%s\n' "$PIN" >"$T/pin"
	chmod 600 "$T/pin"
	p11kit_server_start hsm "pkcs11:token=$TOKEN_LABEL" --provider "$SOFTHSM_MODULE"
	# SoftHSM2 cannot do OAEP-SHA256 itself: the key process unpads.
	KEY_JSON="{\"provider\": \"pkcs11\", \"module\": \"$CLIENT_MODULE\", \"allow_host_oaep\": true,
      \"uri\": \"pkcs11:token=$TOKEN_LABEL;object=flows\", \"pin\": \"file:$T/pin\""
	printf '{"keys": {"flows": %s}}}\n' "$KEY_JSON" >"$T/keygen.json"
	chmod 600 "$T/keygen.json"
	run "$FV" --config "$T/keygen.json" generate flows
	expect_rc 0 "generate the shared key through p11-kit-client.so"
	FLOWS_PUB="$T/flows.pub"
	"$FV" --config "$T/keygen.json" pubkey flows >"$FLOWS_PUB"

	NODE_PORT=("" "$(free_port)" "$(free_port)")
	ADMIN_PORT=("" "$(free_port)" "$(free_port)")
	FRONT_PORT=$(free_port)
}

# admin_url N: node N's admin endpoint, as serve.nodes lists it.
admin_url() { echo "https://127.0.0.1:${ADMIN_PORT[$1]}"; }

# node_config N [KEYS_JSON] [SERVE_EXTRA] [TOP_EXTRA]: $T/nodeN/config.json:
# KEYS_JSON (default: the shared key "flows", with KEY_EXTRA members
# appended if set) and a serve section on node N's ports, TLS on both
# listeners, the admin token, serve.keys ["flows"]. SERVE_EXTRA and
# TOP_EXTRA are JSON members added to the serve section and the top level.
node_config() {
	local n=$1 keys=${2:-} dir="$T/node$1"
	[ -n "$keys" ] || keys="{\"flows\": $KEY_JSON${KEY_EXTRA:+, $KEY_EXTRA}}}"
	mkdir -p "$dir"
	cat >"$dir/config.json" <<JSON
{
  "keys": $keys,
  "serve": {
    "listen": "127.0.0.1:${NODE_PORT[$n]}",
    "cert": "$T/tls/node$n.flows.internal.pem", "key": "$T/tls/node$n.flows.internal.key",
    "admin_listen": "127.0.0.1:${ADMIN_PORT[$n]}",
    "admin_cert": "$T/tls/node$n.flows.internal.pem", "admin_key": "$T/tls/node$n.flows.internal.key",
    "admin_token": "file:$T/admin-token",
    "keys": ["flows"], "app_secrets": ["env:APP_SECRET"], "threads": 4,
    "pid_file": "$dir/serve.pid"${3:+,
    $3}
  }${4:+,
  $4}
}
JSON
	chmod 600 "$dir/config.json"
}

# admin_get N PATH: GET node N's admin PATH with the token (curl, body on stdout).
admin_get() {
	curl -sS --fail --max-time 5 --cacert "$T/tls/ca.pem" \
		-H "Authorization: Bearer $FLOWVAULT_ADMIN_TOKEN" "$(admin_url "$1")$2"
}

# node_start N: node N's serve in a process group of its own (setsid: the
# supervisor, its key process and workers), until its /healthz answers 200.
NODE_PID=()
node_start() {
	local n=$1 i
	setsid "$FV" --config "$T/node$n/config.json" serve >>"$T/node$n/serve.log" 2>&1 &
	NODE_PID[n]=$!
	at_exit "kill -KILL -- -${NODE_PID[$n]}"
	for ((i = 0; i < 300; i++)); do
		admin_get "$n" /healthz >/dev/null 2>&1 && return 0
		kill -0 "${NODE_PID[$n]}" 2>/dev/null || fail "node $n exited: $(tail -5 "$T/node$n/serve.log")"
		sleep 0.1
	done
	fail "node $n's /healthz does not answer 200: $(tail -5 "$T/node$n/serve.log")"
}

# node_kill N: SIGKILL to node N's whole process group, as when its machine
# fails: nothing gets to finish a request or close a connection cleanly.
# Returns once every process of the group is gone.
node_kill() {
	local n=$1 i
	kill -KILL -- -"${NODE_PID[$n]}" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 -- -"${NODE_PID[$n]}" 2>/dev/null || { wait "${NODE_PID[$n]}" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	fail "node $n's processes outlived SIGKILL"
}

# haproxy_config: $T/haproxy.cfg from dist/haproxy/flowvault.cfg with only
# the addresses, file paths, logging (to stdout) and check interval
# (HAPROXY_INTER, default 300ms) replaced; each replaced text must be in the
# template, so the test always runs what is shipped.
haproxy_config() {
	local cfg="$T/haproxy.cfg" from to
	cp "$HAPROXY_TEMPLATE" "$cfg"
	set -- \
		"log /dev/log local0" "log stdout format raw local0" \
		"/run/haproxy/flowvault.sock" "$T/haproxy.sock" \
		"bind :443 " "bind 127.0.0.1:$FRONT_PORT " \
		"/etc/haproxy/certs/flows.pem" "$T/tls/front.pem" \
		"/etc/haproxy/flowvault-nodes-ca.pem" "$T/tls/ca.pem" \
		"10.0.0.5:8443 port 9464" "127.0.0.1:${NODE_PORT[1]} port ${ADMIN_PORT[1]}" \
		"10.0.0.6:8443 port 9464" "127.0.0.1:${NODE_PORT[2]} port ${ADMIN_PORT[2]}" \
		"inter 2s" "inter ${HAPROXY_INTER:-300ms}"
	while [ $# -gt 0 ]; do
		from=$1 to=$2
		shift 2
		grep -qF -- "$from" "$cfg" || fail "dist/haproxy/flowvault.cfg no longer has '$from'"
		FROM=$from TO=$to "$PY" -c 'import os, sys
p = sys.argv[1]; s = open(p).read()
open(p, "w").write(s.replace(os.environ["FROM"], os.environ["TO"]))' "$cfg"
	done
	haproxy -c -q -f "$cfg" >"$T/haproxy-check.log" 2>&1 ||
		fail "haproxy refuses the configuration: $(cat "$T/haproxy-check.log")"
}

# haproxy_start CONFIG: HAProxy in the foreground (-db) on CONFIG (usually
# $T/haproxy.cfg), its log in $T/haproxy.log; waits until it listens.
# haproxy_stop: ends it.
haproxy_start() {
	haproxy -db -f "$1" >"$T/haproxy.log" 2>&1 &
	HAPROXY_PID=$!
	at_exit "kill $HAPROXY_PID"
	wait_port "$FRONT_PORT" 10
}
haproxy_stop() {
	kill "$HAPROXY_PID"
	wait "$HAPROXY_PID" || true
}

# haproxy_cmd CMD: the answer of HAProxy's stats socket to CMD.
haproxy_cmd() {
	"$PY" - "$T/haproxy.sock" "$1" <<-'PY'
	import socket, sys
	s = socket.socket(socket.AF_UNIX)
	s.connect(sys.argv[1])
	s.sendall(sys.argv[2].encode() + b"\n")
	out = b""
	while True:
	    chunk = s.recv(65536)
	    if not chunk:
	        break
	    out += chunk
	sys.stdout.write(out.decode())
	PY
}

# server_stat SERVER FIELD: a field of `show stat` for SERVER of the
# backend (status: UP, DOWN, "UP 1/2"...; stot: requests sent to it...).
server_stat() {
	haproxy_cmd "show stat" | "$PY" -c 'import csv, sys
rows = list(csv.reader(sys.stdin))
head = [h.lstrip("# ") for h in rows[0]]
for r in rows[1:]:
    if len(r) == len(head) and r[0] == "flowvault_nodes" and r[1] == sys.argv[1]:
        print(r[head.index(sys.argv[2])])' "$1" "$2"
}

# wait_stat SERVER FIELD VALUE SECONDS: until `show stat` gives that FIELD
# of SERVER that VALUE (status UP or DOWN; check_status L7OK: the node
# answered 200); fails after SECONDS.
wait_stat() {
	local i got
	for ((i = 0; i < $4 * 20; i++)); do
		got=$(server_stat "$1" "$2")
		[ "$got" = "$3" ] && return 0
		sleep 0.05
	done
	fail "HAProxy's $2 of $1 is '$got', not $3, after $4 s: $(haproxy_cmd "show servers state flowvault_nodes")
$(grep -i "$1" "$T/haproxy.log" | tail -3)"
}
wait_status() { wait_stat "$1" status "$2" "$3"; }
wait_check() { wait_stat "$1" check_status "$2" "$3"; }

# server_op_state SERVER: srv_op_state of `show servers state` (0 stopped,
# 2 running).
server_op_state() {
	haproxy_cmd "show servers state flowvault_nodes" |
		awk -v s="$1" '$4 == s { print $6 }'
}

# load_start NAME PUBS: tests/deploy/load.js through HAProxy with 4
# clients, requests encrypted in turn to the comma-separated PUBS; lines in
# $T/NAME.txt. load_stop NAME: stop it; its summary in $T/NAME.json.
load_start() {
	rm -f "$T/$1.stop"
	: >"$T/$1.txt"
	node "$DEPLOY_DIR/load.js" --url "https://127.0.0.1:$FRONT_PORT/flows" --ca "$T/tls/ca.pem" \
		--secret "$APP_SECRET" --pub "$2" --clients "${LOAD_CLIENTS:-4}" \
		--stop "$T/$1.stop" --out "$T/$1.txt" >"$T/$1.json" 2>"$T/$1.err" &
	eval "LOAD_PID_$1=$!"
	at_exit "touch $T/$1.stop"
}
load_stop() {
	local pid
	eval "pid=\$LOAD_PID_$1"
	touch "$T/$1.stop"
	wait "$pid" || fail "the load client $1 failed: $(cat "$T/$1.err")"
}
# load_count NAME [RESULT]: requests of load NAME so far (with that result).
load_count() {
	if [ -n "${2:-}" ]; then
		awk -v r="$2" '$4 == r' "$T/$1.txt" | wc -l
	else
		wc -l <"$T/$1.txt"
	fi
}
# wait_load NAME N: until load NAME has answered N more requests with ok.
wait_load() {
	local want=$(($(load_count "$1" ok) + $2)) i
	for ((i = 0; i < 600; i++)); do
		[ "$(load_count "$1" ok)" -ge "$want" ] && return 0
		sleep 0.1
	done
	fail "load $1 did not get $2 more answers in 60 s: $(tail -3 "$T/$1.txt")"
}
