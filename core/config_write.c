/*
 * Rewriting the configuration file (flowvault rotate). The new text is
 * checked as a whole configuration before anything touches the disk, then
 * replaces the old file atomically, so a reader sees either the old file or
 * the new one, and a crash leaves one of the two. A configuration that is a
 * symbolic link is written through to the file it resolves to, in that
 * file's directory: the link stays a link (a rename over the link would
 * replace it with a file, and the next edit of the link's target would not
 * be seen).
 */
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

int fv__config_write(const char *given, json_object *root)
{
	char dir_buf[PATH_MAX], base_buf[PATH_MAX], tmp[PATH_MAX + 16] = "", target[PATH_MAX];
	const char *path = given;
	char *text = NULL, *back = NULL;
	const char *json, *dir, *base;
	fv_context *check = NULL;
	size_t len, back_len = 0;
	struct stat st;
	int fd = -1, rc, err;

	if (!path || strlen(path) >= PATH_MAX)
		return fv__error_set(FV_ERR_USAGE, "no configuration file to rewrite");
	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		if (!realpath(given, target))
			return fv__error_set(FV_ERR_CONFIG, "configuration '%s' is a symbolic link that "
			                     "does not resolve: %s; nothing was changed", given,
			                     strerror(errno));
		fv__log(FV_LOG_INFO, "configuration '%s' is a symbolic link: rewriting its target "
		        "'%s'", given, target);
		path = target;
	}
	json = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
	                                            JSON_C_TO_STRING_SPACED |
	                                            JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(json);
	if (!(text = malloc(len + 2)))
		return fv__error_nomem();
	memcpy(text, json, len);
	text[len++] = '\n';
	text[len] = '\0';

	/* The whole new configuration must be valid before it goes anywhere. */
	if ((rc = fv__context_open_text(&check, text, len, given)) != FV_OK) {
		fv__error_prefix("refusing to rewrite the configuration (the new text would not "
		                 "be valid; nothing was changed)");
		goto out;
	}
	fv_context_free(check);
	check = NULL;

	if (stat(path, &st) != 0) {
		rc = fv__error_set(FV_ERR_CONFIG, "configuration file '%s': %s", path,
		                   strerror(errno));
		goto out;
	}
	snprintf(dir_buf, sizeof(dir_buf), "%s", path);
	snprintf(base_buf, sizeof(base_buf), "%s", path);
	dir = dirname(dir_buf);
	base = basename(base_buf);
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = fv__error_set(FV_ERR_PERMISSION,
			"cannot create a temporary file in '%s': %s (the configuration's directory "
			"must be writable to rewrite it)", dir, strerror(errno));
		goto out;
	}
	/* Same mode and, when we can, the same owner as the file it replaces. */
	if (fchmod(fd, st.st_mode & 07777) != 0 ||
	    (geteuid() == 0 && (st.st_uid != 0 || st.st_gid != 0) &&
	     fchown(fd, st.st_uid, st.st_gid) != 0) ||
	    fv__write_all(fd, text, len) != 0 || fsync(fd) != 0) {
		err = errno;
		rc = fv__error_set(FV_ERR_BACKEND, "cannot write '%s': %s; the configuration is "
		                   "unchanged", tmp, strerror(err));
		goto out;
	}
	close(fd);
	fd = -1;
	/* Read back what reached the file before it replaces the old one. */
	if (fv__file_read(&back, &back_len, tmp, len + 1) != FV_OK ||
	    back_len != len || memcmp(back, text, len) != 0) {
		rc = fv__error_set(FV_ERR_BACKEND,
			"the temporary configuration '%s' does not read back as written; the "
			"configuration is unchanged", tmp);
		goto out;
	}
	if (rename(tmp, path) != 0) {
		err = errno;
		rc = fv__error_set(FV_ERR_BACKEND, "cannot replace '%s': %s; it is unchanged", path,
		                   strerror(err));
		goto out;
	}
	tmp[0] = '\0';
	fv__sync_dir(dir);
	rc = FV_OK;
out:
	if (fd >= 0)
		close(fd);
	if (rc != FV_OK && tmp[0] && strstr(tmp, "/."))
		unlink(tmp);
	free(back);
	free(text);
	return rc;
}
