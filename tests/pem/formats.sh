#!/bin/bash
# The PEM provider loads RSA keys in PKCS#1 and PKCS#8, plain or encrypted,
# and `flowvault pubkey` prints exactly what `openssl pkey -pubout` prints.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

K=$T/keys
mkdir -m 700 "$K"
new_rsa "$K/pkcs8.pem"
openssl pkey -in "$K/pkcs8.pem" -traditional -out "$K/pkcs1.pem"
openssl pkey -in "$K/pkcs8.pem" -aes256 -passout env:PW -out "$K/pkcs8-enc.pem"
openssl rsa -in "$K/pkcs8.pem" -traditional -aes256 -passout env:PW \
	-out "$K/pkcs1-enc.pem" 2>/dev/null
# What the tools people use write: `openssl genrsa -des3` (encrypted PKCS#8 in
# OpenSSL 3), its -traditional form (encrypted PKCS#1), and Meta's Node example
# (PKCS#1, des-ede3-cbc, "Proc-Type: 4,ENCRYPTED").
openssl genrsa -des3 -passout env:PW -out "$K/genrsa-des3.pem" 2048 2>/dev/null
openssl genrsa -traditional -aes256 -passout env:PW -out "$K/genrsa-trad.pem" 2048 2>/dev/null
node -e '
const crypto = require("crypto"), fs = require("fs");
const { privateKey } = crypto.generateKeyPairSync("rsa", {
  modulusLength: 2048,
  publicKeyEncoding: { type: "spki", format: "pem" },
  privateKeyEncoding: { type: "pkcs1", format: "pem", cipher: "des-ede3-cbc",
                        passphrase: process.env.PW },
});
fs.writeFileSync(process.argv[1], privateKey);' "$K/node-pkcs1.pem" ||
	fail "node could not write the Meta example key"
# An independent encrypted PKCS#8 key (PBES2, des-ede3-cbc), passphrase "pywa".
cp "$VECTORS/pywa-flows/private_key.pem" "$K/pywa.pem"
chmod 600 "$K"/*.pem

# Prove each file is in the format its name claims.
first_line() { head -n1 "$1"; }
[ "$(first_line "$K/pkcs8.pem")" = "-----BEGIN PRIVATE KEY-----" ] || fail "pkcs8.pem is not PKCS#8"
[ "$(first_line "$K/pkcs1.pem")" = "-----BEGIN RSA PRIVATE KEY-----" ] || fail "pkcs1.pem is not PKCS#1"
! grep -q ENCRYPTED "$K/pkcs1.pem" || fail "pkcs1.pem is encrypted"
[ "$(first_line "$K/pkcs8-enc.pem")" = "-----BEGIN ENCRYPTED PRIVATE KEY-----" ] || fail "pkcs8-enc.pem is not encrypted PKCS#8"
[ "$(first_line "$K/genrsa-des3.pem")" = "-----BEGIN ENCRYPTED PRIVATE KEY-----" ] || fail "genrsa -des3 did not write encrypted PKCS#8"
for f in pkcs1-enc genrsa-trad node-pkcs1; do
	[ "$(first_line "$K/$f.pem")" = "-----BEGIN RSA PRIVATE KEY-----" ] || fail "$f.pem is not PKCS#1"
	grep -q '^Proc-Type: 4,ENCRYPTED' "$K/$f.pem" || fail "$f.pem is not encrypted PKCS#1"
done
grep -q '^DEK-Info: DES-EDE3-CBC' "$K/node-pkcs1.pem" || fail "node key is not des-ede3-cbc"

export PYWA=pywa
write_config "$T/config.json" '{
  "pkcs8":       {"provider": "pem", "path": "keys/pkcs8.pem"},
  "pkcs1":       {"provider": "pem", "path": "keys/pkcs1.pem"},
  "pkcs8-enc":   {"provider": "pem", "path": "keys/pkcs8-enc.pem", "passphrase": "env:PW"},
  "pkcs1-enc":   {"provider": "pem", "path": "keys/pkcs1-enc.pem", "passphrase": "env:PW"},
  "genrsa-des3": {"provider": "pem", "path": "keys/genrsa-des3.pem", "passphrase": "env:PW"},
  "genrsa-trad": {"provider": "pem", "path": "keys/genrsa-trad.pem", "passphrase": "env:PW"},
  "node-pkcs1":  {"provider": "pem", "path": "keys/node-pkcs1.pem", "passphrase": "env:PW"},
  "pywa":        {"provider": "pem", "path": "keys/pywa.pem", "passphrase": "env:PYWA"}
}'
# Relative paths are taken from the configuration file's directory, not the cwd.
cd /

for name in pkcs8 pkcs1 pkcs8-enc pkcs1-enc genrsa-des3 genrsa-trad node-pkcs1 pywa; do
	if [ "$name" = pywa ]; then pass_env=PYWA; else pass_env=PW; fi
	openssl pkey -in "$K/$name.pem" -passin "env:$pass_env" -pubout >"$T/$name.expected" ||
		fail "openssl cannot read $name.pem"

	set +e
	"$FV" --config "$T/config.json" pubkey "$name" >"$T/$name.pub" 2>"$T/$name.err"
	RC=$?
	set -e
	[ "$RC" = 0 ] || fail "pubkey $name: exit $RC: $(cat "$T/$name.err")"
	cmp -s "$T/$name.expected" "$T/$name.pub" ||
		fail "pubkey $name differs from openssl pkey -pubout:
$(diff "$T/$name.expected" "$T/$name.pub")"

	run "$FV" --config "$T/config.json" --json pubkey "$name"
	expect_rc 0 "pubkey --json $name"
	printf '%s' "$OUT" >"$T/$name.json"
	spki_sha256 "$T/$name.expected" >"$T/$name.sha256"
	pass "$name: pubkey byte-identical to openssl pkey -pubout"
done

# One python run for all --json documents (starting python is the slow part):
# each is exactly one JSON object with the key, provider, PEM and fingerprint.
python3 -I - "$T" pkcs8 pkcs1 pkcs8-enc pkcs1-enc genrsa-des3 genrsa-trad node-pkcs1 pywa <<'PY' ||
import json, sys
t = sys.argv[1]
for name in sys.argv[2:]:
    doc = json.loads(open(f"{t}/{name}.json").read())
    want = {"key": name, "provider": "pem",
            "pem": open(f"{t}/{name}.expected").read(),
            "fingerprint_sha256": open(f"{t}/{name}.sha256").read().strip()}
    if doc != want:
        sys.exit(f"{name}: pubkey --json is {doc!r}, expected {want!r}")
PY
	fail "pubkey --json documents do not match openssl"
pass "pubkey --json: key, provider, PEM, fingerprint = sha256 of SPKI DER, for every format"

# The four formats of one key are one key.
for f in pkcs1 pkcs8-enc pkcs1-enc; do
	cmp -s "$T/pkcs8.pub" "$T/$f.pub" || fail "$f gives another public key than pkcs8"
done
pass "PKCS#1/PKCS#8, plain/encrypted, of one key give one public key"

# `keys` opens them all and says where OAEP runs.
run "$FV" --config "$T/config.json" keys
expect_rc 0 "keys"
expect_out_has "$(spki_sha256 "$T/pkcs1-enc.pub")"
expect_out_has "oaep: host (OpenSSL)"
expect_out_has "encrypted PKCS#1"
! grep -q unreachable <<<"$OUT" || fail "a key is unreachable: $OUT"
pass "keys: every format reachable"

# A passphrase from a file reference (first line, newline stripped).
printf '%s\n' "$PW" >"$T/passfile"
chmod 600 "$T/passfile"
write_config "$T/file-ref.json" "{\"k\": {\"provider\": \"pem\", \"path\": \"$K/pkcs1-enc.pem\", \"passphrase\": \"file:$T/passfile\"}}"
run "$FV" --config "$T/file-ref.json" pubkey k
expect_rc 0 "passphrase from file:"
[ "$OUT" = "$(cat "$T/pkcs8.expected")" ] || fail "file: passphrase gives another key"
pass "passphrase through file: reference"
