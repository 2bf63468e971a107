/*
 * fv__file_open_checked, the one primitive for "open a file we are about to
 * trust" (plugins, modules, the configuration, secret files): what it
 * refuses, what it accepts, and that the descriptor it returns is the file
 * it checked. Built from core/fileutil.c directly: the function is internal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "unit_util.h"

struct fixture {
	char *dir;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = ut_mkdtemp("fileutil");
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

/* Open `path`: FV_OK and a descriptor of a file whose first line is `want`,
 * or the expected status with a message containing `why` and the path. */
static void expect_open(const char *path, int status, const char *want_or_why)
{
	char buf[64] = "";
	int fd = -1, rc;
	ssize_t n;

	rc = fv__file_open_checked(path, "test file", &fd);
	if (rc != status)
		fail_msg("%s: status %d, expected %d (%s)", path, rc, status,
		         fv_error_last()->message);
	if (status != FV_OK) {
		assert_int_equal(fd, -1);
		assert_true(ut_has(fv_error_last()->message, "test file"));
		assert_true(ut_has(fv_error_last()->message, want_or_why));
		return;
	}
	assert_true(fd >= 0);
	/* Descriptor flags: close-on-exec, read-only. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	assert_string_equal(buf, want_or_why);
	close(fd);
}

static void test_regular_file(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];

	ut_join(path, sizeof(path), f->dir, "good");
	ut_write(path, "good\n", 0600);
	expect_open(path, FV_OK, "good");
	/* Readable by all is fine for code and configuration... */
	chmod(path, 0644);
	expect_open(path, FV_OK, "good");
	/* ...writable by group or others is not. */
	chmod(path, 0620);
	expect_open(path, FV_ERR_PERMISSION, "writable by its group");
	chmod(path, 0602);
	expect_open(path, FV_ERR_PERMISSION, "chmod go-w");
	chmod(path, 0600);
	ut_join(path, sizeof(path), f->dir, "missing");
	expect_open(path, FV_ERR_NOT_FOUND, "does not exist");
}

static void test_relative_path(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX], cwd[PATH_MAX];

	ut_join(path, sizeof(path), f->dir, "rel");
	ut_write(path, "relative\n", 0600);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	expect_open("rel", FV_OK, "relative");
	expect_open("./rel", FV_OK, "relative");
	assert_int_equal(chdir(cwd), 0);
}

/* Not regular files: refused at once, never waited on (a FIFO would block
 * a blocking open until a writer comes). */
static void test_not_regular(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];

	ut_join(path, sizeof(path), f->dir, "fifo");
	assert_int_equal(mkfifo(path, 0600), 0);
	expect_open(path, FV_ERR_PERMISSION, "a FIFO");
	expect_open(f->dir, FV_ERR_PERMISSION, "a directory");
	expect_open("/dev/null", FV_ERR_PERMISSION, "a device");
}

static void test_unsafe_directories(void **state)
{
	struct fixture *f = *state;
	char ww[PATH_MAX], sticky[PATH_MAX], path[PATH_MAX];

	ut_join(ww, sizeof(ww), f->dir, "ww");
	ut_mkdir(ww, 0777);
	ut_join(path, sizeof(path), ww, "file");
	ut_write(path, "in ww\n", 0600);
	expect_open(path, FV_ERR_PERMISSION, "writable by others");
	chmod(ww, 0770);
	expect_open(path, FV_ERR_PERMISSION, "writable by its group");
	/* Sticky and owned by root (as /tmp): nobody else can replace our entry. */
	ut_join(sticky, sizeof(sticky), f->dir, "sticky");
	ut_mkdir(sticky, 01777);
	ut_join(path, sizeof(path), sticky, "file");
	ut_write(path, "in sticky\n", 0600);
	if (geteuid() == 0)
		expect_open(path, FV_OK, "in sticky");
	else
		expect_open(path, FV_ERR_PERMISSION, "writable by others");
}

/* A link is followed when the directories of the link and of its target are
 * safe; a link in a directory others can write, or to a target in one, is
 * refused, whatever the target is. */
static void test_symlinks(void **state)
{
	struct fixture *f = *state;
	char safe[PATH_MAX], ww[PATH_MAX], good[PATH_MAX], bad[PATH_MAX], link[PATH_MAX];

	ut_join(safe, sizeof(safe), f->dir, "safe");
	ut_mkdir(safe, 0700);
	ut_join(ww, sizeof(ww), f->dir, "ww");
	ut_mkdir(ww, 0700);
	ut_join(good, sizeof(good), safe, "target");
	ut_write(good, "target\n", 0600);
	ut_join(bad, sizeof(bad), ww, "target");
	ut_write(bad, "ww target\n", 0600);

	ut_join(link, sizeof(link), safe, "link");
	assert_int_equal(symlink(good, link), 0);
	expect_open(link, FV_OK, "target");
	/* A relative link target as well. */
	unlink(link);
	assert_int_equal(symlink("target", link), 0);
	expect_open(link, FV_OK, "target");

	/* The link in a directory others can write: refused (the issue's
	 * ww/pem.so pointing at the real plugin). */
	ut_join(link, sizeof(link), ww, "link");
	assert_int_equal(symlink(good, link), 0);
	chmod(ww, 0777);
	expect_open(link, FV_ERR_PERMISSION, ww);
	/* A safe link to a target in a directory others can write. */
	ut_join(link, sizeof(link), safe, "to-ww");
	assert_int_equal(symlink(bad, link), 0);
	expect_open(link, FV_ERR_PERMISSION, ww);
	chmod(ww, 0700);
	expect_open(link, FV_OK, "ww target");

	/* A directory of the path that is a link into an unsafe directory. */
	ut_join(link, sizeof(link), safe, "dirlink");
	assert_int_equal(symlink(ww, link), 0);
	chmod(ww, 0777);
	strncat(link, "/target", sizeof(link) - strlen(link) - 1);
	expect_open(link, FV_ERR_PERMISSION, "writable by others");
	chmod(ww, 0700);
}

/* Files, directories and links of another user are refused (needs root to
 * create them; skipped otherwise). */
static void test_other_owner(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX], dir[PATH_MAX], link[PATH_MAX], good[PATH_MAX];
	struct passwd *nobody = getpwnam("nobody");

	if (geteuid() != 0 || !nobody) {
		skip();
		return;
	}
	ut_join(path, sizeof(path), f->dir, "theirs");
	ut_write(path, "theirs\n", 0600);
	assert_int_equal(chown(path, nobody->pw_uid, nobody->pw_gid), 0);
	expect_open(path, FV_ERR_PERMISSION, "owned by uid");

	ut_join(dir, sizeof(dir), f->dir, "their-dir");
	ut_mkdir(dir, 0755);
	ut_join(path, sizeof(path), dir, "mine");
	ut_write(path, "mine\n", 0600);
	assert_int_equal(chown(dir, nobody->pw_uid, nobody->pw_gid), 0);
	expect_open(path, FV_ERR_PERMISSION, "chown");

	/* Their link, to our good file, in our directory. */
	ut_join(good, sizeof(good), f->dir, "good");
	ut_write(good, "good\n", 0600);
	ut_join(link, sizeof(link), f->dir, "their-link");
	assert_int_equal(symlink(good, link), 0);
	assert_int_equal(lchown(link, nobody->pw_uid, nobody->pw_gid), 0);
	expect_open(link, FV_ERR_PERMISSION, "owned by uid");
}

/* The descriptor stays the checked file when the name changes afterwards. */
static void test_descriptor_is_checked_file(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX], other[PATH_MAX], buf[32] = "";
	int fd = -1;
	ssize_t n;

	ut_join(path, sizeof(path), f->dir, "swap");
	ut_join(other, sizeof(other), f->dir, "other");
	ut_write(path, "checked\n", 0600);
	ut_write(other, "swapped\n", 0600);
	assert_int_equal(fv__file_open_checked(path, "test file", &fd), FV_OK);
	assert_int_equal(rename(other, path), 0);
	n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n > 0);
	assert_memory_equal(buf, "checked\n", 8);
	close(fd);
}

static void test_bad_arguments(void **state)
{
	int fd = 7;

	(void)state;
	assert_int_equal(fv__file_open_checked(NULL, "x", &fd), FV_ERR_USAGE);
	assert_int_equal(fv__file_open_checked("", "x", &fd), FV_ERR_USAGE);
	assert_int_equal(fv__file_open_checked("/etc/passwd", NULL, &fd), FV_ERR_USAGE);
	assert_int_equal(fv__file_open_checked("/etc/passwd", "x", NULL), FV_ERR_USAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_regular_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_regular, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_directories, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlinks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_descriptor_is_checked_file, setup, teardown),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
