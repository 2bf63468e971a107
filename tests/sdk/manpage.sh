#!/bin/bash
# flowvault-provider(7) describes the ABI of include/flowvault/provider.h:
# every FV_* name, every type, every member of the tables, every status
# code with its value; and it formats without warnings.
. "$FV_SOURCE_DIR/tests/lib.sh"

H=$FV_SOURCE_DIR/include/flowvault/provider.h
M=$FV_SOURCE_DIR/docs/flowvault-provider.7
[ -f "$M" ] || fail "docs/flowvault-provider.7 is missing"

# Names as the man page shows them: without roff escapes and font changes.
sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$M" >"$T/man.txt"
missing=()
check() { grep -qw -- "$1" "$T/man.txt" || missing+=("$1"); }

# FV_* macros, enumerators and status codes (FV_CAP_ and FV_ERR_ alone are
# the families' prefixes in comments).
for name in $(grep -oE '\bFV_[A-Z0-9_]*[A-Z0-9]\b' "$H" | sort -u); do
	check "$name"
done
# Types and the entry symbol.
# (Names ending in "_" are the entry macro's parameters, not API.)
for name in $(grep -oE '\bfv_[a-z_]*[a-z]\b' "$H" | sort -u) flowvault_provider_entry; do
	check "$name"
done
# Members of the host table, the plugin table and fv_config_field.
for table in fv_host fv_provider fv_config_field; do
	members=$(sed -n "/^typedef struct $table {/,/^} $table;/p" "$H" |
		grep -v '^\s*/\?\*' |
		sed -nE 's/.*\(\*([a-z_]+)\)\(.*/\1/p; s/^\s+[a-z0-9_ ]+[ *]+([a-z_]+);.*/\1/p')
	[ -n "$members" ] || fail "cannot read the members of $table from provider.h"
	for name in $members; do
		check "$name"
	done
done
[ ${#missing[@]} -eq 0 ] || fail "flowvault-provider(7) does not mention: ${missing[*]}"

# Status values as the header defines them.
while read -r name value; do
	grep -qE "^\\.BR $name \" \\(\\\\$value\\)\"" "$M" ||
		fail "flowvault-provider(7): $name should be listed as ($value)"
done < <(sed -nE 's/^\s*(FV_ERR_[A-Z_]+) = (-[0-9]+).*/\1 \2/p' "$H")
# The ABI version the page names is the header's.
major=$(sed -nE 's/^#define FV_PROVIDER_ABI_MAJOR ([0-9]+)/\1/p' "$H")
minor=$(sed -nE 's/^#define FV_PROVIDER_ABI_MINOR ([0-9]+)/\1/p' "$H")
grep -q "currently $major\\.$minor;" "$T/man.txt" ||
	fail "flowvault-provider(7) does not say the ABI is currently $major.$minor"
pass "flowvault-provider(7) covers provider.h"

run groff -man -ww -z -Tutf8 "$M"
expect_rc 0 "groff"
[ -z "$ERR$OUT" ] || fail "groff warns about flowvault-provider(7): $ERR$OUT"
run man --warnings -l "$M"
expect_rc 0 "man -l flowvault-provider.7"
[ -z "$ERR" ] || fail "man warns about flowvault-provider(7): $ERR"
grep -q "WRITING A PLUGIN" <<<"$OUT" || fail "man -l does not render flowvault-provider(7)"
pass "flowvault-provider(7) formats without warnings"
