#!/bin/bash
# The installed plugin SDK: `cmake --install` into a temporary prefix, then
# build examples/plugin-skeleton OUT OF TREE against that prefix (with its
# Makefile and with its CMakeLists.txt, through pkg-config), load it in the
# INSTALLED flowvault, and use it for `pubkey` and for a decryption through
# the installed libflowvault.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/sdk/sdk_lib.sh"

P=$T/prefix
run cmake --install "$FV_BUILD_DIR" --prefix "$P"
expect_rc 0 "cmake --install"
FVI=$P/bin/flowvault

# ---- What the SDK consists of ----
for f in bin/flowvault "$LIBDIR/libflowvault.so" include/flowvault/provider.h \
	include/flowvault/flowvault.h "$LIBDIR/pkgconfig/flowvault-provider.pc" \
	"$LIBDIR/flowvault/plugins/pem.so" share/bash-completion/completions/flowvault \
	share/doc/flowvault/flowvault.example.json \
	share/doc/flowvault/examples/plugin-skeleton/skeleton.c \
	share/doc/flowvault/examples/plugin-skeleton/Makefile \
	share/doc/flowvault/examples/plugin-skeleton/CMakeLists.txt; do
	[ -e "$P/$f" ] || fail "cmake --install did not install $f"
done
for page in $(man_pages); do
	f=share/man/man${page##*.}/$page.gz
	[ -f "$P/$f" ] || fail "cmake --install did not install the man page $f"
	gzip -dc "$P/$f" | cmp -s - "$FV_SOURCE_DIR/docs/$page" ||
		fail "$f differs from docs/$page"
done
cmp -s "$P/share/bash-completion/completions/flowvault" \
	"$FV_SOURCE_DIR/completion/flowvault.bash" || fail "installed completion differs"
pass "cmake --install lays out the SDK under $P"

# ---- pkg-config finds the SDK where it was installed ----
export PKG_CONFIG_PATH=$P/$LIBDIR/pkgconfig
run pkg-config --modversion flowvault-provider
expect_rc 0 "pkg-config --modversion flowvault-provider"
[ "$OUT" = "$PROJECT_VERSION" ] || fail "flowvault-provider.pc says version '$OUT', expected $PROJECT_VERSION"
incdir=$(pkg-config --variable=includedir flowvault-provider)
plugindir=$(pkg-config --variable=plugindir flowvault-provider)
[ -f "$incdir/flowvault/provider.h" ] && [ "$(realpath "$incdir")" = "$(realpath "$P/include")" ] ||
	fail "flowvault-provider.pc installed with --prefix $P points to includedir '$incdir';
it must follow the prefix (prefix=\${pcfiledir}/../.., see docs/packaging.md)"
[ "$(realpath -m "$plugindir")" = "$(realpath "$P/$LIBDIR/flowvault/plugins")" ] ||
	fail "flowvault-provider.pc: plugindir '$plugindir' is not $P/$LIBDIR/flowvault/plugins"
pass "pkg-config resolves flowvault-provider inside the prefix"

# ---- Build the skeleton out of tree, from the installed example ----
EXAMPLE=$P/share/doc/flowvault/examples/plugin-skeleton
for f in skeleton.c Makefile CMakeLists.txt; do
	cmp -s "$EXAMPLE/$f" "$FV_SOURCE_DIR/examples/plugin-skeleton/$f" ||
		fail "installed example $f differs from examples/plugin-skeleton/$f"
done
# Strict flags: the example is code people copy.
STRICT="-O2 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Werror"
# make with clang when there is one, cmake with the default compiler (gcc).
MAKE_CC=cc
command -v clang >/dev/null && MAKE_CC=clang
mkdir "$T/skel-make"
run make -C "$T/skel-make" -f "$EXAMPLE/Makefile" CC="$MAKE_CC" CFLAGS="$STRICT"
expect_rc 0 "make -f plugin-skeleton/Makefile against the installed SDK"
expect_out_has "-I$incdir"
run make -C "$T/skel-make" -f "$EXAMPLE/Makefile" install DESTDIR="$T/destdir"
expect_rc 0 "make install of the skeleton"
[ -f "$T/destdir$plugindir/skeleton.so" ] || fail "make install did not put skeleton.so into \$DESTDIR$plugindir"
run cmake -S "$EXAMPLE" -B "$T/skel-cmake" -DCMAKE_C_FLAGS="$STRICT" -DCMAKE_BUILD_TYPE=Release
expect_rc 0 "cmake configure of plugin-skeleton against the installed SDK"
run cmake --build "$T/skel-cmake"
expect_rc 0 "cmake --build of plugin-skeleton"
nm -D --defined-only "$T/skel-cmake/skeleton.so" | awk '$2 == "T" { print $3 }' >"$T/exports"
[ "$(cat "$T/exports")" = flowvault_provider_entry ] ||
	fail "skeleton.so must export only flowvault_provider_entry, exports: $(tr '\n' ' ' <"$T/exports")"
pass "skeleton builds out of tree with make and cmake, exports one symbol"

# ---- Load it in the installed flowvault ----
mkdir -m 755 "$T/plugins"
install -m 0755 "$T/skel-cmake/skeleton.so" "$T/plugins/skeleton.so"
make_rsa_key "$T/demo.pem"
cat >"$T/config.json" <<JSON
{"plugin_path": ["$T/plugins"],
 "keys": {"demo": {"provider": "skeleton", "path": "demo.pem"}}}
JSON

run "$FVI" --config "$T/config.json" plugins
expect_rc 0 "installed flowvault plugins"
grep -E "^skeleton +1\.0\.0 +1\.[0-9]+ +info +$T/plugins/skeleton.so\$" <<<"$OUT" >/dev/null ||
	fail "skeleton is not listed as loaded by the installed flowvault:
$OUT"
grep -E "^pem .*$P/$LIBDIR/flowvault/plugins/pem.so\$" <<<"$OUT" >/dev/null ||
	fail "installed flowvault does not find its own plugins next to it:
$OUT"
! grep -q "refused" <<<"$OUT" || fail "a plugin was refused:
$OUT"
run "$FVI" --json --config "$T/config.json" plugins
expect_rc 0 "plugins --json"
tr -d ' \n' <<<"$OUT" | grep -qF "\"name\":\"skeleton\",\"path\":\"$T/plugins/skeleton.so\",\"loaded\":true" ||
	fail "plugins --json does not show skeleton loaded: $OUT"
# The environment variable finds it too (no plugin_path).
echo '{"keys": {"demo": {"provider": "skeleton", "path": "demo.pem"}}}' >"$T/env.json"
FLOWVAULT_PLUGIN_PATH=$T/plugins run "$FVI" --config "$T/env.json" plugins
expect_rc 0 "plugins with FLOWVAULT_PLUGIN_PATH"
expect_out_has "$T/plugins/skeleton.so"
pass "installed flowvault loads the out-of-tree plugin"

# ---- pubkey equals openssl pkey -pubout ----
openssl pkey -in "$T/demo.pem" -pubout -out "$T/expected.pub"
run "$FVI" --config "$T/config.json" pubkey demo
expect_rc 0 "pubkey through the skeleton"
printf '%s\n' "$OUT" | cmp -s - "$T/expected.pub" ||
	fail "pubkey differs from openssl pkey -pubout:
$OUT"
run "$FVI" --config "$T/config.json" keys
expect_rc 0 "keys through the skeleton"
expect_out_has "oaep: in process (OpenSSL); file $T/demo.pem"
expect_out_has "$(openssl pkey -pubin -in "$T/expected.pub" -outform DER | sha256sum | cut -d' ' -f1)"
pass "pubkey and keys through the skeleton match openssl"

# ---- Decrypt through the installed libflowvault ----
# No flowvault.pc for the application API: use the prefix directly.
# In a sanitizer build the library needs the sanitizer runtime first.
# shellcheck disable=SC2086 # flags are words
run cc -std=c11 -Wall -Wextra -Werror ${FV_SANITIZE_FLAGS:-} -I"$P/include" \
	-o "$T/sdk_decrypt" "$FV_SOURCE_DIR/tests/sdk/sdk_decrypt.c" \
	-L"$P/$LIBDIR" -lflowvault -Wl,-rpath,"$P/$LIBDIR"
expect_rc 0 "building a program against the installed libflowvault"
ldd "$T/sdk_decrypt" | grep -qF "$P/$LIBDIR/libflowvault.so" ||
	fail "sdk_decrypt does not use the installed libflowvault: $(ldd "$T/sdk_decrypt")"
printf 'flows request %s' "$RANDOM$RANDOM" >"$T/plain"
openssl pkeyutl -encrypt -pubin -inkey "$T/expected.pub" -in "$T/plain" -out "$T/cipher" \
	-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
"$T/sdk_decrypt" "$T/config.json" demo "$T/cipher" >"$T/decrypted" ||
	fail "decrypting an openssl pkeyutl OAEP-SHA256 ciphertext through the skeleton failed"
cmp -s "$T/plain" "$T/decrypted" || fail "decrypted text differs from the plain text"
# OAEP with SHA-1 (OpenSSL's default) must not decrypt: the scheme is fixed.
openssl pkeyutl -encrypt -pubin -inkey "$T/expected.pub" -in "$T/plain" -out "$T/cipher-sha1" \
	-pkeyopt rsa_padding_mode:oaep
run "$T/sdk_decrypt" "$T/config.json" demo "$T/cipher-sha1"
expect_rc 1 "decrypting OAEP-SHA1 data"
expect_err_has "(decrypt)"
head -c 100 "$T/cipher" >"$T/short"
run "$T/sdk_decrypt" "$T/config.json" demo "$T/short"
expect_rc 1 "decrypting a truncated ciphertext"
expect_err_has "ciphertext is 100 bytes"
pass "decryption through the installed library and the skeleton"
