/*
 * The business logic ("upstream"): the clear request JSON is POSTed to it as
 * application/json (or, with verified media files, as multipart/form-data:
 * serve/media.c), and its JSON answer comes back to be encrypted.
 *
 * Each server thread keeps its own CURL easy handle (a handle is not
 * thread-safe), and all of them share one connection cache through a CURLSH,
 * so keep-alive connections are reused whichever thread picks a request.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "media.h"

struct serve_upstream {
	char *url;
	long timeout_ms;
	size_t max_response_bytes;
	CURLSH *share;
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	pthread_key_t handle_key;
	int handle_key_made;
	/* In a sandboxed worker: no resolver, no CA files, no proxy. */
	struct curl_slist *resolve;
	char *ca;
	size_t ca_len;
};

static void share_lock(CURL *handle, curl_lock_data data, curl_lock_access access,
                       void *arg)
{
	struct serve_upstream *up = arg;

	(void)handle;
	(void)access;
	pthread_mutex_lock(&up->locks[data]);
}

static void share_unlock(CURL *handle, curl_lock_data data, void *arg)
{
	struct serve_upstream *up = arg;

	(void)handle;
	pthread_mutex_unlock(&up->locks[data]);
}

static void handle_destroy(void *handle)
{
	curl_easy_cleanup(handle);
}

int fv__upstream_new(struct serve_upstream **out, const char *url, long timeout_ms,
                     size_t max_response_bytes)
{
	struct serve_upstream *up;
	int i;

	*out = NULL;
	up = calloc(1, sizeof(*up));
	if (!up || !(up->url = strdup(url))) {
		free(up);
		return fv__error_nomem();
	}
	up->timeout_ms = timeout_ms;
	up->max_response_bytes = max_response_bytes;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&up->locks[i], NULL);
	if (pthread_key_create(&up->handle_key, handle_destroy) != 0) {
		fv__upstream_free(up);
		return fv__error_set(FV_ERR_GENERIC, "cannot create thread-local storage");
	}
	up->handle_key_made = 1;
	up->share = curl_share_init();
	if (!up->share ||
	    curl_share_setopt(up->share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
	    curl_share_setopt(up->share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
	    curl_share_setopt(up->share, CURLSHOPT_USERDATA, up) != CURLSHE_OK ||
	    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
	    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
		fv__upstream_free(up);
		return fv__error_set(FV_ERR_GENERIC,
			"serve.upstream: libcurl cannot share connections between threads");
	}
	*out = up;
	return FV_OK;
}

/* Called after the server threads are gone, so every easy handle has been
 * cleaned up by its thread's destructor and the share is unused. */
void fv__upstream_free(struct serve_upstream *up)
{
	CURL *mine;
	int i;

	if (!up)
		return;
	if (up->handle_key_made) {
		mine = pthread_getspecific(up->handle_key);
		if (mine) {
			pthread_setspecific(up->handle_key, NULL);
			curl_easy_cleanup(mine);
		}
		pthread_key_delete(up->handle_key);
	}
	if (up->share && curl_share_cleanup(up->share) != CURLSHE_OK)
		fv__log(FV_LOG_WARNING, "serve: upstream connections still in use at shutdown");
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&up->locks[i]);
	curl_slist_free_all(up->resolve);
	free(up->ca);
	free(up->url);
	free(up);
}

/* The answer, growing without leaving unwiped copies behind. */
struct answer {
	char *buf;
	size_t len, cap, max;
	int too_large;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
	struct answer *a = arg;
	size_t n = size * nmemb;

	if (n > a->max - a->len) {
		a->too_large = 1;
		return 0;
	}
	if (a->len + n + 1 > a->cap) {
		size_t cap = (a->len + n + 1) * 2;
		char *grown;

		if (cap > a->max + 1)
			cap = a->max + 1;
		grown = malloc(cap);
		if (!grown)
			return 0;
		if (a->buf) {
			memcpy(grown, a->buf, a->len);
			OPENSSL_cleanse(a->buf, a->cap);
			free(a->buf);
		}
		a->buf = grown;
		a->cap = cap;
	}
	memcpy(a->buf + a->len, data, n);
	a->len += n;
	a->buf[a->len] = '\0';
	return n;
}

static CURL *thread_handle(struct serve_upstream *up)
{
	CURL *c = pthread_getspecific(up->handle_key);

	if (c)
		return c;
	c = curl_easy_init();
	if (!c)
		return NULL;
	if (up->resolve)
		curl_easy_setopt(c, CURLOPT_RESOLVE, up->resolve);
	if (up->ca) {
		struct curl_blob blob = { up->ca, up->ca_len, CURL_BLOB_NOCOPY };

		curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
	}
	if (up->resolve || up->ca)
		curl_easy_setopt(c, CURLOPT_PROXY, "");
	if (curl_easy_setopt(c, CURLOPT_SHARE, up->share) != CURLE_OK ||
	    pthread_setspecific(up->handle_key, c) != 0) {
		curl_easy_cleanup(c);
		return NULL;
	}
	return c;
}

/* A file part read from the caller's buffer: no copy of a large file. */
struct part_reader {
	const unsigned char *data;
	size_t len, pos;
};

static size_t part_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct part_reader *r = arg;
	size_t n = size * nitems;

	if (n > r->len - r->pos)
		n = r->len - r->pos;
	memcpy(buf, r->data + r->pos, n);
	r->pos += n;
	return n;
}

static int part_seek(void *arg, curl_off_t offset, int origin)
{
	struct part_reader *r = arg;

	if (origin != SEEK_SET || offset < 0 || (size_t)offset > r->len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->pos = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* POST `request` (JSON), or `parts` as multipart/form-data when count > 0. */
static int post(struct serve_upstream *up, const char *key_name, const char *request,
                size_t request_len, const struct upstream_part *parts, size_t count,
                long *http_status, char **response, size_t *response_len)
{
	struct answer a = { NULL, 0, 0, 0, 0 };
	struct curl_slist *headers = NULL, *more;
	struct part_reader *readers = NULL;
	curl_mime *mime = NULL;
	char key_header[300];
	CURLcode res;
	CURL *c;
	size_t i;
	int rc = FV_OK;

	*response = NULL;
	*response_len = 0;
	a.max = up->max_response_bytes;
	c = thread_handle(up);
	if (!c)
		return fv__error_nomem();
	snprintf(key_header, sizeof(key_header), "X-Flowvault-Key: %s", key_name);
	/* libcurl writes multipart's Content-Type itself, with the boundary. */
	headers = curl_slist_append(NULL, count ? "Accept: application/json"
	                                        : "Content-Type: application/json");
	if (headers && (more = curl_slist_append(headers, "Expect:")))
		headers = more;
	if (headers && (more = curl_slist_append(headers, key_header)))
		headers = more;
	if (!headers)
		return fv__error_nomem();
	if (count) {
		if (!(readers = calloc(count, sizeof(*readers))) || !(mime = curl_mime_init(c))) {
			rc = fv__error_nomem();
			goto out;
		}
		for (i = 0; i < count; i++) {
			curl_mimepart *part = curl_mime_addpart(mime);
			CURLcode set;

			readers[i].data = parts[i].data;
			readers[i].len = parts[i].len;
			if (!part) {
				rc = fv__error_nomem();
				goto out;
			}
			set = curl_mime_name(part, parts[i].name);
			if (set == CURLE_OK)
				set = curl_mime_type(part, parts[i].type);
			if (set == CURLE_OK && parts[i].filename)
				set = curl_mime_filename(part, parts[i].filename);
			if (set == CURLE_OK)
				set = curl_mime_data_cb(part, (curl_off_t)parts[i].len, part_read, part_seek,
				                        NULL, &readers[i]);
			if (set != CURLE_OK) {
				rc = fv__error_set(FV_ERR_GENERIC, "serve: cannot build the multipart request: %s",
				                   curl_easy_strerror(set));
				goto out;
			}
		}
	}

	/* Options are set again on every call: the handle is reused. */
	curl_easy_setopt(c, CURLOPT_URL, up->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (mime) {
		curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
	} else {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, request);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)request_len);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, up->timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);

	res = curl_easy_perform(c);
	if (res == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_status);
		*response = a.buf;
		*response_len = a.len;
		a.buf = NULL;
	} else if (a.too_large) {
		fv__log(FV_LOG_ERROR,
		        "serve: the upstream answer is larger than %zu bytes (answering 500)",
		        up->max_response_bytes);
		rc = FV_ERR_GENERIC;
	} else {
		/* The URL is not logged: it may carry credentials. */
		fv__log(FV_LOG_ERROR, "serve: upstream failed: %s%s (answering 500)",
		        curl_easy_strerror(res),
		        res == CURLE_OPERATION_TIMEDOUT ? " (serve.upstream_timeout_ms)" : "");
		rc = FV_ERR_GENERIC;
	}
out:
	/* Drop references to the request's buffers before the handle idles. */
	curl_easy_setopt(c, CURLOPT_MIMEPOST, NULL);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
	curl_mime_free(mime);
	free(readers);
	curl_slist_free_all(headers);
	if (a.buf) {
		OPENSSL_cleanse(a.buf, a.cap);
		free(a.buf);
	}
	if (rc != FV_OK)
		fv__error_set(rc, "upstream failed");
	return rc;
}

int fv__upstream_call(void *arg, const char *key_name, const char *request,
                      size_t request_len, long *http_status, char **response,
                      size_t *response_len)
{
	return post(arg, key_name, request, request_len, NULL, 0, http_status, response,
	            response_len);
}

int fv__upstream_call_parts(struct serve_upstream *up, const char *key_name,
                            const struct upstream_part *parts, size_t count,
                            long *http_status, char **response, size_t *response_len)
{
	return post(up, key_name, NULL, 0, parts, count, http_status, response, response_len);
}

int fv__upstream_pin(struct serve_upstream *up, const char *resolve, const char *ca,
                     size_t ca_len)
{
	if (resolve && !(up->resolve = curl_slist_append(NULL, resolve)))
		return fv__error_nomem();
	if (ca) {
		if (!(up->ca = malloc(ca_len ? ca_len : 1)))
			return fv__error_nomem();
		memcpy(up->ca, ca, ca_len);
		up->ca_len = ca_len;
	}
	return FV_OK;
}

int fv__upstream_resolve(char **entry, const char *url)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL, addr[INET6_ADDRSTRLEN];
	struct addrinfo hints, *res = NULL;
	int rc = FV_OK, err;

	*entry = NULL;
	if (!u)
		return fv__error_nomem();
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		rc = fv__error_set(FV_ERR_CONFIG, "serve.upstream: '%s' is not a URL libcurl reads",
		                   url);
		goto out;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	/* An address literal needs no resolver. */
	hints.ai_flags = AI_NUMERICHOST;
	if (host[0] == '[' || getaddrinfo(host, NULL, &hints, &res) == 0)
		goto out;
	hints.ai_flags = 0;
	err = getaddrinfo(host, port, &hints, &res);
	if (err != 0 || !res) {
		rc = fv__error_set(FV_ERR_CONFIG, "serve.upstream: cannot resolve '%s': %s", host,
		                   gai_strerror(err));
		goto out;
	}
	if (res->ai_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr, addr,
		          sizeof(addr));
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, addr,
		          sizeof(addr));
	if (asprintf(entry, "%s:%s:%s%s%s", host, port, res->ai_family == AF_INET6 ? "[" : "",
	             addr, res->ai_family == AF_INET6 ? "]" : "") < 0) {
		*entry = NULL;
		rc = fv__error_nomem();
	}
out:
	if (res)
		freeaddrinfo(res);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}
