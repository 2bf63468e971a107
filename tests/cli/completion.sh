#!/bin/bash
# Shell completion per subcommand: bash (driven through COMP_WORDS and
# COMP_CWORD), zsh (its function with the completion builtins stubbed) and
# fish (complete -C); every option of every command's --help is offered;
# cmake --install puts all three where the shells look.
. "$FV_SOURCE_DIR/tests/lib.sh"

C=$FV_SOURCE_DIR/completion
export PATH=$FV_BUILD_DIR/bin:$PATH
cat >"$T/config.json" <<'JSON'
{"keys": {"flows": {"provider": "pem", "path": "a.pem"}, "flows-new": {"provider": "pem", "path": "b.pem"}}}
JSON
chmod 600 "$T/config.json"
export FLOWVAULT_CONFIG=$T/config.json
cd "$T" || exit 1
touch request.json

bash_complete() { # bash_complete WORD...: COMPREPLY for the line, sorted, one line
	bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
		COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; _flowvault
		printf "%s\n" "${COMPREPLY[@]}"' _ "$C/flowvault.bash" "$@" | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
}
expect_bash() { # expect_bash "EXPECTED" WORD...
	local want=$1 got
	shift
	got=$(bash_complete "$@")
	[ "$got" = "$want" ] || fail "bash: completing '$*': expected [$want], got [$got]"
}
expect_bash_has() { # expect_bash_has "WORD..." LINE...: each WORD is offered
	local want=$1 got w
	shift
	got=" $(bash_complete "$@") "
	for w in $want; do
		[[ $got == *" $w "* ]] || fail "bash: completing '$*': '$w' missing from [$got]"
	done
}
expect_bash_lacks() {
	local bad=$1 got w
	shift
	got=" $(bash_complete "$@") "
	for w in $bad; do
		[[ $got != *" $w "* ]] || fail "bash: completing '$*': '$w' offered in [$got]"
	done
}

expect_bash "decrypt encrypt media-decrypt" flowvault flow ""
expect_bash "decrypt" flowvault flow de
expect_bash "flows flows-new" flowvault flow decrypt ""
expect_bash "flows flows-new" flowvault flow encrypt ""
expect_bash "" flowvault flow encrypt flows ""
expect_bash_has "--request --response" flowvault flow encrypt flows --
expect_bash_lacks "--in -i" flowvault flow encrypt flows --
expect_bash_has "--in" flowvault flow decrypt flows --
expect_bash_lacks "--request --response" flowvault flow decrypt flows --
expect_bash "request.json" flowvault flow encrypt flows --request req
expect_bash "flows flows-new" flowvault rotate --finish ""
expect_bash "flows-new" flowvault rotate --finish flows-
expect_bash_has "keys flow init version" flowvault help ""
expect_bash_has "--names" flowvault keys --
expect_bash_has "--provider --no-prompt --set" flowvault init --
pass "bash: flow actions, then keys; per-action options; rotate --finish keys; help commands"

# Every option of every command's --help is completed by bash and fish.
commands=$("$FV" --help | awk '/^Commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }')
for cmd in $commands; do
	for opt in $("$FV" "$cmd" --help | grep -E '^\s+-' | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
		[ "$cmd" = flow ] && continue # per action, checked above
		case $opt in --config | --json | --verbose | --quiet | --version | --help) continue ;; esac
		got=" $(bash_complete flowvault "$cmd" --) "
		[[ $got == *" $opt "* ]] || fail "bash does not offer $cmd $opt"
		grep -qE -- "__fish_flowvault_using [a-z ]*\\b$cmd\\b.*-l ${opt#--}( |$)" "$C/flowvault.fish" ||
			fail "flowvault.fish lacks $cmd $opt"
	done
done
pass "bash and fish offer every option of every command"

if command -v zsh >/dev/null; then
	zsh -n "$C/_flowvault" || fail "_flowvault is not valid zsh"
	zsh_complete() {
		zsh -c '
			compadd() { if [[ $1 == -a ]]; then print -l -- ${(P)2}; else [[ $1 == -- ]] && shift; print -l -- "$@"; fi }
			_describe() { print -l -- ${(P)4%%:*}; }
			_files() { print FILES; }
			source "$1" >/dev/null 2>&1; shift
			words=("$@"); CURRENT=$#; _flowvault' _ "$C/_flowvault" "$@" | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
	}
	[ "$(zsh_complete flowvault flow "")" = "decrypt encrypt media-decrypt" ] || fail "zsh: flow: $(zsh_complete flowvault flow "")"
	[ "$(zsh_complete flowvault flow encrypt "")" = "flows flows-new" ] || fail "zsh: flow encrypt keys"
	[ "$(zsh_complete flowvault rotate --finish "")" = "flows flows-new" ] || fail "zsh: rotate --finish"
	zsh_complete flowvault flow encrypt flows -- | grep -q -- "--request --response" ||
		fail "zsh: flow encrypt options: $(zsh_complete flowvault flow encrypt flows --)"
	zsh_complete flowvault "" | grep -qw keys || fail "zsh: commands"
	pass "zsh: commands, flow actions, keys, per-action options"
fi
if command -v fish >/dev/null; then
	fish_complete() { fish -c "source '$C/flowvault.fish'; complete -C '$1'" | cut -f1 | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'; }
	[ "$(fish_complete "flowvault flow ")" = "decrypt encrypt media-decrypt" ] || fail "fish: flow: $(fish_complete "flowvault flow ")"
	[ "$(fish_complete "flowvault rotate --finish ")" = "flows flows-new" ] || fail "fish: rotate --finish"
	[ "$(fish_complete "flowvault pubkey ")" = "flows flows-new" ] || fail "fish: pubkey keys"
	fish_complete "flowvault flow encrypt flows --" | grep -q -- "--request --response" || fail "fish: flow encrypt options"
	! fish_complete "flowvault flow encrypt flows --" | grep -q -- "--in" || fail "fish: --in offered to encrypt"
	pass "fish: flow actions, keys, per-action options"
fi

# Installed where bash, zsh and fish look.
cmake --install "$FV_BUILD_DIR" --prefix "$T/prefix" >/dev/null || fail "cmake --install"
for f in share/bash-completion/completions/flowvault share/zsh/vendor-completions/_flowvault \
	share/fish/vendor_completions.d/flowvault.fish share/doc/flowvault/flowvault.schema.json \
	share/doc/flowvault/README.md; do
	[ -f "$T/prefix/$f" ] || fail "cmake --install does not install $f"
done
run "$T/prefix/bin/flowvault" --help
expect_out_has "$T/prefix/share/doc/flowvault/README.md"
pass "cmake --install installs the three completions, the schema and README; --help names the installed README"
