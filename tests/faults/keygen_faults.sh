#!/bin/bash
# `flowvault generate` (PEM provider) where the disk refuses the new file:
# a read-only directory, a full file system, a file-size limit. Each time the
# command fails cleanly (exit 3, a message saying why), the key already in
# that directory is byte-identical, and no partial or temporary file
# (.NAME.XXXXXX) is left.
#
# Root ignores permission bits, so "read-only" and "full" are made real:
# small tmpfs mounts in a private mount namespace (unshare -m; they vanish
# with the test), chattr +i when mounting is not possible, and a file-size
# limit (ulimit -f, SIGXFSZ ignored: writes fail with EFBIG), which needs
# no privilege at all.
if [ -z "${FV_FAULTS_NS:-}" ] && command -v unshare >/dev/null &&
	unshare -m true 2>/dev/null; then
	FV_FAULTS_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

# The key that is already there, in every directory under test.
new_rsa "$T/current.pem"

# snapshot DIR: names, sizes, modes and contents of everything in DIR.
snapshot() {
	(cd "$1" && find . -mindepth 1 -printf '%p %s %m\n' | sort &&
		find . -type f -exec sha256sum {} + | sort)
}

# prepare DIR: DIR holds current.pem and a configuration with two keys.
prepare() {
	cp "$T/current.pem" "$1/current.pem"
	chmod 600 "$1/current.pem"
	write_config "$T/$2.json" "{
  \"current\": {\"provider\": \"pem\", \"path\": \"$1/current.pem\"},
  \"next\":    {\"provider\": \"pem\", \"path\": \"$1/next.pem\", \"passphrase\": \"env:PW\"}}"
}

# generate_fails NAME DIR REASON [PREFIX...]: `generate next` fails with exit
# 3 and REASON in its message; DIR is as it was; the old key still works.
generate_fails() {
	local name=$1 dir=$2 reason=$3 before after message
	shift 3
	before=$(snapshot "$dir")
	run "$@" "$FV" --config "$T/$name.json" generate next
	expect_rc 3 "$name: generate"
	expect_err_has "$reason"
	expect_err_has "$dir"
	message=${ERR#flowvault generate: }
	after=$(snapshot "$dir")
	[ "$before" = "$after" ] || fail "$name: the directory changed:
before:
$before
after:
$after"
	[ ! -e "$dir/next.pem" ] || fail "$name: a partial next.pem was left"
	[ -z "$(find "$dir" -maxdepth 1 -name '.next.pem.*')" ] ||
		fail "$name: a temporary file was left: $(ls -A "$dir")"
	cmp -s "$T/current.pem" "$dir/current.pem" || fail "$name: the existing key changed"
	run "$FV" --config "$T/$name.json" pubkey current
	expect_rc 0 "$name: the existing key still loads"
	pass "$name: exit 3 ($message), existing key byte-identical, nothing left behind"
}

CAN_MOUNT=0
# FV_FAULTS_NO_MOUNT=1 tries the fallbacks (chattr +i) even where mounting works.
mkdir -m 700 "$T/probe"
if [ -z "${FV_FAULTS_NO_MOUNT:-}" ] && mount -t tmpfs -o size=64k,mode=700 fvprobe "$T/probe" 2>/dev/null; then
	umount "$T/probe"
	CAN_MOUNT=1
fi

# ---- a read-only directory ----
mkdir -m 700 "$T/ro"
if [ "$CAN_MOUNT" = 1 ]; then
	mount -t tmpfs -o size=256k,mode=700 fvro "$T/ro"
	at_exit "umount -l '$T/ro'"
	prepare "$T/ro" ro
	mount -o remount,ro "$T/ro"
	touch "$T/ro/probe" 2>/dev/null && fail "read-only mount is writable"
	generate_fails ro "$T/ro" "Read-only file system"
elif chattr +i "$T/ro" 2>/dev/null; then
	chattr -i "$T/ro"
	prepare "$T/ro" ro
	chattr +i "$T/ro"
	at_exit "chattr -i '$T/ro'"
	touch "$T/ro/probe" 2>/dev/null && fail "immutable directory is writable"
	generate_fails ro "$T/ro" "Operation not permitted"
	chattr -i "$T/ro"
elif [ "$(id -u)" != 0 ]; then
	prepare "$T/ro" ro
	chmod 500 "$T/ro"
	generate_fails ro "$T/ro" "Permission denied"
	chmod 700 "$T/ro"
else
	echo "skip: read-only directory: running as root without mount or chattr +i"
fi

# ---- a full file system ----
if [ "$CAN_MOUNT" = 1 ]; then
	mkdir -m 700 "$T/full"
	mount -t tmpfs -o size=64k,mode=700 fvfull "$T/full"
	at_exit "umount -l '$T/full'"
	prepare "$T/full" full
	# Fill it up to the last block.
	dd if=/dev/zero of="$T/full/filler" bs=4k 2>/dev/null || true
	[ "$(df --output=avail -k "$T/full" | tail -n1 | tr -d ' ')" = 0 ] ||
		fail "tmpfs is not full: $(df -k "$T/full")"
	generate_fails full "$T/full" "No space left on device"
	# Room again: the same command succeeds, the old key stays as it was.
	rm "$T/full/filler"
	run "$FV" --config "$T/full.json" generate next
	expect_rc 0 "full: generate once there is room"
	expect_file_mode 600 "$T/full/next.pem"
	cmp -s "$T/current.pem" "$T/full/current.pem" || fail "full: the existing key changed"
	pass "full: generate works once there is room again"
else
	echo "skip: full tmpfs: mount is not permitted here (the file-size limit below still runs)"
fi

# ---- a file-size limit: writes fail with EFBIG ----
mkdir -m 700 "$T/fsize"
prepare "$T/fsize" fsize
# limited CMD...: CMD with a 1 KiB file-size limit; SIGXFSZ ignored so that
# the write fails with EFBIG instead of killing the process.
limited() { (trap '' XFSZ; ulimit -f 1; exec "$@"); }
generate_fails fsize "$T/fsize" "File too large" limited
