# flow media-decrypt: files made by an independent implementation are
# verified and decrypted; every tampered or truncated one is refused with
# exit 6 and leaves no output file; downloads are HTTPS, allowlisted, and
# never follow a redirect.
. "$FV_SOURCE_DIR/tests/lib.sh"
MAKE="$PYTHON $FV_SOURCE_DIR/tests/media/make_media.py"

head -c 100000 /dev/urandom >"$T/photo.jpg"
want_sha=$(sha256sum "$T/photo.jpg" | cut -d' ' -f1)

# -- A good file: clear file written 0600, JSON summary. ----------------------
mkdir "$T/good"
$MAKE "$T/good" "$T/photo.jpg"
run "$FV" --json flow media-decrypt --media "$T/good/object.json" --in "$T/good/cdn.bin" --out "$T/clear.jpg"
expect_rc 0 "a good media file"
cmp -s "$T/clear.jpg" "$T/photo.jpg" || fail "the clear file differs from the original"
expect_file_mode 600 "$T/clear.jpg"
[ "$(jq -r .sha256 <<<"$OUT")" = "$want_sha" ] || fail "sha256 in --json: $OUT"
[ "$(jq -r .size <<<"$OUT")" = 100000 ] || fail "size in --json: $OUT"
[ "$(jq -r .media_id <<<"$OUT")" = 790aba14-5f4f-4a2d-9b3a-1e3b2c9d0a11 ] || fail "media_id: $OUT"
[ "$(jq -r .file_name <<<"$OUT")" = IMG_5237.jpg ] || fail "file_name: $OUT"
pass "a file made as WhatsApp makes it decrypts to the original (size, sha256 in --json)"

run "$FV" flow media-decrypt --media "$T/good/object.json" --in "$T/good/cdn.bin" --out "$T/clear.jpg"
[ "$RC" != 0 ] || fail "an existing --out was replaced"
expect_err_has "already exists"
cmp -s "$T/clear.jpg" "$T/photo.jpg" || fail "the existing file changed"
pass "never replaces an existing file"

# Small and block-sized clear files (padding of a whole block).
for n in 0 1 15 16 17 4096; do
	head -c "$n" /dev/urandom >"$T/small"
	mkdir -p "$T/s$n"
	$MAKE "$T/s$n" "$T/small"
	run "$FV" flow media-decrypt --media "$T/s$n/object.json" --in "$T/s$n/cdn.bin" --out "$T/s$n/out"
	expect_rc 0 "a $n-byte clear file"
	cmp -s "$T/s$n/out" "$T/small" || fail "$n-byte file differs"
done
pass "clear files of 0, 1, 15, 16, 17 and 4096 bytes"

# -- Every tamper case is refused, with its stage, and leaves nothing. -------
check_refused() { # CASE "stage text"
	mkdir -p "$T/t-$1"
	$MAKE "$T/t-$1" "$T/photo.jpg" --tamper "$1"
	run "$FV" flow media-decrypt --media "$T/t-$1/object.json" --in "$T/t-$1/cdn.bin" --out "$T/t-$1/out"
	expect_rc 6 "tampered: $1"
	expect_err_has "$2"
	[ ! -e "$T/t-$1/out" ] || fail "tampered $1: an output file was left"
	[ -z "$(ls -A "$T/t-$1" | grep -v -e object.json -e cdn.bin)" ] ||
		fail "tampered $1: a temporary file was left: $(ls -A "$T/t-$1")"
	run "$FV" --json flow media-decrypt --media "$T/t-$1/object.json" --in "$T/t-$1/cdn.bin" --out "$T/t-$1/out"
	expect_rc 6 "tampered: $1 (--json)"
	jq -e . <<<"$OUT" >/dev/null || fail "--json printed no JSON document for $1: $OUT"
}
check_refused encrypted-hash "does not match encrypted_hash"
check_refused mac "the MAC does not match"
check_refused mac-ciphertext-only "the MAC does not match"
check_refused iv "the MAC does not match"
check_refused key "verification failed"
check_refused padding "invalid padding"
check_refused plaintext-hash "does not match plaintext_hash"
check_refused truncate-5 "at least 26 bytes"
check_refused truncate-20 "at least 26 bytes"
check_refused empty "at least 26 bytes"
check_refused odd-length "AES blocks of 16 bytes"
pass "hash, MAC (also over the ciphertext alone), iv, key, padding, clear hash, truncation: exit 6, nothing left"

# Bad media objects: exit 6 naming the field, never the key.
jq '.encryption_metadata.hmac_key = "c2hvcnQ="' "$T/good/object.json" >"$T/short.json"
run "$FV" flow media-decrypt --media "$T/short.json" --in "$T/good/cdn.bin" --out "$T/x"
expect_rc 6 "a 5-byte hmac_key"
expect_err_has "encryption_metadata.hmac_key is not base64 of 32 bytes"
jq 'del(.encryption_metadata.iv)' "$T/good/object.json" >"$T/noiv.json"
run "$FV" flow media-decrypt --media "$T/noiv.json" --in "$T/good/cdn.bin" --out "$T/x"
expect_rc 6 "no iv"
expect_err_has "encryption_metadata.iv is missing"
key=$(jq -r .encryption_metadata.encryption_key "$T/good/object.json")
expect_not_has "$key" "$T/.out" "$T/.err"
pass "malformed media objects are named, keys never shown"

run "$FV" flow media-decrypt --media "$T/good/object.json" --out "$T/y"
expect_rc 2 "neither --in nor --fetch"
run "$FV" flow media-decrypt --media "$T/good/object.json" --in
expect_rc 2 "--in without a value"
pass "usage errors exit 2"

# -- Downloads: a local HTTPS CDN with a test CA. ------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 1 \
	-subj /CN=test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$T/cdn.key" -out "$T/cdn.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/san.ext"
openssl x509 -req -in "$T/cdn.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-out "$T/cdn.pem" -days 1 -extfile "$T/san.ext" 2>/dev/null
PORT=$(free_port)
mkdir -p "$T/www"
cp "$T/good/cdn.bin" "$T/www/media.enc"
"$PYTHON" "$FV_SOURCE_DIR/tests/media/cdn_server.py" "$PORT" "$T/cdn.pem" "$T/cdn.key" "$T/www" &
at_exit "kill $!"
wait_port "$PORT"
jq --arg u "https://127.0.0.1:$PORT/media.enc" '.cdn_url = $u' "$T/good/object.json" >"$T/local.json"

run "$FV" flow media-decrypt --media "$T/local.json" --fetch --ca-file "$T/ca.pem" --out "$T/f1"
expect_rc 6 "a CDN host outside the allowlist"
expect_err_has "not in the allowed CDN hosts"
[ ! -e "$T/f1" ] || fail "a refused download left a file"
run "$FV" flow media-decrypt --media "$T/local.json" --fetch --ca-file "$T/ca.pem" --allow-host 127.0.0.1 --out "$T/f2"
expect_rc 0 "download from an allowed host"
cmp -s "$T/f2" "$T/photo.jpg" || fail "downloaded file differs"
run "$FV" flow media-decrypt --media "$T/local.json" --fetch --allow-host 127.0.0.1 --out "$T/f3"
expect_rc 3 "a CDN certificate from an unknown CA"
[ ! -e "$T/f3" ] || fail "an untrusted download left a file"
jq --arg u "https://127.0.0.1:$PORT/redirect" '.cdn_url = $u' "$T/good/object.json" >"$T/redir.json"
run "$FV" flow media-decrypt --media "$T/redir.json" --fetch --ca-file "$T/ca.pem" --allow-host 127.0.0.1 --out "$T/f4"
expect_rc 6 "a redirect"
expect_err_has "redirects are not followed"
jq --arg u "http://127.0.0.1:$PORT/media.enc" '.cdn_url = $u' "$T/good/object.json" >"$T/plain.json"
run "$FV" flow media-decrypt --media "$T/plain.json" --fetch --allow-host 127.0.0.1 --out "$T/f5"
expect_rc 6 "plain http"
expect_err_has "not https"
pass "downloads: allowlisted hosts only, CA verified, no redirects, no plain http"
