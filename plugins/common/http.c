/*
 * HTTPS for the cloud plugins: a pool of curl easy handles per instance,
 * one deadline per operation, retries with backoff inside it. See cloud.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cloud.h"

#define POOL_IDLE_MAX 16
#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 1000
/* Not worth starting an attempt with less time than this left. */
#define ATTEMPT_MIN_MS 50

struct cloud_http {
	const fv_host *host;
	char *plugin;
	char *location;
	char *ca_file;
	long timeout_ms, attempt_timeout_ms, connect_timeout_ms;

	pthread_mutex_t lock;          /* idle[], n_idle, requests */
	CURL *idle[POOL_IDLE_MAX];
	size_t n_idle;
	uint64_t requests;

	pid_t pid;                     /* the process the idle handles belong to */

	CURLSH *share;                 /* DNS and TLS sessions */
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int64_t cloud_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cloud_deadline(const struct cloud_http *http)
{
	return cloud_now_ms() + http->timeout_ms;
}

const char *cloud_http_plugin(const struct cloud_http *http)
{
	return http->plugin;
}

const char *cloud_http_location(const struct cloud_http *http)
{
	return http->location;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct cloud_http *http = arg;

	(void)h;
	(void)access;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&http->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
	struct cloud_http *http = arg;

	(void)h;
	if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&http->share_locks[data]);
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int cloud_http_new(const fv_host *host, const struct cloud_http_opts *opts,
                   struct cloud_http **out)
{
	struct cloud_http *http;
	int i;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return host->error(FV_ERR_BACKEND, "%s: libcurl cannot start: %s",
		                   opts->plugin, curl_easy_strerror(curl_init_result));
	http = calloc(1, sizeof(*http));
	if (!http)
		return host->error(FV_ERR_NOMEM, "out of memory");
	http->host = host;
	http->plugin = strdup(opts->plugin ? opts->plugin : "cloud");
	http->location = strdup(opts->location ? opts->location : "keys.?");
	http->ca_file = dup_or_null(opts->ca_file);
	http->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : CLOUD_TIMEOUT_MS_DEFAULT;
	http->attempt_timeout_ms = opts->attempt_timeout_ms > 0
	                                   ? opts->attempt_timeout_ms
	                                   : CLOUD_ATTEMPT_TIMEOUT_MS_DEFAULT;
	http->connect_timeout_ms = opts->connect_timeout_ms > 0
	                                   ? opts->connect_timeout_ms
	                                   : CLOUD_CONNECT_TIMEOUT_MS_DEFAULT;
	http->pid = getpid();
	pthread_mutex_init(&http->lock, NULL);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&http->share_locks[i], NULL);
	http->share = curl_share_init();
	if (!http->plugin || !http->location || (opts->ca_file && !http->ca_file) ||
	    !http->share) {
		cloud_http_free(http);
		return host->error(FV_ERR_NOMEM, "out of memory");
	}
	curl_share_setopt(http->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(http->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(http->share, CURLSHOPT_USERDATA, http);
	curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(http->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = http;
	return FV_OK;
}

void cloud_http_free(struct cloud_http *http)
{
	size_t i;
	int j;

	if (!http)
		return;
	for (i = 0; http->pid == getpid() && i < http->n_idle; i++)
		curl_easy_cleanup(http->idle[i]);
	if (http->share)
		curl_share_cleanup(http->share);
	pthread_mutex_destroy(&http->lock);
	for (j = 0; j < CURL_LOCK_DATA_LAST; j++)
		pthread_mutex_destroy(&http->share_locks[j]);
	free(http->plugin);
	free(http->location);
	free(http->ca_file);
	free(http);
}

uint64_t cloud_http_request_count(const struct cloud_http *http)
{
	uint64_t n;

	pthread_mutex_lock((pthread_mutex_t *)&http->lock);
	n = http->requests;
	pthread_mutex_unlock((pthread_mutex_t *)&http->lock);
	return n;
}

/* An idle handle (its connection may still be open) or a new one. */
static CURL *handle_take(struct cloud_http *http)
{
	CURL *h = NULL;

	pthread_mutex_lock(&http->lock);
	if (http->pid != getpid()) {
		/* A forked child must not use (or close) its parent's TLS
		 * connections: forget them, open its own. */
		http->n_idle = 0;
		http->pid = getpid();
	}
	if (http->n_idle)
		h = http->idle[--http->n_idle];
	http->requests++;
	pthread_mutex_unlock(&http->lock);
	if (!h)
		h = curl_easy_init();
	return h;
}

static void handle_give_back(struct cloud_http *http, CURL *h, int keep)
{
	if (keep) {
		pthread_mutex_lock(&http->lock);
		if (http->n_idle < POOL_IDLE_MAX) {
			http->idle[http->n_idle++] = h;
			h = NULL;
		}
		pthread_mutex_unlock(&http->lock);
	}
	if (h)
		curl_easy_cleanup(h);
}

int cloud_header_is_secret(const char *name, size_t name_len)
{
	static const char *const secret_names[] = {
		"authorization", "proxy-authorization", "x-amz-security-token",
		"x-vault-token", "x-aws-ec2-metadata-token", "cookie", "set-cookie",
		"x-goog-iam-authorization-token", "metadata-flavor-token",
	};
	size_t i;

	for (i = 0; i < sizeof(secret_names) / sizeof(secret_names[0]); i++)
		if (strlen(secret_names[i]) == name_len &&
		    strncasecmp(secret_names[i], name, name_len) == 0)
			return 1;
	return 0;
}

/* ---- Receiving ---- */

struct body_sink {
	char *buf;
	size_t len, cap;
	int too_large;
};

/* Grows by copying so that no realloc leaves an unwiped copy behind. */
static size_t body_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body_sink *sink = arg;
	size_t n = size * nmemb;

	if (sink->len + n + 1 > CLOUD_RESPONSE_MAX) {
		sink->too_large = 1;
		return 0;
	}
	if (sink->len + n + 1 > sink->cap) {
		size_t cap = sink->cap ? sink->cap : 4096;
		char *grown;

		while (cap < sink->len + n + 1)
			cap *= 2;
		grown = malloc(cap);
		if (!grown)
			return 0;
		if (sink->buf) {
			memcpy(grown, sink->buf, sink->len);
			OPENSSL_clear_free(sink->buf, sink->cap);
		}
		sink->buf = grown;
		sink->cap = cap;
	}
	memcpy(sink->buf + sink->len, data, n);
	sink->len += n;
	sink->buf[sink->len] = '\0';
	return n;
}

static void sink_free(struct body_sink *sink)
{
	if (sink->buf)
		OPENSSL_clear_free(sink->buf, sink->cap);
	memset(sink, 0, sizeof(*sink));
}

void cloud_response_free(struct cloud_response *resp)
{
	if (!resp)
		return;
	if (resp->body)
		OPENSSL_clear_free(resp->body, resp->len + 1);
	memset(resp, 0, sizeof(*resp));
}

/* ---- Retrying ---- */

static const char *default_retry_reason(long status)
{
	switch (status) {
	case 429: return "throttled (HTTP 429)";
	case 500: return "server error (HTTP 500)";
	case 502: return "bad gateway (HTTP 502)";
	case 503: return "service unavailable (HTTP 503)";
	case 504: return "gateway timeout (HTTP 504)";
	default: return NULL;
	}
}

/* Errors where the request surely never reached the service. */
static int curl_error_before_send(CURLcode c)
{
	return c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_COULDNT_CONNECT ||
	       c == CURLE_COULDNT_RESOLVE_PROXY;
}

static int curl_error_retryable(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0; /* TLS verification and the like: retrying cannot help */
	}
}

static long backoff_ms(unsigned int attempt)
{
	unsigned char r[2];
	long cap = BACKOFF_BASE_MS << (attempt < 4 ? attempt : 4);

	if (cap > BACKOFF_CAP_MS)
		cap = BACKOFF_CAP_MS;
	/* Full jitter: concurrent callers must not retry in lockstep. */
	if (RAND_bytes(r, sizeof(r)) != 1)
		return cap / 2;
	return (long)(((unsigned)r[0] << 8 | r[1]) % (unsigned long)(cap + 1));
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The URL up to '?', for logs (a query may carry a signature or token). */
static void url_for_log(const char *url, char *buf, size_t len)
{
	size_t n = strcspn(url, "?#");

	if (n >= len)
		n = len - 1;
	memcpy(buf, url, n);
	buf[n] = '\0';
}

static int url_scheme_ok(const struct cloud_request *req)
{
	if (strncasecmp(req->url, "https://", 8) == 0)
		return 1;
	return req->allow_http && strncasecmp(req->url, "http://", 7) == 0;
}

/* Copy the value of header line `line` (name of `name_len` bytes and the
 * colon included) into `out`, trimmed and truncated to fit. */
static void header_value(const char *line, size_t n, size_t name_len, char *out,
                         size_t out_size)
{
	size_t i = name_len, end = n;

	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	while (end > i && (line[end - 1] == '\r' || line[end - 1] == '\n' ||
	                   line[end - 1] == ' '))
		end--;
	if (end - i >= out_size)
		end = i + out_size - 1;
	memcpy(out, line + i, end - i);
	out[end - i] = '\0';
}

static size_t header_content_type(char *line, size_t size, size_t nmemb, void *arg)
{
	struct cloud_response *resp = arg;
	size_t n = size * nmemb;

	if (n > 13 && strncasecmp(line, "content-type:", 13) == 0)
		header_value(line, n, 13, resp->content_type, sizeof(resp->content_type));
	else if (n > 17 && strncasecmp(line, "www-authenticate:", 17) == 0 &&
	         !resp->www_authenticate[0])
		header_value(line, n, 17, resp->www_authenticate, sizeof(resp->www_authenticate));
	return n;
}

/* Header list with the secret header built in wiped memory. */
static struct curl_slist *build_headers(const struct cloud_request *req, int *failed)
{
	struct curl_slist *list = NULL, *next;
	size_t i;

	*failed = 0;
	for (i = 0; req->headers && req->headers[i]; i++) {
		next = curl_slist_append(list, req->headers[i]);
		if (!next)
			goto fail;
		list = next;
	}
	/* No "Expect:" header to suppress 100-continue: libcurl 7.88 only
	 * sends it above 1 MiB, and its SigV4 would sign the empty header,
	 * which is never sent, so AWS would refuse the signature. */
	if (req->secret_header_name && req->secret_header_value &&
	    req->secret_header_value->data) {
		size_t n = strlen(req->secret_header_name) + 2 + req->secret_header_value->len + 1;
		char *line = malloc(n);

		if (!line)
			goto fail;
		snprintf(line, n, "%s: %s", req->secret_header_name, req->secret_header_value->data);
		next = curl_slist_append(list, line);
		OPENSSL_clear_free(line, n);
		if (!next)
			goto fail;
		list = next;
	}
	return list;
fail:
	*failed = 1;
	return list;
}

/* curl_slist_free_all without leaving the secret header behind. */
static void free_headers(struct curl_slist *list)
{
	struct curl_slist *l;

	for (l = list; l; l = l->next)
		OPENSSL_cleanse(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

static CURLcode setup_handle(struct cloud_http *http, CURL *h,
                             const struct cloud_request *req,
                             struct curl_slist *headers, char *userpwd,
                             long attempt_ms, long connect_ms,
                             struct body_sink *sink, struct cloud_response *resp)
{
	CURLcode c = CURLE_OK;

#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(h, opt, val); } while (0)
	curl_easy_reset(h); /* keeps the connection, DNS and session caches */
	SET(CURLOPT_SHARE, http->share);
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, req->allow_http ? "http,https" : "https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (http->ca_file)
		SET(CURLOPT_CAINFO, http->ca_file);
	SET(CURLOPT_TIMEOUT_MS, attempt_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_NODELAY, 1L);
	if (req->allow_http)
		SET(CURLOPT_NOPROXY, "*"); /* metadata endpoints are local */
	SET(CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body) {
		SET(CURLOPT_POSTFIELDS, req->body);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	} else if (strcmp(req->method, "GET") == 0) {
		SET(CURLOPT_HTTPGET, 1L);
		SET(CURLOPT_CUSTOMREQUEST, NULL);
	}
	SET(CURLOPT_HTTPHEADER, headers);
	if (req->aws_sigv4 && userpwd) {
		SET(CURLOPT_AWS_SIGV4, req->aws_sigv4);
		SET(CURLOPT_USERPWD, userpwd);
	}
	SET(CURLOPT_WRITEFUNCTION, body_write);
	SET(CURLOPT_WRITEDATA, sink);
	SET(CURLOPT_HEADERFUNCTION, header_content_type);
	SET(CURLOPT_HEADERDATA, resp);
	SET(CURLOPT_USERAGENT, "flowvault-cloud");
#undef SET
	return c;
}

/* "AKID:SECRET" for CURLOPT_USERPWD, in wiped memory. */
static char *sigv4_userpwd(const struct cloud_request *req, size_t *len)
{
	char *s;

	if (!req->aws_sigv4 || !req->aws_access_key || !req->aws_secret_key ||
	    !req->aws_access_key->data || !req->aws_secret_key->data)
		return NULL;
	*len = req->aws_access_key->len + 1 + req->aws_secret_key->len + 1;
	s = malloc(*len);
	if (s)
		snprintf(s, *len, "%s:%s", req->aws_access_key->data, req->aws_secret_key->data);
	return s;
}

int cloud_http_perform(struct cloud_http *http, const struct cloud_request *req,
                       int64_t deadline_ms, struct cloud_response *resp)
{
	const fv_host *host = http->host;
	const char *what = req->what ? req->what : req->method;
	char url_log[256], last_error[CURL_ERROR_SIZE + 64] = "";
	struct curl_slist *headers;
	char *userpwd = NULL;
	size_t userpwd_len = 0;
	unsigned int attempt = 0;
	int64_t started = cloud_now_ms();
	int failed, rc = FV_ERR_BACKEND;

	memset(resp, 0, sizeof(*resp));
	url_for_log(req->url, url_log, sizeof(url_log));
	if (!url_scheme_ok(req))
		return host->error(FV_ERR_CONFIG,
			"%s: %s: '%s' is not an https:// URL; only TLS connections are made",
			http->plugin, http->location, url_log);
	headers = build_headers(req, &failed);
	if (!failed && req->aws_sigv4 && !(userpwd = sigv4_userpwd(req, &userpwd_len)))
		failed = 1;
	if (failed) {
		free_headers(headers);
		return host->error(FV_ERR_NOMEM, "out of memory");
	}

	for (;;) {
		struct body_sink sink = { NULL, 0, 0, 0 };
		char errbuf[CURL_ERROR_SIZE] = "";
		int64_t now = cloud_now_ms(), left = deadline_ms - now;
		long attempt_ms, connect_ms, status = 0, wait;
		const char *retry = NULL;
		CURLcode c;
		CURL *h;

		if (left < ATTEMPT_MIN_MS) {
			rc = host->error(FV_ERR_BACKEND,
				"%s: %s: %s at %s: no answer within the %ld ms budget (%u attempt%s%s%s); "
				"check that the service is reachable, or raise timeout_ms",
				http->plugin, http->location, what, url_log,
				(long)(deadline_ms - started), attempt, attempt == 1 ? "" : "s",
				last_error[0] ? "; last: " : "", last_error);
			break;
		}
		attempt_ms = req->attempt_timeout_ms > 0 ? req->attempt_timeout_ms
		                                         : http->attempt_timeout_ms;
		if (left < attempt_ms)
			attempt_ms = (long)left;
		connect_ms = attempt_ms < http->connect_timeout_ms ? attempt_ms : http->connect_timeout_ms;
		attempt++;

		h = handle_take(http);
		if (!h) {
			rc = host->error(FV_ERR_NOMEM, "out of memory");
			break;
		}
		resp->content_type[0] = '\0';
		resp->www_authenticate[0] = '\0';
		c = setup_handle(http, h, req, headers, userpwd, attempt_ms, connect_ms, &sink, resp);
		if (c == CURLE_OK)
			c = curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		if (c == CURLE_OK)
			c = curl_easy_perform(h);
		if (c == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		/* Kept after errors too: libcurl drops a broken connection itself,
		 * and a new handle would load the CA store again. */
		handle_give_back(http, h, 1);

		host->log(FV_LOG_DEBUG, "%s: %s: %s: %s %s -> %s%ld (%lld ms, attempt %u)",
		          http->plugin, http->location, what, req->method, url_log,
		          c == CURLE_OK ? "HTTP " : "", c == CURLE_OK ? status : (long)c,
		          (long long)(cloud_now_ms() - now), attempt);

		if (c != CURLE_OK) {
			snprintf(last_error, sizeof(last_error), "%s",
			         errbuf[0] ? errbuf : curl_easy_strerror(c));
			sink_free(&sink);
			if (sink.too_large) {
				rc = host->error(FV_ERR_BACKEND,
					"%s: %s: %s at %s: the answer is larger than %d bytes; is the URL right?",
					http->plugin, http->location, what, url_log, CLOUD_RESPONSE_MAX);
				break;
			}
			if (!curl_error_retryable(c) ||
			    (!req->idempotent && !curl_error_before_send(c))) {
				rc = host->error(FV_ERR_BACKEND, "%s: %s: %s at %s failed: %s%s",
					http->plugin, http->location, what, url_log, last_error,
					c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CACERT_BADFILE
						? "; check ca_file and the service's certificate" : "");
				break;
			}
		} else {
			resp->status = status;
			resp->body = sink.buf ? sink.buf : calloc(1, 1);
			resp->len = sink.len;
			if (!resp->body) {
				rc = host->error(FV_ERR_NOMEM, "out of memory");
				break;
			}
			/* Bytes past len never held data: wiping len + 1 is enough. */
			retry = default_retry_reason(status);
			if (!retry && req->retry_reason)
				retry = req->retry_reason(resp, req->retry_arg);
			if (!retry || (!req->idempotent && status != 429 && status != 503 &&
			               default_retry_reason(status))) {
				rc = FV_OK;
				break;
			}
			snprintf(last_error, sizeof(last_error), "%s", retry);
			cloud_response_free(resp);
		}
		wait = backoff_ms(attempt - 1);
		if (cloud_now_ms() + wait + ATTEMPT_MIN_MS > deadline_ms) {
			rc = host->error(FV_ERR_BACKEND,
				"%s: %s: %s at %s: gave up after %u attempt%s in %lld ms (budget %ld ms); last: %s; "
				"check the service's health and quotas, or raise timeout_ms",
				http->plugin, http->location, what, url_log, attempt,
				attempt == 1 ? "" : "s", (long long)(cloud_now_ms() - started),
				(long)(deadline_ms - started), last_error);
			break;
		}
		host->log(FV_LOG_DEBUG, "%s: %s: %s: %s; retrying in %ld ms",
		          http->plugin, http->location, what, last_error, wait);
		sleep_ms(wait);
	}
	if (userpwd)
		OPENSSL_clear_free(userpwd, userpwd_len);
	free_headers(headers);
	if (rc != FV_OK)
		cloud_response_free(resp);
	return rc;
}

int cloud_form_post(struct cloud_http *http, const char *url, const char *const *headers,
                    const struct cloud_form_field *fields, size_t n_fields, const char *what,
                    int64_t deadline_ms, struct cloud_response *resp)
{
	struct cloud_request req = { 0 };
	size_t body_len = 0;
	char *body = cloud_form_body(fields, n_fields, &body_len);
	int rc;

	if (!body)
		return CLOUD_ERROR(http->host, FV_ERR_NOMEM, "out of memory");
	req.method = "POST";
	req.url = url;
	req.headers = headers;
	req.body = body;
	req.body_len = body_len;
	req.idempotent = 1;
	req.what = what;
	rc = cloud_http_perform(http, &req, deadline_ms, resp);
	cloud_buf_free(body, body_len + 1);
	return rc;
}
