/*
 * Internals of the Flows endpoint server, shared by core/serve*.c only.
 */
#ifndef FLOWVAULT_CORE_SERVE_INTERNAL_H
#define FLOWVAULT_CORE_SERVE_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"

/* ---- serve_config.c: the "serve" section ---- */

#define SERVE_DEFAULT_LISTEN "127.0.0.1:8080"
#define SERVE_DEFAULT_ADMIN_LISTEN "127.0.0.1:9464"
#define SERVE_DEFAULT_PATH "/flows"
#define SERVE_DEFAULT_UPSTREAM_TIMEOUT_MS 8000
/* WhatsApp gives up after 10 s: the upstream must answer well before. */
#define SERVE_MAX_UPSTREAM_TIMEOUT_MS 9500
#define SERVE_DEFAULT_MAX_BODY_BYTES (1024 * 1024)
#define SERVE_DEFAULT_MAX_CONNECTIONS 1000
#define SERVE_DEFAULT_REQUEST_TIMEOUT_S 15
#define SERVE_DEFAULT_THREADS 16

struct serve_config {
	char *listen;                 /* as written, for messages */
	char *host;                   /* without brackets */
	unsigned int port;
	/* /healthz and /metrics: NULL when "off" */
	char *admin_listen, *admin_host;
	unsigned int admin_port;
	char *cert_path, *key_path;   /* absolute, or NULL for plain HTTP */
	char *path;
	char **keys;
	size_t key_count;
	char **app_secrets;           /* references, never values */
	size_t app_secret_count;
	int allow_unsigned;           /* explicit: serve without app_secrets */
	char *upstream;
	long upstream_timeout_ms;
	size_t max_body_bytes;
	unsigned int max_connections;
	unsigned int request_timeout_s;
	unsigned int threads;
};

/* Check the section; with `ctx`, also that serve.keys name configured keys
 * and make paths absolute. `out` may be NULL (check only). */
FV_INTERNAL int fv__serve_config_parse(struct serve_config *out, json_object *section,
                                       const char *where, const fv_context *ctx);
FV_INTERNAL void fv__serve_config_clear(struct serve_config *cfg);
/* FV_OK when requests will be authenticated (app_secrets), or when
 * allow_unsigned says explicitly that they need not be; FV_ERR_CONFIG saying
 * what to add otherwise. `doctor` and `serve` share this rule. */
FV_INTERNAL int fv__serve_config_signing(const struct serve_config *cfg, const char *where);

/* One WARNING line per property of the key that weakens it. */
FV_INTERNAL void fv__serve_key_warnings(fv_key *key);

/* ---- serve/listen.c: listening sockets ---- */

/* A non-blocking, close-on-exec TCP socket listening on host:port. Errors
 * name serve.<field> and the address as written. */
FV_INTERNAL int fv__serve_listen(int *fd, const char *host, unsigned int port,
                                 const char *field, const char *as_written);
/* The port a listening socket is bound to, or 0. */
FV_INTERNAL unsigned int fv__serve_bound_port(int fd);

/* ---- serve_upstream.c: the business logic over a libcurl keep-alive pool ---- */

struct serve_upstream;

FV_INTERNAL int fv__upstream_new(struct serve_upstream **out, const char *url,
                                 long timeout_ms, size_t max_response_bytes);
FV_INTERNAL void fv__upstream_free(struct serve_upstream *up);
/* An fv_flow_upstream_fn; `arg` is the struct serve_upstream. */
FV_INTERNAL int fv__upstream_call(void *arg, const char *key_name,
                                  const char *request, size_t request_len,
                                  long *http_status, char **response,
                                  size_t *response_len);

/* ---- serve_metrics.c: Prometheus text ---- */

#define METRICS_BUCKETS 14
enum { METRICS_STATUS_SLOTS = 12 };

struct serve_histogram {
	atomic_uint_fast64_t buckets[METRICS_BUCKETS]; /* cumulative at render time */
	atomic_uint_fast64_t count;
	atomic_uint_fast64_t sum_us;
};

struct serve_metrics {
	atomic_uint_fast64_t by_status[METRICS_STATUS_SLOTS];
	atomic_uint_fast64_t by_outcome[16];
	atomic_uint_fast64_t *by_key;  /* key_count entries */
	char **key_names;              /* borrowed */
	size_t key_count;
	struct serve_histogram decrypt, upstream;
	atomic_int in_flight;
};

FV_INTERNAL int fv__metrics_init(struct serve_metrics *m, char **key_names,
                                 size_t key_count);
FV_INTERNAL void fv__metrics_clear(struct serve_metrics *m);
FV_INTERNAL void fv__metrics_request(struct serve_metrics *m, int http_status);
FV_INTERNAL void fv__metrics_reply(struct serve_metrics *m, const fv_flow_reply *reply);
/* The exposition text (malloc'ed). */
FV_INTERNAL char *fv__metrics_render(struct serve_metrics *m, size_t *len);

#endif
