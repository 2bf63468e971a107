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

int fv__file_open_checked(const char *path, const char *what, int *fd_out)
{
	char given[PATH_MAX], resolved[PATH_MAX], proc[FV_HOST_FD_PATH_MAX];
	struct stat st;
	ssize_t n;
	int fd, rc, err;

	if (!fd_out || !path || !*path || !what)
		return fv__error_set(FV_ERR_USAGE, "file_open_checked: missing argument");
	*fd_out = -1;
	/* Non-blocking: a FIFO put in its place must not hang the process. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		return fv__error_set(err == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_PERMISSION,
		                     "%s '%s': %s", what, path, strerror(err));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fv__error_set(FV_ERR_PERMISSION,
			"%s '%s': not a regular file; point the configuration at the file itself",
			what, path);
	}
	if ((rc = check_one(path, &st, what, path)) != FV_OK)
		goto fail;
	/* The directories of the name as given... */
	if (path[0] == '/') {
		snprintf(given, sizeof(given), "%s", path);
	} else {
		if (!getcwd(given, sizeof(given)) ||
		    strlen(given) + 1 + strlen(path) >= sizeof(given)) {
			rc = fv__error_set(FV_ERR_PERMISSION, "%s '%s': cannot make the path absolute",
			                   what, path);
			goto fail;
		}
		strcat(given, "/");
		strcat(given, path);
	}
	if ((rc = check_parents(given, what, path)) != FV_OK)
		goto fail;
	/* ...and of the file actually opened, wherever links led. */
	fv_host_fd_path(proc, fd);
	n = readlink(proc, resolved, sizeof(resolved) - 1);
	if (n <= 0) {
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

int fv__file_read(char **out, size_t *out_len, const char *path, size_t max_len)
{
	struct stat st;
	char *buf;
	size_t used = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fv__error_set(errno == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_PERMISSION,
		                     "cannot open '%s': %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fv__error_set(FV_ERR_USAGE, "'%s' is not a regular file", path);
	}
	if ((size_t)st.st_size > max_len) {
		close(fd);
		return fv__error_set(FV_ERR_USAGE, "'%s' is larger than %zu bytes", path,
		                     max_len);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return fv__error_nomem();
	}
	while (used < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t)st.st_size - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	*out = buf;
	if (out_len)
		*out_len = used;
	return FV_OK;
}
