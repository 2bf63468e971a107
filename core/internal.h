/*
 * Internal interfaces of libflowvault, shared between core/ files only.
 * Nothing here is part of the public API or the plugin ABI.
 */
#ifndef FLOWVAULT_CORE_INTERNAL_H
#define FLOWVAULT_CORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <time.h>

#include <json-c/json.h>

#include "flowvault/flowvault.h"

/* Seconds on the monotonic clock, for deadlines and durations. */
static inline double fv__now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define FV_INTERNAL __attribute__((visibility("hidden")))

/* ---- error.c ---- */

/* Record status and message for this thread; returns status. */
FV_INTERNAL int fv__error_set(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
FV_INTERNAL int fv__error_vset(int status, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Put "prefix: " in front of the current message (keeps the status). */
FV_INTERNAL int fv__error_prefix(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* Keep the message, change the status; returns status. */
FV_INTERNAL int fv__error_restatus(int status);
/* Shorthand for an allocation failure. */
FV_INTERNAL int fv__error_nomem(void);

#ifdef __clang_analyzer__
/* The static analyzer reads one file at a time and never follows variadic
 * calls, so it cannot know that these return their non-zero status; it then
 * walks a made-up path where `return fv__error_set(...)` reports success and
 * flags the NULL dereferences behind it. State the contract for it (error.c
 * #undefs these to define the functions). */
#define fv__error_set(status, ...) \
	__extension__({ int fv__status_ = (status); \
	                (fv__error_set)(fv__status_, __VA_ARGS__); fv__status_; })
#define fv__error_nomem() ((fv__error_nomem)(), FV_ERR_NOMEM)
#endif

/* ---- log.c ---- */

FV_INTERNAL void fv__log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* True when a line at `level` would be written: skip costly formatting. */
FV_INTERNAL int fv__log_enabled(int level);
/* Whether the application kept the default sink (stderr), and its level. */
FV_INTERNAL int fv__log_sink_is_default(void);
FV_INTERNAL int fv__log_level(void);
FV_INTERNAL void fv__vlog(int level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* ---- fileutil.c ---- */

/* Atomic, exclusive creation of a private file (see fv_host.file_create). */
FV_INTERNAL int fv__file_create(const char *path, const void *data,
                                size_t len, unsigned int mode);
/* Refuse `path` (and each directory above it) when writable by group or
 * others (a root-owned sticky directory such as /tmp is accepted) or owned by
 * someone other than root or the current user. `what` names the file in the
 * message ("plugin", "configuration file"). */
FV_INTERNAL int fv__path_check_safe(const char *path, const char *what);
/* Open `path` once (O_RDONLY | O_CLOEXEC | O_NONBLOCK) and check the open
 * file: a regular file owned by root or the effective user, not writable by
 * group or others, every directory of the name as given and as resolved
 * safe in the same sense, a link owned by root or us (see
 * fv_host.file_open_checked). The one primitive for "open a file we are
 * about to trust": plugins, modules, the configuration, secret files. */
FV_INTERNAL int fv__file_open_checked(const char *path, const char *what, int *fd);
/* The absolute path of the file behind `fd` (a copy to free). */
FV_INTERNAL int fv__fd_path(int fd, char **out);
/* Read a whole regular file from `fd` (at most max_len bytes) into a
 * NUL-terminated buffer; `name` is for messages. */
FV_INTERNAL int fv__fd_read(int fd, char **out, size_t *out_len, const char *name,
                            size_t max_len);
/* write(2) until all of `data` is written; 0, or -1 with errno set. */
FV_INTERNAL int fv__write_all(int fd, const void *data, size_t len);
/* fsync a directory after a name in it changed (logs a warning on failure). */
FV_INTERNAL void fv__sync_dir(const char *dir);
/* Read a whole file (at most max_len bytes) into a NUL-terminated buffer. */
FV_INTERNAL int fv__file_read(char **out, size_t *out_len, const char *path,
                              size_t max_len);

/* ---- config.c ---- */

struct fv_config {
	json_object *entry;              /* the key entry object (borrowed) */
	char *location;                  /* "keys.<name>" */
	const fv_config_field *fields;   /* declared by the plugin */
	char **paths;                    /* per field: absolute FV_FIELD_PATH value */
	size_t field_count;
};

/* Check a key entry against the fields its plugin declares and build the
 * view the plugin reads (free with fv__config_view_free). */
FV_INTERNAL int fv__config_view_new(struct fv_config **out, const fv_context *ctx,
                                    const char *key_name,
                                    const fv_config_field *fields);
FV_INTERNAL void fv__config_view_free(struct fv_config *cfg);

struct fv_key_entry {
	char *name;
	char *provider;
	json_object *entry;              /* borrowed from the context's root */
	char **phone_numbers;
	size_t phone_count;
	char *waba_id;
	int require_non_extractable;     /* default 1 */
};

/* `path` made absolute against the configuration file's directory (a copy
 * to free; `path` itself when already absolute). */
FV_INTERNAL char *fv__config_resolve_path(const fv_context *ctx,
                                          const char *path);

/* A secret reference with a relative file: path made absolute against the
 * configuration file's directory (a copy to free; NULL when out of memory). */
FV_INTERNAL char *fv__config_secret_reference(const fv_context *ctx,
                                              const char *reference);

/* A context from configuration text instead of a file (`name` stands for
 * the file in messages); for tests and fuzzing. */
FV_INTERNAL int fv__context_open_text(fv_context **out, const char *text,
                                      size_t len, const char *name);

/* Fields of a key entry that the host itself understands. */
FV_INTERNAL int fv__config_is_host_key_field(const char *name);
FV_INTERNAL const struct fv_key_entry *fv__config_key(const fv_context *ctx,
                                                      const char *name);

/* Check a section's own fields; `where` is its JSON path ("graph").
 * Implemented by the module that owns the section. */
FV_INTERNAL int fv__graph_config_check(json_object *section, const char *where);
FV_INTERNAL int fv__serve_config_check(const fv_context *ctx, json_object *section,
                                       const char *where);

/* ---- loader.c ---- */

struct fv_plugin {
	char *name;
	char *path;
	void *handle;                    /* dlopen handle */
	int fd;                          /* the checked file; its /proc/self/fd
	                                  * name is the library's name */
	const fv_provider *ops;
	size_t ops_size;                 /* min(plugin's struct_size, ours) */
	struct fv_plugin *next;
};

/* Load the plugin called `name` (first match on the search path). */
FV_INTERNAL int fv__plugin_get(const struct fv_plugin **out, fv_context *ctx,
                               const char *name);
FV_INTERNAL void fv__plugins_unload(fv_context *ctx);
/* Member `m` of the plugin's table, or NULL when the plugin's table is too
 * short to have it. */
#define FV_PLUGIN_OP(plugin, m)                                              \
	((offsetof(fv_provider, m) + sizeof((plugin)->ops->m) <= (plugin)->ops_size) \
		 ? (plugin)->ops->m : NULL)

/* ---- context ---- */

struct fv_context {
	char *config_path;
	json_object *root;               /* whole configuration */
	struct fv_key_entry *keys;
	size_t key_count;
	char **plugin_path;              /* from configuration */
	size_t plugin_path_count;
	char *search_path;               /* joined, for display */
	struct fv_plugin *plugins;       /* loaded so far, under plugins_lock */
	pthread_mutex_t plugins_lock;    /* keys may be opened from several threads */
	json_object *graph;              /* "graph" section or NULL (borrowed) */
	json_object *serve;              /* "serve" section or NULL (borrowed) */
};

/* ---- secret.c ---- */
/* Take every env: secret the configuration names out of this process's
 * environment now (wiped in place, kept on the secure heap): for a process
 * that forks the ones resolving them, whose environment would show them
 * otherwise. Later resolutions, in children too, are served from there. */
FV_INTERNAL void fv__secret_env_take_all(json_object *root);
/* Wipe every env: value taken so far (a child that needs none of them). */
FV_INTERNAL void fv__secret_env_forget_all(void);
FV_INTERNAL int fv__secret_check_field(const char *value, const char *where);

/* ---- secmem.c ---- */

/* Before the first secret is resolved or key opened: no core dumps
 * (RLIMIT_CORE 0), not dumpable (PR_SET_DUMPABLE 0: no ptrace, /proc/PID/mem
 * or environ for others), and the secure heap set up. Once per process;
 * FLOWVAULT_ALLOW_CORE_DUMPS=1 keeps dumps for debugging (with a warning). */
FV_INTERNAL void fv__process_harden(void);

/* Set up the secure heap once (idempotent); 1 locked, 2 not locked but not
 * dumped, 0 unavailable. */
FV_INTERNAL int fv__secure_heap_ready(void);
/* Zeroed memory on the secure heap; fv__secure_free wipes it. */
FV_INTERNAL void *fv__secure_alloc(size_t len);
FV_INTERNAL void fv__secure_free(void *ptr, size_t len);

/* ---- hostsvc.c ---- */
FV_INTERNAL const fv_host *fv__host_services(void);

/* ==== Key lifecycle (journal.c, config_write.c, rotate.c, doctor.c) ==== */

/* The rotation journal: one JSON object per line, appended and fsync'd. */
struct fv__journal;
/* Open (creating, mode 0600) `path` for appending, with an exclusive lock
 * that refuses a second writer (FV_ERR_GENERIC when another process holds it). */
FV_INTERNAL int fv__journal_open(struct fv__journal **out, const char *path);
/* Append `record` (adds "time") as one line and fsync; takes ownership. */
FV_INTERNAL int fv__journal_append(struct fv__journal *j, json_object *record);
FV_INTERNAL void fv__journal_close(struct fv__journal *j);
/* Every complete record of `path` as a JSON array (empty when the file does
 * not exist); a truncated last line (a crash while writing) is ignored. */
FV_INTERNAL int fv__journal_read(json_object **records, const char *path);

/* Replace the configuration file `path` with `root`, atomically: the text
 * is checked as a configuration first, written to a temporary file in the
 * same directory with the old file's mode (and owner), fsync'd, read back
 * and compared, renamed into place, and the directory fsync'd. */
FV_INTERNAL int fv__config_write(const char *path, json_object *root);

/* ---- flow.c: a request handler whose RSA step happens elsewhere ----
 * (the server's key process): the handler never holds an fv_key. */

enum fv__unwrap_result {
	FV__UNWRAP_OK = 0,
	FV__UNWRAP_UNDECRYPTABLE,  /* no key decrypts it to a 16-byte AES key */
	FV__UNWRAP_BACKEND,        /* a key backend failed: the request may be fine */
	FV__UNWRAP_UNAVAILABLE     /* the keys cannot be asked right now (503) */
};

/* RSA-OAEP-decrypt `wrapped` with the key set, keys tried in order: on
 * FV__UNWRAP_OK, aes_key holds the AES key and *key_index the key. */
typedef int (*fv__flow_unwrap_fn)(void *arg, unsigned char aes_key[FV_FLOW_AES_KEY_BYTES],
                                  size_t *key_index, const unsigned char *wrapped,
                                  size_t wrapped_len);

/* Parse clear (secret) JSON text of exactly `len` bytes without leaving
 * copies in json-c's buffers; NULL when it is not JSON. Free the result
 * with fv__flow_json_wipe_put, which overwrites every value first. */
FV_INTERNAL json_object *fv__flow_json_parse(const char *text, size_t len);
FV_INTERNAL void fv__flow_json_wipe_put(json_object *obj);

/* Like fv_flow_handler_new, with `key_names` (key_count of them, borrowed)
 * instead of config->keys, and `unwrap` for the RSA step. */
FV_INTERNAL int fv__flow_handler_new_unwrap(fv_flow_handler **out,
                                            const fv_flow_handler_config *config,
                                            const char *const *key_names, size_t key_count,
                                            fv__flow_unwrap_fn unwrap, void *unwrap_arg);

#endif
