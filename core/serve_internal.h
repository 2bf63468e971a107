/*
 * Internals of the Flows endpoint server, shared by core/serve*.c only.
 */
#ifndef FLOWVAULT_CORE_SERVE_INTERNAL_H
#define FLOWVAULT_CORE_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "internal.h"

struct serve_gen;

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
#define SERVE_DEFAULT_WORKERS 2
#define SERVE_DEFAULT_USER "flowvault"
#define SERVE_FALLBACK_USER "nobody"
/* serve.keys entries at most: the key process answers with fixed-size messages. */
#define SERVE_MAX_KEYS 8

enum serve_isolation { SERVE_SEPARATED = 0, SERVE_SINGLE_PROCESS };
/* serve.media, parsed by serve/media.c (see serve/media.h). */
struct serve_media_config;
enum serve_log_format { SERVE_LOG_TEXT = 0, SERVE_LOG_JSON };

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
	int isolation;                /* enum serve_isolation */
	unsigned int workers;
	char *user;                   /* NULL: flowvault, else nobody */
	char *pid_file;               /* absolute, or NULL */
	int log_format;               /* enum serve_log_format */
	char *admin_token;            /* a reference (file: made absolute), or NULL */
	char *admin_cert_path, *admin_key_path; /* absolute, or NULL for plain HTTP */
	int admin_insecure;           /* explicit: a non-loopback admin_listen without both */
	char **nodes;                 /* admin URLs of every node serving Flows */
	size_t node_count;
	char *nodes_ca;               /* absolute, or NULL: the system's CAs */
	struct serve_media_config *media; /* NULL: media objects are forwarded as they are */
};

/* Check the section; with `ctx`, also that serve.keys name configured keys
 * and make paths absolute. `out` may be NULL (check only). */
FV_INTERNAL int fv__serve_config_parse(struct serve_config *out, json_object *section,
                                       const char *where, const fv_context *ctx);
FV_INTERNAL void fv__serve_config_clear(struct serve_config *cfg);
/* FV_OK when requests will be authenticated (app_secrets), or when
 * allow_unsigned says explicitly that they need not be; FV_ERR_CONFIG saying
 * what to add otherwise. `doctor` and `serve` share this rule. */
/* An integer member `v` of `where`, within [min, max]; FV_ERR_CONFIG naming
 * where.field otherwise. */
FV_INTERNAL int fv__serve_want_int(long long *out, json_object *v, const char *where,
                                   const char *field, long long min, long long max);
FV_INTERNAL int fv__serve_config_signing(const struct serve_config *cfg, const char *where);
/* 127.0.0.0/8, ::1 (also v4-mapped) or "localhost". */
FV_INTERNAL int fv__host_is_loopback(const char *host);
/* A serve.nodes entry: https://HOST[:PORT] (http:// for a loopback host
 * only), nothing else; errors name `where`. */
FV_INTERNAL int fv__node_url_check(const char *url, const char *where);

/* One WARNING line per property of the key that weakens it. */
FV_INTERNAL void fv__serve_key_warnings(fv_key *key);
/* Open serve.keys in order (logging their warnings), or none. */
FV_INTERNAL int fv__serve_open_keys(fv_key ***keys, fv_context *ctx,
                                    const struct serve_config *cfg);
FV_INTERNAL void fv__serve_close_keys(fv_key **keys, size_t count);
/* A real private-key operation: encrypt a random secret to the key's public
 * key and decrypt it. */
FV_INTERNAL int fv__key_probe(fv_key *key);
/* The /healthz document (malloc'ed); *status 200 when every key is ok, else 503. */
FV_INTERNAL char *fv__health_body(int *status, const char *const *names, size_t count,
                                  uint32_t ok_mask,
                                  char fingerprints[][FV_FINGERPRINT_HEX_SIZE],
                                  unsigned int generation);

/* ---- nodes.c: the other nodes' admin listeners (serve.nodes) ---- */

#define NODE_HEALTH_MAX_BYTES 65536
#define NODE_KEY_NAME_MAX 64

struct node_health {
	int all_ok;                          /* "status": "ok" */
	unsigned int generation;
	size_t key_count;
	struct node_health_key {
		char name[NODE_KEY_NAME_MAX + 1];
		char fingerprint[FV_FINGERPRINT_HEX_SIZE]; /* "" when not told */
		int ok;
	} keys[SERVE_MAX_KEYS];
};

/* A /healthz document as serve writes it (fv__health_body), checked
 * strictly: FV_ERR_GENERIC saying what is wrong otherwise. */
FV_INTERNAL int fv__node_health_parse(struct node_health *out, const char *body, size_t len);

enum node_result { NODE_ANSWERED = 1, NODE_REFUSED, NODE_FAILED };
struct node_answer {
	int result;                          /* enum node_result */
	long http_status;
	char *body;                          /* NUL-terminated, at most NODE_HEALTH_MAX_BYTES */
	size_t len;
	char why[256];                       /* when not answered */
};
/* GET `url` (an admin listener's /healthz): verified TLS against `ca_file`
 * (NULL: the system's CAs), `token` as Bearer (or none), no redirect
 * followed, short timeouts. FV_OK unless out of memory; a->result says
 * what happened. */
FV_INTERNAL int fv__node_get(struct node_answer *a, const char *url, const char *ca_file,
                             const char *token);
FV_INTERNAL void fv__node_answer_clear(struct node_answer *a);

/* ---- serve/listen.c: listening sockets ---- */

/* A non-blocking, close-on-exec TCP socket listening on host:port. Errors
 * name serve.<field> and the address as written. */
FV_INTERNAL int fv__serve_listen(int *fd, const char *host, unsigned int port,
                                 const char *field, const char *as_written);
/* Both of the configuration's addresses (admin_fd -1 when it is off). */
FV_INTERNAL int fv__serve_bind(const struct serve_config *cfg, int *flows_fd, int *admin_fd);
/* The start line: where, how many keys, which upstream. */
FV_INTERNAL void fv__serve_log_started(const struct serve_gen *gen, unsigned int port,
                                       const char *how);
/* The port a listening socket is bound to, or 0. */
FV_INTERNAL unsigned int fv__serve_bound_port(int fd);

/* ---- serve_upstream.c: the business logic over a libcurl keep-alive pool ---- */

struct serve_upstream;

FV_INTERNAL int fv__upstream_new(struct serve_upstream **out, const char *url,
                                 long timeout_ms, size_t max_response_bytes);
/* For a sandboxed worker: connect to the address the supervisor resolved
 * ("host:port:address" for CURLOPT_RESOLVE, or NULL) and trust the CA
 * bundle it read (or NULL: libcurl's default files). */
FV_INTERNAL int fv__upstream_pin(struct serve_upstream *up, const char *resolve,
                                 const char *ca, size_t ca_len);
/* The CURLOPT_RESOLVE entry for the URL's host (*entry NULL for an address
 * literal); resolved once, by the supervisor. */
FV_INTERNAL int fv__upstream_resolve(char **entry, const char *url);
FV_INTERNAL void fv__upstream_free(struct serve_upstream *up);
/* An fv_flow_upstream_fn; `arg` is the struct serve_upstream. */
FV_INTERNAL int fv__upstream_call(void *arg, const char *key_name,
                                  const char *request, size_t request_len,
                                  long *http_status, char **response,
                                  size_t *response_len);

/* ---- serve/metrics.c: Prometheus text ----
 *
 * Plain counters with no pointers, so that one copy can live in a
 * MAP_SHARED region that the supervisor maps before forking: every
 * worker's /metrics then shows the whole server. */

#define METRICS_BUCKETS 14
enum { METRICS_STATUS_SLOTS = 13 };
/* Key names ever served by this server (reloads may add some). */
#define METRICS_KEY_SLOTS 32
#define METRICS_KEY_NAME_MAX 65

struct serve_histogram {
	atomic_uint_fast64_t buckets[METRICS_BUCKETS]; /* cumulative at render time */
	atomic_uint_fast64_t count;
	atomic_uint_fast64_t sum_us;
};

struct serve_metrics {
	atomic_uint_fast64_t by_status[METRICS_STATUS_SLOTS];
	atomic_uint_fast64_t by_outcome[16];
	struct {
		char name[METRICS_KEY_NAME_MAX];   /* written by the supervisor only */
		atomic_uint_fast64_t requests;
	} keys[METRICS_KEY_SLOTS];
	atomic_uint key_slots;
	struct serve_histogram decrypt, upstream;
	atomic_int in_flight;
	atomic_uint_fast64_t worker_restarts, keyproc_restarts, reloads, reload_failures;
	atomic_uint_fast64_t media_ok, media_failed, media_bytes;  /* serve.media */
	atomic_uint generation;
	int separated;
};

/* Anonymous shared memory (fv__metrics_unmap it). */
FV_INTERNAL struct serve_metrics *fv__metrics_map(int separated);
FV_INTERNAL void fv__metrics_unmap(struct serve_metrics *m);
/* The slot counting requests decrypted by `name` (-1 when full). */
FV_INTERNAL int fv__metrics_key_slot(struct serve_metrics *m, const char *name);
FV_INTERNAL void fv__metrics_request(struct serve_metrics *m, int http_status);
FV_INTERNAL void fv__metrics_reply(struct serve_metrics *m, const fv_flow_reply *reply,
                                   const int *key_slots);
/* The media files of one request: `ok` verified (`clear_bytes` passed on), `failed`. */
FV_INTERNAL void fv__metrics_media(struct serve_metrics *m, size_t ok, size_t failed,
                                   uint64_t clear_bytes);
/* The exposition text (malloc'ed). */
FV_INTERNAL char *fv__metrics_render(struct serve_metrics *m, size_t *len);

/* ---- serve/log.c: server log lines ---- */

/* Timestamped lines on stderr (bare ones under journald, which stamps them
 * itself, with a <N> priority prefix), or one JSON object per line; only
 * when the application kept the default log sink. `role` names the process
 * ("supervisor", "key", "worker 1"). */
FV_INTERNAL void fv__serve_log_setup(int format);
FV_INTERNAL void fv__serve_log_role(const char *role);

/* ---- serve/ipc.c: the messages between the server's processes ----
 *
 * Worker <-> key process, over one SOCK_SEQPACKET socketpair per worker
 * thread ("channel"): fixed-size messages, checked for their exact length.
 * The key process answers these two requests and nothing else. */

#define IPC_CIPHERTEXT_MAX 512    /* RSA-4096 */
/* A worker waits this long for the key process before answering 503. */
#define IPC_TIMEOUT_MS 9500

enum ipc_op { IPC_DECRYPT = 1, IPC_PROBE = 2 };
enum ipc_status { IPC_OK = 0, IPC_UNDECRYPTABLE = 1, IPC_BACKEND_FAILURE = 2 };

struct ipc_request {
	uint32_t op;
	uint32_t id;
	uint32_t len;                             /* IPC_DECRYPT: ciphertext bytes */
	unsigned char ciphertext[IPC_CIPHERTEXT_MAX];
};

struct ipc_reply {
	uint32_t op;                              /* IPC_DECRYPT */
	uint32_t id;
	uint32_t status;                          /* enum ipc_status */
	uint32_t key_index;
	unsigned char aes_key[FV_FLOW_AES_KEY_BYTES];
};

struct ipc_probe_reply {
	uint32_t op;                              /* IPC_PROBE */
	uint32_t id;
	uint32_t key_count;
	uint32_t ok_mask;                         /* bit i: key i decrypted a probe */
	char fingerprints[SERVE_MAX_KEYS][FV_FINGERPRINT_HEX_SIZE];
};

/* Supervisor <-> worker and supervisor <-> key process ("control"). */
enum ctl_type {
	CTL_READY = 1,   /* child -> supervisor: serving (workers), keys open (key process) */
	CTL_FAILED,      /* key process -> supervisor: keys do not open; text says why */
	CTL_CHANNELS,    /* supervisor -> child: channel fds [first, first + count) */
	CTL_QUIESCE,     /* supervisor -> worker: stop accepting, finish, exit */
	CTL_RESOLVER     /* supervisor -> worker, resolver: a resolver connection (serve/media.h) */
};

struct ctl_msg {
	uint32_t type;
	uint32_t first, count;
	char text[1024];
};

/* At most this many descriptors in one control message. */
#define CTL_MAX_FDS 64

FV_INTERNAL int fv__ctl_send(int fd, const struct ctl_msg *msg, const int *fds, size_t nfds);
/* 1 with a message (and its fds), 0 at end of file, -1 on error. */
FV_INTERNAL int fv__ctl_recv(int fd, struct ctl_msg *msg, int *fds, size_t *nfds);

/* A worker's channels to the key process. */
struct keyproc_link;

FV_INTERNAL int fv__link_new(struct keyproc_link **out, size_t count, size_t key_count);
/* Adopt fds as channels [first, first + count) (closing the ones replaced). */
FV_INTERNAL void fv__link_set(struct keyproc_link *link, size_t first, const int *fds,
                              size_t count);
FV_INTERNAL void fv__link_free(struct keyproc_link *link);
/* An fv__flow_unwrap_fn. */
FV_INTERNAL int fv__link_unwrap(void *link, unsigned char aes_key[FV_FLOW_AES_KEY_BYTES],
                                size_t *key_index, const unsigned char *wrapped,
                                size_t wrapped_len);
/* FV_OK with the key process's health; FV_ERR_BACKEND when it does not answer. */
FV_INTERNAL int fv__link_probe(struct keyproc_link *link, struct ipc_probe_reply *out);

/* ---- serve/admin.c: serve.admin_token ---- */

#define ADMIN_DIGEST_BYTES 32     /* SHA-256 */

/* Resolve serve.admin_token into gen's digest (the token itself is wiped). */
FV_INTERNAL int fv__admin_token_load(struct serve_gen *gen);
/* 1 when an Authorization header carries the token whose SHA-256 is `digest`. */
FV_INTERNAL int fv__admin_authorized(const unsigned char digest[ADMIN_DIGEST_BYTES],
                                     const char *header);
/* The warning of "admin_insecure": true on a non-loopback admin_listen. */
FV_INTERNAL void fv__admin_warn(const struct serve_config *cfg);
struct serve_http;
/* The admin listener's TLS and token digest from a generation (the http
 * side keeps its own copy of the digest: the generation's is wiped). */
FV_INTERNAL void fv__admin_http_setup(struct serve_http *http, const struct serve_gen *gen);

/* ---- serve/http.c: libmicrohttpd, shared by workers and isolation "none" ---- */

struct conn_watch;

struct serve_http {
	const struct serve_config *cfg;
	fv_flow_handler *handler;
	const char *const *key_names;
	struct serve_metrics *metrics;
	int key_slots[SERVE_MAX_KEYS];
	/* The /healthz body (malloc'ed) and its HTTP status. */
	int (*health)(void *arg, char **body);
	void *health_arg;
	const char *tls_cert, *tls_key;
	const char *admin_tls_cert, *admin_tls_key; /* NULL: plain HTTP */
	int admin_token_set;      /* every admin request needs the token */
	unsigned char admin_token_digest[ADMIN_DIGEST_BYTES];
	struct MHD_Daemon *flows, *admin;
	unsigned int port, admin_port;
	atomic_int active;        /* requests between first byte and completion */
	atomic_int stopping;      /* answers say Connection: close */
	atomic_int halt;          /* the deadline thread ends */
	pthread_mutex_t watch_lock;
	struct conn_watch *watched;
	pthread_t watchdog;
	int watchdog_running;
};

/* Serve on the listening sockets (admin_fd -1: none). */
FV_INTERNAL int fv__http_start(struct serve_http *h, int flows_fd, int admin_fd);
/* Stop accepting; answers from now on close their connection. */
FV_INTERNAL void fv__http_quiesce(struct serve_http *h);
/* Wait (at most `seconds`) for requests and, when `connections`, for open
 * connections to end. */
FV_INTERNAL void fv__http_drain(struct serve_http *h, double seconds, int connections);
FV_INTERNAL void fv__http_stop(struct serve_http *h);

/* ---- The separated server: supervisor, key process, workers ---- */

struct serve_worker {
	pid_t pid;
	int ctl;                  /* control socket, supervisor's end */
	int ready;
};

/* One configuration as loaded: at start, then one per reload. */
struct serve_gen {
	unsigned int id;
	fv_context *ctx;
	int owns_ctx;
	struct serve_config cfg;
	char **secrets;           /* resolved app secrets (wiped when freed) */
	size_t *secret_lens;
	char *tls_cert, *tls_key;
	size_t tls_key_len;
	char *admin_tls_cert, *admin_tls_key; /* serve.admin_cert/admin_key, read */
	size_t admin_tls_key_len;
	int admin_token_set;
	unsigned char admin_token_digest[ADMIN_DIGEST_BYTES];
	char *upstream_resolve;   /* CURLOPT_RESOLVE entry, or NULL */
	char *ca;                 /* the CA bundle for an https upstream, or NULL */
	size_t ca_len;
	char *media_ca;           /* the CA bundle for media downloads (serve.media) */
	size_t media_ca_len;
	int key_slots[SERVE_MAX_KEYS];
	pid_t keyproc;
	int keyproc_ctl;
	int keyproc_up;
	double keyproc_retry_at;
	struct serve_worker *workers;
	int retiring;
	struct serve_gen *next;
};

/* What a child needs from the supervisor, besides its generation. */
struct serve_child_env {
	int flows_fd, admin_fd;
	struct serve_metrics *metrics;
	int drop_user;            /* started as root: become uid/gid */
	uid_t uid;
	gid_t gid;
	int sandbox_debug;        /* report a forbidden syscall by name (SIGSYS) */
};

/* keyproc.c: never returns. */
FV_INTERNAL void fv__keyproc_main(struct serve_gen *gen, int ctl, const int *channels,
                                  size_t count) __attribute__((noreturn));
/* worker.c: never returns. */
FV_INTERNAL void fv__worker_main(struct serve_gen *gen, unsigned int index,
                                 const struct serve_child_env *env, int ctl,
                                 const int *channels, size_t count, int resolver)
	__attribute__((noreturn));
/* Channels per worker: one per libmicrohttpd thread, one for the admin listener. */
#define SERVE_CHANNELS(cfg) ((size_t)(cfg)->threads + 1)

/* sandbox.c */
/* Close every descriptor but 0-2 and `keep`. */
FV_INTERNAL void fv__sandbox_close_fds(const int *keep, size_t count);
FV_INTERNAL int fv__sandbox_user(const char *name, uid_t *uid, gid_t *gid, char **used);
FV_INTERNAL int fv__sandbox_drop(uid_t uid, gid_t gid);
/* PR_SET_NO_NEW_PRIVS and the worker's seccomp allowlist. */
FV_INTERNAL int fv__sandbox_enter(int debug);

/* supervisor.c */
FV_INTERNAL int fv__gen_new(struct serve_gen **out, fv_context *ctx, int owns_ctx,
                            const struct serve_gen *previous);
FV_INTERNAL void fv__gen_free(struct serve_gen *gen);
/* Wipe what a child must not keep (TLS key, app secrets) after fork. */
FV_INTERNAL void fv__gen_forget_secrets(struct serve_gen *gen, int keep_app_secrets);

struct serve_supervisor;
FV_INTERNAL int fv__supervisor_start(struct serve_supervisor **out, struct serve_gen *gen);
FV_INTERNAL int fv__supervisor_run(struct serve_supervisor *sup);
FV_INTERNAL void fv__supervisor_stop(struct serve_supervisor *sup);
FV_INTERNAL unsigned int fv__supervisor_port(const struct serve_supervisor *sup);

#endif
