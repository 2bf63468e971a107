/* Helpers shared by the unit tests: temporary directories and files. */
#ifndef FV_UNIT_UTIL_H
#define FV_UNIT_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* A fresh private directory under $TMPDIR (or /tmp); the caller frees the
 * path and removes the tree with ut_rmtree. */
char *ut_mkdtemp(const char *tag);
void ut_rmtree(const char *path);
/* "dir/name" in a buffer of the caller's (fatal when it does not fit). */
void ut_join(char *buf, size_t len, const char *dir, const char *name);
/* Write `text` to `path` with `mode` (exactly: not filtered by the umask). */
void ut_write(const char *path, const char *text, mode_t mode);
void ut_copy(const char *from, const char *to, mode_t mode);
void ut_mkdir(const char *path, mode_t mode);
/* Keep the user's environment out: no FLOWVAULT_CONFIG/PLUGIN_PATH, and
 * XDG_CONFIG_HOME and HOME pointing into `dir`. */
void ut_isolate_env(const char *dir);
/* True when `haystack` contains `needle`; prints both when not. */
int ut_has(const char *haystack, const char *needle);

#endif
