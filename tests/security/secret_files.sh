#!/bin/bash
# file: secret references get the checks of every file flowvault trusts:
#  - a FIFO is refused at once (it used to block the process in open());
#  - a file in a directory others can write (not sticky), or owned by another
#    user, or readable by others, is refused; its content never shown;
#  - a link is followed only when the link's and the target's directories
#    pass (Kubernetes mounts secrets through links);
#  - a relative path is relative to the configuration file's directory, not
#    to the working directory (under systemd that is /).
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

mkdir -m 700 "$T/cfg" "$T/cfg/secrets" "$T/keys" "$T/elsewhere"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -aes-256-cbc -pass env:PW \
	-out "$T/keys/flows.pem" 2>/dev/null || fail "openssl cannot make an encrypted key"
chmod 600 "$T/keys/flows.pem"
printf '%s\n' "$PW" >"$T/cfg/secrets/pass"
chmod 600 "$T/cfg/secrets/pass"

# config FILE PASSPHRASE_REFERENCE
config() {
	write_config "$1" "{\"flows\": {\"provider\": \"pem\", \"path\": \"$T/keys/flows.pem\", \"passphrase\": \"$2\"}}"
}
pubkey() { # pubkey CONFIG: flowvault pubkey flows, at most 10 s
	run timeout 10 "$FV" --config "$1" pubkey flows
	[ "$RC" != 124 ] || fail "flowvault hung (killed after 10 s): $ERR"
}
refused() { # refused WHAT TEXT...: the last run failed, naming TEXT
	local what=$1
	shift
	[ "$RC" != 0 ] || fail "$what: accepted"
	for text in "$@"; do expect_err_has "$text"; done
	expect_not_has "$PW" "$T/.out" "$T/.err"
}

# ---- the good case, absolute ----
config "$T/cfg/abs.json" "file:$T/cfg/secrets/pass"
pubkey "$T/cfg/abs.json"
expect_rc 0 "absolute file: reference"

# ---- a relative reference is relative to the configuration's directory ----
config "$T/cfg/rel.json" "file:secrets/pass"
(cd / && pubkey "$T/cfg/rel.json" && expect_rc 0 "relative file: from /")
(cd "$T/elsewhere" && pubkey "$T/cfg/rel.json" && expect_rc 0 "relative file: from another directory")
pass "a relative file: reference is resolved against the configuration's directory"

# ---- a FIFO: refused at once, not waited on ----
mkfifo -m 600 "$T/cfg/secrets/fifo"
config "$T/cfg/fifo.json" "file:$T/cfg/secrets/fifo"
start=$(date +%s)
pubkey "$T/cfg/fifo.json"
refused "FIFO" "$T/cfg/secrets/fifo" "FIFO"
[ $(($(date +%s) - start)) -lt 5 ] || fail "the FIFO took seconds to refuse"
pass "a FIFO as secret file is refused at once"

# ---- a directory others can write (not sticky) ----
mkdir "$T/cfg/ww"
chmod 777 "$T/cfg/ww"
install -m 600 "$T/cfg/secrets/pass" "$T/cfg/ww/pass"
config "$T/cfg/ww.json" "file:$T/cfg/ww/pass"
pubkey "$T/cfg/ww.json"
refused "secret in a directory writable by others" "$T/cfg/ww" "writable by others"
pass "a secret file in a directory others can write is refused"

# ---- readable by others ----
chmod 604 "$T/cfg/secrets/pass"
pubkey "$T/cfg/abs.json"
refused "secret readable by others" "readable by others" "chmod o-rwx"
chmod 600 "$T/cfg/secrets/pass"

# ---- owned by another user (needs root to set up) ----
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	install -m 600 -o nobody "$T/cfg/secrets/pass" "$T/cfg/secrets/theirs"
	config "$T/cfg/theirs.json" "file:$T/cfg/secrets/theirs"
	pubkey "$T/cfg/theirs.json"
	refused "secret owned by another user" "owned by uid $(id -u nobody)"
	# ...also in a world-writable directory, as the review found it.
	install -m 600 -o nobody "$T/cfg/secrets/pass" "$T/cfg/ww/theirs"
	config "$T/cfg/ww-theirs.json" "file:$T/cfg/ww/theirs"
	pubkey "$T/cfg/ww-theirs.json"
	refused "secret of another user in a directory writable by others" "$T/cfg/ww"
	pass "a secret file owned by another user is refused"
else
	echo "note: not root: the other-owner case is covered by unit_fileutil only"
fi

# ---- links: followed when both ends are in safe directories ----
# A Kubernetes-style mount: pass -> ..data/pass, ..data -> ..2024_01_01/
mkdir -m 700 "$T/cfg/mount" "$T/cfg/mount/..2024_01_01"
install -m 600 "$T/cfg/secrets/pass" "$T/cfg/mount/..2024_01_01/pass"
ln -s ..2024_01_01 "$T/cfg/mount/..data"
ln -s ..data/pass "$T/cfg/mount/pass"
config "$T/cfg/k8s.json" "file:mount/pass"
pubkey "$T/cfg/k8s.json"
expect_rc 0 "a link chain in a safe directory (Kubernetes secret mount)"
# A link in a directory others can write, to the good file.
ln -s "$T/cfg/secrets/pass" "$T/cfg/ww/link"
config "$T/cfg/ww-link.json" "file:$T/cfg/ww/link"
pubkey "$T/cfg/ww-link.json"
refused "a link in a directory writable by others" "$T/cfg/ww"
# A link in a safe directory, to a file in a directory others can write.
ln -s "$T/cfg/ww/pass" "$T/cfg/secrets/to-ww"
config "$T/cfg/to-ww.json" "file:$T/cfg/secrets/to-ww"
pubkey "$T/cfg/to-ww.json"
refused "a link to a file in a directory writable by others" "$T/cfg/ww"
pass "links: followed only when the link's and the target's directories are safe"
