/*
 * Code shared by the cloud key-store plugins (aws-kms, vault-transit,
 * gcp-kms, azure-keyvault): HTTPS through libcurl, JSON through json-c,
 * base64 through OpenSSL, and secrets kept in the host's secure memory.
 * A static library (cloud_common) linked into each plugin; it uses only
 * provider.h from flowvault, never the core.
 *
 * HTTP (struct cloud_http, one per plugin instance)
 * ------------------------------------------------
 *   cloud_http_new(host, &opts, &http)   once in instance_open
 *   deadline = cloud_deadline(http)      once per operation (a decrypt, a
 *                                        generate): now + opts.timeout_ms
 *   cloud_http_perform(http, &req, deadline, &resp)
 *                                        any number of requests inside that
 *                                        one deadline (token fetch + call)
 *   cloud_response_free(&resp); cloud_http_free(http)
 *
 * - A pool of curl easy handles: a request takes an idle handle (or makes
 *   one), so concurrent decrypts never share a handle, and each handle keeps
 *   its connection alive for the next request. DNS and TLS sessions are
 *   shared between the handles. cloud_http_perform is thread-safe. A
 *   forked child leaves its parent's connections alone and opens its own.
 * - TLS is always verified (peer and host name); opts.ca_file replaces the
 *   system CAs. Only https:// URLs are accepted unless the request sets
 *   allow_http (the link-local metadata endpoints, which are plain HTTP).
 *   No redirects are followed.
 * - Retries: transport errors, HTTP 429/500/502/503/504, and whatever
 *   req.retry_reason names (AWS sends throttling as 400) are retried with
 *   exponential backoff and full jitter, as long as the deadline leaves room.
 *   Each attempt is capped by opts.attempt_timeout_ms and the deadline. A
 *   request with idempotent == 0 is retried only when it surely never
 *   reached the service (connect/resolve errors) or the service said it did
 *   not act (429, 503, retry_reason).
 * - Result: FV_OK with the final HTTP status and body in *resp (any status:
 *   the caller maps service errors), or FV_ERR_BACKEND (message reported
 *   through host->error) when the deadline passed, retries ran out or the
 *   network failed. Callers must never turn FV_ERR_BACKEND into
 *   FV_ERR_DECRYPT: an unreachable service is a 500 in serve, not a 421.
 * - Logging: one FV_LOG_DEBUG line per attempt (method, URL without query,
 *   status, milliseconds, attempt). Bodies and header values are never
 *   logged; cloud_header_is_secret() tells which header names are redacted
 *   wherever headers are shown.
 * - Response bodies are wiped when freed (they may hold plaintext or
 *   tokens); request bodies that hold secrets should come from
 *   cloud_json_body() and be freed with cloud_buf_free().
 *
 * Secrets (struct cloud_secret)
 * -----------------------------
 * cloud_secret_resolve() resolves a reference through host->secret_resolve
 * and keeps a copy in host->secure_alloc memory (locked, not in core dumps);
 * cloud_secret_set() stores bytes from a response (a token); both replace
 * what the secret held. cloud_secret_clear() wipes and frees. The bytes are
 * always NUL-terminated.
 *
 * JSON and base64
 * ---------------
 * cloud_json_parse() parses a response body that must be a JSON object and
 * wipes json-c's parse buffer; cloud_json_free_wiped() wipes every string in
 * a document before freeing it (for documents with plaintext or tokens).
 * cloud_json_string()/cloud_json_int() read members with type checks.
 * cloud_base64_encode()/decode() (and the base64url variants, no padding on
 * output, padding optional on input) use OpenSSL's EVP encoder.
 *
 * Tokens (struct cloud_token)
 * ---------------------------
 * A bearer token cached per instance and shared by its threads (OAuth
 * access tokens from a token endpoint or a metadata service).
 * cloud_token_get() copies the cached token into *copy (the caller clears
 * it after the request), calling `fetch` first when there is none or it is
 * within five minutes (half its lifetime, for short ones) of expiring; one
 * thread fetches while the others wait. `fetch` reports the lifetime in
 * seconds, or 0 for a token that never expires. A token given in the
 * configuration (cloud_token_configure()) never expires and is used with
 * fetch NULL. After the service refused a token (401),
 * cloud_token_invalidate() makes the next cloud_token_get() fetch a new
 * one; cloud_bearer_perform() does all of this for one request.
 *
 * OAuth 2.0 token services (struct cloud_token_source)
 * ----------------------------------------------------
 * A plugin's `fetch` builds the request the provider needs (a signed JWT,
 * a client secret, a metadata header) and hands it to cloud_oauth_request()
 * or, for a form POST to a token endpoint, cloud_oauth_form_post(): they
 * read {access_token, expires_in} into "Bearer <token>" and turn a refusal
 * ({error, error_description}) into a message naming the instance, the
 * credential source and what to check.
 *
 * Configuration
 * -------------
 * CLOUD_HTTP_CONFIG_FIELDS expands to the fields every cloud plugin shares
 * (ca_file, timeout_ms, attempt_timeout_ms, connect_timeout_ms); put it in
 * the plugin's fv_config_field array and read them with
 * cloud_http_config_read(); cloud_config_string() reads an optional string.
 * Document them under the plugin in docs/flowvault.json.5.
 *
 * Provider glue
 * -------------
 * cloud_public_der_out(), cloud_plaintext_out() and cloud_describe_fill()
 * implement the parts of key_public_der, key_decrypt and key_describe that
 * are the same for every service.
 */
#ifndef FLOWVAULT_CLOUD_H
#define FLOWVAULT_CLOUD_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include <flowvault/provider.h>

/*
 * `return CLOUD_ERROR(host, FV_ERR_AUTH, "...", ...);` records the message
 * and returns the status. The analyzer cannot see through the host's
 * function pointer that error() returns its non-zero argument; state it.
 */
#ifdef __clang_analyzer__
#define CLOUD_ERROR(host, status, ...) \
	__extension__({ int cloud_status_ = (status); \
	                (void)(host)->error(cloud_status_, __VA_ARGS__); cloud_status_; })
#else
#define CLOUD_ERROR(host, status, ...) ((host)->error((status), __VA_ARGS__))
#endif

/* Defaults: WhatsApp waits 10 s for a Flows reply; serve needs some of it. */
#define CLOUD_TIMEOUT_MS_DEFAULT 8000
#define CLOUD_ATTEMPT_TIMEOUT_MS_DEFAULT 3000
#define CLOUD_CONNECT_TIMEOUT_MS_DEFAULT 2000
#define CLOUD_TIMEOUT_MS_MAX 120000
#define CLOUD_RESPONSE_MAX (1024 * 1024)

#define CLOUD_HTTP_CONFIG_FIELDS                                                    \
	{ "ca_file", FV_FIELD_STRING, FV_FIELD_PATH,                                    \
	  "PEM file of CA certificates to trust instead of the system's" },             \
	{ "timeout_ms", FV_FIELD_INT, 0,                                                \
	  "time budget of one operation, retries included (default 8000)" },           \
	{ "attempt_timeout_ms", FV_FIELD_INT, 0,                                        \
	  "time limit of one HTTP attempt (default 3000)" },                            \
	{ "connect_timeout_ms", FV_FIELD_INT, 0,                                        \
	  "time limit to connect, TLS included (default 2000)" }

struct cloud_http_opts {
	const char *plugin;       /* "aws-kms": prefixes log lines */
	const char *location;     /* "keys.flows": names the entry in messages */
	const char *ca_file;      /* NULL: the system's CAs */
	long timeout_ms;          /* 0: CLOUD_TIMEOUT_MS_DEFAULT */
	long attempt_timeout_ms;  /* 0: CLOUD_ATTEMPT_TIMEOUT_MS_DEFAULT */
	long connect_timeout_ms;  /* 0: CLOUD_CONNECT_TIMEOUT_MS_DEFAULT */
};

struct cloud_response {
	long status;              /* HTTP status, 0 when none */
	char *body;               /* NUL-terminated; wiped by cloud_response_free */
	size_t len;
	char content_type[128];   /* "" when absent */
	/* The first WWW-Authenticate header ("" when absent): a service's
	 * bearer challenge, such as Key Vault's authority and resource. */
	char www_authenticate[512];
};

struct cloud_request {
	const char *method;       /* "GET", "POST", "PUT", "DELETE" */
	const char *url;
	/* Extra header lines ("Content-Type: application/json"), NULL-ended. */
	const char *const *headers;
	/* A header that carries a secret ("X-Vault-Token", "Authorization"),
	 * built in wiped memory: secret_header_name + ": " + secret value. */
	const char *secret_header_name;
	const struct cloud_secret *secret_header_value;
	const char *body;         /* NULL: no body */
	size_t body_len;
	/* SigV4 by libcurl: "aws:amz:<region>:<service>", with the key pair in
	 * aws_access_key / aws_secret_key. NULL: no signing. */
	const char *aws_sigv4;
	const struct cloud_secret *aws_access_key;
	const struct cloud_secret *aws_secret_key;
	int idempotent;           /* safe to send twice */
	int allow_http;           /* plain http:// allowed (metadata endpoints) */
	/* Returns a short reason ("throttled") when this response should be
	 * retried, NULL otherwise; called besides the 429/5xx defaults. */
	const char *(*retry_reason)(const struct cloud_response *resp, void *arg);
	void *retry_arg;
	/* For messages: what this request is ("Decrypt", "token exchange"). */
	const char *what;
	/* 0: the instance's attempt_timeout_ms. Longer for a request the
	 * service may take seconds to answer (creating an HSM key). */
	long attempt_timeout_ms;
};

struct cloud_secret {
	char *data;               /* NUL-terminated, secure memory; NULL: unset */
	size_t len;
};

struct cloud_http;

int cloud_http_new(const fv_host *host, const struct cloud_http_opts *opts,
                   struct cloud_http **out);
void cloud_http_free(struct cloud_http *http);

/* Monotonic milliseconds. */
int64_t cloud_now_ms(void);
/* now + the instance's timeout_ms. */
int64_t cloud_deadline(const struct cloud_http *http);

int cloud_http_perform(struct cloud_http *http, const struct cloud_request *req,
                       int64_t deadline_ms, struct cloud_response *resp);
void cloud_response_free(struct cloud_response *resp);

/* Requests performed (attempts included) since cloud_http_new: for tests and
 * benchmarks that prove no extra round trips. */
uint64_t cloud_http_request_count(const struct cloud_http *http);

/* cloud_http_opts' plugin and location, for messages. */
const char *cloud_http_plugin(const struct cloud_http *http);
const char *cloud_http_location(const struct cloud_http *http);

/* 1 when a header of this name carries a secret and must be redacted. */
int cloud_header_is_secret(const char *name, size_t name_len);

/* ---- Secrets ---- */

int cloud_secret_resolve(const fv_host *host, const char *reference,
                         const char *purpose, struct cloud_secret *out);
int cloud_secret_set(const fv_host *host, const char *data, size_t len,
                     struct cloud_secret *out);
void cloud_secret_clear(const fv_host *host, struct cloud_secret *s);

/* ---- Files ---- */

/* A small credentials file, whole and NUL-terminated, into *out (free it
 * with cloud_buf_free(*out, *len + 1), which wipes it) and its mode bits
 * into *mode when mode is not NULL. 0, or an errno value saying why not:
 * open()'s, EINVAL when `path` is not a regular file, EFBIG when it has
 * more than `max` bytes, ENOMEM. No message: callers name the file's
 * purpose and what to do. */
int cloud_file_read(const char *path, size_t max, char **out, size_t *len, mode_t *mode);

/* ---- Forms ---- */

struct cloud_form_field {
	const char *name;         /* sent as it is: only unreserved characters */
	const char *value;        /* percent-encoded */
	size_t len;               /* of value; 0: up to its NUL */
};

/* "name=value&name=value" (application/x-www-form-urlencoded, also a URL
 * query), NUL-terminated, in memory the caller frees with
 * cloud_buf_free(body, *len + 1), which wipes it: values may be secrets.
 * NULL when out of memory. */
char *cloud_form_body(const struct cloud_form_field *fields, size_t n_fields, size_t *len);
/* POST `fields` as that body to `url` with `headers` (the Content-Type
 * among them): a request for credentials or a token, which changes nothing
 * at the service and so is retried like any idempotent one. The body is
 * wiped after. FV_OK with any HTTP status in *resp, as cloud_http_perform. */
int cloud_form_post(struct cloud_http *http, const char *url, const char *const *headers,
                    const struct cloud_form_field *fields, size_t n_fields, const char *what,
                    int64_t deadline_ms, struct cloud_response *resp);

/* ---- Tokens ---- */

struct cloud_token {
	pthread_mutex_t lock;
	struct cloud_secret value;
	int64_t refresh_at_ms;    /* cloud_now_ms() after which to fetch again */
	uint64_t fetches;
	int initialized;
};

typedef int (*cloud_token_fetch_fn)(void *arg, int64_t deadline_ms,
                                    struct cloud_secret *out, int64_t *lifetime_s);

int cloud_token_init(struct cloud_token *t);
void cloud_token_destroy(const fv_host *host, struct cloud_token *t);
int cloud_token_get(const fv_host *host, struct cloud_token *t,
                    cloud_token_fetch_fn fetch, void *arg, int64_t deadline_ms,
                    struct cloud_secret *copy);
void cloud_token_invalidate(struct cloud_token *t, const struct cloud_secret *used);
/* Tokens fetched so far: for tests that prove none is fetched per decrypt. */
uint64_t cloud_token_fetches(struct cloud_token *t);

/* A token given in the configuration: `reference` (the value of
 * location.field) is resolved once and kept as "Bearer <token>", never
 * refreshed. FV_ERR_AUTH naming the field when it is empty or has a line
 * break. */
int cloud_token_configure(const fv_host *host, struct cloud_token *t, const char *location,
                          const char *field, const char *reference, const char *purpose);

/*
 * `req` with "Authorization: <the token>" (fetched as cloud_token_get
 * does). A 401 means the cached token was revoked or expired early: it is
 * dropped and the request sent once more with a new one, within the
 * deadline (not for a configured token, fetch NULL). FV_OK with any HTTP
 * status in *resp; the caller maps errors.
 */
int cloud_bearer_perform(const fv_host *host, struct cloud_http *http, struct cloud_token *t,
                         cloud_token_fetch_fn fetch, void *arg,
                         const struct cloud_request *req, int64_t deadline_ms,
                         struct cloud_response *resp);

struct cloud_token_source {
	struct cloud_http *http;  /* the instance's client */
	const char *location;     /* "keys.flows" */
	/* The credentials, for messages: "metadata server 169.254.169.254". */
	const char *source;
	/* What is asked for: "no <token_name> from the <source>: HTTP 400 ...". */
	const char *token_name;
	/* What to do when the token service refuses ("check tenant_id, ..."). */
	const char *fix;
};

/* A token service's answer (already received): on 200 its access_token as
 * "Bearer <token>" in *bearer and its expires_in in *lifetime_s; otherwise
 * an error naming src->source. The two calls below end with it. */
int cloud_oauth_answer(const fv_host *host, const struct cloud_token_source *src,
                       const struct cloud_response *resp, struct cloud_secret *bearer,
                       int64_t *lifetime_s);
/* Perform `req` at a token service; on 200 the answer's access_token as
 * "Bearer <token>" in *bearer and its expires_in in *lifetime_s. Any other
 * answer, or one without a usable token, is an error naming src->source:
 * FV_ERR_AUTH when refused, FV_ERR_BACKEND on a 5xx or a broken answer. */
int cloud_oauth_request(const fv_host *host, const struct cloud_token_source *src,
                        const struct cloud_request *req, int64_t deadline_ms,
                        struct cloud_secret *bearer, int64_t *lifetime_s);
/* The same for a POST of `fields` as application/x-www-form-urlencoded to
 * the token endpoint `url` (RFC 6749 section 4); `what` names the request
 * in logs. The body, which may hold a secret or an assertion, is wiped. */
int cloud_oauth_form_post(const fv_host *host, const struct cloud_token_source *src,
                          const char *url, const char *what,
                          const struct cloud_form_field *fields, size_t n_fields,
                          int64_t deadline_ms, struct cloud_secret *bearer, int64_t *lifetime_s);

/* ---- Configuration ---- */

/* Reads ca_file and the timeouts into *opts (other members untouched);
 * FV_ERR_CONFIG with a message on a value out of range. */
int cloud_http_config_read(const fv_host *host, const fv_config *cfg,
                           struct cloud_http_opts *opts);

/* An optional string field: FV_OK with *out NULL when absent or empty. */
int cloud_config_string(const fv_host *host, const fv_config *cfg, const char *name,
                        const char **out);

/* A copy of an optional string for an instance: NULL stays NULL; sets
 * *failed when out of memory, so that many copies are checked once. */
char *cloud_strdup(const char *s, int *failed);

/* ---- Provider glue every cloud plugin needs ---- */

/* key_public_der's contract for a DER kept by the plugin: size query,
 * FV_ERR_BUFFER_TOO_SMALL, copy. */
int cloud_public_der_out(const unsigned char *src, size_t src_len, unsigned char *der,
                         size_t *len);
/* key_decrypt's output: check the plain text fits RSA-OAEP for a modulus
 * of `modulus_bytes` (FV_ERR_BACKEND with a message naming `location`
 * when the service sent more), then copy or report the size needed. */
int cloud_plaintext_out(const fv_host *host, const char *location,
                        const unsigned char *plain, size_t plain_len, size_t modulus_bytes,
                        unsigned char *out, size_t *out_len);
/* Fill key_describe's answer, writing no member beyond d->struct_size.
 * The service name is both `oaep` and `backend`. */
void cloud_describe_fill(fv_key_description *d, const char *service, const char *location,
                         const char *remote_id, unsigned int bits, uint32_t properties,
                         uint32_t properties_known);

/* ---- JSON ---- */

/* The body as a JSON object; FV_ERR_BACKEND (no message) when it is not. */
int cloud_json_parse(const char *body, size_t len, json_object **out);
void cloud_json_free_wiped(json_object *obj);
/* Member `key` when it is a string (NULL otherwise); *len when non-NULL. */
const char *cloud_json_string(json_object *obj, const char *key, size_t *len);
/* Member `key` when it is an integer: 1 and *out, else 0. */
int cloud_json_int(json_object *obj, const char *key, int64_t *out);
/* Serialize `obj` into a malloc'd buffer (no escaped slashes); the copy
 * json-c keeps is wiped. Free with cloud_buf_free. NULL when out of memory. */
char *cloud_json_body(json_object *obj, size_t *len);
void cloud_buf_free(void *buf, size_t len);

/* ---- base64 ---- */

/* NUL-terminated malloc'd text, NULL when out of memory. */
char *cloud_base64_encode(const unsigned char *in, size_t len);
char *cloud_base64url_encode(const unsigned char *in, size_t len);
/* Decode into malloc'd *out (wiped by the caller with cloud_buf_free).
 * FV_OK, FV_ERR_NOMEM, or FV_ERR_BACKEND when `in` is not base64. */
int cloud_base64_decode(const char *in, size_t len, unsigned char **out,
                        size_t *out_len);
int cloud_base64url_decode(const char *in, size_t len, unsigned char **out,
                           size_t *out_len);

#endif /* FLOWVAULT_CLOUD_H */
