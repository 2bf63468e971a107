#!/bin/bash
# The JSON of every command is what flowvault(1) documents (JSON OUTPUT):
# every listed member present, none that is not listed.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/graph/graph_lib.sh"

MAN=$FV_SOURCE_DIR/docs/flowvault.1
SHAPE=$FV_SOURCE_DIR/tests/cli/json_shape.py
documented() { # documented NAME RC ARGS...: flowvault --json ARGS exits RC, as NAME's JSON
	local name=$1 want=$2
	shift 2
	run "$FV" --json "$@"
	expect_rc "$want" "--json $*"
	"$PYTHON" -I "$SHAPE" "$MAN" "$name" <<<"$OUT" || fail "--json $*: $OUT"
}

# The check can fail: an undocumented member and a missing one are caught.
! "$PYTHON" -I "$SHAPE" "$MAN" init <<<'{"config": 1, "key": 1, "provider": 1, "next": [], "extra": 1}' 2>/dev/null ||
	fail "an undocumented member passed"
! "$PYTHON" -I "$SHAPE" "$MAN" init <<<'{"config": 1, "key": 1, "provider": 1}' 2>/dev/null ||
	fail "a missing member passed"

start_sim
make_key flows
cp "$FV_SOURCE_DIR/tests/vectors/pywa-flows/private_key.pem" "$T/pywa.pem"
chmod 600 "$T/pywa.pem"
write_config '["1001"]' '"max_in_flight": 4' '"waba_id": "777"'
sim_config '{"wabas": {"777": {"ids": [2001, 2002]}}}'
export APP_SECRET=json-docs-secret PW=json-docs-passphrase PYWA_PASSPHRASE=pywa
jq --arg plugins "$FV_BUILD_DIR/tests/cli-plugins" '.plugin_path = [$plugins]
	| .keys.pywa = {"provider": "pem", "path": "pywa.pem", "passphrase": "env:PYWA_PASSPHRASE"}
	| .keys.signing = {"provider": "described", "path": "flows.pem", "properties": 62}
	| .keys.later = {"provider": "pem", "path": "later.pem", "passphrase": "env:PW"}
	| .serve = {"listen": "127.0.0.1:1", "keys": ["flows", "pywa"], "app_secrets": ["env:APP_SECRET"]}' \
	"$T/config.json" >"$T/c.json" && mv "$T/c.json" "$T/config.json" && chmod 600 "$T/config.json"
PYWA=$FV_SOURCE_DIR/tests/vectors/pywa-flows

documented error 2 kyes
documented plugins 0 plugins
documented "generate, pubkey" 0 generate later
documented "generate, pubkey" 0 pubkey flows
documented "register --dry-run" 0 register flows --dry-run
documented "register, status" 0 register flows
documented "register, status" 0 status flows
documented keys 0 keys
documented doctor 0 doctor
documented "flow decrypt" 0 flow decrypt pywa --in "$PYWA/request.json"
documented "flow encrypt" 0 flow encrypt pywa --request "$PYWA/request.json" --response "$PYWA/response_plaintext.json"
mkdir "$T/media"
head -c 1000 /dev/urandom >"$T/media/photo"
"$PYTHON" "$FV_SOURCE_DIR/tests/media/make_media.py" "$T/media" "$T/media/photo"
documented "flow media-decrypt" 0 flow media-decrypt --media "$T/media/object.json" --in "$T/media/cdn.bin" --out "$T/media/clear"
documented serve 0 serve --check
documented rotate 0 rotate --status
documented init 0 --config "$T/new.json" init
documented help 0 help
documented "help COMMAND, COMMAND --help" 0 help keys
documented "help COMMAND, COMMAND --help" 0 keys --help
documented version 0 version
# Failures of the commands that print their own document on failure too.
sim_config '{"numbers": {"2002": {"key": null, "status": null}}}'
documented "register, status" 5 status flows
documented doctor 5 doctor
pass "every command's --json matches its documented members"
