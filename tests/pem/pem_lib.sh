# shellcheck shell=bash
# Helpers for the PEM provider's shell tests; source after tests/lib.sh.

# The passphrase every encrypted test key uses; configs refer to it as env:PW.
export PW='correct horse battery staple'

# new_rsa FILE [BITS]: an unencrypted PKCS#8 RSA key, mode 0600.
new_rsa() {
	openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${2:-2048}" \
		-out "$1" 2>/dev/null || fail "openssl cannot generate $1"
	chmod 600 "$1"
}

# write_config FILE KEYS_JSON: a configuration whose "keys" member is KEYS_JSON.
write_config() {
	printf '{"keys": %s}\n' "$2" >"$1"
	chmod 600 "$1"
}

# openssl_pubout KEYFILE: what `openssl pkey -pubout` prints for it.
openssl_pubout() {
	openssl pkey -in "$1" -passin env:PW -pubout
}

# spki_sha256 PUBLIC_PEM_FILE: lowercase hex SHA-256 of the SPKI DER.
spki_sha256() {
	openssl pkey -pubin -in "$1" -outform DER | sha256sum | cut -d' ' -f1
}

# json_expect FIELD=VALUE...: $OUT is exactly one JSON object whose members
# FIELD equal VALUE (VALUE @FILE: the file's content). One python run, as
# starting python costs more than the rest of a check.
json_expect() {
	python3 -I -c '
import json, sys
doc = json.loads(sys.stdin.read())   # fails on anything after the document
for arg in sys.argv[1:]:
    field, want = arg.split("=", 1)
    if want.startswith("@"):
        want = open(want[1:]).read()
    got = doc.get(field)
    if got != want:
        sys.exit("member %s is %r, expected %r" % (field, got, want))
' "$@" <<<"$OUT" || fail "JSON output does not match: $OUT"
}
