# demo_graph CONFIG_DIR KEY_NAME: register KEY_NAME's public key on three demo
# phone numbers against a local TLS Graph API simulator, then show `status`.
# Sourced by scripts/demo. It creates a private CA in CONFIG_DIR/graph-sim,
# starts the simulator on a free loopback port, adds a "graph" section to
# CONFIG_DIR/config.json, and stops the simulator when done.
# Uses $fv (the flowvault binary) when set, else build/bin/flowvault.
demo_graph() {
	local dir=$1 key=$2 here sim_dir sim_pid port i rc=0
	local bin=${fv:-${FLOWVAULT_BIN:-build/bin/flowvault}}
	local config=$dir/config.json
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	sim_dir=$dir/graph-sim
	mkdir -p "$sim_dir"

	echo
	echo "== Graph API: a local simulator with its own CA (the real API is https://graph.facebook.com)"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$sim_dir/ca.key" -out "$sim_dir/ca.pem" \
		-days 1 -subj "/CN=flowvault demo CA" -addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign" 2>/dev/null &&
	openssl req -newkey rsa:2048 -nodes -keyout "$sim_dir/server.key" -out "$sim_dir/server.csr" \
		-subj "/CN=127.0.0.1" 2>/dev/null &&
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$sim_dir/server.ext" &&
	openssl x509 -req -in "$sim_dir/server.csr" -CA "$sim_dir/ca.pem" -CAkey "$sim_dir/ca.key" \
		-CAcreateserial -out "$sim_dir/server.pem" -days 1 -extfile "$sim_dir/server.ext" \
		2>/dev/null || { echo "demo_graph: openssl cannot create the demo CA" >&2; return 1; }

	# The token is a reference to this variable, never a literal in the file.
	FLOWVAULT_DEMO_GRAPH_TOKEN="demo-$(openssl rand -hex 16)"
	export FLOWVAULT_DEMO_GRAPH_TOKEN
	python3 "$here/graph_sim.py" serve --cert "$sim_dir/server.pem" --key "$sim_dir/server.key" \
		--port 0 --port-file "$sim_dir/port" --token "$FLOWVAULT_DEMO_GRAPH_TOKEN" \
		>"$sim_dir/sim.log" 2>&1 &
	sim_pid=$!
	for ((i = 0; i < 100; i++)); do
		[ -s "$sim_dir/port" ] && break
		sleep 0.1
	done
	if [ ! -s "$sim_dir/port" ]; then
		kill "$sim_pid" 2>/dev/null
		echo "demo_graph: the Graph API simulator did not start" >&2
		return 1
	fi
	port=$(cat "$sim_dir/port")
	echo "simulator: https://127.0.0.1:$port (pid $sim_pid)"

	# Point the configuration at it; give the key three demo numbers unless
	# it already names some.
	python3 - "$config" "$key" "$port" <<'PY'
import json, sys
path, key, port = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path) as f:
    cfg = json.load(f)
cfg["graph"] = {"base_url": "https://127.0.0.1:%s" % port,
                "access_token": "env:FLOWVAULT_DEMO_GRAPH_TOKEN",
                "ca_file": "graph-sim/ca.pem"}
entry = cfg["keys"][key]
if not entry.get("phone_numbers") and not entry.get("waba_id"):
    entry["phone_numbers"] = ["106540352242922", "106540352242923", "106540352242924"]
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f, indent=2)
PY
	mv "$config.tmp" "$config"
	chmod 600 "$config"
	echo "added to $config:"
	python3 -c 'import json,sys; print(json.dumps({"graph": json.load(open(sys.argv[1]))["graph"]}, indent=2))' "$config"

	echo
	echo "\$ flowvault register $key"
	"$bin" --config "$config" register "$key" || rc=$?
	if [ "$rc" = 0 ]; then
		echo
		echo "\$ flowvault status $key"
		"$bin" --config "$config" status "$key" || rc=$?
	fi
	kill "$sim_pid" 2>/dev/null || true
	wait "$sim_pid" 2>/dev/null || true
	unset FLOWVAULT_DEMO_GRAPH_TOKEN
	echo "simulator stopped"
	return "$rc"
}
