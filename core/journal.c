/*
 * The rotation journal: an append-only file of JSON objects, one a line.
 * Each line is written with one write() on an O_APPEND descriptor and
 * fsync'd before the step it records is considered done, so after a crash
 * the journal holds every finished step and at most one torn last line.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define JOURNAL_MAX_BYTES (64 * 1024 * 1024)

struct fv__journal {
	int fd;
	char *path;
};

static void sync_parent_dir(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	fv__sync_dir(dirname(buf));
}

int fv__journal_open(struct fv__journal **out, const char *path)
{
	struct fv__journal *j;
	struct stat st;
	int created, err;

	*out = NULL;
	j = calloc(1, sizeof(*j));
	if (!j || !(j->path = strdup(path))) {
		free(j);
		return fv__error_nomem();
	}
	created = access(path, F_OK) != 0;
	j->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (j->fd < 0) {
		err = errno;
		free(j->path);
		free(j);
		return fv__error_set(FV_ERR_PERMISSION,
			"cannot open the rotation journal '%s': %s (the directory of the "
			"configuration file must be writable)", path, strerror(err));
	}
	if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
		err = errno;
		fv__journal_close(j);
		if (err == EWOULDBLOCK)
			return fv__error_set(FV_ERR_GENERIC,
				"another flowvault rotate is working on this configuration (it holds "
				"the lock on '%s'); wait for it to end", path);
		return fv__error_set(FV_ERR_PERMISSION, "cannot lock '%s': %s", path,
		                     strerror(err));
	}
	if (created)
		sync_parent_dir(path);
	/* A line torn by a crash must not swallow the next record: end it. */
	if (fstat(j->fd, &st) == 0 && st.st_size > 0) {
		int rfd = open(path, O_RDONLY | O_CLOEXEC);
		char last = '\n';

		if (rfd >= 0) {
			if (pread(rfd, &last, 1, st.st_size - 1) != 1)
				last = '\n';
			close(rfd);
		}
		if (last != '\n' && (fv__write_all(j->fd, "\n", 1) != 0 || fsync(j->fd) != 0)) {
			err = errno;
			fv__journal_close(j);
			return fv__error_set(FV_ERR_BACKEND, "cannot write the rotation journal '%s': %s",
			                     path, strerror(err));
		}
	}
	*out = j;
	return FV_OK;
}

int fv__journal_append(struct fv__journal *j, json_object *record)
{
	const char *text;
	char *line;
	size_t len;
	int rc = FV_OK, err;

	if (!record)
		return fv__error_nomem();
	if (!json_object_object_get_ex(record, "time", NULL))
		json_object_object_add(record, "time", json_object_new_int64((int64_t)time(NULL)));
	text = json_object_to_json_string_ext(record, JSON_C_TO_STRING_PLAIN |
	                                              JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	line = malloc(len + 2);
	if (!line) {
		json_object_put(record);
		return fv__error_nomem();
	}
	memcpy(line, text, len);
	line[len++] = '\n';
	/* One write: with O_APPEND the line lands whole or, after a crash, torn
	 * at the end where the reader ignores it. */
	if (fv__write_all(j->fd, line, len) != 0 || fsync(j->fd) != 0) {
		err = errno;
		rc = fv__error_set(FV_ERR_BACKEND,
			"cannot write the rotation journal '%s': %s; nothing after the last recorded "
			"step was done (free some space, then run flowvault rotate --resume)",
			j->path, strerror(err));
	}
	free(line);
	json_object_put(record);
	return rc;
}

void fv__journal_close(struct fv__journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd); /* releases the lock */
	free(j->path);
	free(j);
}

int fv__journal_read(json_object **records, const char *path)
{
	char *text = NULL, *line, *end;
	size_t len = 0;
	json_object *list;
	int rc;

	*records = NULL;
	rc = fv__file_read(&text, &len, path, JOURNAL_MAX_BYTES);
	if (rc == FV_ERR_NOT_FOUND) {
		fv_error_clear();
		*records = json_object_new_array();
		return *records ? FV_OK : fv__error_nomem();
	}
	if (rc != FV_OK)
		return fv__error_prefix("rotation journal");
	if (!(list = json_object_new_array())) {
		free(text);
		return fv__error_nomem();
	}
	for (line = text; line < text + len; line = end + 1) {
		json_object *record;

		end = memchr(line, '\n', (size_t)(text + len - line));
		if (!end)
			break; /* torn last line: the step it announces never started */
		*end = '\0';
		if (line == end)
			continue;
		record = json_tokener_parse(line);
		if (!record || !json_object_is_type(record, json_type_object)) {
			/* A line torn by an earlier crash and ended on reopen. */
			json_object_put(record);
			fv__log(FV_LOG_INFO, "rotation journal '%s': skipping an incomplete line", path);
			continue;
		}
		json_object_array_add(list, record);
	}
	free(text);
	*records = list;
	return FV_OK;
}
