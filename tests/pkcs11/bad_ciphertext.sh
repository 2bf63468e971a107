# A ciphertext above the modulus (256 x 0xFF) on SoftHSM2 (which answers
# CKR_GENERAL_ERROR for it) and on NSS softokn: `flow decrypt` exits 6 and
# `serve` answers 421 with no ERROR line and no key-error count.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/flow/flow_lib.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/tokens.sh"
. "$FV_SOURCE_DIR/tests/pkcs11/bad_ciphertext_lib.sh"

setup_softhsm flows 246810
printf '246810\n' >"$T/pin"
setup_softokn
: >"$T/empty-pin"
chmod 600 "$T/pin" "$T/empty-pin"
cat >"$T/config.json" <<JSON
{"keys": {
  "hsm": {"provider": "pkcs11", "module": "$SOFTHSM_MODULE", "allow_host_oaep": true,
          "uri": "pkcs11:token=flows;object=flows-key", "pin": "file:$T/pin"},
  "softokn": {"provider": "pkcs11", "module": "$SOFTOKN_MODULE", "init_args": "$SOFTOKN_ARGS",
              "uri": "pkcs11:token=NSS%20Certificate%20DB;object=flows-key", "pin": "file:$T/empty-pin"}
}}
JSON
chmod 600 "$T/config.json"
for key in hsm softokn; do
	run "$FV" --config "$T/config.json" generate "$key"
	expect_rc 0 "generate $key"
done

check_bad_ciphertext "$T/config.json" hsm "SoftHSM2"
check_bad_ciphertext "$T/config.json" softokn "NSS softokn"
