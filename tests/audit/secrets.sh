#!/bin/bash
# Secret-leak audit: every `flowvault` command, at -v -v, with distinctive
# PINs and passphrases given by env: and file: references, right and wrong.
# None of the values may appear in stdout, stderr, any file the command
# writes, its command line, or the argv/environment of any process it starts
# (it should start none). Error paths are where secrets leak, so wrong PINs
# and passphrases are rows of their own.
#
# The table at the bottom has one row per run:
#     NAME | EXIT | CONFIG | ARGS...
# CONFIG is a file in $T/conf/ written by the setup below; add a config and
# rows there for further commands (register, status, serve, flow).
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

PIN='S3cr3t-PIN-7f1c'
PASS='Pa55-phrase-9d2e'
WRONG_PIN='Wr0ng-PIN-3b8a'
WRONG_PASS='Wr0ng-phrase-5c6d'
# graph_lib.sh made the access token the simulator accepts ($SIM_TOKEN).
APP_SECRET='App-s3cret-6a4f'
WRONG_TOKEN='EAAGwrong-token-1e7b'
SECRETS=("$PIN" "$PASS" "$WRONG_PIN" "$WRONG_PASS" "$SIM_TOKEN" "$APP_SECRET" "$WRONG_TOKEN")
export FV_AUDIT_TOKEN="$SIM_TOKEN" FV_AUDIT_WRONG_TOKEN="$WRONG_TOKEN"
export FV_AUDIT_APP_SECRET="$APP_SECRET"
export FV_AUDIT_PIN="$PIN" FV_AUDIT_PASS="$PASS"
export FV_AUDIT_WRONG_PIN="$WRONG_PIN" FV_AUDIT_WRONG_PASS="$WRONG_PASS"

HAVE_STRACE=0
command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null && HAVE_STRACE=1

mkdir -m 700 "$T/conf" "$T/secrets" "$T/keys" "$T/work"
secret_file() { # secret_file NAME VALUE: a file: reference target, mode 0600
	printf '%s\n' "$2" >"$T/secrets/$1"
	chmod 600 "$T/secrets/$1"
}
secret_file pin "$PIN"
secret_file pass "$PASS"
secret_file wrong-pin "$WRONG_PIN"
secret_file wrong-pass "$WRONG_PASS"
conf() { # conf NAME KEY-ENTRY-JSON [MORE-TOP-LEVEL-JSON]
	printf '{"keys": {"flows": %s}%s}\n' "$2" "${3:+, $3}" >"$T/conf/$1.json"
	chmod 600 "$T/conf/$1.json"
}

# PEM: an encrypted key made by openssl with the passphrase, plus a path
# for generate.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc \
	-pass env:FV_AUDIT_PASS -out "$T/keys/flows.pem" 2>/dev/null || fail "openssl genpkey"
chmod 600 "$T/keys/flows.pem"
pem() { printf '{"provider": "pem", "path": "%s", "passphrase": "%s"}' "$@"; }
conf pem-env "$(pem "$T/keys/flows.pem" env:FV_AUDIT_PASS)"
conf pem-file "$(pem "$T/keys/flows.pem" "file:$T/secrets/pass")"
conf pem-wrong-env "$(pem "$T/keys/flows.pem" env:FV_AUDIT_WRONG_PASS)"
conf pem-wrong-file "$(pem "$T/keys/flows.pem" "file:$T/secrets/wrong-pass")"
conf pem-gen-env "$(pem "$T/work/gen-env.pem" env:FV_AUDIT_PASS)"
conf pem-gen-file "$(pem "$T/work/gen-file.pem" "file:$T/secrets/pass")"
conf pem-fifo "$(pem "$T/keys/flows.pem" "file:$T/secrets/fifo")"

# PKCS#11: a SoftHSM2 token whose user PIN is $PIN.
setup_softhsm audit "$PIN"
p11() { # p11 OBJECT PIN-REFERENCE
	printf '{"provider": "pkcs11", "module": "%s", "uri": "pkcs11:token=audit;object=%s", "pin": "%s", "allow_host_oaep": true}' \
		"$SOFTHSM_MODULE" "$1" "$2"
}
conf p11-env "$(p11 flows-key env:FV_AUDIT_PIN)"
conf p11-file "$(p11 flows-key "file:$T/secrets/pin")"
conf p11-wrong-env "$(p11 flows-key env:FV_AUDIT_WRONG_PIN)"
conf p11-wrong-file "$(p11 flows-key "file:$T/secrets/wrong-pin")"
conf p11-gen-file "$(p11 second-key "file:$T/secrets/pin")"

# Graph API (the TLS simulator) and the Flows endpoint: the access token and
# the app secret, right and wrong, by env: and file:.
start_sim
secret_file token "$SIM_TOKEN"
secret_file app-secret "$APP_SECRET"
graph() { printf '"graph": {"base_url": "%s", "access_token": "%s", "ca_file": "%s", "retry_base_ms": 5}' \
	"$SIM_URL" "$1" "$T/tls/ca.pem"; }
pem_numbers() { printf '{"provider": "pem", "path": "%s", "passphrase": "%s", "phone_numbers": ["1001", "1002"]}' "$@"; }
conf graph-env "$(pem_numbers "$T/keys/flows.pem" env:FV_AUDIT_PASS)" "$(graph env:FV_AUDIT_TOKEN)"
conf graph-file "$(pem_numbers "$T/keys/flows.pem" "file:$T/secrets/pass")" "$(graph "file:$T/secrets/token")"
conf graph-wrong "$(pem_numbers "$T/keys/flows.pem" env:FV_AUDIT_PASS)" "$(graph env:FV_AUDIT_WRONG_TOKEN)"
serve() { printf '"serve": {"keys": ["flows"], "listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "app_secrets": ["%s"]}' "$1"; }
conf serve-env "$(pem "$T/keys/flows.pem" env:FV_AUDIT_PASS)" "$(serve env:FV_AUDIT_APP_SECRET)"
conf serve-file "$(pem "$T/keys/flows.pem" "file:$T/secrets/pass")" "$(serve "file:$T/secrets/app-secret")"
# A Flows request to the audit key, made by the independent Node client.
openssl pkey -in "$T/keys/flows.pem" -passin env:FV_AUDIT_PASS -pubout -out "$T/keys/flows.pub" 2>/dev/null
node "$FV_SOURCE_DIR/tests/flow/flows_client.js" encrypt --pub "$T/keys/flows.pub" \
	--payload '{"version":"3.0","action":"ping"}' >"$T/keys/request.json" || fail "node cannot encrypt a request"
printf '{"data":{"status":"active"}}' >"$T/keys/response.json"

ROWS=0
cd "$T" # ARGS name files relative to $T
# audit_run NAME EXIT CONFIG ARGS...: run, check the exit code, hunt leaks.
audit_run() {
	local name=$1 want=$2 config=$T/conf/$3.json secret f children
	shift 3
	ROWS=$((ROWS + 1))
	touch "$T/marker"
	sleep 0.01 # mtime granularity: files written by the run are newer
	local cmd=("$FV" -v -v --config "$config" "$@")
	# Our own argv first: the secrets must not even be passed in.
	for secret in "${SECRETS[@]}"; do
		! grep -qF -- "$secret" <<<"${cmd[*]}" || fail "$name: the test itself passes a secret in argv"
	done
	if [ "$HAVE_STRACE" = 1 ]; then
		# LeakSanitizer cannot run under ptrace; sanitizer builds check
		# leaks in the rest of the suite.
		run env TMPDIR="$T/work" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
			strace -f -qq -v -s 65536 -e trace=execve \
			-o "$T/execve.log" "${cmd[@]}"
		# strace's own lines end up in the log only; $ERR is the command's.
	else
		run env TMPDIR="$T/work" "${cmd[@]}"
	fi
	expect_rc "$want" "$name"
	for secret in "${SECRETS[@]}"; do
		! grep -qF -- "$secret" <<<"$OUT" || fail "$name: stdout shows a secret: $OUT"
		! grep -qF -- "$secret" <<<"$ERR" || fail "$name: stderr shows a secret: $ERR"
	done
	# Every file the run created or changed, anywhere under $T (TMPDIR too),
	# except the secret files and the token store, which hold them by design.
	while IFS= read -r -d '' f; do
		for secret in "${SECRETS[@]}"; do
			! grep -qaF -- "$secret" "$f" || fail "$name: '$f', written by the run, holds a secret"
		done
	done < <(find "$T" -newer "$T/marker" -type f ! -path "$T/secrets/*" \
		! -path "$T/softhsm/*" ! -name execve.log ! -name .out ! -name .err -print0)
	if [ "$HAVE_STRACE" = 1 ]; then
		# The first execve is flowvault itself (its environment holds the
		# env: secrets by design); any other is a child.
		children=$(grep -c 'execve(' "$T/execve.log" || true)
		[ "$children" -ge 1 ] || fail "$name: strace saw no execve: $(cat "$T/execve.log")"
		head -n1 "$T/execve.log" | grep -qF "execve(\"$FV\"" ||
			fail "$name: unexpected first execve: $(head -n1 "$T/execve.log")"
		# argv of flowvault: everything before the environment array.
		head -n1 "$T/execve.log" | sed 's/\], \[.*//' >"$T/argv"
		for secret in "${SECRETS[@]}"; do
			expect_not_has "$secret" "$T/argv"
		done
		if [ "$children" -gt 1 ]; then
			tail -n +2 "$T/execve.log" >"$T/children"
			for secret in "${SECRETS[@]}"; do
				! grep -qF -- "$secret" "$T/children" ||
					fail "$name: a child process got a secret: $(cat "$T/children")"
			done
			echo "note: $name started $((children - 1)) process(es): $(tail -n +2 "$T/execve.log" | cut -c1-120)"
		fi
	fi
	pass "$name: exit $RC, no secret in stdout, stderr, written files, argv or children"
}

# A file: reference to a FIFO is refused at once: it used to keep flowvault
# blocked in open() until someone wrote. (A running process's
# /proc/PID/environ is checked by tests/security/core_dump.sh, on serve.)
audit_proc() {
	local secret
	mkfifo -m 600 "$T/secrets/fifo"
	run timeout 10 "$FV" -v -v --config "$T/conf/pem-fifo.json" pubkey flows
	[ "$RC" != 124 ] || fail "a FIFO as file: secret blocked flowvault"
	[ "$RC" != 0 ] || fail "a FIFO was accepted as a secret file"
	expect_err_has "FIFO"
	for secret in "${SECRETS[@]}"; do
		expect_not_has "$secret" "$T/.out" "$T/.err"
	done
	rm -f "$T/secrets/fifo"
	pass "a FIFO as file: secret is refused at once, naming no secret"
}

while IFS='|' read -r name want config args; do
	name=$(echo $name)
	[ -n "$name" ] && [ "${name#\#}" = "$name" ] || continue
	# shellcheck disable=SC2086 # ARGS are words
	audit_run "$name" $want $config $args
done <<'TABLE'
# NAME                 | EXIT | CONFIG         | ARGS
plugins                |  0   | pem-env        | plugins
plugins-json           |  0   | pem-env        | --json plugins
pem-keys-env           |  0   | pem-env        | keys
pem-keys-file          |  0   | pem-file       | keys
pem-pubkey-env         |  0   | pem-env        | pubkey flows
pem-pubkey-file-out    |  0   | pem-file       | pubkey flows --out work/pub-file.pem
pem-pubkey-json        |  0   | pem-env        | --json pubkey flows
pem-generate-env       |  0   | pem-gen-env    | generate flows
pem-generate-file      |  0   | pem-gen-file   | generate flows
pem-generate-exists    |  3   | pem-env        | generate flows
pem-wrong-pass-env     |  3   | pem-wrong-env  | pubkey flows
pem-wrong-pass-file    |  3   | pem-wrong-file | pubkey flows
pem-wrong-pass-keys    |  3   | pem-wrong-env  | keys
pem-wrong-pass-json    |  3   | pem-wrong-file | --json pubkey flows
p11-generate-env       |  0   | p11-env        | generate flows
p11-generate-file      |  0   | p11-gen-file   | generate flows
p11-keys-env           |  0   | p11-env        | keys
p11-keys-file          |  0   | p11-file       | --json keys
p11-pubkey-env         |  0   | p11-env        | pubkey flows
p11-pubkey-file-out    |  0   | p11-file       | pubkey flows --out work/pub-p11.pem
p11-wrong-pin-env      |  3   | p11-wrong-env  | pubkey flows
p11-wrong-pin-file     |  3   | p11-wrong-file | pubkey flows
p11-wrong-pin-keys     |  3   | p11-wrong-env  | keys
p11-wrong-pin-generate |  3   | p11-wrong-file | generate flows
register-env           |  0   | graph-env      | register flows
register-file-json     |  0   | graph-file     | --json register flows
status-env             |  0   | graph-env      | status flows
status-file-json       |  0   | graph-file     | --json status flows
register-wrong-token   |  4   | graph-wrong    | register flows
status-wrong-token     |  4   | graph-wrong    | --json status flows
register-wrong-pass    |  3   | pem-wrong-env  | register flows
flow-decrypt-env       |  0   | pem-env        | flow decrypt flows --in keys/request.json
flow-decrypt-file      |  0   | pem-file       | flow decrypt flows --in keys/request.json
flow-encrypt           |  0   | pem-env        | flow encrypt flows --request keys/request.json --response keys/response.json
flow-decrypt-wrong     |  3   | pem-wrong-env  | flow decrypt flows --in keys/request.json
serve-check-env        |  0   | serve-env      | serve --check
serve-check-file       |  0   | serve-file     | serve --check
TABLE
audit_proc
pass "$ROWS runs audited (strace: $([ "$HAVE_STRACE" = 1 ] && echo yes || echo 'not available'))"
