# swtpm helpers for shell tests. Source after tests/lib.sh:
#     . "$FV_SOURCE_DIR/tests/tpm2/swtpm.sh"
#     swtpm_start "$T/tpm"      # state dir, created if missing
#     ... use $FV_TCTI ...
#     swtpm_restart             # same state, same port: a TPM reboot
#     swtpm_stop                # also run automatically when the test ends
#
# swtpm_start exports
#   FV_SWTPM_PORT     the TPM command port P (the control port is P+1)
#   FV_TCTI           swtpm:host=127.0.0.1,port=P  (for flowvault's "tcti")
#   TPM2TOOLS_TCTI    the same, for tpm2-tools
#   TPM2OPENSSL_TCTI  the same, for `openssl -provider tpm2`
# The TPM starts with --flags not-need-init,startup-clear: it is ready for
# commands without TPM2_Startup, and every (re)start clears transient objects
# while persistent handles and the key hierarchy survive in the state dir.

FV_SWTPM_DIR=
FV_SWTPM_PID=
fv_swtpm_cleanup_registered=

# fv_swtpm_launch PORT: start swtpm on PORT and PORT+1; non-zero if it fails.
fv_swtpm_launch() {
	rm -f "$FV_SWTPM_DIR/swtpm.pid"
	swtpm socket --tpm2 --tpmstate dir="$FV_SWTPM_DIR" \
		--server type=tcp,port="$1",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port="$(($1 + 1))",bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear \
		--pid file="$FV_SWTPM_DIR/swtpm.pid" --daemon \
		2>"$FV_SWTPM_DIR/swtpm.err" || return 1
	local i
	for ((i = 0; i < 50; i++)); do
		[ -s "$FV_SWTPM_DIR/swtpm.pid" ] && break
		sleep 0.1
	done
	FV_SWTPM_PID=$(cat "$FV_SWTPM_DIR/swtpm.pid" 2>/dev/null) || return 1
	for ((i = 0; i < 100; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$FV_SWTPM_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# swtpm_start DIR: a fresh swtpm on a free loopback port pair.
swtpm_start() {
	local dir=${1:?swtpm_start needs a state directory} attempt port
	mkdir -p "$dir"
	chmod 700 "$dir"
	FV_SWTPM_DIR=$(cd "$dir" && pwd)
	# Another test may take a port between the check and the bind: retry.
	for attempt in 1 2 3 4 5 6 7 8; do
		port=$(free_port)
		(exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null && continue
		if fv_swtpm_launch "$port"; then
			export FV_SWTPM_PORT=$port
			export FV_TCTI="swtpm:host=127.0.0.1,port=$port"
			export TPM2TOOLS_TCTI=$FV_TCTI TPM2OPENSSL_TCTI=$FV_TCTI
			if [ -z "$fv_swtpm_cleanup_registered" ]; then
				at_exit swtpm_stop
				fv_swtpm_cleanup_registered=1
			fi
			return 0
		fi
		fv_swtpm_kill
	done
	fail "swtpm did not start in $FV_SWTPM_DIR: $(cat "$FV_SWTPM_DIR/swtpm.err" 2>/dev/null)"
}

# fv_swtpm_kill: stop the running swtpm (if any) and wait until it is gone.
fv_swtpm_kill() {
	local i
	[ -n "$FV_SWTPM_PID" ] || return 0
	kill "$FV_SWTPM_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$FV_SWTPM_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$FV_SWTPM_PID" 2>/dev/null && kill -9 "$FV_SWTPM_PID" 2>/dev/null
	FV_SWTPM_PID=
	return 0
}

# swtpm_stop: stop the TPM; its state directory stays.
swtpm_stop() {
	fv_swtpm_kill
}

# swtpm_restart: stop and start again with the same state on the same port,
# as a machine reboot would look to a client holding a connection.
swtpm_restart() {
	[ -n "${FV_SWTPM_PORT:-}" ] || fail "swtpm_restart before swtpm_start"
	fv_swtpm_kill
	local attempt
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		fv_swtpm_launch "$FV_SWTPM_PORT" && return 0
		fv_swtpm_kill
		sleep 0.2
	done
	fail "swtpm did not restart on port $FV_SWTPM_PORT: $(cat "$FV_SWTPM_DIR/swtpm.err" 2>/dev/null)"
}
