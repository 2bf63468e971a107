/* Files that hold keys and configuration: created atomically, checked for safe ownership. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

void fv__sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	/* The data is safe already; only a crash could lose the new name. */
	if (fd < 0 || fsync(fd) != 0)
		fv__log(FV_LOG_WARNING, "could not sync directory '%s': %s", dir,
		        strerror(errno));
	if (fd >= 0)
		close(fd);
}

int fv__write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int fv__file_create(const char *path, const void *data, size_t len,
                    unsigned int mode)
{
	char dir_buf[PATH_MAX], base_buf[PATH_MAX], tmp[PATH_MAX + 16];
	const char *dir, *base;
	int fd, err;

	if (!path || !*path || strlen(path) >= PATH_MAX)
		return fv__error_set(FV_ERR_USAGE, "invalid file name");
	snprintf(dir_buf, sizeof(dir_buf), "%s", path);
	snprintf(base_buf, sizeof(base_buf), "%s", path);
	dir = dirname(dir_buf);
	base = basename(base_buf);

	if (access(path, F_OK) == 0)
		return fv__error_set(FV_ERR_EXISTS,
			"'%s' already exists; refusing to overwrite it (choose another path or move the old file away)",
			path);
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		return fv__error_set(err == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_BACKEND,
			"cannot create a file in '%s': %s (check that the directory exists and is writable)",
			dir, strerror(err));
	}
	if (fchmod(fd, mode & 07777) != 0 || fv__write_all(fd, data, len) != 0 ||
	    fsync(fd) != 0) {
		err = errno;
		close(fd);
		unlink(tmp);
		return fv__error_set(FV_ERR_BACKEND, "cannot write '%s': %s; nothing was written",
		                     path, strerror(err));
	}
	if (close(fd) != 0) {
		err = errno;
		unlink(tmp);
		return fv__error_set(FV_ERR_BACKEND, "cannot write '%s': %s; nothing was written",
		                     path, strerror(err));
	}
	/* link() fails if the name exists: no window in which another writer's
	 * file could be replaced, unlike rename(). */
	if (link(tmp, path) != 0) {
		err = errno;
		unlink(tmp);
		if (err == EEXIST)
			return fv__error_set(FV_ERR_EXISTS,
				"'%s' already exists; refusing to overwrite it", path);
		return fv__error_set(FV_ERR_BACKEND, "cannot create '%s': %s; nothing was written",
		                     path, strerror(err));
	}
	unlink(tmp);
	fv__sync_dir(dir);
	return FV_OK;
}

static int check_one(const char *path, const struct stat *st, const char *what,
                     const char *subject)
{
	uid_t me = geteuid();

	if (st->st_uid != 0 && st->st_uid != me)
		return fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': %s is owned by uid %u, not by root or you (uid %u); fix with chown",
			what, subject, path, (unsigned)st->st_uid, (unsigned)me);
	/* A root-owned sticky directory (/tmp) lets nobody else replace our entries. */
	if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX) && st->st_uid == 0)
		return FV_OK;
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': %s is writable by %s; fix with chmod go-w '%s'",
			what, subject, path,
			(st->st_mode & S_IWOTH) ? "others" : "its group", path);
	return FV_OK;
}

int fv__path_check_safe(const char *path, const char *what)
{
	char real[PATH_MAX];
	struct stat st;
	char *slash;
	int rc;

	if (!realpath(path, real))
		return fv__error_set(errno == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_PERMISSION,
		                     "%s '%s': %s", what, path, strerror(errno));
	if (stat(real, &st) != 0)
		return fv__error_set(FV_ERR_PERMISSION, "%s '%s': %s", what, path,
		                     strerror(errno));
	if ((rc = check_one(real, &st, what, path)) != FV_OK)
		return rc;
	/* Every directory above it: whoever can write one can swap the file. */
	while ((slash = strrchr(real, '/')) != NULL) {
		if (slash == real)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(real, &st) != 0)
			return fv__error_set(FV_ERR_PERMISSION, "%s '%s': %s: %s", what,
			                     path, real, strerror(errno));
		if ((rc = check_one(real, &st, what, path)) != FV_OK)
			return rc;
		if (strcmp(real, "/") == 0)
			break;
	}
	return FV_OK;
}

/* Check each directory above `path` (absolute), lexically as written: the
 * directories a name is looked up in. */
static int check_parents(const char *path, const char *what, const char *subject)
{
	char dir[PATH_MAX];
	struct stat st;
	char *slash;
	int rc;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return fv__error_set(FV_ERR_PERMISSION, "%s '%s': path too long", what, subject);
	while ((slash = strrchr(dir, '/')) != NULL) {
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(dir, &st) != 0)
			return fv__error_set(FV_ERR_PERMISSION, "%s '%s': %s: %s", what, subject,
			                     dir, strerror(errno));
		if ((rc = check_one(dir, &st, what, subject)) != FV_OK)
			return rc;
		if (strcmp(dir, "/") == 0)
			break;
	}
	return FV_OK;
}

static const char *file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "a device";
	return "not a regular file";
}

/* `path` made absolute against the current directory, lexically (the
 * directories the name is looked up in, symlinks not followed). */
static int absolute_name(char *buf, size_t len, const char *path)
{
	size_t cwd_len;

	if (path[0] == '/')
		return snprintf(buf, len, "%s", path) < (int)len ? 0 : -1;
	if (!getcwd(buf, len))
		return -1;
	cwd_len = strlen(buf);
	if (snprintf(buf + cwd_len, len - cwd_len, "/%s", path) >= (int)(len - cwd_len))
		return -1;
	return 0;
}

int fv__file_open_checked(const char *path, const char *what, int *fd_out)
{
	char given[PATH_MAX], resolved[PATH_MAX], proc[FV_HOST_FD_PATH_MAX];
	struct stat st, link_st;
	ssize_t n;
	int fd, rc, err;

	if (!fd_out || !path || !*path || !what)
		return fv__error_set(FV_ERR_USAGE, "file_open_checked: missing argument");
	*fd_out = -1;
	/* Non-blocking: a FIFO put in its place must not hang the process. No
	 * O_NOFOLLOW: a link is accepted when the directories it sits in and
	 * those of its target are safe (checked below), as with secrets mounted
	 * through symlinks. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		if (err == ENOENT)
			return fv__error_set(FV_ERR_NOT_FOUND,
				"%s '%s' does not exist; check the path", what, path);
		return fv__error_set(FV_ERR_PERMISSION, "%s '%s': cannot open it: %s", what, path,
		                     strerror(err));
	}
	/* Everything below is checked on the open file, so that what was
	 * checked is what is read or loaded, whatever happens to the name. */
	if (fstat(fd, &st) != 0) {
		err = errno;
		close(fd);
		return fv__error_set(FV_ERR_PERMISSION, "%s '%s': %s", what, path, strerror(err));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': is %s, not a regular file; point the configuration at the file itself",
			what, path, file_kind(st.st_mode));
	}
	if (st.st_nlink == 0) {
		rc = fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': was removed while it was being opened; check who else writes there",
			what, path);
		goto fail;
	}
	if ((rc = check_one(path, &st, what, path)) != FV_OK)
		goto fail;
	/* The directories of the name as given (a link in a directory others
	 * can write could be pointed elsewhere later)... */
	if (absolute_name(given, sizeof(given), path) != 0) {
		rc = fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': cannot make the path absolute (path too long or the current "
			"directory is gone); give an absolute path", what, path);
		goto fail;
	}
	if ((rc = check_parents(given, what, path)) != FV_OK)
		goto fail;
	/* ...and a link itself must belong to root or us: in a sticky directory
	 * (/tmp) another user's link is theirs to re-point. */
	if (lstat(path, &link_st) == 0 && S_ISLNK(link_st.st_mode) &&
	    link_st.st_uid != 0 && link_st.st_uid != geteuid()) {
		rc = fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': the link is owned by uid %u, not by root or you (uid %u); "
			"replace it with a link of your own", what, path,
			(unsigned)link_st.st_uid, (unsigned)geteuid());
		goto fail;
	}
	/* ...and of the file actually opened, wherever links led. */
	fv_host_fd_path(proc, fd);
	n = readlink(proc, resolved, sizeof(resolved) - 1);
	if (n <= 0 || resolved[0] != '/') {
		rc = fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': cannot tell where the opened file is (is /proc mounted?)", what, path);
		goto fail;
	}
	resolved[n] = '\0';
	if ((rc = check_parents(resolved, what, path)) != FV_OK)
		goto fail;
	*fd_out = fd;
	return FV_OK;
fail:
	close(fd);
	return rc;
}

int fv__fd_path(int fd, char **out)
{
	char proc[FV_HOST_FD_PATH_MAX], buf[PATH_MAX];
	ssize_t n;

	fv_host_fd_path(proc, fd);
	n = readlink(proc, buf, sizeof(buf) - 1);
	if (n <= 0 || buf[0] != '/')
		return fv__error_set(FV_ERR_PERMISSION,
			"cannot tell where an opened file is (is /proc mounted?)");
	buf[n] = '\0';
	*out = strdup(buf);
	return *out ? FV_OK : fv__error_nomem();
}

int fv__fd_read(int fd, char **out, size_t *out_len, const char *name, size_t max_len)
{
	struct stat st;
	char *buf;
	size_t used = 0;

	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return fv__error_set(FV_ERR_USAGE, "'%s' is not a regular file", name);
	if ((size_t)st.st_size > max_len)
		return fv__error_set(FV_ERR_USAGE, "'%s' is larger than %zu bytes", name,
		                     max_len);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return fv__error_nomem();
	while (used < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t)st.st_size - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			free(buf);
			return fv__error_set(FV_ERR_PERMISSION, "cannot read '%s': %s", name,
			                     strerror(err));
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	*out = buf;
	if (out_len)
		*out_len = used;
	return FV_OK;
}

int fv__file_read(char **out, size_t *out_len, const char *path, size_t max_len)
{
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return fv__error_set(errno == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_PERMISSION,
		                     "cannot open '%s': %s", path, strerror(errno));
	rc = fv__fd_read(fd, out, out_len, path, max_len);
	close(fd);
	return rc;
}
