# Helpers shared by the `openssl` plugin tests. Source after tests/lib.sh.
DECRYPT="$FV_BUILD_DIR/tests/fv-openssl-decrypt"
PLUGINS="$FV_BUILD_DIR/lib/flowvault/plugins"
[ -x "$DECRYPT" ] || fail "$DECRYPT is missing: build the tree first"

# oaep_encrypt PUBKEY_PEM PLAIN_FILE OUT: what a Flows client does.
oaep_encrypt() {
	openssl pkeyutl -encrypt -pubin -inkey "$1" -in "$2" -out "$3" \
		-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
		-pkeyopt rsa_mgf1_md:sha256
}

# write_config FILE KEY_ENTRY_JSON: one key called "flows".
write_config() {
	cat >"$1" <<JSON
{"plugin_path": ["$PLUGINS"],
 "keys": {"flows": $2}}
JSON
	chmod 600 "$1"
}
