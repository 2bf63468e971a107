/*
 * What a network worker may do once it has dropped everything: the seccomp
 * allowlist (one table, below), the user switch, and closing inherited
 * descriptors. A system call outside the table kills the worker; the
 * supervisor logs it and starts a new one.
 *
 * FLOWVAULT_SANDBOX_DEBUG=1 in the environment makes a forbidden call raise
 * SIGSYS instead, and the worker reports the call's name before it exits:
 * for finding what a new library version needs.
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <seccomp.h>

#include "../serve_internal.h"

/* Allowed whatever their arguments. */
static const char *const allowed[] = {
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* threads (libmicrohttpd's pool, libcurl) and their synchronisation */
	"clone", "clone3", "set_robust_list", "rseq", "futex", "set_tid_address",
	"sched_yield", "sched_getaffinity", "gettid", "getpid", "exit", "exit_group",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "tgkill",
	"restart_syscall",
	"membarrier",
	/* time */
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday",
	/* descriptors the worker already has, or makes without a path */
	"read", "write", "readv", "writev", "close", "fcntl", "fstat", "newfstatat", "lseek",
	"pipe2", "eventfd2", "dup", "dup3",
	"poll", "ppoll", "select", "pselect6",
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
	/* sockets: accept on the inherited listeners, channels, the upstream and
	 * serve.media's CDN downloads (addresses from the resolver process, CA
	 * bundle in memory: media needs no call beyond the upstream's) */
	"accept", "accept4", "connect", "shutdown", "bind", "listen",
	"recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "sendmmsg",
	"setsockopt", "getsockopt", "getsockname", "getpeername",
	/* randomness for TLS and JSON hashing */
	"getrandom",
	"getuid", "geteuid", "getgid", "getegid", "getppid",
	NULL
};

static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
	char line[160];
	char *name;
	int n;

	(void)sig;
	(void)ctx;
	name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, info->si_syscall);
	n = snprintf(line, sizeof(line),
	             "flowvault: error: serve: worker %d: forbidden system call %s (%d)\n",
	             (int)getpid(), name ? name : "?", info->si_syscall);
	if (n > 0 && write(2, line, (size_t)n) < 0)
		_exit(70);
	{
		void *frames[32];

		backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
	}
	_exit(70);
}

/* Argument `arg` equals `value` (SCMP_A0 and friends leave a field out). */
static struct scmp_arg_cmp arg_eq(unsigned int arg, scmp_datum_t value)
{
	struct scmp_arg_cmp a;

	memset(&a, 0, sizeof(a));
	a.arg = arg;
	a.op = SCMP_CMP_EQ;
	a.datum_a = value;
	return a;
}

static int add(scmp_filter_ctx f, const char *name, unsigned int argc,
               const struct scmp_arg_cmp *args)
{
	int nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR)
		return 0; /* not on this architecture */
	return seccomp_rule_add_array(f, SCMP_ACT_ALLOW, nr, argc, args);
}

int fv__sandbox_enter(int debug)
{
	scmp_filter_ctx f;
	size_t i;
	int rc = 0;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return fv__error_set(FV_ERR_GENERIC, "serve: PR_SET_NO_NEW_PRIVS: %s",
		                     strerror(errno));
	if (debug) {
		struct sigaction sa;
		void *frame;

		backtrace(&frame, 1); /* loads libgcc_s now, while that is allowed */
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigsys;
		sa.sa_flags = SA_SIGINFO;
		sigaction(SIGSYS, &sa, NULL);
	}
	f = seccomp_init(debug ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
	if (!f)
		return fv__error_set(FV_ERR_GENERIC, "serve: seccomp_init failed");
	/* Every thread, libmicrohttpd's included, gets the filter. */
	seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	for (i = 0; allowed[i] && rc == 0; i++)
		rc = add(f, allowed[i], 0, NULL);
	/* socket(): the upstream (inet, inet6) and local pairs only. */
	if (rc == 0) {
		static const int families[] = { AF_INET, AF_INET6, AF_UNIX };

		for (i = 0; i < 3 && rc == 0; i++) {
			struct scmp_arg_cmp a = arg_eq(0, (scmp_datum_t)families[i]);

			rc = add(f, "socket", 1, &a);
		}
	}
	if (rc == 0) {
		struct scmp_arg_cmp a = arg_eq(0, AF_UNIX);

		rc = add(f, "socketpair", 1, &a);
	}
	/* ioctl(): non-blocking mode and bytes pending, nothing else. */
	if (rc == 0) {
		static const unsigned long requests[] = { FIONBIO, FIONREAD, TCGETS };

		for (i = 0; i < 3 && rc == 0; i++) {
			struct scmp_arg_cmp a = arg_eq(1, (scmp_datum_t)requests[i]);

			rc = add(f, "ioctl", 1, &a);
		}
	}
	/* prctl(): thread names only (libmicrohttpd names its threads). */
	if (rc == 0) {
		struct scmp_arg_cmp a = arg_eq(0, PR_SET_NAME);

		rc = add(f, "prctl", 1, &a);
	}
	if (rc == 0)
		rc = seccomp_load(f);
	seccomp_release(f);
	if (rc != 0)
		return fv__error_set(FV_ERR_GENERIC, "serve: cannot load the worker's seccomp "
		                     "filter: %s", strerror(-rc));
	return FV_OK;
}

int fv__sandbox_user(const char *name, uid_t *uid, gid_t *gid, char **used)
{
	const char *try[2] = { name ? name : SERVE_DEFAULT_USER, name ? NULL : SERVE_FALLBACK_USER };
	struct passwd *pw = NULL;
	size_t i;

	for (i = 0; i < 2 && !pw && try[i]; i++)
		pw = getpwnam(try[i]);
	if (!pw)
		return fv__error_set(FV_ERR_CONFIG,
			"serve.user: no user '%s'%s; create it (the flowvault package does: "
			"useradd --system flowvault) or name another", try[0],
			name ? "" : " nor 'nobody'");
	if (pw->pw_uid == 0 || pw->pw_gid == 0)
		return fv__error_set(FV_ERR_CONFIG,
			"serve.user: '%s' is root (uid or gid 0); network workers never run as root: "
			"name an unprivileged user", pw->pw_name);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (!(*used = strdup(pw->pw_name)))
		return fv__error_nomem();
	return FV_OK;
}

int fv__sandbox_drop(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0)
		return fv__error_set(FV_ERR_PERMISSION, "serve: cannot switch the worker to uid %u: %s",
		                     (unsigned int)uid, strerror(errno));
	/* Paranoia: the switch must not be undoable. */
	if (setresuid(0, 0, 0) == 0 || getuid() == 0 || geteuid() == 0)
		return fv__error_set(FV_ERR_PERMISSION, "serve: the worker could become root again");
	return FV_OK;
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

void fv__sandbox_close_fds(const int *keep, size_t count)
{
	int *sorted = malloc((count + 1) * sizeof(*sorted));
	unsigned int from = 3;
	size_t i;

	if (!sorted) {
		_exit(1); /* cannot prove which descriptors are left: do not run */
	}
	memcpy(sorted, keep, count * sizeof(*sorted));
	qsort(sorted, count, sizeof(*sorted), int_cmp);
	for (i = 0; i < count; i++) {
		if (sorted[i] < 3 || (unsigned int)sorted[i] < from) {
			continue;
		}
		if ((unsigned int)sorted[i] > from)
			close_range(from, (unsigned int)sorted[i] - 1, 0);
		from = (unsigned int)sorted[i] + 1;
	}
	close_range(from, ~0u, 0);
	free(sorted);
}
