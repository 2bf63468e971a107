/*
 * The resolver process answers a worker only for hosts in that worker's
 * serve.media.allowed_hosts: checked here on the real process, as a
 * compromised worker would ask it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "serve/media.h"

static int ctl = -1;
static pid_t pid;

static int start(void **state)
{
	int pair[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pair[0]);
		fv__resolver_main(pair[1]);
	}
	close(pair[1]);
	ctl = pair[0];
	return 0;
}

static int stop(void **state)
{
	int status = -1;

	(void)state;
	close(ctl); /* the resolver exits when its supervisor is gone */
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return 0;
}

/* A worker's connection with `hosts` ("" for the default allowlist). */
static int connect_worker(const char *hosts)
{
	struct ctl_msg msg;
	int pair[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
	memset(&msg, 0, sizeof(msg));
	msg.type = CTL_RESOLVER;
	msg.count = 1;
	snprintf(msg.text, sizeof(msg.text), "%s", hosts);
	assert_int_equal(fv__ctl_send(ctl, &msg, &pair[1], 1), FV_OK);
	close(pair[1]);
	return pair[0];
}

static void ask(int fd, const char *host, struct resolve_reply *r)
{
	static uint32_t id;
	struct resolve_request q;

	memset(&q, 0, sizeof(q));
	q.id = ++id;
	snprintf(q.host, sizeof(q.host), "%s", host);
	snprintf(q.port, sizeof(q.port), "443");
	assert_int_equal(send(fd, &q, sizeof(q), 0), (ssize_t)sizeof(q));
	assert_int_equal(recv(fd, r, sizeof(*r), 0), (ssize_t)sizeof(*r));
	assert_int_equal(r->id, q.id);
}

static void test_allowed_host_resolves(void **state)
{
	struct resolve_reply r;
	int fd = connect_worker("localhost\n.example.invalid\n"), found = 0;
	uint32_t i;

	(void)state;
	ask(fd, "localhost", &r);
	assert_int_equal(r.status, FV_OK);
	assert_true(r.count >= 1 && r.count <= RESOLVE_MAX_ADDRS);
	for (i = 0; i < r.count; i++)
		found |= strcmp(r.addrs[i], "127.0.0.1") == 0 || strcmp(r.addrs[i], "[::1]") == 0;
	assert_true(found);
	close(fd);
}

static void test_other_hosts_refused_unlooked(void **state)
{
	static const char *const refused[] = {
		"example.com", "localhost.evil", "evil-localhost", "example.invalid", "127.0.0.1", ""
	};
	struct resolve_reply r;
	int fd = connect_worker("localhost\n.example.invalid\n");
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		ask(fd, refused[i], &r);
		assert_int_equal(r.status, FV_ERR_DECRYPT);
		assert_int_equal(r.count, 0);
		assert_non_null(strstr(r.text, "not in serve.media.allowed_hosts"));
	}
	close(fd);
}

static void test_default_allowlist_is_the_whatsapp_cdn(void **state)
{
	struct resolve_reply r;
	int fd = connect_worker("");

	(void)state;
	ask(fd, "localhost", &r);
	assert_int_equal(r.status, FV_ERR_DECRYPT);
	close(fd);
}

/* Each connection keeps its own list: a worker of another generation
 * cannot borrow a wider one. */
static void test_lists_are_per_connection(void **state)
{
	struct resolve_reply r;
	int narrow = connect_worker("cdn.example.invalid\n"), wide = connect_worker("localhost\n");

	(void)state;
	ask(narrow, "localhost", &r);
	assert_int_equal(r.status, FV_ERR_DECRYPT);
	ask(wide, "localhost", &r);
	assert_int_equal(r.status, FV_OK);
	close(narrow);
	close(wide);
}

static void test_malformed_request_closes(void **state)
{
	struct resolve_reply r;
	char junk[7] = "abcdef";
	int fd = connect_worker("localhost\n"), other = connect_worker("localhost\n");

	(void)state;
	assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	assert_int_equal(recv(fd, &r, sizeof(r), 0), 0);
	/* The resolver goes on serving the others. */
	ask(other, "localhost", &r);
	assert_int_equal(r.status, FV_OK);
	close(fd);
	close(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_allowed_host_resolves),
		cmocka_unit_test(test_other_hosts_refused_unlooked),
		cmocka_unit_test(test_default_allowlist_is_the_whatsapp_cdn),
		cmocka_unit_test(test_lists_are_per_connection),
		cmocka_unit_test(test_malformed_request_closes),
	};

	return cmocka_run_group_tests(tests, start, stop);
}
