# Shared helpers for flowvault's shell tests. Source it first:
#     . "$FV_SOURCE_DIR/tests/lib.sh"
# Each test runs in its own temporary directory ($T), removed on exit, and
# fails (exit 1) on the first broken expectation with a message saying what.
set -u

: "${FV_BUILD_DIR:?run through ctest, or set FV_BUILD_DIR}"
: "${FV_SOURCE_DIR:?run through ctest, or set FV_SOURCE_DIR}"
FV="$FV_BUILD_DIR/bin/flowvault"
VECTORS="$FV_SOURCE_DIR/tests/vectors"
T=$(mktemp -d "${TMPDIR:-/tmp}/fvtest.XXXXXX")
chmod 700 "$T"
# Do not let the user's own configuration leak into a test.
unset FLOWVAULT_CONFIG FLOWVAULT_PLUGIN_PATH
export XDG_CONFIG_HOME="$T/xdg"

fv_cleanup_hooks=()
# at_exit CMD...: run CMD when the test ends (services, temp tokens).
at_exit() { fv_cleanup_hooks+=("$*"); }
fv_cleanup() {
	local i
	for ((i = ${#fv_cleanup_hooks[@]} - 1; i >= 0; i--)); do
		eval "${fv_cleanup_hooks[$i]}" >/dev/null 2>&1 || true
	done
	rm -rf "$T"
	fv_release_ports
}
trap fv_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# run CMD...: run a command, keep its stdout in $OUT, stderr in $ERR and exit
# status in $RC (never aborts the test).
run() {
	set +e
	"$@" >"$T/.out" 2>"$T/.err"
	RC=$?
	set -e
	OUT=$(cat "$T/.out")
	ERR=$(cat "$T/.err")
}

# expect_rc N "what": the last run exited with N.
expect_rc() {
	[ "$RC" = "$1" ] || fail "$2: expected exit $1, got $RC
stdout: $OUT
stderr: $ERR"
}
# expect_out_has TEXT / expect_err_has TEXT: fixed-string match.
expect_out_has() {
	grep -qF -- "$1" <<<"$OUT" || fail "stdout lacks '$1'
stdout: $OUT
stderr: $ERR"
}
expect_err_has() {
	grep -qF -- "$1" <<<"$ERR" || fail "stderr lacks '$1'
stdout: $OUT
stderr: $ERR"
}
expect_not_has() { # expect_not_has TEXT FILE...
	local text=$1; shift
	! grep -qF -- "$text" "$@" 2>/dev/null || fail "'$text' found in $*"
}
expect_file_mode() { # expect_file_mode MODE FILE
	local m
	m=$(stat -c %a "$2")
	[ "$m" = "$1" ] || fail "$2 has mode $m, expected $1"
}

# free_port: a TCP port nobody listens on right now (loopback), reserved for
# this test until it ends: tests running at the same time (ctest -j) never get
# the same port, even while this one is not bound yet or between restarts.
# The system python starts fast; a version manager's shim may not.
PYTHON=$(command -v /usr/bin/python3 || command -v python3)
FV_PORTS_DIR="${TMPDIR:-/tmp}/flowvault-test-ports"
free_port() {
	"$PYTHON" - "$FV_PORTS_DIR" "$$" <<'PY'
import os, socket, sys
ports, owner = sys.argv[1], sys.argv[2]
try:  # shared by every user's tests, like /tmp
    os.mkdir(ports)
    os.chmod(ports, 0o1777)
except FileExistsError:
    pass
for _ in range(200):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    mark = os.path.join(ports, str(port))
    try:
        fd = os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:  # reserved: by a running test, or left by one that was killed
            os.kill(int(open(mark).read() or 0), 0)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            try:
                os.unlink(mark)
            except FileNotFoundError:
                pass
        except PermissionError:
            pass
        continue
    os.write(fd, owner.encode())
    os.close(fd)
    print(port)
    break
else:
    sys.exit("free_port: no free port that no other test holds")
PY
}
# fv_release_ports: give back the ports free_port reserved for this test.
fv_release_ports() {
	grep -lxF "$$" "$FV_PORTS_DIR"/* 2>/dev/null | xargs -r rm -f
	return 0
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local i
	for ((i = 0; i < ${2:-10} * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	fail "nothing listens on 127.0.0.1:$1 after ${2:-10}s"
}

# listening PORT: whether a socket listens on 127.0.0.1:PORT (of any process).
listening() {
	awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a && $4 == "0A" { f = 1 } END { exit !f }' /proc/net/tcp
}
# wait_port_free PORT [SECONDS]: until nothing listens on 127.0.0.1:PORT. A
# server's children share its listening sockets and may outlive it a moment.
wait_port_free() {
	local i
	for ((i = 0; i < ${2:-10} * 10; i++)); do
		listening "$1" || return 0
		sleep 0.1
	done
	fail "something still listens on 127.0.0.1:$1 after ${2:-10}s"
}

# A command failing under set -e would end the test without a word; say
# which one and where, so a failure seen only in CI can be read.
fv_on_error() {
	case $- in *e*) [ "$BASH_SUBSHELL" = 0 ] &&
		echo "FAIL: $2: '$3' exited $1 (set -e)" >&2 ;; esac
	return 0
}
trap 'fv_on_error $? "${BASH_SOURCE[0]##*/}:$LINENO" "$BASH_COMMAND"' ERR
set -eE
