#!/bin/bash
# Global options, help texts, unknown commands and a missing configuration:
# what they print and the exit codes README documents.
. "$FV_SOURCE_DIR/tests/lib.sh"

run "$FV" --version
expect_rc 0 "--version"
grep -qE '^flowvault [0-9]+\.[0-9]+\.[0-9]+' <<<"$OUT" || fail "--version: $OUT"
expect_out_has "provider ABI 1."
[ -z "$ERR" ] || fail "--version wrote to stderr: $ERR"
pass "--version"

run "$FV" --help
expect_rc 0 "--help"
for cmd in plugins keys generate pubkey; do
	grep -qE "^  $cmd " <<<"$OUT" || fail "--help does not list '$cmd': $OUT"
done
for line in "0  success" "1  other failure" "2  usage or configuration error" \
	"3  key backend error"; do
	expect_out_has "$line"
done
for opt in --config --json --verbose --quiet --version FLOWVAULT_CONFIG FLOWVAULT_PLUGIN_PATH; do
	expect_out_has "$opt"
done
run "$FV" -h
expect_rc 0 "-h"
pass "--help lists the commands, options and exit codes"

# Without a command: the help, as a usage error.
run "$FV"
expect_rc 2 "no command"
expect_out_has "Commands:"

for cmd in plugins keys generate pubkey; do
	run "$FV" "$cmd" --help
	expect_rc 0 "$cmd --help"
	expect_out_has "usage: flowvault"
	expect_out_has "$cmd"
	[ "$(wc -l <<<"$OUT")" -ge 3 ] || fail "$cmd --help is too short: $OUT"
	# The help works with no configuration anywhere.
	[ -z "$ERR" ] || fail "$cmd --help wrote to stderr: $ERR"
done
run "$FV" pubkey --help
expect_out_has "--out FILE"
run "$FV" help-me-please
expect_rc 2 "unknown command"
expect_err_has "unknown command 'help-me-please'"
expect_err_has "flowvault --help"
pass "COMMAND --help for each command; unknown command exits 2"

# Usage errors of the commands themselves.
printf '{"keys": {}}\n' >"$T/empty.json"
chmod 600 "$T/empty.json"
run "$FV" --config "$T/empty.json" pubkey
expect_rc 2 "pubkey without KEY"
expect_err_has "missing KEY"
expect_err_has "usage: flowvault"
run "$FV" --config "$T/empty.json" pubkey a b
expect_rc 2 "pubkey with two keys"
run "$FV" --config "$T/empty.json" pubkey --bogus k
expect_rc 2 "pubkey --bogus"
run "$FV" --config "$T/empty.json" generate
expect_rc 2 "generate without KEY"
run "$FV" --config "$T/empty.json" keys extra
expect_rc 2 "keys with an argument"
run "$FV" --config
expect_rc 2 "--config without FILE"
run "$FV" --config "$T/empty.json" pubkey nosuchkey
expect_rc 2 "pubkey of an unconfigured key"
expect_err_has "nosuchkey"
pass "usage errors exit 2 and say what is wrong"

# No configuration anywhere: exit 2, and say where we looked.
[ ! -e /etc/flowvault/config.json ] || { pass "skipped: /etc/flowvault/config.json exists"; exit 0; }
for cmd in keys "pubkey k" "generate k"; do
	# shellcheck disable=SC2086
	run "$FV" $cmd
	expect_rc 2 "$cmd without a configuration"
	expect_err_has "$XDG_CONFIG_HOME/flowvault/config.json"
	expect_err_has "/etc/flowvault/config.json"
	expect_err_has "--config"
	[ -z "$OUT" ] || fail "$cmd printed on stdout without a configuration: $OUT"
done
run "$FV" --config "$T/nonexistent.json" keys
expect_rc 2 "--config to a missing file"
expect_err_has "$T/nonexistent.json"
FLOWVAULT_CONFIG="$T/also-missing.json" run "$FV" keys
expect_rc 2 "FLOWVAULT_CONFIG to a missing file"
expect_err_has "$T/also-missing.json"
printf '{"keys": {"k": {"provider": "pem", "path": "k.pem"}}, "typo": 1}\n' >"$T/typo.json"
chmod 600 "$T/typo.json"
run "$FV" --config "$T/typo.json" keys
expect_rc 2 "unknown top-level field"
expect_err_has "typo: unknown field"
pass "no or bad configuration: exit 2, says where it looked / what is wrong"

# The configuration is found through $XDG_CONFIG_HOME and $FLOWVAULT_CONFIG.
mkdir -p "$XDG_CONFIG_HOME/flowvault"
printf '{"keys": {}}\n' >"$XDG_CONFIG_HOME/flowvault/config.json"
chmod 600 "$XDG_CONFIG_HOME/flowvault/config.json"
run "$FV" --json keys
expect_rc 0 "keys with the XDG configuration"
python3 -I -c 'import json,sys; d=json.loads(sys.stdin.read()); assert d["config"]==sys.argv[1], d' \
	"$XDG_CONFIG_HOME/flowvault/config.json" <<<"$OUT" || fail "keys --json did not use the XDG file: $OUT"
FLOWVAULT_CONFIG="$T/empty.json" run "$FV" --json keys
python3 -I -c 'import json,sys; d=json.loads(sys.stdin.read()); assert d["config"]==sys.argv[1], d' \
	"$T/empty.json" <<<"$OUT" || fail "FLOWVAULT_CONFIG does not win over XDG: $OUT"
pass "configuration search order: FLOWVAULT_CONFIG, then XDG_CONFIG_HOME"

# help, version, and "did you mean".
run "$FV" help
expect_rc 0 "help"
expect_out_has "Commands:"
run "$FV" help pubkey
expect_rc 0 "help pubkey"
expect_out_has "usage: flowvault [global options] pubkey KEY [--out FILE]"
run "$FV" help nosuch
expect_rc 2 "help of an unknown command"
run "$FV" version
expect_rc 0 "version"
expect_out_has "provider ABI 1."
for lib in libflowvault OpenSSL json-c libcurl libmicrohttpd; do
	grep -qE "^  $lib +[0-9]" <<<"$OUT" || fail "version does not show $lib: $OUT"
done
run "$FV" --json version
"$PYTHON" -I -c 'import json,sys; d=json.load(sys.stdin); assert d["version"] and d["provider_abi"].startswith("1.") and d["libraries"]["OpenSSL"].startswith("3."), d' <<<"$OUT" ||
	fail "version --json: $OUT"
pass "help [COMMAND] and version (with the plugin ABI and the libraries)"

for typo in "kyes:keys" "pubky:pubkey" "docter:doctor" "rotat:rotate"; do
	run "$FV" "${typo%%:*}"
	expect_rc 2 "${typo%%:*}"
	expect_err_has "unknown command '${typo%%:*}'; did you mean '${typo#*:}'?"
done
run "$FV" --config "$T/empty.json" flow decrpyt k
expect_rc 2 "flow decrpyt"
expect_err_has "did you mean 'decrypt'?"
run "$FV" --jsn keys
expect_rc 2 "--jsn"
expect_err_has "unknown option '--jsn'; did you mean '--json'?"
! grep -q "unknown command" <<<"$ERR" || fail "an unknown option is reported as a command: $ERR"
run "$FV" --config "$T/empty.json" pubkey k --jsn
expect_err_has "unknown option '--jsn'; did you mean '--json'?"
run "$FV" --config "$T/empty.json" register k --phnoe 1
expect_err_has "unknown option '--phnoe'; did you mean '--phone'?"
run "$FV" --config "$T/empty.json" pubkey flows --out
expect_rc 2 "pubkey --out without FILE"
expect_err_has "--out needs a FILE"
! grep -q "unknown option" <<<"$ERR" || fail "--out without FILE called unknown: $ERR"
run "$FV" --config "$T/empty.json" rotate --finish
expect_err_has "--finish needs a NAME"
run "$FV" --config "$T/empty.json" pubkey --xyzzy k
expect_rc 2 "unknown option without a close one"
expect_err_has "unknown option '--xyzzy'"
pass "did you mean: commands, actions and options; an option without its value says what it needs"
