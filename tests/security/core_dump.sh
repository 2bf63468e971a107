#!/bin/bash
# Secrets stay out of /proc and core dumps. `flowvault serve` with an
# encrypted PEM key (passphrase from env:) and an app secret from env:
#  - without FLOWVAULT_ALLOW_CORE_DUMPS, kill -SEGV writes no core (ulimit -c
#    unlimited, core files land in the working directory);
#  - with FLOWVAULT_ALLOW_CORE_DUMPS=1 (the debugging opt-out, which warns),
#    /proc/PID/environ no longer holds either secret, and the core written
#    by kill -SEGV holds neither of them.
. "$FV_SOURCE_DIR/tests/lib.sh"

# Distinctive per run, so that a match can only be the secret itself.
APP="fvAppSecret$(openssl rand -hex 12)"
PASS="fvPemPass$(openssl rand -hex 12)"
export FV_SEC_APP="$APP" FV_SEC_PASS="$PASS"

mkdir -m 700 "$T/keys" "$T/work" "$T/work-optout"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc \
	-pass env:FV_SEC_PASS -out "$T/keys/flows.pem" 2>/dev/null ||
	fail "openssl cannot make an encrypted key"
chmod 600 "$T/keys/flows.pem"
PORT=$(free_port)
cat >"$T/config.json" <<EOF
{
  "keys": {"flows": {"provider": "pem", "path": "$T/keys/flows.pem", "passphrase": "env:FV_SEC_PASS"}},
  "serve": {"listen": "127.0.0.1:$PORT", "admin_listen": "off", "keys": ["flows"], "path": "/flows", "app_secrets": ["env:FV_SEC_APP"]}
}
EOF
chmod 600 "$T/config.json"

# serve_in DIR [ENV...]: start serve with DIR as working directory, cores
# allowed by the shell, and wait until it listens; SERVE_PID.
serve_in() {
	local dir=$1 i
	shift
	(cd "$dir" && ulimit -c unlimited && exec env "$@" "$FV" --config "$T/config.json" serve) \
		>"$T/serve.out" 2>"$T/serve.log" &
	SERVE_PID=$!
	at_exit "kill -9 $SERVE_PID"
	for ((i = 0; i < 200; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		kill -0 "$SERVE_PID" 2>/dev/null || fail "flowvault serve exited: $(cat "$T/serve.log")"
		sleep 0.1
	done
	fail "flowvault serve does not listen on $PORT: $(cat "$T/serve.log")"
}
# segv: kill -SEGV the server and wait for it; the core file, if any, in $CORE.
segv() { # segv DIR
	kill -SEGV "$SERVE_PID"
	wait "$SERVE_PID" 2>/dev/null || true
	CORE=$(find "$1" -maxdepth 1 -name 'core*' -type f | head -1)
}

# ---- the default: no core at all ----
serve_in "$T/work"
grep -q "^Max core file size *unlimited" "/proc/$SERVE_PID/limits" 2>/dev/null &&
	fail "serve left RLIMIT_CORE unlimited"
segv "$T/work"
[ -z "$CORE" ] || fail "kill -SEGV of serve wrote a core file: $(ls -l "$CORE")"
pass "serve: no core file on SIGSEGV by default"

# ---- the opt-out: environ and the core are free of the secrets ----
serve_in "$T/work-optout" FLOWVAULT_ALLOW_CORE_DUMPS=1
grep -q "FLOWVAULT_ALLOW_CORE_DUMPS" "$T/serve.log" ||
	fail "the opt-out does not warn: $(cat "$T/serve.log")"
tr '\0' '\n' <"/proc/$SERVE_PID/environ" >"$T/environ" || fail "cannot read the server's environ"
grep -q '^FLOWVAULT_ALLOW_CORE_DUMPS=1$' "$T/environ" || fail "sampled the wrong environ"
expect_not_has "$APP" "$T/environ"
expect_not_has "$PASS" "$T/environ"
! grep -q '^FV_SEC_[A-Z]*=.' "$T/environ" || fail "env: values still in the environment: $(grep '^FV_SEC_' "$T/environ")"
pass "serve: /proc/PID/environ holds neither the app secret nor the passphrase"

# A signed request first, so that copies made while checking a signature
# (HMAC) would be in the core too.
body='{"encrypted_flow_data": "AAAA", "encrypted_aes_key": "AAAA", "initial_vector": "AAAA"}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$APP" -r | cut -d' ' -f1)
post_flows() { # post_flows SIGNATURE: the HTTP status
	curl -s -o /dev/null -w '%{http_code}' -H "X-Hub-Signature-256: sha256=$1" \
		-H 'Content-Type: application/json' --data-binary "$body" "http://127.0.0.1:$PORT/flows"
}
unsigned=$(post_flows 00)
status=$(post_flows "$sig")
[ "$status" != "$unsigned" ] && [ "$status" != 000 ] ||
	fail "the signed request was answered like an unsigned one (HTTP $status)"
echo "note: signed request answered HTTP $status, a wrong signature $unsigned"

if [ -n "${FV_SANITIZE_FLAGS:-}" ]; then
	# AddressSanitizer turns core dumps off itself (and its shadow memory
	# would make one terabytes large): the content is checked in the plain build.
	echo "note: sanitizer build: the core's content is checked in the plain build"
	exit 0
fi
segv "$T/work-optout"
[ -n "$CORE" ] || fail "no core file with FLOWVAULT_ALLOW_CORE_DUMPS=1 (the test cannot check its content)"
echo "note: core file of $(du -k "$CORE" | cut -f1) KiB"
found=""
grep -qaF -- "$APP" "$CORE" && found="$found app-secret($(grep -caF -- "$APP" "$CORE") lines)"
grep -qaF -- "$PASS" "$CORE" && found="$found pem-passphrase($(grep -caF -- "$PASS" "$CORE") lines)"
[ -z "$found" ] || fail "the core file of serve holds:$found"
pass "serve: its core file (opt-out on) holds neither the app secret nor the passphrase"
