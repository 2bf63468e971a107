# Helpers for the cloud key-store tests (gcp-kms, azure-keyvault); source
# after tests/lib.sh. Everything runs on loopback under $T.
CLOUD2_DIR="$FV_SOURCE_DIR/tests/cloud2"
PY=$(command -v /usr/bin/python3 || command -v python3)

# cloud2_ca: a test CA and a server certificate for 127.0.0.1 and
# *.vault.localhost (curl resolves *.localhost to loopback itself):
# $T/ca.pem, $T/server.pem, $T/server.key.
cloud2_ca() {
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" \
		-days 2 -subj "/CN=flowvault test CA" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
		2>/dev/null
	openssl req -newkey rsa:2048 -nodes -keyout "$T/server.key" -out "$T/server.csr" \
		-subj "/CN=127.0.0.1" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:*.vault.localhost\nextendedKeyUsage=serverAuth\n' \
		>"$T/server.ext"
	openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
		-CAcreateserial -out "$T/server.pem" -days 2 -extfile "$T/server.ext" 2>/dev/null
	chmod 600 "$T/ca.key" "$T/server.key"
}

cloud2_free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cloud2_start NAME SCRIPT ARGS...: run a simulator in the background (log in
# $T/NAME.log) and wait until its first --port listens.
cloud2_start() {
	local name=$1 script=$2; shift 2
	"$PY" "$CLOUD2_DIR/$script" "$@" >"$T/$name.log" 2>&1 &
	local pid=$! port="" prev=""
	at_exit "kill $pid"
	for a in "$@"; do
		[ "$prev" = "--port" ] && port=$a
		prev=$a
	done
	wait_port "$port"
	kill -0 "$pid" 2>/dev/null || fail "$name simulator exited: $(cat "$T/$name.log")"
}

# sim_faults PORT JSON / sim_stats PORT [FIELD]: the simulators' /_sim/ endpoints.
sim_faults() {
	curl -sf --cacert "$T/ca.pem" -H 'Content-Type: application/json' -d "$2" \
		"https://127.0.0.1:$1/_sim/faults" >/dev/null || fail "cannot set simulator faults"
}
sim_stats() {
	local doc
	doc=$(curl -sf --cacert "$T/ca.pem" "https://127.0.0.1:$1/_sim/stats") ||
		fail "cannot read simulator stats"
	if [ $# -ge 2 ]; then
		"$PY" -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], 0))' "$doc" "$2"
	else
		echo "$doc"
	fi
}

# cloud2_node_modules: the vendors' client libraries, pinned by
# tests/cloud2/package-lock.json, installed once per build tree with
# `npm ci`; sets NODE_PATH. Skips the test (77) when npm is missing.
cloud2_node_modules() {
	command -v npm >/dev/null || { echo "SKIP: npm is not installed"; exit 77; }
	local dir="$FV_BUILD_DIR/cloud2-npm" stamp want
	mkdir -p "$dir"
	want=$(sha256sum "$CLOUD2_DIR/package-lock.json" | cut -d' ' -f1)
	(
		flock 9
		stamp=$(cat "$dir/.lock-sha256" 2>/dev/null || true)
		if [ "$stamp" != "$want" ] || [ ! -d "$dir/node_modules" ]; then
			cp "$CLOUD2_DIR/package.json" "$CLOUD2_DIR/package-lock.json" "$dir/"
			(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts >"$dir/npm.log" 2>&1) ||
				{ cat "$dir/npm.log" >&2; exit 1; }
			echo "$want" >"$dir/.lock-sha256"
		fi
	) 9>"$dir/.flock" || fail "npm ci of tests/cloud2/package.json failed"
	export NODE_PATH="$dir/node_modules"
}

# cloud2_serve_config FILE KEY_ENTRY_JSON PORT UPSTREAM_PORT: a configuration
# with key "cloud" (the given entry) served by `flowvault serve`.
cloud2_serve_config() {
	cat >"$1" <<JSON
{
  "keys": { "cloud": $2 },
  "serve": {
    "listen": "127.0.0.1:$3",
    "keys": ["cloud"],
    "app_secrets": ["env:APP_SECRET"],
    "upstream": "http://127.0.0.1:$4/logic",
    "threads": 4
  }
}
JSON
	chmod 600 "$1"
}

# expect_no_secrets FILE...: none of the tokens the simulator issued (its
# --token-log), nor the secrets in $SECRETS (space-separated), appear.
expect_no_secrets() {
	local s
	if [ -s "$T/tokens.log" ]; then
		! grep -qFf "$T/tokens.log" "$@" || fail "an access token appears in $*"
	fi
	for s in ${SECRETS:-}; do
		expect_not_has "$s" "$@"
	done
}
