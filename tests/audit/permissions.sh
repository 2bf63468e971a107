#!/bin/bash
# Permission audit: what others could read or replace is refused, with a
# message that says how to fix it.
#  - generated key files are 0600, whatever the umask;
#  - a PEM private key readable by group/others: exit 3, "chmod 600";
#    accepted with "allow_group_readable": true (mounts one cannot chmod);
#  - a configuration file writable by others, or in a directory writable by
#    others: exit 2;
#  - a file: secret readable by others: refused;
#  - a plugin in a group-writable directory: refused, and `flowvault plugins`
#    says why.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/pem/pem_lib.sh"

mkdir -m 700 "$T/keys" "$T/secrets"
printf '%s\n' "$PW" >"$T/secrets/pass"
chmod 600 "$T/secrets/pass"
pem_entry() { # pem_entry PATH [EXTRA-JSON]
	printf '{"provider": "pem", "path": "%s", "passphrase": "file:%s"%s}' \
		"$1" "$T/secrets/pass" "${2:+, $2}"
}

# ---- generated keys are 0600 even with a permissive umask ----
write_config "$T/gen.json" "{\"flows\": $(pem_entry "$T/keys/gen.pem")}"
run bash -c "umask 000; exec '$FV' --config '$T/gen.json' generate flows"
expect_rc 0 "generate with umask 000"
expect_file_mode 600 "$T/keys/gen.pem"
pass "generated key file is 0600 under umask 000"

# ---- PEM key readable by group or others ----
new_rsa "$T/keys/flows.pem"
write_config "$T/strict.json" "{\"flows\": $(pem_entry "$T/keys/flows.pem")}"
write_config "$T/relaxed.json" "{\"flows\": $(pem_entry "$T/keys/flows.pem" '"allow_group_readable": true')}"
for mode in 640 604 644; do
	chmod "$mode" "$T/keys/flows.pem"
	run "$FV" --config "$T/strict.json" pubkey flows
	expect_rc 3 "key file mode $mode"
	expect_err_has "chmod 600"
	expect_err_has "$T/keys/flows.pem"
	expect_err_has "allow_group_readable"
	[ -z "$OUT" ] || fail "key file mode $mode: something on stdout: $OUT"
	run "$FV" --config "$T/relaxed.json" pubkey flows
	expect_rc 0 "key file mode $mode with allow_group_readable"
	expect_out_has "BEGIN PUBLIC KEY"
	[ "$(stat -c %a "$T/keys/flows.pem")" = "$mode" ] || fail "the mode of the key file was changed"
done
pass "key readable by group/others: exit 3 naming chmod 600; accepted with allow_group_readable"
# Writable by others is never accepted: whoever can write it can swap the key.
chmod 606 "$T/keys/flows.pem"
run "$FV" --config "$T/relaxed.json" pubkey flows
expect_rc 3 "key file writable by others, allow_group_readable set"
expect_err_has "writable by others"
chmod 600 "$T/keys/flows.pem"
run "$FV" --config "$T/strict.json" pubkey flows
expect_rc 0 "key file back to 0600"
pass "key writable by others: refused even with allow_group_readable"

# ---- configuration file writable by others ----
mkdir -m 700 "$T/cfg"
write_config "$T/cfg/config.json" "{\"flows\": $(pem_entry "$T/keys/flows.pem")}"
for mode in 602 622 666; do
	chmod "$mode" "$T/cfg/config.json"
	run "$FV" --config "$T/cfg/config.json" pubkey flows
	expect_rc 2 "configuration file mode $mode"
	expect_err_has "$T/cfg/config.json"
	expect_err_has "chmod go-w"
	[ -z "$OUT" ] || fail "configuration mode $mode: something on stdout: $OUT"
done
chmod 600 "$T/cfg/config.json"
# Through $FLOWVAULT_CONFIG too, not only --config.
chmod 666 "$T/cfg/config.json"
FLOWVAULT_CONFIG="$T/cfg/config.json" run "$FV" keys
expect_rc 2 "configuration from FLOWVAULT_CONFIG writable by others"
chmod 600 "$T/cfg/config.json"
pass "configuration file writable by group/others: exit 2, naming chmod go-w"

# A directory others can write (not sticky): they could swap the file.
chmod 777 "$T/cfg"
run "$FV" --config "$T/cfg/config.json" pubkey flows
expect_rc 2 "configuration in a directory writable by others"
expect_err_has "$T/cfg"
expect_err_has "writable by others"
chmod 700 "$T/cfg"
run "$FV" --config "$T/cfg/config.json" pubkey flows
expect_rc 0 "configuration fixed"
pass "configuration in a directory writable by others: exit 2"

# ---- file: secret readable by others ----
# gen.pem is encrypted, so the passphrase reference is resolved.
chmod 604 "$T/secrets/pass"
run "$FV" --config "$T/gen.json" pubkey flows
[ "$RC" != 0 ] || fail "a secret file readable by others was used"
expect_err_has "readable by others"
expect_err_has "$T/secrets/pass"
expect_err_has "chmod o-rwx"
secret_rc=$RC
expect_not_has "$PW" "$T/.out" "$T/.err"
chmod 600 "$T/secrets/pass"
run "$FV" --config "$T/gen.json" pubkey flows
expect_rc 0 "secret file back to 0600"
pass "file: secret readable by others: refused (exit $secret_rc)"

# ---- plugin in a group-writable directory ----
mkdir -m 775 "$T/gwplugins"
cp "$FV_BUILD_DIR/lib/flowvault/plugins/pem.so" "$T/gwplugins/pem.so"
chmod 755 "$T/gwplugins/pem.so"
printf '{"plugin_path": ["%s"], "keys": {}}\n' "$T/gwplugins" >"$T/gw.json"
chmod 600 "$T/gw.json"
run "$FV" --config "$T/gw.json" plugins
expect_rc 0 "plugins with a group-writable plugin directory"
expect_out_has "$T/gwplugins/pem.so"
expect_out_has "writable by its group"
expect_out_has "chmod go-w '$T/gwplugins'"
run "$FV" --config "$T/gw.json" --json plugins
expect_rc 0 "plugins --json"
python3 -I -c '
import json, sys
doc = json.loads(sys.stdin.read())
items = doc["plugins"] if isinstance(doc, dict) else doc
hit = [p for p in items if p.get("path") == sys.argv[1]]
assert hit, "plugin not listed"
assert "writable by its group" in (hit[0].get("refused") or ""), hit[0]
' "$T/gwplugins/pem.so" <<<"$OUT" || fail "plugins --json does not show the refusal: $OUT"
# The same file in a directory only we can write is loaded.
chmod 755 "$T/gwplugins"
run "$FV" --config "$T/gw.json" --json plugins
python3 -I -c '
import json, sys
doc = json.loads(sys.stdin.read())
items = doc["plugins"] if isinstance(doc, dict) else doc
hit = [p for p in items if p.get("path") == sys.argv[1]]
assert hit and not hit[0].get("refused"), hit
' "$T/gwplugins/pem.so" <<<"$OUT" || fail "the plugin is not loaded from a safe directory: $OUT"
pass "plugin in a group-writable directory: refused with its reason, loaded once fixed"
