# serve.media end to end: flowvault serve (separated, sandboxed workers)
# between the independent Node client sending what WhatsApp sends (an
# encrypted data-exchange request with PhotoPicker/DocumentPicker objects), a
# local HTTPS CDN with a test CA, and the example upstream. Verified files
# reach the upstream in clear with their SHA-256; every refused or tampered
# file is reported failed without failing the request; no key material
# reaches the upstream.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/serve/serve_lib.sh"
MAKE="$PYTHON $FV_SOURCE_DIR/tests/media/make_media.py"
EXAMPLE="$FV_SOURCE_DIR/examples/media-upstream/upstream.py"

flow_setup_keys
PORT=$(free_port)
ADMIN=$(free_port)
UP=$(free_port)
CDN=$(free_port)
URL="http://127.0.0.1:$PORT/flows"

# -- The CDN: HTTPS for "localhost" under a test CA. ---------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 1 \
	-subj /CN=test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$T/cdn.key" -out "$T/cdn.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/san.ext"
openssl x509 -req -in "$T/cdn.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-out "$T/cdn.pem" -days 1 -extfile "$T/san.ext" 2>/dev/null
mkdir -p "$T/www" "$T/m" "$T/bodies"
"$PYTHON" "$FV_SOURCE_DIR/tests/media/cdn_server.py" "$CDN" "$T/cdn.pem" "$T/cdn.key" "$T/www" &
at_exit "kill $!"
"$PYTHON" "$EXAMPLE" "$UP" --save "$T/bodies" &
at_exit "kill $!"
wait_port "$CDN"
wait_port "$UP"

# -- Media objects, made independently (Python cryptography). -----------------
head -c 150000 /dev/urandom >"$T/photo.jpg"
printf 'a small document\n' >"$T/doc.txt"
head -c 300000 /dev/urandom >"$T/big.bin"
# media NAME CLEAR URL_PATH FILE_NAME [TAMPER]: $T/m/NAME.json, the file at www/NAME.enc
media() {
	mkdir -p "$T/m/$1"
	$MAKE "$T/m/$1" "$2" --cdn-url "https://localhost:$CDN/$3" ${5:+--tamper "$5"}
	cp "$T/m/$1/cdn.bin" "$T/www/$1.enc"
	jq --arg id "$1" --arg f "$4" '.media_id = $id | .file_name = $f' "$T/m/$1/object.json" >"$T/m/$1.json"
}
media photo "$T/photo.jpg" photo.enc "../../etc/IMG 5237.jpg"
media doc "$T/doc.txt" doc.enc "notes.txt"
media outside "$T/photo.jpg" outside.enc "a.jpg"
jq --arg u "https://127.0.0.1:$CDN/outside.enc" '.cdn_url = $u' "$T/m/outside.json" >"$T/x" && mv "$T/x" "$T/m/outside.json"
media elsewhere "$T/photo.jpg" photo.enc "b.jpg"
jq '.cdn_url = "https://mmg.whatsapp.net.evil.invalid/photo.enc"' "$T/m/elsewhere.json" >"$T/x" && mv "$T/x" "$T/m/elsewhere.json"
media redirect "$T/photo.jpg" redirect "c.jpg"
media big "$T/big.bin" big.enc "big.bin"
media slow "$T/doc.txt" slow/slow.enc "slow.txt"
TAMPERS="encrypted-hash mac mac-ciphertext-only iv key padding plaintext-hash truncate-5 truncate-20 empty odd-length"
for t in $TAMPERS; do media "t-$t" "$T/doc.txt" "t-$t.enc" "$t.txt" "$t"; done

photos=$(jq -s . "$T/m/photo.json" "$T/m/outside.json" "$T/m/elsewhere.json" "$T/m/redirect.json" "$T/m/big.json")
docs=$(jq -s . "$T/m/doc.json" "$T/m/slow.json" $(for t in $TAMPERS; do echo "$T/m/t-$t.json"; done))
payload=$(jq -nc --argjson p "$photos" --argjson d "$docs" \
	'{version: "3.0", action: "data_exchange", screen: "UPLOAD", flow_token: "t1",
	  data: {photo_picker: $p, upload: {document_picker: $d}, note: "hello"}}')

# -- Configuration checks. -----------------------------------------------------
base="\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"127.0.0.1:$ADMIN\", \"keys\": [\"current\"],
  \"app_secrets\": [\"env:APP_SECRET\"], \"upstream\": \"http://127.0.0.1:$UP/logic\", \"threads\": 4"
flow_config "$T/bad.json" "{$base, \"upstream_timeout_ms\": 8000, \"media\": {\"timeout_ms\": 2000}}"
run "$FV" --config "$T/bad.json" serve --check
expect_rc 2 "media.timeout_ms + upstream_timeout_ms over WhatsApp's 10 s"
expect_err_has "serve.media.timeout_ms"
flow_config "$T/bad.json" "{$base, \"upstream_timeout_ms\": 9500, \"media\": {}}"
run "$FV" --config "$T/bad.json" serve --check
expect_rc 2 "upstream_timeout_ms leaves no time for media"
flow_config "$T/bad.json" "{$base, \"media\": {\"allowed_hosts\": [\"*.whatsapp.net\"]}}"
run "$FV" --config "$T/bad.json" serve --check
expect_rc 2 "a wildcard host pattern"
flow_config "$T/bad.json" "{$base, \"media\": {\"max_bytes\": 5}}"
run "$FV" --config "$T/bad.json" serve --check
expect_rc 2 "an unknown media field"
flow_config "$T/bad.json" "{$base, \"media\": {\"max_file_bytes\": 1000, \"max_total_bytes\": 999}}"
run "$FV" --config "$T/bad.json" serve --check
expect_rc 2 "max_total_bytes under max_file_bytes"
flow_config "$T/bad.json" "{$base, \"media\": {}}"
run "$FV" --config "$T/bad.json" serve --check
expect_rc 0 "media with its defaults (timeout 1500 ms with the default upstream_timeout_ms)"
pass "serve.media: configurations that cannot fit in 10 s or name bad hosts are refused"

# -- Separated serve. ----------------------------------------------------------
flow_config "$T/config.json" "{$base, \"workers\": 2, \"upstream_timeout_ms\": 5000,
  \"media\": {\"allowed_hosts\": [\"localhost\"], \"max_file_bytes\": 200000,
              \"timeout_ms\": 2500, \"ca_file\": \"ca.pem\"}}"
"$FV" --config "$T/config.json" pubkey current >"$T/current.pub"
serve_start "$T/config.json" "$PORT"
wait_workers 2

post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload "$payload"
expect_field status 200
expect_field response.screen RECEIVED
expect_field response.data.content_type multipart/form-data
printf '%s' "$OUT" >"$T/reply.json"

# Every file as expected: the good ones in clear with the right SHA-256, each
# refusal with its reason.
"$PYTHON" - "$T" "$TAMPERS" <<'PY' || fail "files as the upstream received them: $(jq -c .response.data.files "$T/reply.json")"
import hashlib, json, sys
T, tampers = sys.argv[1], sys.argv[2].split()
files = {f["media_id"]: f for f in json.load(open(T + "/reply.json"))["response"]["data"]["files"]}
def sha(p): return hashlib.sha256(open(p, "rb").read()).hexdigest()
bad = []
def check(cond, what):
    if not cond: bad.append(what)
for name, clear, filename in (("photo", "photo.jpg", "_.._etc_IMG_5237.jpg"), ("doc", "doc.txt", "notes.txt")):
    f = files.get(name, {})
    check(f.get("status") == "ok", name + " not ok: %s" % f)
    check(f.get("sha256") == sha(T + "/" + clear), name + ": wrong sha256")
    check(f.get("filename") == filename, name + ": filename %r" % f.get("filename"))
expect = {"outside": "not in the allowed CDN hosts", "elsewhere": "not in the allowed CDN hosts",
          "redirect": "redirect", "big": "larger than 200000", "slow": "timed out",
          "t-encrypted-hash": "encrypted_hash", "t-mac": "MAC does not match",
          "t-mac-ciphertext-only": "MAC does not match", "t-iv": "MAC does not match",
          "t-key": "padding", "t-padding": "padding", "t-plaintext-hash": "plaintext_hash",
          "t-truncate-5": "at least 26 bytes", "t-truncate-20": "at least 26 bytes",
          "t-empty": "at least 26 bytes", "t-odd-length": "16 bytes"}
for name, reason in expect.items():
    f = files.get(name, {})
    check(f.get("status") == "failed", name + " not failed: %s" % f)
    check(reason in (f.get("reason") or ""), name + ": reason %r lacks %r" % (f.get("reason"), reason))
check(len(files) == 2 + len(expect), "%d files reported" % len(files))
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
PY
pass "2 verified files reach the upstream in clear (SHA-256 checked there), 16 refused or tampered ones reported failed, request answered 200"

# /metrics counts the files by result, and the clear bytes passed on.
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_media_files_total{result="ok"} 2'
expect_out_has 'flowvault_media_files_total{result="failed"} 16'
expect_out_has "flowvault_media_bytes_total $(($(stat -c %s "$T/photo.jpg") + $(stat -c %s "$T/doc.txt")))"
pass "/metrics: 2 media files ok, 16 failed, and the clear bytes passed on"

# More media objects than one request handles: the first 32 are handled
# (off the allowlist: refused before any download), the 2 beyond are
# reported failed without a download; the request still succeeds.
many=$(jq -nc --slurpfile o "$T/m/outside.json" \
	'{version: "3.0", action: "data_exchange", screen: "UPLOAD", flow_token: "t7",
	  data: {document_picker: [range(34) | $o[0]]}}')
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload "$many"
expect_field status 200
[ "$(jq -r '[.response.data.files[] | select(.status == "failed")] | length' <<<"$OUT")" = 34 ] ||
	fail "34 media objects: $(jq -c '[.response.data.files[] | .status]' <<<"$OUT")"
[ "$(jq -r '[.response.data.files[] | select(.reason | test("more media objects"))] | length' <<<"$OUT")" = 2 ] ||
	fail "the 2 objects beyond 32 are not reported as such: $(jq -c '[.response.data.files[].reason] | unique' <<<"$OUT")"
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_media_files_total{result="failed"} 50'
pass "34 media objects in one request: 32 handled, 2 reported failed without a download, all counted"

# No key material in what the upstream received, nor in the log.
ls "$T/bodies"/*.body >/dev/null || fail "the upstream saved no body"
for o in "$T"/m/*.json; do
	for k in encryption_key hmac_key iv encrypted_hash plaintext_hash; do
		v=$(jq -r ".encryption_metadata.$k" "$o")
		expect_not_has "$v" "$T"/bodies/*.body "$T/serve.log"
	done
done
# Each encryption_metadata the upstream got is a status, nothing else.
"$PYTHON" - "$T"/bodies/*.body <<'PY' || fail "an encryption_metadata kept other members"
import json, re, sys
seen = 0
for path in sys.argv[1:]:
    body = open(path, "rb").read()
    for meta in re.findall(rb'"encryption_metadata":(\{[^{}]*\})', body):
        keys = set(json.loads(meta))
        assert keys <= {"status", "part", "size", "sha256", "reason"}, (path, keys)
        seen += 1
assert seen >= 18, seen
PY
pass "no key, IV or hash of encryption_metadata reaches the upstream or the log"

# A request without media objects stays application/json.
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" \
	--payload '{"version":"3.0","action":"data_exchange","screen":"A","flow_token":"t2","data":{"n":1}}'
expect_field status 200
expect_field response.data.content_type application/json
pass "a request without media objects goes to the upstream as application/json"

# The sandbox holds: workers filtered, no file open; the resolver is its own process.
for w in $(children fv-worker); do
	grep -qP '^Seccomp:\t2$' "/proc/$w/status" || fail "worker $w: $(grep Seccomp "/proc/$w/status")"
	for t in /proc/$w/task/*; do
		grep -qP '^Seccomp:\t2$' "$t/status" || fail "worker $w thread ${t##*/} not filtered"
	done
	for fd in /proc/$w/fd/*; do
		[ "${fd##*/}" -gt 2 ] || continue # stdin/stdout /dev/null, stderr the log
		l=$(readlink "$fd" || true)
		case "$l" in /dev/null | socket:* | pipe:* | anon_inode:*) ;; *) fail "worker $w has $l open" ;; esac
	done
done
[ "$(children fv-resolver | wc -l)" = 1 ] || fail "no resolver process: $(ps -o pid,comm --ppid "$SERVE_PID")"
pass "workers still in seccomp mode 2 on every thread, no file open; one resolver process"

# The resolver process is replaced when it dies, and downloads work again.
old_resolver=$(children fv-resolver)
kill -9 "$old_resolver"
# Until the supervisor has reaped the old one (pgrep lists it as a zombie till
# then) and started its successor, which it hands to the workers at once.
restarted() {
	new_resolver=$(children fv-resolver | grep -vx "$old_resolver" || true)
	[ -n "$new_resolver" ] && ! kill -0 "$old_resolver" 2>/dev/null &&
		grep -q "resolver process $new_resolver looks up serve.media hosts" "$T/serve.log"
}
for ((i = 0; i < 100; i++)); do
	restarted && break
	sleep 0.1
done
restarted || fail "no new resolver process 10 s after $old_resolver was killed: $(tail -3 "$T/serve.log")"
small=$(jq -nc --argjson d "$(jq -s . "$T/m/doc.json")" \
	'{version: "3.0", action: "data_exchange", screen: "UPLOAD", flow_token: "t3", data: {document_picker: $d}}')
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload "$small"
expect_field status 200
[ "$(jq -r '.response.data.files[0].status' <<<"$OUT")" = ok ] || fail "after a resolver restart: $OUT"
pass "a new resolver process serves the workers after the old one was killed"

# A reload applies a new allowlist: the new workers get their own resolver
# connection (localhost), and an address literal needs no lookup.
flow_config "$T/config.json" "{$base, \"workers\": 2, \"upstream_timeout_ms\": 5000,
  \"media\": {\"allowed_hosts\": [\"localhost\", \"127.0.0.1\"], \"max_file_bytes\": 200000,
              \"timeout_ms\": 2500, \"ca_file\": \"ca.pem\"}}"
kill -HUP "$SERVE_PID"
for ((i = 0; i < 100; i++)); do
	grep -q "reloaded: generation 2" "$T/serve.log" && break
	sleep 0.1
done
grep -q "reloaded: generation 2" "$T/serve.log" || fail "no reload: $(tail -5 "$T/serve.log")"
both=$(jq -nc --argjson d "$(jq -s . "$T/m/doc.json" "$T/m/outside.json")" \
	'{version: "3.0", action: "data_exchange", screen: "UPLOAD", flow_token: "t6", data: {document_picker: $d}}')
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload "$both"
expect_field status 200
[ "$(jq -r '[.response.data.files[].status] | join(",")' <<<"$OUT")" = ok,ok ] || fail "after the reload: $OUT"
pass "a reload applies the new allowed_hosts (a host by name through the resolver, an address literal)"
serve_stop

# -- isolation "none": libcurl resolves and reads ca_file in the one process. --
ADMIN=$(free_port)
flow_config "$T/none.json" "{\"listen\": \"127.0.0.1:$PORT\", \"admin_listen\": \"127.0.0.1:$ADMIN\", \"keys\": [\"current\"],
  \"app_secrets\": [\"env:APP_SECRET\"], \"upstream\": \"http://127.0.0.1:$UP/logic\", \"threads\": 4,
  \"isolation\": \"none\", \"upstream_timeout_ms\": 5000,
  \"media\": {\"allowed_hosts\": [\"localhost\"], \"timeout_ms\": 2500, \"ca_file\": \"ca.pem\",
              \"max_file_bytes\": 200000, \"max_total_bytes\": 200000}}"
serve_start "$T/none.json" "$PORT"
payload2=$(jq -nc --argjson d "$(jq -s . "$T/m/doc.json" "$T/m/t-mac.json")" \
	'{version: "3.0", action: "data_exchange", screen: "UPLOAD", flow_token: "t4", data: {document_picker: $d}}')
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload "$payload2"
expect_field status 200
[ "$(jq -r '[.response.data.files[].status] | join(",")' <<<"$OUT")" = ok,failed ] || fail "isolation none: $OUT"
pass "isolation \"none\" handles media the same way"

# Two 150000-byte files against max_total_bytes 200000: one arrives, the
# other is refused (which one depends on who finishes first).
jq '.media_id = "photo-again"' "$T/m/photo.json" >"$T/m/photo-again.json"
payload3=$(jq -nc --argjson p "$(jq -s . "$T/m/photo.json" "$T/m/photo-again.json")" \
	'{version: "3.0", action: "data_exchange", screen: "UPLOAD", flow_token: "t5", data: {photo_picker: $p}}')
post --url "$URL" --pub "$T/current.pub" --secret "$APP_SECRET" --payload "$payload3"
expect_field status 200
[ "$(jq -r '[.response.data.files[].status] | sort | join(",")' <<<"$OUT")" = failed,ok ] || fail "max_total_bytes: $OUT"
jq -r '.response.data.files[].reason // empty' <<<"$OUT" | grep -q "max_total_bytes" || fail "max_total_bytes not named: $OUT"
run curl -s "http://127.0.0.1:$ADMIN/metrics"
expect_out_has 'flowvault_media_files_total{result="ok"} 2'
expect_out_has 'flowvault_media_files_total{result="failed"} 2'
serve_stop
pass "files beyond max_total_bytes are refused, the others arrive; /metrics counts them in one process too"
