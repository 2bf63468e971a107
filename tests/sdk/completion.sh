#!/bin/bash
# bash completion (completion/flowvault.bash): commands from `flowvault
# --help`, global and per-command options, key names from the configuration
# named by --config, $FLOWVAULT_CONFIG or $XDG_CONFIG_HOME.
. "$FV_SOURCE_DIR/tests/lib.sh"

# A configuration with traps for a naive parser: braces and "keys" inside
# strings and comments, a "keys" member nested deeper, a name split from
# its colon by a line break. Key names: flows, flows-hsm, other.
cat >"$T/config.json" <<'JSON'
{ /* a comment with "keys": {"bogus": 1} */
  "plugin_path": ["dir{with}braces"],
  "keys": {"flows": {"provider": "pem", "path": "a \"quoted\" {path}.pem",
                     "phone_numbers": ["1", "2"]},
           "flows-hsm"
             : {"provider": "pkcs11", "uri": "pkcs11:token=x"}, // "comment": {}
           "other": {"provider": "pem", "path": "o.pem"}},
  "graph": {"access_token": "env:X", "nested": {"keys": {"not-a-key": 1}}}
}
JSON
echo '{"keys": {"second-a": {"provider": "pem", "path": "x.pem"}, "second-b": {"provider": "pem", "path": "y.pem"}}}' \
	>"$T/second.json"
touch "$T/out-file.pem"

# complete WORD...: COMPREPLY for the command line WORD... (the last word is
# the one being completed), one per line, sorted.
complete_line() {
	bash -c '
		. "$1"; shift
		complete -p flowvault >/dev/null || { echo "no completion for flowvault" >&2; exit 1; }
		COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_flowvault
		printf "%s\n" "${COMPREPLY[@]}"' _ "$FV_SOURCE_DIR/completion/flowvault.bash" "$@" |
		LC_ALL=C sort
}
expect_completion() { # expect_completion "EXPECTED (space-separated)" WORD...
	local want=$1 got
	shift
	got=$(complete_line "$@" | tr '\n' ' ' | sed 's/ $//')
	[ "$got" = "$want" ] || fail "completing '$*': expected [$want], got [$got]"
}
expect_completion_has() { # expect_completion_has WORD-EXPECTED WORD...
	local want=$1
	shift
	complete_line "$@" | grep -qxF -- "$want" ||
		fail "completing '$*': '$want' missing from [$(complete_line "$@" | tr '\n' ' ')]"
}

cd "$T" || exit 1
export FLOWVAULT_CONFIG=$T/config.json

# Commands, straight from `flowvault --help` of the binary being completed.
expect_completion "pubkey" "$FV" pu
commands=$("$FV" --help | awk '/^Commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }' |
	LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
[ -n "$commands" ] || fail "flowvault --help lists no commands"
expect_completion "$commands" "$FV" ""
# ... also after global options, and found through PATH.
expect_completion "pubkey" "$FV" --json -v pu
PATH=$FV_BUILD_DIR/bin:$PATH expect_completion "pubkey" flowvault pu
# ... and from a built-in list when there is no flowvault to ask.
PATH=/usr/bin:/bin expect_completion "pubkey" "$T/no-such-flowvault" pu
pass "commands: $commands"

# Global options.
expect_completion "--config" "$FV" --con
expect_completion "--json" "$FV" --js
expect_completion "--verbose --version" "$FV" --ver
# Per-command options (from `flowvault pubkey --help`) and global ones.
expect_completion_has "--out" "$FV" pubkey --
expect_completion_has "--json" "$FV" pubkey --
expect_completion "--out" "$FV" pubkey --o
pass "global and per-command options"

# Key names from $FLOWVAULT_CONFIG; none from strings, comments or deeper levels.
expect_completion "flows flows-hsm other" "$FV" pubkey ""
expect_completion "flows flows-hsm" "$FV" pubkey fl
expect_completion "flows flows-hsm other" "$FV" generate ""
# ... once: KEY is already given.
expect_completion "" "$FV" pubkey flows ""
# ... from --config, before or after the command, in both spellings.
expect_completion "second-a second-b" "$FV" --config "$T/second.json" pubkey ""
expect_completion "second-a second-b" "$FV" pubkey --config "$T/second.json" s
expect_completion "second-a second-b" "$FV" --config="$T/second.json" pubkey ""
# ... from $XDG_CONFIG_HOME/flowvault/config.json.
mkdir -p "$T/xdg/flowvault"
cp "$T/second.json" "$T/xdg/flowvault/config.json"
(unset FLOWVAULT_CONFIG; expect_completion "second-a second-b" "$FV" pubkey "") ||
	exit 1
# ... nothing, and no error, when there is no configuration.
expect_completion "" "$FV" --config "$T/missing.json" pubkey ""
pass "key names from the configuration"

# Files after options that take one.
expect_completion "out-file.pem" "$FV" pubkey flows --out out-
expect_completion "second.json" "$FV" --config sec
pass "file arguments"
