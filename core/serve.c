/*
 * `flowvault serve`: the Flows endpoint on libmicrohttpd.
 *
 * libmicrohttpd runs a pool of threads (epoll on Linux); each request is
 * answered on the thread that read it by fv_flow_handle(), which may block
 * on the key backend and on the upstream (bounded by its timeout). The pool
 * size (serve.threads) is therefore how many requests can wait for the
 * business logic at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "serve_internal.h"

#define TLS_FILE_MAX (1024 * 1024)
/* /healthz runs one private-key operation per key; not more often than this. */
#define HEALTH_CACHE_SECONDS 2.0

struct fv_server {
	fv_context *ctx;
	struct serve_config cfg;
	fv_key **keys;
	fv_flow_handler *handler;
	struct serve_upstream *upstream;
	struct serve_metrics metrics;
	struct MHD_Daemon *daemon;
	struct MHD_Daemon *admin;  /* /healthz and /metrics, or NULL when off */
	char *tls_cert;
	char *tls_key;
	size_t tls_key_len;
	unsigned int port, admin_port;
	atomic_int active;        /* requests between first byte and completion */
	atomic_int stopping;
	int curl_ready;
	pthread_mutex_t health_lock;
	double health_checked;
	int health_ok;
	char *health_body;
	/* Whole-request deadline (see deadline_watch): open connections. */
	pthread_mutex_t watch_lock;
	struct conn_watch *watched;
	pthread_t watchdog;
	int watchdog_running;
};

/*
 * Per connection, for the whole-request deadline: libmicrohttpd's own
 * timeout is an idle timeout, which a client sending a byte now and then
 * never reaches, holding a connection slot forever.
 */
struct conn_watch {
	struct conn_watch *next, *prev;
	int fd;
	double started;       /* when the current request began to arrive */
	int answering;        /* the request is in; the answer is being made */
};

/* Per request, kept by libmicrohttpd in *req_cls. */
enum route { ROUTE_FLOWS, ROUTE_HEALTHZ, ROUTE_METRICS, ROUTE_NOT_FOUND,
             ROUTE_BAD_METHOD, ROUTE_TOO_LARGE, ROUTE_BAD_FRAMING };

struct request {
	enum route route;
	unsigned char *body;
	size_t len, cap;
	double started;
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Health: a real private-key operation on each key ---- */

static int key_probe(fv_key *key)
{
	unsigned char secret[16], wrapped[1024], plain[1024];
	size_t wrapped_len = sizeof(wrapped), plain_len = sizeof(plain);
	unsigned char *der = NULL;
	size_t der_len = 0;
	const unsigned char *p;
	EVP_PKEY *pub = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int rc = FV_ERR_GENERIC;

	if (fv_key_public_der(&der, &der_len, key) != FV_OK)
		return fv_error_last()->status;
	p = der;
	pub = d2i_PUBKEY(NULL, &p, (long)der_len);
	if (!pub || RAND_bytes(secret, sizeof(secret)) != 1 ||
	    !(pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) ||
	    EVP_PKEY_encrypt_init(pctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md_name(pctx, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_encrypt(pctx, wrapped, &wrapped_len, secret, sizeof(secret)) <= 0) {
		fv__error_set(FV_ERR_GENERIC, "key '%s': cannot encrypt a probe to its public key",
		              fv_key_name(key));
		goto out;
	}
	rc = fv_key_decrypt(plain, &plain_len, key, wrapped, wrapped_len);
	if (rc == FV_OK && (plain_len != sizeof(secret) ||
	                    CRYPTO_memcmp(plain, secret, sizeof(secret)) != 0))
		rc = fv__error_set(FV_ERR_BACKEND,
			"key '%s': the backend decrypted a probe to the wrong value", fv_key_name(key));
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(plain, sizeof(plain));
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pub);
	fv_free(der);
	return rc;
}

/* The /healthz body and status, recomputed at most every few seconds. */
static int health(fv_server *srv, char **body)
{
	json_object *doc, *keys;
	double now = now_seconds();
	size_t i;
	int ok;

	pthread_mutex_lock(&srv->health_lock);
	if (!srv->health_body || now - srv->health_checked >= HEALTH_CACHE_SECONDS) {
		json_object *fps = json_object_new_object();

		ok = 1;
		doc = json_object_new_object();
		keys = json_object_new_object();
		for (i = 0; i < srv->cfg.key_count; i++) {
			int rc = key_probe(srv->keys[i]);
			char fp[FV_FINGERPRINT_HEX_SIZE];

			if (fv_key_fingerprint(fp, srv->keys[i]) == FV_OK)
				json_object_object_add(fps, srv->cfg.keys[i], json_object_new_string(fp));

			if (rc != FV_OK) {
				ok = 0;
				fv__log(FV_LOG_ERROR, "serve: /healthz: %s", fv_error_last()->message);
			}
			json_object_object_add(keys, srv->cfg.keys[i],
			                       json_object_new_string(rc == FV_OK ? "ok" : "unavailable"));
		}
		json_object_object_add(doc, "status", json_object_new_string(ok ? "ok" : "unavailable"));
		json_object_object_add(doc, "generation", json_object_new_int(1));
		json_object_object_add(doc, "keys", keys);
		json_object_object_add(doc, "fingerprints", fps);
		free(srv->health_body);
		srv->health_body = strdup(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
		json_object_put(doc);
		srv->health_ok = ok;
		srv->health_checked = now;
	}
	*body = srv->health_body ? strdup(srv->health_body) : NULL;
	ok = srv->health_ok;
	pthread_mutex_unlock(&srv->health_lock);
	return ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
}

/* ---- HTTP ---- */

static enum MHD_Result send_reply(fv_server *srv, struct MHD_Connection *conn,
                                  unsigned int status, char *body, size_t len,
                                  const char *content_type)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	/* Takes ownership of body (malloc'ed). */
	resp = MHD_create_response_from_buffer(len, body ? body : (void *)"",
	                                       body ? MHD_RESPMEM_MUST_FREE
	                                            : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (content_type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	/* After ambiguous framing the next request's start is unknown: close. */
	if (atomic_load(&srv->stopping) || status == MHD_HTTP_BAD_REQUEST)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void peer_address(struct MHD_Connection *conn, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	snprintf(buf, len, "-");
	if (!info || !info->client_addr)
		return;
	if (info->client_addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)info->client_addr)->sin_addr,
		          buf, (socklen_t)len);
	else if (info->client_addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)info->client_addr)->sin6_addr,
		          buf, (socklen_t)len);
}

/* The one log line per request: no clear data, keys or secrets. */
static void log_request(fv_server *srv, struct MHD_Connection *conn,
                        const struct request *req, int status, const char *outcome,
                        const fv_flow_reply *reply)
{
	char peer[INET6_ADDRSTRLEN + 1];

	peer_address(conn, peer, sizeof(peer));
	if (reply)
		fv__log(FV_LOG_INFO,
		        "serve: %d %s key=%s bytes=%zu decrypt_ms=%.2f upstream_ms=%.2f total_ms=%.2f peer=%s",
		        status, outcome,
		        reply->key_index >= 0 ? srv->cfg.keys[reply->key_index] : "-",
		        req->len, reply->decrypt_seconds * 1e3, reply->upstream_seconds * 1e3,
		        (now_seconds() - req->started) * 1e3, peer);
	else
		fv__log(FV_LOG_INFO, "serve: %d %s bytes=%zu total_ms=%.2f peer=%s", status,
		        outcome, req->len, (now_seconds() - req->started) * 1e3, peer);
}

static enum MHD_Result answer_flows(fv_server *srv, struct MHD_Connection *conn,
                                    struct request *req)
{
	fv_flow_reply reply;
	const char *signature;
	enum MHD_Result ret;
	int rc;

	signature = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Hub-Signature-256");
	rc = fv_flow_handle(&reply, srv->handler, req->body, req->len, signature);
	if (rc != FV_OK) {
		fv__log(FV_LOG_ERROR, "serve: %s (answering 500)", fv_error_last()->message);
		fv__metrics_request(&srv->metrics, 500);
		log_request(srv, conn, req, 500, "internal-error", NULL);
		return send_reply(srv, conn, 500, NULL, 0, NULL);
	}
	fv__metrics_request(&srv->metrics, reply.http_status);
	fv__metrics_reply(&srv->metrics, &reply);
	log_request(srv, conn, req, reply.http_status, fv_flow_outcome_name(reply.outcome),
	            &reply);
	ret = send_reply(srv, conn, (unsigned int)reply.http_status,
	                 reply.body_len ? reply.body : NULL, reply.body_len,
	                 reply.content_type);
	if (reply.body_len)
		reply.body = NULL; /* now owned by the response */
	fv_flow_reply_clear(&reply);
	return ret;
}

static enum MHD_Result answer_simple(fv_server *srv, struct MHD_Connection *conn,
                                     struct request *req)
{
	char *body = NULL;
	size_t len = 0;
	unsigned int status;
	const char *what;

	switch (req->route) {
	case ROUTE_HEALTHZ:
		status = (unsigned int)health(srv, &body);
		len = body ? strlen(body) : 0;
		fv__log(FV_LOG_DEBUG, "serve: %u /healthz", status);
		return send_reply(srv, conn, status, body, len, "application/json");
	case ROUTE_METRICS:
		body = fv__metrics_render(&srv->metrics, &len);
		if (!body)
			return send_reply(srv, conn, 500, NULL, 0, NULL);
		return send_reply(srv, conn, MHD_HTTP_OK, body, len,
		                  "text/plain; version=0.0.4; charset=utf-8");
	case ROUTE_BAD_METHOD:
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		what = "method-not-allowed";
		break;
	case ROUTE_BAD_FRAMING:
		status = MHD_HTTP_BAD_REQUEST;
		what = "ambiguous-length";
		break;
	case ROUTE_TOO_LARGE:
		status = MHD_HTTP_CONTENT_TOO_LARGE;
		what = "body-too-large";
		break;
	default:
		status = MHD_HTTP_NOT_FOUND;
		what = "not-found";
		break;
	}
	fv__metrics_request(&srv->metrics, (int)status);
	log_request(srv, conn, req, (int)status, what, NULL);
	return send_reply(srv, conn, status, NULL, 0, NULL);
}

/* ---- Whole-request deadline ---- */

static struct conn_watch *conn_watch_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info ? info->socket_context : NULL;
}

/* The request is in (answering = 1), or the next one may start (0). */
static void deadline_set_answering(fv_server *srv, struct MHD_Connection *conn,
                                   int answering)
{
	struct conn_watch *w = conn_watch_of(conn);

	if (!w)
		return;
	pthread_mutex_lock(&srv->watch_lock);
	w->answering = answering;
	if (!answering)
		w->started = now_seconds();
	pthread_mutex_unlock(&srv->watch_lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	fv_server *srv = cls;
	struct conn_watch *w = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (!info || !(w = calloc(1, sizeof(*w))))
			return; /* only the idle timeout then */
		w->fd = info->connect_fd;
		w->started = now_seconds();
		pthread_mutex_lock(&srv->watch_lock);
		w->next = srv->watched;
		if (w->next)
			w->next->prev = w;
		srv->watched = w;
		pthread_mutex_unlock(&srv->watch_lock);
		*socket_context = w;
		return;
	}
	/* Closed: called before libmicrohttpd closes the socket, so the fd the
	 * watchdog may still use under the lock is never a reused one. */
	if (!w)
		return;
	pthread_mutex_lock(&srv->watch_lock);
	if (w->prev)
		w->prev->next = w->next;
	else
		srv->watched = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pthread_mutex_unlock(&srv->watch_lock);
	free(w);
	*socket_context = NULL;
}

/* Shut down connections whose request has not arrived within
 * serve.request_timeout_s; libmicrohttpd then sees EOF and frees the slot. */
static void *deadline_watch(void *arg)
{
	fv_server *srv = arg;

	while (!atomic_load(&srv->stopping)) {
		struct timespec pause = { 0, 250 * 1000 * 1000 };
		double now = now_seconds();
		struct conn_watch *w;

		pthread_mutex_lock(&srv->watch_lock);
		for (w = srv->watched; w; w = w->next)
			if (!w->answering && now - w->started > (double)srv->cfg.request_timeout_s)
				shutdown(w->fd, SHUT_RDWR);
		pthread_mutex_unlock(&srv->watch_lock);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

struct framing {
	int content_lengths;
	int transfer_encoding;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
	struct framing *f = cls;

	(void)kind;
	(void)value;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
		f->content_lengths++;
	else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
		f->transfer_encoding = 1;
	return MHD_YES;
}

/* Two Content-Length headers, or one with Transfer-Encoding: where the body
 * ends is ambiguous, the shape of request smuggling (RFC 9112, 6.3). */
static int framing_is_ambiguous(struct MHD_Connection *conn)
{
	struct framing f = { 0, 0 };

	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
	return f.content_lengths > 1 || (f.content_lengths && f.transfer_encoding);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
	fv_server *srv = cls;
	struct request *req = *req_cls;

	(void)version;
	if (!req) {
		const char *length;

		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		req->started = now_seconds();
		*req_cls = req;
		atomic_fetch_add(&srv->active, 1);
		atomic_fetch_add(&srv->metrics.in_flight, 1);
		if (framing_is_ambiguous(conn)) {
			req->route = ROUTE_BAD_FRAMING;
		} else if (strcmp(url, srv->cfg.path) == 0) {
			req->route = strcmp(method, MHD_HTTP_METHOD_POST) == 0 ? ROUTE_FLOWS
			                                                        : ROUTE_BAD_METHOD;
			length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
			                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
			/* Refuse before reading a body that is announced too large. */
			if (req->route == ROUTE_FLOWS && length &&
			    strtoull(length, NULL, 10) > srv->cfg.max_body_bytes)
				req->route = ROUTE_TOO_LARGE;
		} else {
			req->route = ROUTE_NOT_FOUND;
		}
		if (req->route != ROUTE_FLOWS) {
			deadline_set_answering(srv, conn, 1);
			return answer_simple(srv, conn, req);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		if (req->route != ROUTE_FLOWS)
			return MHD_NO;
		if (now_seconds() - req->started > (double)srv->cfg.request_timeout_s) {
			fv__log(FV_LOG_INFO, "serve: body not received within serve.request_timeout_s "
			        "(%u s); closing the connection", srv->cfg.request_timeout_s);
			return MHD_NO;
		}
		if (n > srv->cfg.max_body_bytes - req->len) {
			/* A chunked body grew past the limit: drop the connection. */
			fv__log(FV_LOG_INFO, "serve: body larger than serve.max_body_bytes (%zu); "
			        "closing the connection", srv->cfg.max_body_bytes);
			return MHD_NO;
		}
		if (req->len + n > req->cap) {
			size_t cap = req->cap ? req->cap : 4096;
			unsigned char *grown;

			while (cap < req->len + n)
				cap *= 2;
			if (cap > srv->cfg.max_body_bytes)
				cap = srv->cfg.max_body_bytes;
			grown = realloc(req->body, cap);
			if (!grown)
				return MHD_NO;
			req->body = grown;
			req->cap = cap;
		}
		memcpy(req->body + req->len, upload_data, n);
		req->len += n;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (req->route == ROUTE_FLOWS) {
		deadline_set_answering(srv, conn, 1);
		return answer_flows(srv, conn, req);
	}
	return MHD_YES; /* already answered */
}

/* The admin listener: GET /healthz and /metrics, nothing else. */
static enum MHD_Result on_admin_request(void *cls, struct MHD_Connection *conn,
                                        const char *url, const char *method,
                                        const char *version, const char *upload_data,
                                        size_t *upload_data_size, void **req_cls)
{
	fv_server *srv = cls;
	struct request req;

	(void)version;
	(void)upload_data;
	(void)req_cls;
	if (*upload_data_size)
		return MHD_NO; /* nothing here takes a body */
	memset(&req, 0, sizeof(req));
	req.started = now_seconds();
	if (strcmp(url, "/healthz") != 0 && strcmp(url, "/metrics") != 0)
		req.route = ROUTE_NOT_FOUND;
	else if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
	         strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		req.route = ROUTE_BAD_METHOD;
	else
		req.route = url[1] == 'h' ? ROUTE_HEALTHZ : ROUTE_METRICS;
	return answer_simple(srv, conn, &req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode code)
{
	fv_server *srv = cls;
	struct request *req = *req_cls;

	(void)code;
	/* A keep-alive connection's next request starts arriving now. */
	deadline_set_answering(srv, conn, 0);
	if (!req)
		return;
	free(req->body);
	free(req);
	*req_cls = NULL;
	atomic_fetch_sub(&srv->metrics.in_flight, 1);
	atomic_fetch_sub(&srv->active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	fv__log(FV_LOG_DEBUG, "serve: libmicrohttpd: %s", line);
}

/* ---- Life cycle ---- */

void fv__serve_key_warnings(fv_key *key)
{
	const fv_key_details *d;
	size_t i;

	if (fv_key_details_get(&d, key) != FV_OK)
		return;
	for (i = 0; i < d->warning_count; i++)
		fv__log(FV_LOG_WARNING, "serve: key '%s': %s (%s)", fv_key_name(key),
		        d->warnings[i].message, d->warnings[i].property);
}

static int read_tls_file(char **out, size_t *len, const char *path, const char *where,
                         int private)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return fv__error_set(FV_ERR_CONFIG, "%s: cannot read '%s': %s", where, path,
		                     strerror(errno));
	if (private && (st.st_mode & S_IROTH))
		return fv__error_set(FV_ERR_PERMISSION,
			"%s: '%s' is readable by others; fix with chmod o-rwx '%s'", where, path, path);
	if (fv__file_read(out, len, path, TLS_FILE_MAX) != FV_OK)
		return fv__error_prefix("%s", where);
	return FV_OK;
}

int fv_server_new(fv_server **out, fv_context *ctx)
{
	fv_flow_handler_config hc;
	char **secrets = NULL;
	size_t *secret_lens = NULL, i, len;
	fv_server *srv;
	int rc;

	if (!out || !ctx)
		return fv__error_set(FV_ERR_USAGE, "fv_server_new: missing argument");
	*out = NULL;
	if (!ctx->serve)
		return fv__error_set(FV_ERR_CONFIG,
			"%s: no \"serve\" section; add one with at least \"keys\" (see docs/flows.md)",
			ctx->config_path ? ctx->config_path : "the configuration");
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return fv__error_nomem();
	srv->ctx = ctx;
	pthread_mutex_init(&srv->health_lock, NULL);
	pthread_mutex_init(&srv->watch_lock, NULL);
	if ((rc = fv__serve_config_parse(&srv->cfg, ctx->serve, "serve", ctx)) != FV_OK ||
	    (rc = fv__serve_config_signing(&srv->cfg, "serve")) != FV_OK)
		goto fail;

	if (srv->cfg.cert_path) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			rc = fv__error_set(FV_ERR_UNSUPPORTED,
				"serve.cert: this libmicrohttpd was built without TLS; remove cert and key "
				"and put flowvault behind a TLS proxy");
			goto fail;
		}
		if ((rc = read_tls_file(&srv->tls_cert, &len, srv->cfg.cert_path, "serve.cert", 0)) != FV_OK ||
		    (rc = read_tls_file(&srv->tls_key, &srv->tls_key_len, srv->cfg.key_path,
		                        "serve.key", 1)) != FV_OK)
			goto fail;
	}

	srv->keys = calloc(srv->cfg.key_count, sizeof(*srv->keys)); // NOLINT(bugprone-sizeof-expression): an array of fv_key pointers
	if (!srv->keys) {
		rc = fv__error_nomem();
		goto fail;
	}
	for (i = 0; i < srv->cfg.key_count; i++) {
		if ((rc = fv_key_open(&srv->keys[i], ctx, srv->cfg.keys[i])) != FV_OK) {
			fv__error_prefix("serve.keys[%zu]", i);
			goto fail;
		}
		fv__serve_key_warnings(srv->keys[i]);
	}

	if (srv->cfg.upstream) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			rc = fv__error_set(FV_ERR_GENERIC, "libcurl cannot be initialised");
			goto fail;
		}
		srv->curl_ready = 1;
		if ((rc = fv__upstream_new(&srv->upstream, srv->cfg.upstream,
		                           srv->cfg.upstream_timeout_ms,
		                           srv->cfg.max_body_bytes)) != FV_OK)
			goto fail;
	}

	secrets = calloc(srv->cfg.app_secret_count + 1, sizeof(*secrets));
	secret_lens = calloc(srv->cfg.app_secret_count + 1, sizeof(*secret_lens));
	if (!secrets || !secret_lens) {
		rc = fv__error_nomem();
		goto fail_secrets;
	}
	for (i = 0; i < srv->cfg.app_secret_count; i++) {
		char purpose[64];

		snprintf(purpose, sizeof(purpose), "serve.app_secrets[%zu]", i);
		if ((rc = fv_secret_resolve(&secrets[i], &secret_lens[i], srv->cfg.app_secrets[i],
		                            purpose)) != FV_OK)
			goto fail_secrets;
		if (secret_lens[i] == 0) {
			rc = fv__error_set(FV_ERR_SECRET, "%s: the app secret is empty", purpose);
			goto fail_secrets;
		}
	}
	memset(&hc, 0, sizeof(hc));
	hc.keys = srv->keys;
	hc.key_count = srv->cfg.key_count;
	hc.app_secrets = (const char *const *)secrets;
	hc.app_secret_lens = secret_lens;
	hc.app_secret_count = srv->cfg.app_secret_count;
	hc.upstream = srv->upstream ? fv__upstream_call : NULL;
	hc.upstream_arg = srv->upstream;
	rc = fv_flow_handler_new(&srv->handler, &hc);
fail_secrets:
	/* Either array may be missing when its calloc failed (nothing resolved yet). */
	for (i = 0; secrets && secret_lens && i < srv->cfg.app_secret_count; i++)
		fv_secret_free(secrets[i], secret_lens[i]);
	free(secrets);
	free(secret_lens);
	if (rc != FV_OK)
		goto fail;
	if ((rc = fv__metrics_init(&srv->metrics, srv->cfg.keys, srv->cfg.key_count)) != FV_OK)
		goto fail;
	*out = srv;
	return FV_OK;
fail:
	fv_server_free(srv);
	return rc;
}

static struct MHD_Daemon *start_daemon(fv_server *srv, int fd, MHD_AccessHandlerCallback handler,
                                       unsigned int threads, int tls)
{
	unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;

	if (tls)
		flags |= MHD_USE_TLS;
	return MHD_start_daemon(
		flags, 0, NULL, NULL, handler, srv,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_THREAD_POOL_SIZE, threads,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->cfg.max_connections,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->cfg.request_timeout_s,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
		tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, srv->tls_cert,
		MHD_OPTION_HTTPS_MEM_KEY, srv->tls_key,
		MHD_OPTION_END);
}

/* Bind the Flows and admin addresses (admin_fd stays -1 when it is off). */
static int bind_listeners(const struct serve_config *cfg, int *flows_fd, int *admin_fd)
{
	int rc;

	*admin_fd = -1;
	if ((rc = fv__serve_listen(flows_fd, cfg->host, cfg->port, "listen", cfg->listen)) != FV_OK)
		return rc;
	if (cfg->admin_listen &&
	    (rc = fv__serve_listen(admin_fd, cfg->admin_host, cfg->admin_port, "admin_listen",
	                           cfg->admin_listen)) != FV_OK) {
		close(*flows_fd);
		*flows_fd = -1;
	}
	return rc;
}

int fv_server_check(fv_server *srv)
{
	int flows_fd, admin_fd, rc;

	if (!srv)
		return fv__error_set(FV_ERR_USAGE, "fv_server_check: missing argument");
	if ((rc = bind_listeners(&srv->cfg, &flows_fd, &admin_fd)) != FV_OK)
		return rc;
	close(flows_fd);
	if (admin_fd >= 0)
		close(admin_fd);
	return FV_OK;
}

int fv_server_start(fv_server *srv)
{
	int flows_fd = -1, admin_fd = -1, rc;

	if (!srv || srv->daemon)
		return fv__error_set(FV_ERR_USAGE, "fv_server_start: not a new server");
	if ((rc = bind_listeners(&srv->cfg, &flows_fd, &admin_fd)) != FV_OK)
		return rc;
	srv->daemon = start_daemon(srv, flows_fd, on_request, srv->cfg.threads,
	                           srv->tls_cert != NULL);
	if (!srv->daemon) {
		close(flows_fd);
		if (admin_fd >= 0)
			close(admin_fd);
		return fv__error_set(FV_ERR_GENERIC,
			"serve.listen: cannot serve on %s (see flowvault -vv serve for details)",
			srv->cfg.listen);
	}
	if (admin_fd >= 0) {
		srv->admin = start_daemon(srv, admin_fd, on_admin_request, 1, 0);
		if (!srv->admin) {
			close(admin_fd);
			fv_server_shutdown(srv);
			return fv__error_set(FV_ERR_GENERIC,
				"serve.admin_listen: cannot serve on %s (see flowvault -vv serve for "
				"details)", srv->cfg.admin_listen);
		}
		srv->admin_port = fv__serve_bound_port(admin_fd);
	}
	/* GnuTLS has its own copy now. */
	if (srv->tls_key) {
		OPENSSL_cleanse(srv->tls_key, srv->tls_key_len);
		free(srv->tls_key);
		srv->tls_key = NULL;
	}
	if (pthread_create(&srv->watchdog, NULL, deadline_watch, srv) == 0)
		srv->watchdog_running = 1;
	else
		fv__log(FV_LOG_WARNING, "serve: cannot start the request deadline thread; "
		        "only the idle timeout (serve.request_timeout_s) applies");
	srv->port = fv__serve_bound_port(flows_fd);
	if (!srv->cfg.app_secret_count)
		fv__log(FV_LOG_WARNING, "serve: serve.allow_unsigned is true and no app_secrets "
		        "are set: X-Hub-Signature-256 is not checked, so anyone who reaches %s can "
		        "make the key decrypt; set serve.app_secrets", srv->cfg.listen);
	fv__log(FV_LOG_INFO, "serve: answering Flows requests on %s://%s%s%s:%u%s with %zu key%s "
	        "(%s), %u threads, upstream %s; /healthz and /metrics %s%s",
	        srv->tls_cert ? "https" : "http", strchr(srv->cfg.host, ':') ? "[" : "",
	        srv->cfg.host, strchr(srv->cfg.host, ':') ? "]" : "",
	        srv->port, srv->cfg.path, srv->cfg.key_count, srv->cfg.key_count == 1 ? "" : "s",
	        srv->cfg.keys[0], srv->cfg.threads,
	        srv->cfg.upstream ? "configured" : "none (pings and error notifications only)",
	        srv->cfg.admin_listen ? "on http://" : "off",
	        srv->cfg.admin_listen ? srv->cfg.admin_listen : "");
	return FV_OK;
}

unsigned int fv_server_port(const fv_server *srv)
{
	return srv ? srv->port : 0;
}

int fv_server_shutdown(fv_server *srv)
{
	MHD_socket listen_fd;
	double deadline;

	if (!srv || !srv->daemon)
		return FV_OK;
	atomic_store(&srv->stopping, 1);
	listen_fd = MHD_quiesce_daemon(srv->daemon);
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
	if (srv->admin && (listen_fd = MHD_quiesce_daemon(srv->admin)) != MHD_INVALID_SOCKET)
		close(listen_fd);
	/* In-flight requests may be waiting for the upstream: give them its timeout. */
	deadline = now_seconds() + (double)srv->cfg.upstream_timeout_ms / 1e3 + 2.0;
	while (atomic_load(&srv->active) > 0 && now_seconds() < deadline) {
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		nanosleep(&pause, NULL);
	}
	if (atomic_load(&srv->active) > 0)
		fv__log(FV_LOG_WARNING, "serve: %d request(s) still running at shutdown",
		        atomic_load(&srv->active));
	if (srv->watchdog_running) {
		pthread_join(srv->watchdog, NULL);
		srv->watchdog_running = 0;
	}
	MHD_stop_daemon(srv->daemon);
	srv->daemon = NULL;
	if (srv->admin) {
		MHD_stop_daemon(srv->admin);
		srv->admin = NULL;
	}
	fv__log(FV_LOG_INFO, "serve: stopped");
	return FV_OK;
}

void fv_server_free(fv_server *srv)
{
	size_t i;

	if (!srv)
		return;
	fv_server_shutdown(srv);
	fv_flow_handler_free(srv->handler);
	fv__upstream_free(srv->upstream);
	if (srv->curl_ready)
		curl_global_cleanup();
	for (i = 0; srv->keys && i < srv->cfg.key_count; i++)
		fv_key_free(srv->keys[i]);
	free(srv->keys);
	fv__metrics_clear(&srv->metrics);
	free(srv->tls_cert);
	if (srv->tls_key) {
		OPENSSL_cleanse(srv->tls_key, srv->tls_key_len);
		free(srv->tls_key);
	}
	free(srv->health_body);
	pthread_mutex_destroy(&srv->health_lock);
	pthread_mutex_destroy(&srv->watch_lock);
	fv__serve_config_clear(&srv->cfg);
	free(srv);
}
