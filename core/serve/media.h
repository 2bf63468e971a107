/*
 * serve.media: media objects (PhotoPicker, DocumentPicker) in a decrypted
 * request are downloaded, verified and decrypted by the worker, and the
 * upstream receives the request as multipart/form-data, without the keys.
 *
 * A sandboxed worker cannot resolve names (no /etc/hosts, no NSS modules
 * under its seccomp filter): it asks a resolver process over a
 * SOCK_SEQPACKET connection, which checks the host against the allowlist
 * again before it answers addresses; the worker then pins them with
 * CURLOPT_RESOLVE. The CA bundle is read by the supervisor before forking.
 */
#ifndef FLOWVAULT_CORE_SERVE_MEDIA_H
#define FLOWVAULT_CORE_SERVE_MEDIA_H

#include <stdint.h>

#include "../serve_internal.h"

#define MEDIA_DEFAULT_MAX_FILE_BYTES (25ull * 1024 * 1024)
#define MEDIA_DEFAULT_MAX_TOTAL_BYTES (64ull * 1024 * 1024)
/* What the downloads get by default, when upstream_timeout_ms leaves that much. */
#define MEDIA_DEFAULT_TIMEOUT_MS 4000L
#define MEDIA_MIN_TIMEOUT_MS 100L
/* Media objects handled in one request; more are reported failed. */
#define MEDIA_MAX_OBJECTS 32
#define MEDIA_MAX_HOSTS 32
#define MEDIA_HOST_MAX 253

struct serve_media_config {
	char **allowed_hosts;        /* NULL: the WhatsApp CDN (fv_media_fetch's default) */
	size_t host_count;
	uint64_t max_file_bytes;     /* one download */
	uint64_t max_total_bytes;    /* the clear files of one request, together */
	long timeout_ms;             /* every download of a request, resolution included */
	char *ca_file;               /* absolute, or NULL: the system's bundle */
};

FV_INTERNAL int fv__media_config_parse(struct serve_media_config **out, json_object *v,
                                       const char *where, const fv_context *ctx,
                                       long upstream_timeout_ms);
FV_INTERNAL void fv__media_config_free(struct serve_media_config *cfg);

/* ---- Worker <-> resolver messages (fixed size, checked for their length) ---- */

#define RESOLVE_MAX_ADDRS 8
#define RESOLVE_ADDR_MAX 48          /* an IPv6 literal in brackets */

struct resolve_request {
	uint32_t id;
	char host[MEDIA_HOST_MAX + 1];
	char port[8];
};

struct resolve_reply {
	uint32_t id;
	int32_t status;              /* FV_OK, or the fv status (negative) of the refusal */
	uint32_t count;
	char addrs[RESOLVE_MAX_ADDRS][RESOLVE_ADDR_MAX];
	char text[200];              /* why not */
};

/* resolver.c: the resolver process (never returns). It gets connections
 * with CTL_RESOLVER on `ctl`; the message's text is the allowlist, one host
 * a line (empty: the default). */
FV_INTERNAL void fv__resolver_main(int ctl) __attribute__((noreturn));
/* The allowlist as CTL_RESOLVER text; FV_ERR_CONFIG when it does not fit. */
FV_INTERNAL int fv__media_hosts_text(char *out, size_t size, const struct serve_media_config *cfg);

/* upstream.c: POST the parts as multipart/form-data. */
struct upstream_part {
	const char *name, *filename, *type;   /* filename NULL: none */
	const void *data;
	size_t len;
};
FV_INTERNAL int fv__upstream_call_parts(struct serve_upstream *up, const char *key_name,
                                        const struct upstream_part *parts, size_t count,
                                        long *http_status, char **response,
                                        size_t *response_len);

/* ---- In the worker (or the single process) ---- */

struct serve_media;

/* `resolver`: a connection to the resolver process, or -1 to let libcurl
 * resolve (isolation "none"). `ca`: the bundle to trust, or NULL for
 * cfg->ca_file or the system's. `metrics` counts the files (may be NULL). */
FV_INTERNAL int fv__media_new(struct serve_media **out, const struct serve_media_config *cfg,
                              struct serve_upstream *upstream, int resolver, const char *ca,
                              size_t ca_len, struct serve_metrics *metrics);
/* A new resolver connection (after the resolver process was restarted). */
FV_INTERNAL void fv__media_set_resolver(struct serve_media *sm, int fd);
FV_INTERNAL void fv__media_free(struct serve_media *sm);
/* An fv_flow_upstream_fn; `arg` is the struct serve_media. */
FV_INTERNAL int fv__media_upstream_call(void *arg, const char *key_name, const char *request,
                                        size_t request_len, long *http_status,
                                        char **response, size_t *response_len);

/* The media objects (those with an encryption_metadata) under the
 * request's "data", at most `max` (owned by root); any beyond are wiped and
 * marked failed at once, and counted in `*refused` (when not NULL). */
FV_INTERNAL size_t fv__media_find(json_object *root, json_object **found, size_t max,
                                  size_t *refused);
/* A verifier for one found object, whose encryption_metadata is then wiped
 * and replaced by null (also when the object is refused). */
FV_INTERNAL int fv__media_take(fv_media **out, json_object *obj);

#endif
