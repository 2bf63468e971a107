#!/bin/bash
# The Debian package: `cpack -G DEB` from this build, unpacked with `dpkg -x`
# into a temporary root; the packaged flowvault runs from there (its RUNPATH
# finds libflowvault, the loader finds the plugins next to it, no
# LD_LIBRARY_PATH), and the package holds what `cmake --install` installs.
. "$FV_SOURCE_DIR/tests/lib.sh"
. "$FV_SOURCE_DIR/tests/sdk/sdk_lib.sh"
unset LD_LIBRARY_PATH

[ -f "$FV_BUILD_DIR/CPackConfig.cmake" ] || fail "no CPackConfig.cmake in $FV_BUILD_DIR"
run cpack -G DEB -B "$T/pkg" --config "$FV_BUILD_DIR/CPackConfig.cmake"
expect_rc 0 "cpack -G DEB"
debs=("$T"/pkg/flowvault_"$PROJECT_VERSION"_*.deb)
[ -f "${debs[0]}" ] || fail "cpack made no flowvault_${PROJECT_VERSION}_<arch>.deb: $(ls "$T/pkg")"
DEB=${debs[0]}

# ---- Control fields ----
[ "$(dpkg-deb -f "$DEB" Package)" = flowvault ] || fail "package name is not flowvault"
[ "$(dpkg-deb -f "$DEB" Version)" = "$PROJECT_VERSION" ] || fail "package version is not $PROJECT_VERSION"
depends=$(dpkg-deb -f "$DEB" Depends)
for lib in libc6 libssl3 libjson-c5; do
	grep -q "\\b$lib\\b" <<<"$depends" ||
		fail "Depends lacks $lib (dpkg-shlibdeps did not run?): $depends"
done
pass "control: flowvault $PROJECT_VERSION, Depends: $depends"

# ---- Contents: the same files as `cmake --install --prefix /usr` ----
dpkg -x "$DEB" "$T/root"
DESTDIR=$T/staged run cmake --install "$FV_BUILD_DIR" --prefix /usr
expect_rc 0 "cmake --install --prefix /usr"
tree_listing "$T/root" >"$T/deb.list"
tree_listing "$T/staged" >"$T/install.list"
diff -u "$T/install.list" "$T/deb.list" >"$T/list.diff" ||
	fail "the package and cmake --install differ (- install, + package):
$(cat "$T/list.diff")"
for f in usr/bin/flowvault "usr/$LIBDIR/libflowvault.so.0" "usr/$LIBDIR/flowvault/plugins/pem.so" \
	usr/include/flowvault/provider.h usr/include/flowvault/flowvault.h \
	"usr/$LIBDIR/pkgconfig/flowvault-provider.pc" \
	usr/share/bash-completion/completions/flowvault \
	usr/share/doc/flowvault/flowvault.example.json \
	usr/share/doc/flowvault/examples/plugin-skeleton/skeleton.c; do
	grep -qxF "$f" "$T/deb.list" || fail "the package lacks /$f"
done
for page in $(man_pages); do
	f=usr/share/man/man${page##*.}/$page.gz
	grep -qxF "$f" "$T/deb.list" || fail "the package lacks the man page /$f"
	gzip -dc "$T/root/$f" | grep -q '^\.TH ' || fail "/$f is not a man page"
done
pass "the package holds $(wc -l <"$T/deb.list") files, the same as cmake --install"

# ---- It runs from the unpacked root ----
FVR=$T/root/usr/bin/flowvault
readelf -d "$FVR" | grep -E 'RUNPATH|RPATH' | grep -qF '$ORIGIN' ||
	fail "packaged flowvault has no \$ORIGIN-relative RUNPATH: $(readelf -d "$FVR" | grep -i path)"
ldd "$FVR" | grep -qF "$T/root/usr/bin/../$LIBDIR/libflowvault.so.0" ||
	fail "packaged flowvault does not find the packaged libflowvault:
$(ldd "$FVR")"
run "$FVR" --version
expect_rc 0 "packaged flowvault --version"
[[ $OUT == "flowvault $PROJECT_VERSION "* ]] || fail "--version prints '$OUT'"

echo '{"keys": {}}' >"$T/empty.json"
run "$FVR" --config "$T/empty.json" plugins
expect_rc 0 "packaged flowvault plugins"
! grep -q refused <<<"$OUT" || fail "the packaged flowvault refuses a packaged plugin:
$OUT"
for so in "$T/root/usr/$LIBDIR/flowvault/plugins"/*.so; do
	name=$(basename "$so" .so)
	grep -qE "^$name +[^ ]+ +1\.[0-9]+ .* $so\$" <<<"$OUT" ||
		fail "packaged plugin $name is not listed as loaded from $so:
$OUT"
done
expect_err_has "search path: $T/root/usr/$LIBDIR/flowvault/plugins"
pass "the unpacked flowvault runs and loads $(ls "$T/root/usr/$LIBDIR/flowvault/plugins" | wc -l) plugins"

# The packaged key path works end to end with the packaged pem plugin.
make_rsa_key "$T/flows.pem"
echo '{"keys": {"flows": {"provider": "pem", "path": "flows.pem"}}}' >"$T/flows.json"
run "$FVR" --config "$T/flows.json" pubkey flows
expect_rc 0 "packaged flowvault pubkey"
[ "$OUT" = "$(openssl pkey -in "$T/flows.pem" -pubout)" ] || fail "packaged pubkey differs from openssl"

# The SDK in the package points into the package's own tree (or /usr).
incdir=$(PKG_CONFIG_PATH=$T/root/usr/$LIBDIR/pkgconfig pkg-config --variable=includedir flowvault-provider)
case $(realpath -m "$incdir") in
"$T/root/usr/include" | /usr/include) ;;
*) fail "packaged flowvault-provider.pc points to includedir '$incdir', not /usr/include" ;;
esac
pass "packaged pubkey and SDK paths are right"
