#!/bin/bash
# The file checked is the file loaded: plugins and the configuration are
# opened once, checked through the descriptor (and every directory of the
# name as given and as resolved), and loaded or read from that descriptor.
#  - a link ww/pem.so in a directory others can write, pointing at the real
#    plugin, is refused; the same for --config ww/cfg.json;
#  - a link swapped between a good and a bad plugin (or configuration) while
#    flowvault loads it never gets the bad one loaded: the bad plugin's
#    constructor would leave a marker file.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

REAL="$FV_BUILD_DIR/lib/flowvault/plugins/pem.so"
EVIL="$FV_BUILD_DIR/tests/security-plugins/pem.so"
[ -f "$REAL" ] && [ -f "$EVIL" ] || fail "build first: $REAL and $EVIL are needed"
export FV_EVIL_MARKER="$T/evil-ran"
evil_ran() { [ -e "$FV_EVIL_MARKER" ]; }

mkdir -m 700 "$T/keys" "$T/safe" "$T/good" "$T/evil-safe"
mkdir "$T/ww" "$T/bad"
chmod 777 "$T/ww" "$T/bad" # writable by others, not sticky
new_rsa "$T/keys/flows.pem"
write_config "$T/good/config.json" "{\"flows\": {\"provider\": \"pem\", \"path\": \"$T/keys/flows.pem\"}}"
install -m 755 "$EVIL" "$T/bad/pem.so"
install -m 755 "$EVIL" "$T/evil-safe/pem.so"

# ---- a link in a world-writable directory to the real plugin ----
ln -s "$REAL" "$T/ww/pem.so"
FLOWVAULT_PLUGIN_PATH="$T/ww" run "$FV" --config "$T/good/config.json" pubkey flows
[ "$RC" != 0 ] || fail "ww/pem.so (a link in a directory writable by others) was loaded"
expect_err_has "$T/ww"
expect_err_has "writable by others"
# The same link in a safe directory is fine (the target is the real plugin).
ln -s "$REAL" "$T/safe/pem.so"
FLOWVAULT_PLUGIN_PATH="$T/safe" run "$FV" --config "$T/good/config.json" pubkey flows
expect_rc 0 "a link to the real plugin in a safe directory"
expect_out_has "BEGIN PUBLIC KEY"
rm "$T/safe/pem.so"
pass "plugin: a link in a directory others can write is refused, in a safe one accepted"

# ---- a link in a world-writable directory to a good configuration ----
ln -s "$T/good/config.json" "$T/ww/cfg.json"
run "$FV" --config "$T/ww/cfg.json" pubkey flows
expect_rc 2 "--config ww/cfg.json (a link in a directory writable by others)"
expect_err_has "$T/ww"
expect_err_has "writable by others"
FLOWVAULT_CONFIG="$T/ww/cfg.json" run "$FV" pubkey flows
expect_rc 2 "FLOWVAULT_CONFIG=ww/cfg.json"
ln -s "$T/good/config.json" "$T/safe/cfg.json"
run "$FV" --config "$T/safe/cfg.json" pubkey flows
expect_rc 0 "a link to a good configuration in a safe directory"
rm "$T/safe/cfg.json"
pass "configuration: a link in a directory others can write is refused, in a safe one accepted"

# swap LINK GOOD BAD: replace LINK atomically, alternating between GOOD and
# BAD, until killed.
swap_start() {
	"$PYTHON" - "$@" <<'PY' &
import os, sys
link, targets = sys.argv[1], sys.argv[2:]
tmp = link + ".new"
i = 0
while True:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(targets[i % 2], tmp)
    os.replace(tmp, link)
    i += 1
PY
	SWAP_PID=$!
	at_exit "kill $SWAP_PID"
	while [ ! -L "$1" ]; do sleep 0.01; done
}
swap_stop() { kill "$SWAP_PID"; wait "$SWAP_PID" 2>/dev/null || true; }

# race NAME CMD...: run CMD 60 times while the link is being swapped; it
# must succeed (good file) or be refused (bad file), never run the bad code,
# and both must have happened (the race was real).
race() {
	local name=$1 i good=0 refused=0
	shift
	for ((i = 0; i < 60; i++)); do
		run "$@"
		case "$RC" in
		0) good=$((good + 1)) ;;
		*) refused=$((refused + 1)) ;;
		esac
		! evil_ran || fail "$name: the bad plugin's code ran (run $i, exit $RC): $ERR"
	done
	echo "note: $name: $good loads of the good file, $refused refusals"
	[ "$good" -gt 0 ] && [ "$refused" -gt 0 ] ||
		fail "$name: the swap did not interleave with loading ($good good, $refused refused); the test proved nothing"
}

# ---- swapping the plugin link: good (real plugin) / bad (in a 0777 dir) ----
swap_start "$T/safe/pem.so" "$REAL" "$T/bad/pem.so"
race "plugin link swapped" env FLOWVAULT_PLUGIN_PATH="$T/safe" \
	"$FV" --config "$T/good/config.json" pubkey flows
swap_stop
pass "plugin link swapped during loading: the bad plugin never loaded"

# ---- swapping the configuration link: good / bad (in a 0777 dir, naming a
# plugin directory with the bad plugin) ----
printf '{"plugin_path": ["%s"], "keys": {"flows": {"provider": "pem", "path": "%s"}}}\n' \
	"$T/evil-safe" "$T/keys/flows.pem" >"$T/bad/config.json"
chmod 600 "$T/bad/config.json"
swap_start "$T/safe/cfg.json" "$T/good/config.json" "$T/bad/config.json"
race "configuration link swapped" "$FV" --config "$T/safe/cfg.json" pubkey flows
swap_stop
pass "configuration link swapped during loading: the bad configuration never read"
