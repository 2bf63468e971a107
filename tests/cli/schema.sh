#!/bin/bash
# config/flowvault.schema.json: generated from the parser's field tables
# (regenerating gives the committed file), a valid JSON Schema that accepts
# the example and init's output, and holding exactly the fields the running
# library and each built plugin accept.
. "$FV_SOURCE_DIR/tests/lib.sh"

S=$FV_SOURCE_DIR/config/flowvault.schema.json
python3 "$FV_SOURCE_DIR/config/gen-schema.py" "$FV_SOURCE_DIR" >"$T/schema.json" ||
	fail "config/gen-schema.py failed"
diff -u "$S" "$T/schema.json" >"$T/diff" ||
	fail "config/flowvault.schema.json is stale: run config/gen-schema.py > config/flowvault.schema.json
$(cat "$T/diff")"
pass "the schema is what config/gen-schema.py makes from the sources"

validate() { # validate FILE: FILE is valid under the schema (prints the errors)
	python3 -I - "$S" "$1" <<'PY'
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2])))]
sys.exit("; ".join(errors) if errors else 0)
PY
}
validate "$FV_SOURCE_DIR/config/flowvault.example.json" || fail "the example is not valid under the schema"
for p in pem pkcs11 tpm2; do
	"$FV" --config "$T/init-$p.json" init --provider "$p" --phone 1 >/dev/null 2>&1 </dev/null ||
		fail "init --provider $p"
	validate "$T/init-$p.json" || fail "init's $p configuration is not valid under the schema"
done
printf '{"keys": {"k": {"provider": "pem", "path": "k.pem", "pth": 1}}}\n' >"$T/typo.json"
! validate "$T/typo.json" 2>/dev/null || fail "the schema accepts an unknown pem field"
printf '{"keys": {"k": {"provider": "pkcs11", "uri": "pkcs11:object=k"}}}\n' >"$T/nomodule.json"
! validate "$T/nomodule.json" 2>/dev/null || fail "the schema accepts a pkcs11 key without module"
printf '{"graph": {"access_token": "EAAGliteral"}}\n' >"$T/literal.json"
! validate "$T/literal.json" 2>/dev/null || fail "the schema accepts a literal token"
pass "a valid JSON Schema: accepts the example and init's output, refuses typos and literal secrets"

# The running parser: the fields it lists as known, section by section and
# for every plugin built, are the schema's.
known_fields() { # known_fields CONFIG_JSON: the "known fields" the parser lists for it
	printf '%s\n' "$1" >"$T/probe.json"
	chmod 600 "$T/probe.json"
	"$FV" --config "$T/probe.json" pubkey k 2>&1 >/dev/null |
		sed -nE 's/.*\(known fields: ([^)]*)\).*/\1/p' | tr -d ' ' | tr ',' '\n' | sort
}
schema_fields() { # schema_fields JQ_PATH
	jq -r "$1 | keys[]" "$S" | sort
}
compare() { # compare WHAT PARSER_LIST SCHEMA_LIST
	[ -n "$2" ] || fail "$1: the parser named no known fields"
	[ "$2" = "$3" ] || fail "$1: the parser knows [$(echo $2)], the schema [$(echo $3)]"
}
compare "top level" "$(known_fields '{"zz_unknown": 1}')" "$(schema_fields .properties)"
compare "graph" "$(known_fields '{"graph": {"zz_unknown": 1}}')" "$(schema_fields .properties.graph.properties)"
compare "serve" "$(known_fields '{"serve": {"zz_unknown": 1}}')" "$(schema_fields .properties.serve.properties)"
plugins=0
for so in "$FV_BUILD_DIR"/lib/flowvault/plugins/*.so; do
	p=$(basename "$so" .so)
	compare "plugin $p" "$(known_fields '{"keys": {"k": {"provider": "'"$p"'", "zz_unknown": 1}}}')" \
		"$(jq -r --arg p "$p" '.["$defs"].key.allOf[] | select(.if.properties.provider.const == $p)
			| .then.properties | keys[]' "$S" | sort)"
	plugins=$((plugins + 1))
done
[ "$plugins" -ge 3 ] || fail "only $plugins plugins built"
pass "the schema has exactly the fields the parser and each of the $plugins plugins accept"
