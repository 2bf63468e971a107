#!/bin/bash
# Plugin audit: a plugin that crashes in its entry point, one that hangs in
# it, one whose function table is too small and one from a future major ABI
# (tests/audit/bad_plugin.c) are each refused with a message naming the file
# and the reason. `flowvault plugins` survives them all (exit 0, the good
# plugins still listed as loaded); `flowvault pubkey` for a key that uses
# one exits 2 with the reason.
#
# The hanging plugin costs the loader's 10 s probe limit; its two runs go
# in parallel with the rest, so the test takes about that long.
. "$FV_SOURCE_DIR/tests/lib.sh"

SRC="$FV_BUILD_DIR/tests/audit-plugins"
KINDS="badcrash badhang badsmalltable badfutureabi"
for k in $KINDS; do
	[ -f "$SRC/$k.so" ] || fail "$SRC/$k.so is missing: build the audit_plugins target"
done

declare -A REASON=(
	[badcrash]="crashed while loading (Segmentation fault)"
	[badhang]="did not finish loading within 10 seconds"
	[badsmalltable]="function table is 8 bytes, smaller than the"
	[badfutureabi]="built for provider ABI 2.0, this flowvault supports 1.x"
)

# One directory and configuration per plugin (so only the hang run waits),
# plus one with all of them for the listing.
mkdir -m 700 "$T/all"
for k in $KINDS; do
	mkdir -m 700 "$T/$k"
	install -m 755 "$SRC/$k.so" "$T/$k/$k.so"
	install -m 755 "$SRC/$k.so" "$T/all/$k.so"
	printf '{"plugin_path": ["%s"], "keys": {"flows": {"provider": "%s"}}}\n' \
		"$T/$k" "$k" >"$T/$k.json"
	chmod 600 "$T/$k.json"
done
printf '{"plugin_path": ["%s"], "keys": {}}\n' "$T/all" >"$T/all.json"
chmod 600 "$T/all.json"

# bg NAME CMD...: run in the background; collect with bg_wait NAME.
bg() {
	local name=$1
	shift
	(set +e; "$@" >"$T/$name.out" 2>"$T/$name.err"; echo $? >"$T/$name.rc") &
	eval "BG_$name=$!"
}
bg_wait() {
	local pid
	eval "pid=\$BG_$1"
	wait "$pid" || true
	RC=$(cat "$T/$1.rc")
	OUT=$(cat "$T/$1.out")
	ERR=$(cat "$T/$1.err")
}

bg list_all "$FV" --config "$T/all.json" --json plugins
bg pubkey_badhang "$FV" --config "$T/badhang.json" pubkey flows

for k in badcrash badsmalltable badfutureabi; do
	run "$FV" --config "$T/$k.json" pubkey flows
	expect_rc 2 "pubkey with $k"
	expect_err_has "$T/$k/$k.so"
	expect_err_has "${REASON[$k]}"
	expect_err_has "keys.flows.provider"
	[ -z "$OUT" ] || fail "pubkey with $k: something on stdout: $OUT"
	pass "$k: pubkey exits 2: ${ERR##*: plugin }"
done

bg_wait pubkey_badhang
expect_rc 2 "pubkey with badhang"
expect_err_has "$T/badhang/badhang.so"
expect_err_has "${REASON[badhang]}"
pass "badhang: pubkey exits 2 after the probe limit"

bg_wait list_all
expect_rc 0 "plugins listing the bad ones"
python3 -I -c '
import json, sys
doc = json.loads(sys.stdin.read())
d, pem = sys.argv[1], sys.argv[2]
reasons = dict(zip(["badcrash", "badhang", "badsmalltable", "badfutureabi"], sys.argv[3:]))
by_path = {p["path"]: p for p in doc["plugins"]}
for name, why in reasons.items():
    p = by_path.get("%s/%s.so" % (d, name))
    assert p, "%s not listed" % name
    assert p["loaded"] is False, p
    assert why in (p["refused"] or ""), p
    assert p["path"] in p["refused"], p
# The process went on: the real plugins after them are loaded.
assert by_path.get(pem, {}).get("loaded") is True, by_path.get(pem)
' "$T/all" "$FV_BUILD_DIR/lib/flowvault/plugins/pem.so" \
	"${REASON[badcrash]}" "${REASON[badhang]}" "${REASON[badsmalltable]}" \
	"${REASON[badfutureabi]}" <<<"$OUT" || fail "plugins --json does not show each refusal: $OUT"
pass "plugins: exit 0, all four refused with their reason, the pem plugin still loaded"

# Text output too (what a user reads), without the hanging one.
rm "$T/all/badhang.so"
run "$FV" --config "$T/all.json" plugins
expect_rc 0 "plugins (text)"
for k in badcrash badsmalltable badfutureabi; do
	expect_out_has "refused: plugin '$T/all/$k.so': ${REASON[$k]}"
done
pass "plugins (text): each refusal on its own line with the reason"
