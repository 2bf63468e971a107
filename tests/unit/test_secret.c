/*
 * Secret references: env:NAME, file:PATH (first line, line ending stripped,
 * never a file others can read), prompt (needs a terminal), and malformed
 * references refused without repeating them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <flowvault/flowvault.h>

#include "unit_util.h"

struct fixture {
	char *dir;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = ut_mkdtemp("secret");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ut_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Resolve `reference`; it must give exactly `expected`. */
static void expect_secret(const char *reference, const char *expected)
{
	char *secret = NULL;
	size_t len = 0;

	if (fv_secret_resolve(&secret, &len, reference, "unit test") != FV_OK)
		fail_msg("%s: %s", reference, fv_error_last()->message);
	assert_non_null(secret);
	assert_int_equal(len, strlen(expected));
	assert_string_equal(secret, expected);
	fv_secret_free(secret, len);
}

static void test_check_reference(void **state)
{
	static const char *const good[] = {
		"env:A", "env:_X1", "env:FLOWVAULT_PIN", "file:/x", "file:relative", "prompt",
	};
	static const char *const bad[] = {
		"", "env:", "env:1A", "env:A-B", "env:A B", "file:", "prompt:", "Prompt",
		"hunter2", "ENV:A", " env:A",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (fv_secret_check_reference(good[i]) != FV_OK)
			fail_msg("'%s' refused", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (fv_secret_check_reference(bad[i]) == FV_OK)
			fail_msg("'%s' accepted", bad[i]);
	assert_int_not_equal(fv_secret_check_reference(NULL), FV_OK);
}

static void test_env(void **state)
{
	char *secret = (char *)"untouched";
	size_t len = 0;

	(void)state;
	setenv("FV_UNIT_PIN", "s3cret value", 1);
	expect_secret("env:FV_UNIT_PIN", "s3cret value");
	/* Set but empty: an empty secret (an empty PIN is real), with a warning. */
	setenv("FV_UNIT_PIN", "", 1);
	assert_int_equal(fv_secret_resolve(&secret, &len, "env:FV_UNIT_PIN", "PIN"), FV_OK);
	assert_int_equal(len, 0);
	fv_secret_free(secret, len);
	secret = (char *)"untouched";

	unsetenv("FV_UNIT_UNSET");
	assert_int_equal(fv_secret_resolve(&secret, &len, "env:FV_UNIT_UNSET", "PIN for token 'x'"),
	                 FV_ERR_SECRET);
	assert_null(secret);
	assert_true(ut_has(fv_error_last()->message, "FV_UNIT_UNSET"));
	assert_true(ut_has(fv_error_last()->message, "PIN for token 'x'"));
	unsetenv("FV_UNIT_PIN");
}

static void test_file(void **state)
{
	struct fixture *f = *state;
	char path[1024], ref[1100];
	char *secret = NULL;
	size_t len = 0;

	ut_join(path, sizeof(path), f->dir, "pass");
	snprintf(ref, sizeof(ref), "file:%s", path);

	ut_write(path, "line one\n", 0600);
	expect_secret(ref, "line one");
	ut_write(path, "crlf\r\nsecond line\n", 0600);
	expect_secret(ref, "crlf");
	ut_write(path, "no newline", 0600);
	expect_secret(ref, "no newline");
	ut_write(path, "first\nsecond\n", 0600);
	expect_secret(ref, "first");
	ut_write(path, "  spaces kept  \n", 0600);
	expect_secret(ref, "  spaces kept  ");
	ut_write(path, "", 0600);
	expect_secret(ref, "");
	/* Group-readable is the operator's choice (a service group); others is not. */
	ut_write(path, "grouped\n", 0640);
	expect_secret(ref, "grouped");

	ut_write(path, "visible\n", 0604);
	assert_int_equal(fv_secret_resolve(&secret, &len, ref, "unit test"), FV_ERR_PERMISSION);
	assert_null(secret);
	assert_true(ut_has(fv_error_last()->message, path));
	assert_true(ut_has(fv_error_last()->message, "readable by others"));
	assert_true(ut_has(fv_error_last()->message, "chmod"));
	assert_null(strstr(fv_error_last()->message, "visible"));
	ut_write(path, "visible\n", 0644);
	assert_int_equal(fv_secret_resolve(&secret, &len, ref, "unit test"), FV_ERR_PERMISSION);

	ut_join(path, sizeof(path), f->dir, "does-not-exist");
	snprintf(ref, sizeof(ref), "file:%s", path);
	assert_int_equal(fv_secret_resolve(&secret, &len, ref, "unit test"), FV_ERR_SECRET);
	assert_true(ut_has(fv_error_last()->message, path));

	/* A directory is not a secret file. */
	snprintf(ref, sizeof(ref), "file:%s", f->dir);
	assert_int_equal(fv_secret_resolve(&secret, &len, ref, "unit test"), FV_ERR_SECRET);
}

/* "prompt" with no controlling terminal is an error that names the
 * alternatives, never a hang. Run in a child that has left its terminal. */
static void test_prompt_without_tty(void **state)
{
	int pipefd[2], status;
	char message[1024] = "";
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *secret = NULL;
		size_t len = 0;
		int rc;

		close(pipefd[0]);
		if (setsid() < 0)
			_exit(90);
		rc = fv_secret_resolve(&secret, &len, "prompt", "Passphrase for unit test");
		if (write(pipefd[1], fv_error_last()->message,
		          strlen(fv_error_last()->message)) < 0)
			_exit(91);
		_exit(rc == FV_ERR_SECRET ? 0 : rc == FV_OK ? 1 : 2);
	}
	close(pipefd[1]);
	n = read(pipefd[0], message, sizeof(message) - 1);
	close(pipefd[0]);
	message[n > 0 ? n : 0] = '\0';
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("prompt without a terminal: exit %d, message '%s'",
		         WEXITSTATUS(status), message);
	assert_true(ut_has(message, "terminal"));
	assert_true(ut_has(message, "env:NAME"));
	assert_true(ut_has(message, "Passphrase for unit test"));
}

static void test_malformed(void **state)
{
	static const char *const bad[] = { "hunter2-literal", "env:", "env:9X", "file:", "promptly" };
	char *secret = NULL;
	size_t len = 0, i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = fv_secret_resolve(&secret, &len, bad[i], "unit test");

		if (rc == FV_OK)
			fail_msg("'%s' resolved", bad[i]);
		assert_int_equal(rc, FV_ERR_CONFIG);
		assert_null(secret);
		assert_true(ut_has(fv_error_last()->message, "unit test"));
	}
	assert_int_equal(fv_secret_resolve(&secret, &len, "hunter2-literal", "unit test"),
	                 FV_ERR_CONFIG);
	assert_null(strstr(fv_error_last()->message, "hunter2"));
	assert_true(ut_has(fv_error_last()->message, "env:NAME"));
	assert_int_not_equal(fv_secret_resolve(NULL, &len, "env:X", "unit test"), FV_OK);
	assert_int_not_equal(fv_secret_resolve(&secret, &len, NULL, "unit test"), FV_OK);
	fv_secret_free(NULL, 0); /* allowed, like free(NULL) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_reference),
		cmocka_unit_test(test_env),
		cmocka_unit_test_setup_teardown(test_file, setup, teardown),
		cmocka_unit_test(test_prompt_without_tty),
		cmocka_unit_test(test_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
