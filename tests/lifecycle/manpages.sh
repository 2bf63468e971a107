#!/bin/bash
# flowvault(1) agrees with `flowvault --help`: every command has a section,
# every option of every command and every global option is described, every
# exit code and environment variable is listed. flowvault.json(5) names every
# configuration field: top level, key host fields, each plugin's declared
# fields (under that plugin's section), graph and serve. Both format without
# warnings.
. "$FV_SOURCE_DIR/tests/lib.sh"

M1=$FV_SOURCE_DIR/docs/flowvault.1
M5=$FV_SOURCE_DIR/docs/flowvault.json.5
[ -f "$M1" ] && [ -f "$M5" ] || fail "docs/flowvault.1 or docs/flowvault.json.5 is missing"
# Text as a reader sees it: without roff escapes and font changes.
plain() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(aq/'"'"'/g' "$1"; }
plain "$M1" >"$T/m1.txt"
plain "$M5" >"$T/m5.txt"

# ---- flowvault(1) against --help ----
run "$FV" --help
expect_rc 0 "flowvault --help"
commands=$(awk '/^Commands:/ { on = 1; next } on && (NF == 0 || /^[^ ]/) { exit } on { print $1 }' <<<"$OUT")
[ "$(wc -w <<<"$commands")" -ge 10 ] || fail "cannot read the commands from flowvault --help: $OUT"
missing=()
for cmd in $commands; do
	grep -qx "\.SS $cmd" "$M1" || missing+=("section $cmd")
	run "$FV" "$cmd" --help
	expect_rc 0 "flowvault $cmd --help"
	# Options: words starting with -- on the option lines of the help.
	for opt in $(grep -E '^\s+-' <<<"$OUT" | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
		grep -qE -- "(^|[^a-z-])$opt([^a-z-]|$)" "$T/m1.txt" || missing+=("$cmd $opt")
	done
done
run "$FV" --help
for opt in $(sed -n '/^Global options/,/^$/p' <<<"$OUT" | grep -oE -- '(^|\s)--?[a-z][a-z-]*' | tr -d ' ' | sort -u); do
	grep -qE -- "(^|[^a-z-])$opt([^a-z-]|$)" "$T/m1.txt" || missing+=("global $opt")
done
for var in $(sed -n '/^Environment:/,/^$/p' <<<"$OUT" | grep -oE '^\s+[A-Z_]+' | tr -d ' '); do
	sed -n '/^\.SH ENVIRONMENT/,/^\.SH /p' "$M1" | grep -qx "\.B $var" || missing+=("environment $var")
done
for code in $(sed -n '/^Exit codes:/,/^$/p' <<<"$OUT" | grep -oE '^\s+[0-9]+' | tr -d ' '); do
	sed -n '/^\.SH EXIT STATUS/,/^\.SH /p' "$M1" | grep -qx "\.B $code" || missing+=("exit code $code")
done
[ ${#missing[@]} -eq 0 ] || fail "flowvault(1) lacks: ${missing[*]}"
pass "flowvault(1) has a section for each of the $(wc -w <<<"$commands") commands, and every option, exit code and variable"

# The check can fail: a command the page does not have is noticed.
grep -qx '\.SS nosuchcommand' "$M1" && fail "the page has a section it should not"

# ---- flowvault.json(5) against the sources ----
# Field names of a C string list `static const char *const NAME[] = {...}`.
c_list() {
	sed -n "/$2\[\] = {/,/};/p" "$FV_SOURCE_DIR/$1" | grep -oE '"[a-z_]+"' | tr -d '"'
}
# The page's text of section/subsection HEADING (up to the next heading).
section() {
	awk -v h="$1" '$0 == h { on = 1; next } on && /^\.S[HS] / { exit } on' "$M5" |
		sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g'
}
missing=()
for f in $(c_list core/config.c top_level_fields); do
	section ".SH TOP LEVEL" | grep -qx "\.B $f" || missing+=("top-level $f")
done
for f in $(c_list core/config.c host_key_fields); do
	section ".SH KEYS" | grep -qx "\.B $f" || missing+=("keys.*.$f")
done
for f in $(c_list core/graph.c graph_fields); do
	section ".SH GRAPH" | grep -qx "\.B $f" || missing+=("graph.$f")
done
for f in $(c_list core/serve_config.c serve_fields); do
	section ".SH SERVE" | grep -qx "\.B $f" || missing+=("serve.$f")
done
nfields=0
for src in "$FV_SOURCE_DIR"/plugins/*/; do
	plugin=$(basename "$src")
	# Only folders that build a provider (plugins/common is shared code).
	grep -q flowvault_add_plugin "$src/CMakeLists.txt" 2>/dev/null || continue
	# Declared fields: { "name", FV_FIELD_... } entries of the plugin's table,
	# and those of plugins/common/cloud.h for plugins that include them.
	fields=$( (cat "$src"*.c
	           ! grep -q CLOUD_HTTP_CONFIG_FIELDS "$src"*.c || cat "$FV_SOURCE_DIR/plugins/common/cloud.h") |
		grep -oE '\{ "[a-z_]+", FV_FIELD_' | grep -oE '"[a-z_]+"' | tr -d '"' | sort -u)
	[ -n "$fields" ] || fail "cannot read the fields of plugin $plugin"
	for f in $fields; do
		nfields=$((nfields + 1))
		section ".SS $plugin" | grep -qx "\.B $f" || missing+=("$plugin field $f")
	done
done
[ ${#missing[@]} -eq 0 ] || fail "flowvault.json(5) lacks: ${missing[*]}"
[ "$nfields" -ge 15 ] || fail "only $nfields plugin fields found in the sources"
pass "flowvault.json(5) describes every field ($nfields plugin fields, top level, keys, graph, serve)"

# ---- formatting ----
for page in "$M1" "$M5"; do
	run groff -man -ww -z -Tutf8 "$page"
	expect_rc 0 "groff $(basename "$page")"
	[ -z "$ERR$OUT" ] || fail "groff warns about $(basename "$page"): $ERR$OUT"
	run man --warnings -l "$page"
	expect_rc 0 "man -l $(basename "$page")"
	[ -z "$ERR" ] || fail "man warns about $(basename "$page"): $ERR"
done
run man --warnings -l "$M1"
grep -q "EXIT STATUS" <<<"$OUT" || fail "man -l does not render flowvault(1)"
pass "both pages format without warnings"
