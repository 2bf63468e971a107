# Flows part of scripts/demo. Source this file, then:
#     demo_flows CONFIG_FILE KEY_NAME
# Starts `flowvault serve` with KEY_NAME and a small demo upstream on free
# loopback ports, sends it a data_exchange request encrypted by an
# independent client (Node's crypto module, the way WhatsApp encrypts),
# prints the decrypted answer, and stops everything. Uses $FV (default
# <source>/build/bin/flowvault). Returns non-zero when anything fails.
FV_DEMO_FLOW_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

demo_flows() {
	local config=${1:?demo_flows CONFIG_FILE KEY_NAME} key=${2:?demo_flows CONFIG_FILE KEY_NAME}
	local fv=${FV:-$FV_DEMO_FLOW_DIR/../../build/bin/flowvault}
	local py dir serve_config port up serve_pid up_pid answer rc=0 i
	py=$(command -v /usr/bin/python3 || command -v python3)
	# Stands in for the Meta app's secret: the client signs with it.
	export FV_DEMO_APP_SECRET
	FV_DEMO_APP_SECRET=$(openssl rand -hex 16)
	dir=$(cd "$(dirname "$config")" && pwd)
	# Next to the original, so its relative key paths still resolve.
	serve_config="$dir/.demo-serve.$$.json"
	read -r port up < <("$py" -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')

	echo "== Flows: flowvault serve with key '$key', demo upstream on 127.0.0.1:$up"
	(umask 077 && "$py" - "$config" "$serve_config" "$key" "$port" "$up" <<'PY'
import json, sys
src, dst, key, port, up = sys.argv[1:]
c = json.load(open(src))
c["serve"] = {"listen": "127.0.0.1:" + port, "admin_listen": "off", "keys": [key],
              "app_secrets": ["env:FV_DEMO_APP_SECRET"],
              "upstream": "http://127.0.0.1:%s/logic" % up, "threads": 2}
json.dump(c, open(dst, "w"), indent=2)
PY
	) || return 1
	"$py" "$FV_DEMO_FLOW_DIR/upstream.py" "$up" &
	up_pid=$!
	"$fv" --config "$serve_config" pubkey "$key" >"$dir/.demo-serve.$$.pub" || rc=1
	if [ "$rc" = 0 ]; then
		"$fv" --config "$serve_config" serve 2> >(sed 's/^/   [serve] /' >&2) &
		serve_pid=$!
		for ((i = 0; i < 100; i++)); do
			(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
			sleep 0.1
		done
		echo "== Sending an encrypted data_exchange request (Node crypto client)"
		answer=$(node "$FV_DEMO_FLOW_DIR/flows_client.js" post \
			--url "http://127.0.0.1:$port/flows" --pub "$dir/.demo-serve.$$.pub" \
			--secret "$FV_DEMO_APP_SECRET" --payload '{"version":"3.0","action":"data_exchange","screen":"WELCOME","flow_token":"demo-token","data":{"choice":"demo"}}') || rc=1
		"$py" -c 'import json, sys
r = json.loads(sys.argv[1])
print("   HTTP %s, %d-byte encrypted body; decrypted by the client:" % (r["status"], len(r["body"])))
print("   " + json.dumps(r["response"]))' "$answer" || rc=1
		case $answer in *'"status":200'*'"screen":"NEXT"'*) ;; *) rc=1 ;; esac
		kill -TERM "$serve_pid" 2>/dev/null || true
		wait "$serve_pid" || rc=1
	fi
	kill "$up_pid" 2>/dev/null || true
	wait "$up_pid" 2>/dev/null || true
	rm -f "$serve_config" "$dir/.demo-serve.$$.pub"
	[ "$rc" = 0 ] && echo "== Flows round trip OK" || echo "== Flows round trip FAILED" >&2
	return "$rc"
}
