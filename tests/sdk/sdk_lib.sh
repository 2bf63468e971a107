# Helpers shared by the tests/sdk scripts (after tests/lib.sh).

# cache_value NAME: a variable of the build's CMakeCache.txt.
cache_value() {
	sed -n "s/^$1:[A-Z]*=//p" "$FV_BUILD_DIR/CMakeCache.txt" | head -n 1
}

LIBDIR=$(cache_value CMAKE_INSTALL_LIBDIR)
LIBDIR=${LIBDIR:-lib}
PROJECT_VERSION=$(cache_value CMAKE_PROJECT_VERSION)
[ -n "$PROJECT_VERSION" ] || fail "no CMAKE_PROJECT_VERSION in $FV_BUILD_DIR/CMakeCache.txt"

# The man pages the build installs: docs/*.1, *.5, *.7 of the source tree.
man_pages() {
	local page
	for page in "$FV_SOURCE_DIR"/docs/*.[157]; do
		[ -e "$page" ] && basename "$page"
	done
	return 0
}

# Every file and symbolic link under DIR, relative to it, sorted.
tree_listing() {
	(cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | LC_ALL=C sort)
}

# A fresh RSA-2048 key in PEM (unencrypted PKCS#8) at PATH.
make_rsa_key() {
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ||
		fail "openssl cannot generate an RSA key"
}
