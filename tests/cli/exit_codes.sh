#!/bin/bash
# Exit codes: `flowvault --help`, README.md and flowvault(1) show the same
# table, and each code is what the situations it names produce.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

# ---- One table, three places ----
run "$FV" --json help
expect_rc 0 "help --json"
jq -r '.exit_codes[] | "\(.code)\t\(.meaning)"' <<<"$OUT" >"$T/codes.tsv"
[ "$(wc -l <"$T/codes.tsv")" -eq 7 ] || fail "expected exit codes 0-6: $(cat "$T/codes.tsv")"
run "$FV" --help
sed -n '/^Exit codes:/,/^$/p' <<<"$OUT" | sed -nE 's/^  ([0-9]+)  (.*)/\1\t\2/p' >"$T/help.tsv"
sed -n '/^### Exit codes/,/^## /p' "$FV_SOURCE_DIR/README.md" |
	sed -nE 's/^\| ([0-9]+) \| (.*) \|$/\1\t\2/p' >"$T/readme.tsv"
sed -n '/^\.SH EXIT STATUS/,/^\.SH /p' "$FV_SOURCE_DIR/docs/flowvault.1" |
	awk '/^\.B [0-9]+$/ { code = $2; getline; gsub(/\\-/, "-"); print code "\t" $0 }' >"$T/man.tsv"
for f in help readme man; do
	diff -u "$T/codes.tsv" "$T/$f.tsv" >"$T/diff" ||
		fail "the exit-code table of $f differs from flowvault's own: $(cat "$T/diff")"
done
pass "one exit-code table in --help, README.md and flowvault(1)"

# ---- Each code where it is promised ----
export PW='exit code test passphrase' EMPTY=''
unset UNSET_SECRET
mkdir -m 700 "$T/keys"
printf 'secret\n' >"$T/keys/readable.txt"
chmod 644 "$T/keys/readable.txt"
start_sim
write_config '["1001"]'
# Extra keys next to the simulator's "flows".
jq --arg pw env:PW '.keys.flows.passphrase = $pw
	| .keys += {"missing": {"provider": "pem", "path": "keys/missing.pem"},
	            "wrongpw": {"provider": "pem", "path": "flows.pem", "passphrase": "env:EMPTY"},
	            "nofile": {"provider": "pem", "path": "flows.pem", "passphrase": "file:keys/nope.txt"},
	            "readable": {"provider": "pem", "path": "flows.pem", "passphrase": "file:keys/readable.txt"},
	            "unset": {"provider": "pem", "path": "flows.pem", "passphrase": "env:UNSET_SECRET"}}' \
	"$T/config.json" >"$T/c.json" && mv "$T/c.json" "$T/config.json" && chmod 600 "$T/config.json"
"$FV" generate flows >/dev/null || fail "generate flows"

code() { # code N "what" ARGS...: flowvault ARGS exits N
	local want=$1 what=$2
	shift 2
	run "$FV" "$@"
	expect_rc "$want" "$what"
}
code 0 "version" version
code 1 "an output file in a missing directory" pubkey flows --out "$T/no/such/dir/pub.pem"
code 2 "an unknown command" kyes
code 2 "an unknown option" keys --jsn
code 2 "flow decrypt --in a missing file" flow decrypt flows --in /nonexistent
code 2 "a passphrase file that is missing" pubkey nofile
expect_err_has "keys/nope.txt"
code 3 "a world-readable passphrase file (a permission error, as for the key file)" pubkey readable
expect_err_has "readable by others"
code 2 "an unset env: secret" pubkey unset
expect_err_has "UNSET_SECRET"
code 3 "an empty env: secret (used, and said to be empty)" pubkey wrongpw
expect_err_has "set but empty"
code 3 "a missing key file" pubkey missing
WHATSAPP_ACCESS_TOKEN=not-the-token code 4 "a Graph API refusal (bad token)" status flows
code 5 "a number without the key" status flows
code 6 "a request for another key" flow decrypt flows --in "$FV_SOURCE_DIR/tests/vectors/pywa-flows/request.json"
pass "codes 0-6 where the table promises them"

# serve on an address in use: 1, saying so.
port=$(free_port)
python3 -c 'import socket,sys,time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); time.sleep(60)' "$port" &
holder=$!
at_exit "kill $holder"
wait_port "$port"
export APP_SECRET=app-secret
jq --arg l "127.0.0.1:$port" '.serve = {"listen": $l, "keys": ["flows"], "app_secrets": ["env:APP_SECRET"]}' \
	"$T/config.json" >"$T/serve.json" && chmod 600 "$T/serve.json"
run timeout 20 "$FV" --config "$T/serve.json" serve
expect_rc 1 "serve on an address in use"
expect_err_has "127.0.0.1:$port"
pass "serve on an address in use exits 1 and names the address"
