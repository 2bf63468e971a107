# Software tokens and configurations for the PKCS#11 tests, all inside $T.
# Source after tests/lib.sh.
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
SOFTOKN_MODULE=/usr/lib/x86_64-linux-gnu/libsoftokn3.so
SPY_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so
CLIENT_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
PROXY_MODULE=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
TOOL="$FV_BUILD_DIR/tests/p11-decrypt-tool"
ATTRS="$FV_SOURCE_DIR/tests/pkcs11/p11attrs.py"

# setup_softhsm LABEL PIN: a private SoftHSM2 configuration and token dir.
setup_softhsm() {
	mkdir -p "$T/softhsm/tokens"
	printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$T/softhsm/tokens" >"$T/softhsm/softhsm2.conf"
	export SOFTHSM2_CONF="$T/softhsm/softhsm2.conf"
	softhsm2-util --init-token --free --label "$1" --pin "$2" --so-pin 87654321 >/dev/null \
		|| fail "softhsm2-util --init-token"
}

# setup_softokn: an NSS database with an empty password; sets SOFTOKN_ARGS.
setup_softokn() {
	mkdir -p "$T/nssdb"
	certutil -N -d "sql:$T/nssdb" --empty-password || fail "certutil -N"
	SOFTOKN_ARGS="configdir='sql:$T/nssdb' certPrefix='' keyPrefix='' secmod='secmod.db' flags="
}

# write_config FILE KEY-ENTRY-JSON: one key "flows" with the given fields.
write_config() {
	printf '{"keys": {"flows": %s}}\n' "$2" >"$1"
}

# count_objects: objects pkcs11-tool sees on the SoftHSM token (logged in).
count_objects() {
	pkcs11-tool --module "$SOFTHSM_MODULE" --token-label "$1" --login --pin "$2" \
		--list-objects 2>/dev/null | grep -c "Object;" || true
}

# oaep_encrypt PUBPEM IN OUT: what Meta's client does (RSA-OAEP-SHA256).
oaep_encrypt() {
	openssl pkeyutl -encrypt -pubin -inkey "$1" -in "$2" -out "$3" \
		-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \
		-pkeyopt rsa_mgf1_md:sha256 || fail "openssl pkeyutl -encrypt"
}

# p11kit_server_start NAME TOKEN-URI [ARGS...]: `p11-kit server` exporting
# the matching token on $P11KIT_SOCK_DIR/NAME.sock (default $T), in a process group of its own (it forks
# per connection: killing the group is what a server going away looks like).
# Sets P11_KIT_SERVER_ADDRESS (exported) and SERVER_PGID. Extra ARGS go
# before the URI (e.g. --provider MODULE). To run it as another user, set
# P11KIT_SERVER_AS to a setpriv prefix.
p11kit_server_start() {
	local name=$1 uri=$2 i sock="${P11KIT_SOCK_DIR:-$T}/$1.sock"
	shift 2
	rm -f "$sock"
	# shellcheck disable=SC2086
	setsid ${P11KIT_SERVER_AS:-} p11-kit server -f -n "$sock" "$@" "$uri" \
		>"$T/$name-server.out" 2>"$T/$name-server.err" &
	SERVER_PGID=$!
	at_exit "kill -- -$SERVER_PGID"
	for ((i = 0; i < 100; i++)); do
		[ -S "$sock" ] && break
		kill -0 "$SERVER_PGID" 2>/dev/null || fail "p11-kit server exited: $(cat "$T/$name-server.err")"
		sleep 0.1
	done
	[ -S "$sock" ] || fail "p11-kit server made no socket: $(cat "$T/$name-server.err")"
	export P11_KIT_SERVER_ADDRESS="unix:path=$sock"
}

# p11kit_server_stop: the server and every connection it forked, gone.
p11kit_server_stop() {
	kill -- -"$SERVER_PGID" 2>/dev/null || true
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 -- -"$SERVER_PGID" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- -"$SERVER_PGID" 2>/dev/null || true
}

# softokn_server_start NAME: a `p11-kit server` exporting the softokn token of
# setup_softokn, running as the user nobody because p11-kit reads the user's
# registrations only outside root: it reaches softokn through a registration
# in $T/server-xdg (pkcs11-spy wrapping softokn, x-init-reserved carrying the
# database arguments), logging every call to $T/spy-home/spy.log. Makes $T
# traversable and the database nobody's. Sets what p11kit_server_start sets.
softokn_server_start() {
	chmod 711 "$T"
	mkdir -p "$T/server-xdg/pkcs11/modules" "$T/spy-home"
	printf 'module: %s\nx-init-reserved: %s\n' "$SPY_MODULE" "$SOFTOKN_ARGS" \
		>"$T/server-xdg/pkcs11/modules/fvsoftokn.module"
	chmod -R go+rX "$T/server-xdg"
	chown -R nobody:nogroup "$T/nssdb" "$T/spy-home"
	P11KIT_SERVER_AS="setpriv --reuid=65534 --regid=65534 --clear-groups env XDG_CONFIG_HOME=$T/server-xdg HOME=$T/spy-home PKCS11SPY=$SOFTOKN_MODULE PKCS11SPY_OUTPUT=$T/spy-home/spy.log" \
		P11KIT_SOCK_DIR="$T/spy-home" p11kit_server_start "$1" "pkcs11:token=NSS%20Certificate%20DB"
}
