/*
 * The HTTP side of `flowvault serve` on libmicrohttpd: the Flows listener
 * (serve.path only) and the admin listener (/healthz, /metrics). Runs in
 * each network worker, or in the single process with isolation "none".
 *
 * libmicrohttpd runs a pool of threads (epoll on Linux); each request is
 * answered on the thread that read it by fv_flow_handle(), which may block
 * on the key process and on the upstream (bounded by its timeout). The pool
 * size (serve.threads) is therefore how many requests can wait for the
 * business logic at once.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../serve_internal.h"

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
             ROUTE_BAD_METHOD, ROUTE_TOO_LARGE, ROUTE_BAD_FRAMING, ROUTE_UNAUTHORIZED };

struct request {
	enum route route;
	unsigned char *body;
	size_t len, cap;
	double started;
};

static int conn_is_admin(struct serve_http *srv, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON);

	return info && info->daemon == srv->admin;
}

/* ---- HTTP ---- */

static enum MHD_Result send_reply(struct serve_http *srv, struct MHD_Connection *conn,
                                  unsigned int status, char *body, size_t len,
                                  const char *content_type)
{
	const char *allow = conn_is_admin(srv, conn) ? "GET, HEAD" : "POST";
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
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		                        "Bearer realm=\"flowvault admin\"");
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
static void log_request(struct serve_http *srv, struct MHD_Connection *conn,
                        const struct request *req, int status, const char *outcome,
                        const fv_flow_reply *reply)
{
	char peer[INET6_ADDRSTRLEN + 1];

	peer_address(conn, peer, sizeof(peer));
	if (reply)
		fv__log(FV_LOG_INFO,
		        "serve: %d %s key=%s bytes=%zu decrypt_ms=%.2f upstream_ms=%.2f total_ms=%.2f peer=%s",
		        status, outcome,
		        reply->key_index >= 0 ? srv->key_names[reply->key_index] : "-",
		        req->len, reply->decrypt_seconds * 1e3, reply->upstream_seconds * 1e3,
		        (fv__now_seconds() - req->started) * 1e3, peer);
	else
		fv__log(FV_LOG_INFO, "serve: %d %s bytes=%zu total_ms=%.2f peer=%s", status,
		        outcome, req->len, (fv__now_seconds() - req->started) * 1e3, peer);
}

static enum MHD_Result answer_flows(struct serve_http *srv, struct MHD_Connection *conn,
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
		fv__metrics_request(srv->metrics, 500);
		log_request(srv, conn, req, 500, "internal-error", NULL);
		return send_reply(srv, conn, 500, NULL, 0, NULL);
	}
	fv__metrics_request(srv->metrics, reply.http_status);
	fv__metrics_reply(srv->metrics, &reply, srv->key_slots);
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

static enum MHD_Result answer_simple(struct serve_http *srv, struct MHD_Connection *conn,
                                     struct request *req)
{
	char *body = NULL;
	size_t len = 0;
	unsigned int status;
	const char *what;

	switch (req->route) {
	case ROUTE_HEALTHZ:
		status = (unsigned int)srv->health(srv->health_arg, &body);
		len = body ? strlen(body) : 0;
		fv__log(FV_LOG_DEBUG, "serve: %u /healthz", status);
		return send_reply(srv, conn, status, body, len, "application/json");
	case ROUTE_METRICS:
		body = fv__metrics_render(srv->metrics, &len);
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
	case ROUTE_UNAUTHORIZED:
		status = MHD_HTTP_UNAUTHORIZED;
		what = "unauthorized";
		break;
	default:
		status = MHD_HTTP_NOT_FOUND;
		what = "not-found";
		break;
	}
	if (!conn_is_admin(srv, conn)) {
		fv__metrics_request(srv->metrics, (int)status);
		log_request(srv, conn, req, (int)status, what, NULL);
	} else if (req->route == ROUTE_UNAUTHORIZED) {
		log_request(srv, conn, req, (int)status, what, NULL);
	}
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
static void deadline_set_answering(struct serve_http *srv, struct MHD_Connection *conn,
                                   int answering)
{
	struct conn_watch *w = conn_watch_of(conn);

	if (!w)
		return;
	pthread_mutex_lock(&srv->watch_lock);
	w->answering = answering;
	if (!answering)
		w->started = fv__now_seconds();
	pthread_mutex_unlock(&srv->watch_lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	struct serve_http *srv = cls;
	struct conn_watch *w = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (!info || !(w = calloc(1, sizeof(*w))))
			return; /* only the idle timeout then */
		w->fd = info->connect_fd;
		w->started = fv__now_seconds();
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
	struct serve_http *srv = arg;

	while (!atomic_load(&srv->halt)) {
		struct timespec pause = { 0, 250 * 1000 * 1000 };
		double now = fv__now_seconds();
		struct conn_watch *w;

		pthread_mutex_lock(&srv->watch_lock);
		for (w = srv->watched; w; w = w->next)
			if (!w->answering && now - w->started > (double)srv->cfg->request_timeout_s)
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
	struct serve_http *srv = cls;
	struct request *req = *req_cls;

	(void)version;
	if (!req) {
		const char *length;

		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		req->started = fv__now_seconds();
		*req_cls = req;
		atomic_fetch_add(&srv->active, 1);
		atomic_fetch_add(&srv->metrics->in_flight, 1);
		if (framing_is_ambiguous(conn)) {
			req->route = ROUTE_BAD_FRAMING;
		} else if (strcmp(url, srv->cfg->path) == 0) {
			req->route = strcmp(method, MHD_HTTP_METHOD_POST) == 0 ? ROUTE_FLOWS
			                                                        : ROUTE_BAD_METHOD;
			length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
			                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
			/* Refuse before reading a body that is announced too large. */
			if (req->route == ROUTE_FLOWS && length &&
			    strtoull(length, NULL, 10) > srv->cfg->max_body_bytes)
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
		if (fv__now_seconds() - req->started > (double)srv->cfg->request_timeout_s) {
			fv__log(FV_LOG_INFO, "serve: body not received within serve.request_timeout_s "
			        "(%u s); closing the connection", srv->cfg->request_timeout_s);
			return MHD_NO;
		}
		if (n > srv->cfg->max_body_bytes - req->len) {
			/* A chunked body grew past the limit: drop the connection. */
			fv__log(FV_LOG_INFO, "serve: body larger than serve.max_body_bytes (%zu); "
			        "closing the connection", srv->cfg->max_body_bytes);
			return MHD_NO;
		}
		if (req->len + n > req->cap) {
			size_t cap = req->cap ? req->cap : 4096;
			unsigned char *grown;

			while (cap < req->len + n)
				cap *= 2;
			if (cap > srv->cfg->max_body_bytes)
				cap = srv->cfg->max_body_bytes;
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

/* The admin listener: GET /healthz and /metrics, nothing else; with
 * serve.admin_token, only for a request that carries it. */
static enum MHD_Result on_admin_request(void *cls, struct MHD_Connection *conn,
                                        const char *url, const char *method,
                                        const char *version, const char *upload_data,
                                        size_t *upload_data_size, void **req_cls)
{
	struct serve_http *srv = cls;
	struct request req;

	(void)version;
	(void)upload_data;
	(void)req_cls;
	if (*upload_data_size)
		return MHD_NO; /* nothing here takes a body */
	memset(&req, 0, sizeof(req));
	req.started = fv__now_seconds();
	if (srv->admin_token_set &&
	    !fv__admin_authorized(srv->admin_token_digest,
	                          MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                                      MHD_HTTP_HEADER_AUTHORIZATION)))
		req.route = ROUTE_UNAUTHORIZED;
	else if (strcmp(url, "/healthz") != 0 && strcmp(url, "/metrics") != 0)
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
	struct serve_http *srv = cls;
	struct request *req = *req_cls;

	(void)code;
	/* A keep-alive connection's next request starts arriving now. */
	deadline_set_answering(srv, conn, 0);
	if (!req)
		return;
	free(req->body);
	free(req);
	*req_cls = NULL;
	atomic_fetch_sub(&srv->metrics->in_flight, 1);
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

/* TLS when cert and key are given (PEM text). */
static struct MHD_Daemon *start_daemon(struct serve_http *srv, int fd,
                                       MHD_AccessHandlerCallback handler,
                                       unsigned int threads, const char *cert,
                                       const char *key)
{
	unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	int tls = cert && key;

	if (tls)
		flags |= MHD_USE_TLS;
	return MHD_start_daemon(
		flags, 0, NULL, NULL, handler, srv,
		/* First, so that libmicrohttpd's remarks on the options below reach it. */
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		/* 1 would be a pool of one; 0 is the daemon's own thread. */
		MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->cfg->max_connections,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->cfg->request_timeout_s,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
		tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
		MHD_OPTION_HTTPS_MEM_KEY, key,
		MHD_OPTION_END);
}

int fv__http_start(struct serve_http *srv, int flows_fd, int admin_fd)
{
	pthread_mutex_init(&srv->watch_lock, NULL);
	srv->flows = start_daemon(srv, flows_fd, on_request, srv->cfg->threads, srv->tls_cert,
	                          srv->tls_key);
	if (!srv->flows)
		return fv__error_set(FV_ERR_GENERIC,
			"serve.listen: cannot serve on %s (see flowvault -vv serve for details)",
			srv->cfg->listen);
	if (admin_fd >= 0) {
		srv->admin = start_daemon(srv, admin_fd, on_admin_request, 1, srv->admin_tls_cert,
		                          srv->admin_tls_key);
		if (!srv->admin) {
			fv__http_stop(srv);
			return fv__error_set(FV_ERR_GENERIC,
				"serve.admin_listen: cannot serve on %s (see flowvault -vv serve for "
				"details)", srv->cfg->admin_listen);
		}
		srv->admin_port = fv__serve_bound_port(admin_fd);
	}
	srv->port = fv__serve_bound_port(flows_fd);
	if (pthread_create(&srv->watchdog, NULL, deadline_watch, srv) == 0)
		srv->watchdog_running = 1;
	else
		fv__log(FV_LOG_WARNING, "serve: cannot start the request deadline thread; "
		        "only the idle timeout (serve.request_timeout_s) applies");
	return FV_OK;
}

void fv__http_quiesce(struct serve_http *srv)
{
	MHD_socket fd;

	atomic_store(&srv->stopping, 1);
	/* The listening sockets stay open in the other processes that share them. */
	if (srv->flows && (fd = MHD_quiesce_daemon(srv->flows)) != MHD_INVALID_SOCKET)
		close(fd);
	if (srv->admin && (fd = MHD_quiesce_daemon(srv->admin)) != MHD_INVALID_SOCKET)
		close(fd);
}

static unsigned int open_connections(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *info =
		d ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;

	return info ? info->num_connections : 0;
}

void fv__http_drain(struct serve_http *srv, double seconds, int connections)
{
	double deadline = fv__now_seconds() + seconds;

	while (fv__now_seconds() < deadline &&
	       (atomic_load(&srv->active) > 0 ||
	        (connections && open_connections(srv->flows) + open_connections(srv->admin) > 0))) {
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		nanosleep(&pause, NULL);
	}
	if (atomic_load(&srv->active) > 0)
		fv__log(FV_LOG_WARNING, "serve: %d request(s) still running at shutdown",
		        atomic_load(&srv->active));
}

void fv__http_stop(struct serve_http *srv)
{
	atomic_store(&srv->stopping, 1);
	atomic_store(&srv->halt, 1);
	if (srv->watchdog_running) {
		pthread_join(srv->watchdog, NULL);
		srv->watchdog_running = 0;
	}
	if (srv->flows)
		MHD_stop_daemon(srv->flows);
	if (srv->admin)
		MHD_stop_daemon(srv->admin);
	srv->flows = srv->admin = NULL;
	pthread_mutex_destroy(&srv->watch_lock);
}

char *fv__health_body(int *status, const char *const *names, size_t count, uint32_t ok_mask,
                      char fingerprints[][FV_FINGERPRINT_HEX_SIZE], unsigned int generation)
{
	json_object *doc = json_object_new_object(), *keys = json_object_new_object(),
	            *fps = json_object_new_object();
	char *body;
	size_t i;
	int ok = 1;

	for (i = 0; i < count; i++) {
		int key_ok = (ok_mask >> i) & 1u;

		ok &= key_ok;
		json_object_object_add(keys, names[i],
		                       json_object_new_string(key_ok ? "ok" : "unavailable"));
		if (fingerprints[i][0])
			json_object_object_add(fps, names[i], json_object_new_string(fingerprints[i]));
	}
	json_object_object_add(doc, "status", json_object_new_string(ok ? "ok" : "unavailable"));
	json_object_object_add(doc, "generation", json_object_new_int64(generation));
	json_object_object_add(doc, "keys", keys);
	json_object_object_add(doc, "fingerprints", fps);
	body = strdup(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
	json_object_put(doc);
	*status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	return body;
}
