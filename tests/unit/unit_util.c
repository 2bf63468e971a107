#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit_util.h"

char *ut_mkdtemp(const char *tag)
{
	const char *tmp = getenv("TMPDIR");
	char *path;

	if (asprintf(&path, "%s/fvunit-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp", tag) < 0)
		fail_msg("out of memory");
	if (!mkdtemp(path))
		fail_msg("mkdtemp %s: %s", path, strerror(errno));
	return path;
}

void ut_rmtree(const char *path)
{
	char *cmd;

	if (!path || asprintf(&cmd, "rm -rf '%s'", path) < 0)
		return;
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", path);
	free(cmd);
}

void ut_join(char *buf, size_t len, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len)
		fail_msg("path too long: %s/%s", dir, name);
}

void ut_write(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = strlen(text);

	if (fd < 0)
		fail_msg("create %s: %s", path, strerror(errno));
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

void ut_copy(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ssize_t n;

	if (in < 0 || out < 0)
		fail_msg("copy %s to %s: %s", from, to, strerror(errno));
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	assert_int_equal(fchmod(out, mode), 0);
	close(in);
	assert_int_equal(close(out), 0);
}

void ut_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, 0700) != 0)
		fail_msg("mkdir %s: %s", path, strerror(errno));
	assert_int_equal(chmod(path, mode), 0);
}

void ut_isolate_env(const char *dir)
{
	char buf[4096];

	unsetenv("FLOWVAULT_CONFIG");
	unsetenv("FLOWVAULT_PLUGIN_PATH");
	ut_join(buf, sizeof(buf), dir, "xdg");
	setenv("XDG_CONFIG_HOME", buf, 1);
	ut_join(buf, sizeof(buf), dir, "home");
	setenv("HOME", buf, 1);
}

int ut_has(const char *haystack, const char *needle)
{
	if (haystack && needle && strstr(haystack, needle))
		return 1;
	print_error("expected \"%s\" in \"%s\"\n", needle ? needle : "(null)",
	            haystack ? haystack : "(null)");
	return 0;
}
