/*
 * serve.media: the worker's side of media uploads. After a request has been
 * decrypted, the media objects in its "data" (PhotoPicker, DocumentPicker:
 * objects with media_id, cdn_url, file_name and encryption_metadata) are
 * taken out, their files downloaded at once (one curl multi handle, bounded
 * in size and time, HTTPS to allowlisted hosts, no redirects), verified and
 * decrypted as they arrive by the core verifier, and kept in memory (no file
 * access in a worker). The upstream then receives multipart/form-data: the
 * request as JSON, each encryption_metadata replaced by a status, then one
 * part per verified file. A file that fails is reported, the request goes on.
 * Key material is wiped where it was read and never leaves the worker.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "../media_internal.h"
#include "media.h"

/* ---- Configuration ---- */

static const char *const media_fields[] = {
	"allowed_hosts", "max_file_bytes", "max_total_bytes", "timeout_ms", "ca_file", NULL
};

void fv__media_config_free(struct serve_media_config *cfg)
{
	size_t i;

	if (!cfg)
		return;
	for (i = 0; cfg->allowed_hosts && i < cfg->host_count; i++)
		free(cfg->allowed_hosts[i]);
	free(cfg->allowed_hosts);
	free(cfg->ca_file);
	free(cfg);
}

/* A host name, or ".domain" for its subdomains: letters, digits, '-', '.'. */
static int valid_host_pattern(const char *s)
{
	size_t len = strlen(s), i;

	if (len == 0 || len > MEDIA_HOST_MAX || strcmp(s, ".") == 0 || s[len - 1] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return 0;
		if (c == '.' && i + 1 < len && s[i + 1] == '.')
			return 0;
	}
	return 1;
}

/* FV_OK with *found 0 when absent. */
static int media_int(long long *out, int *found, json_object *obj, const char *name,
                     const char *where, long long min, long long max)
{
	json_object *v;
	char at[128];
	int rc;

	*found = 0;
	if (!json_object_object_get_ex(obj, name, &v))
		return FV_OK;
	snprintf(at, sizeof(at), "%s.media", where);
	if ((rc = fv__serve_want_int(out, v, at, name, min, max)) == FV_OK)
		*found = 1;
	return rc;
}

int fv__media_config_parse(struct serve_media_config **out, json_object *v, const char *where,
                           const fv_context *ctx, long upstream_timeout_ms)
{
	struct serve_media_config *cfg;
	json_object *hosts, *ca;
	long long n;
	int rc = FV_OK, got;

	*out = NULL;
	if (!json_object_is_type(v, json_type_object))
		return fv__error_set(FV_ERR_CONFIG, "%s.media: expected an object (e.g. {} for the "
		                     "defaults)", where);
	json_object_object_foreach(v, name, value) {
		size_t i;
		int known = 0;

		(void)value;
		for (i = 0; media_fields[i]; i++)
			known |= strcmp(media_fields[i], name) == 0;
		if (!known)
			return fv__error_set(FV_ERR_CONFIG, "%s.media.%s: unknown field (known fields: "
			                     "allowed_hosts, max_file_bytes, max_total_bytes, timeout_ms, "
			                     "ca_file)", where, name);
	}
	if (!(cfg = calloc(1, sizeof(*cfg))))
		return fv__error_nomem();
	cfg->max_file_bytes = MEDIA_DEFAULT_MAX_FILE_BYTES;
	cfg->max_total_bytes = MEDIA_DEFAULT_MAX_TOTAL_BYTES;

	if (json_object_object_get_ex(v, "allowed_hosts", &hosts)) {
		size_t i, count;

		if (!json_object_is_type(hosts, json_type_array) ||
		    (count = json_object_array_length(hosts)) == 0 || count > MEDIA_MAX_HOSTS) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.media.allowed_hosts: expected an array of 1 "
			                   "to %d host names (\".example.com\" allows its subdomains)",
			                   where, MEDIA_MAX_HOSTS);
			goto out;
		}
		if (!(cfg->allowed_hosts = calloc(count + 1, sizeof(char *)))) {
			rc = fv__error_nomem();
			goto out;
		}
		size_t text_len = 0;

		for (i = 0; i < count; i++) {
			json_object *h = json_object_array_get_idx(hosts, i);
			const char *s = json_object_is_type(h, json_type_string) ? json_object_get_string(h)
			                                                       : "";

			if (!valid_host_pattern(s)) {
				rc = fv__error_set(FV_ERR_CONFIG, "%s.media.allowed_hosts[%zu]: '%s' is not a "
				                   "host name or \".domain\" (letters, digits, '-' and '.')",
				                   where, i, s);
				goto out;
			}
			/* The resolver process gets the list in one control message. */
			text_len += strlen(s) + 1;
			if (text_len >= sizeof(((struct ctl_msg *)0)->text)) {
				rc = fv__error_set(FV_ERR_CONFIG, "%s.media.allowed_hosts: the names add up "
				                   "to more than %zu characters; use \".domain\" entries",
				                   where, sizeof(((struct ctl_msg *)0)->text) - 1);
				goto out;
			}
			if (!(cfg->allowed_hosts[i] = strdup(s))) {
				rc = fv__error_nomem();
				goto out;
			}
			cfg->host_count = i + 1;
		}
	}
	if ((rc = media_int(&n, &got, v, "max_file_bytes", where, 26, 1LL << 30)) != FV_OK)
		goto out;
	if (got)
		cfg->max_file_bytes = (uint64_t)n;
	if ((rc = media_int(&n, &got, v, "max_total_bytes", where, 26, 4LL << 30)) != FV_OK)
		goto out;
	if (got)
		cfg->max_total_bytes = (uint64_t)n;
	if (cfg->max_total_bytes < cfg->max_file_bytes) {
		rc = fv__error_set(FV_ERR_CONFIG, "%s.media.max_total_bytes: %llu is less than "
		                   "max_file_bytes (%llu); raise it or lower max_file_bytes", where,
		                   (unsigned long long)cfg->max_total_bytes,
		                   (unsigned long long)cfg->max_file_bytes);
		goto out;
	}
	/* The downloads and the upstream share what WhatsApp waits: 10 s. */
	if ((rc = media_int(&n, &got, v, "timeout_ms", where, MEDIA_MIN_TIMEOUT_MS,
	                    SERVE_MAX_UPSTREAM_TIMEOUT_MS)) != FV_OK)
		goto out;
	if (got) {
		cfg->timeout_ms = (long)n;
		if (cfg->timeout_ms + upstream_timeout_ms > SERVE_MAX_UPSTREAM_TIMEOUT_MS) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.media.timeout_ms: %ld ms of downloads and "
			                   "%ld ms of upstream_timeout_ms make %ld ms, more than the %d ms a "
			                   "request may take (WhatsApp waits 10 s); lower one of them",
			                   where, cfg->timeout_ms, upstream_timeout_ms,
			                   cfg->timeout_ms + upstream_timeout_ms,
			                   SERVE_MAX_UPSTREAM_TIMEOUT_MS);
			goto out;
		}
	} else {
		cfg->timeout_ms = SERVE_MAX_UPSTREAM_TIMEOUT_MS - upstream_timeout_ms;
		if (cfg->timeout_ms > MEDIA_DEFAULT_TIMEOUT_MS)
			cfg->timeout_ms = MEDIA_DEFAULT_TIMEOUT_MS;
		if (cfg->timeout_ms < MEDIA_MIN_TIMEOUT_MS) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.media: upstream_timeout_ms (%ld ms) leaves "
			                   "no time for media downloads within the %d ms a request may "
			                   "take; lower upstream_timeout_ms and set media.timeout_ms",
			                   where, upstream_timeout_ms, SERVE_MAX_UPSTREAM_TIMEOUT_MS);
			goto out;
		}
	}
	if (json_object_object_get_ex(v, "ca_file", &ca)) {
		if (!json_object_is_type(ca, json_type_string) || !json_object_get_string_len(ca)) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.media.ca_file: expected a file name", where);
			goto out;
		}
		cfg->ca_file = ctx ? fv__config_resolve_path(ctx, json_object_get_string(ca))
		                   : strdup(json_object_get_string(ca));
		if (!cfg->ca_file) {
			rc = fv__error_nomem();
			goto out;
		}
	}
out:
	if (rc != FV_OK) {
		fv__media_config_free(cfg);
		return rc;
	}
	*out = cfg;
	return FV_OK;
}

int fv__media_hosts_text(char *out, size_t size, const struct serve_media_config *cfg)
{
	size_t used = 0, i;

	out[0] = '\0';
	for (i = 0; i < cfg->host_count; i++) {
		int n = snprintf(out + used, size - used, "%s\n", cfg->allowed_hosts[i]);

		if (n < 0 || (size_t)n >= size - used)
			return fv__error_set(FV_ERR_CONFIG, "serve.media.allowed_hosts: the list is too "
			                     "long for the resolver (at most %zu characters)", size - 1);
		used += (size_t)n;
	}
	return FV_OK;
}

/* ---- Finding media objects ---- */

/* Overwrite every string (and member name) under `v`: key material. */
static void wipe_strings(json_object *v)
{
	size_t i, n;

	switch (json_object_get_type(v)) {
	case json_type_string:
		OPENSSL_cleanse((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
		break;
	case json_type_array:
		n = json_object_array_length(v);
		for (i = 0; i < n; i++)
			wipe_strings(json_object_array_get_idx(v, i));
		break;
	case json_type_object: {
		json_object_object_foreach(v, key, member) {
			(void)key;
			wipe_strings(member);
		}
		break;
	}
	default:
		break;
	}
}

static json_object *failed_status(const char *reason)
{
	json_object *st = json_object_new_object();

	if (st) {
		json_object_object_add(st, "status", json_object_new_string("failed"));
		json_object_object_add(st, "reason", json_object_new_string(reason));
	}
	return st;
}

/* Replace the object's encryption_metadata with `status` (wiping it first). */
static void set_status(json_object *obj, json_object *status)
{
	json_object *meta;

	if (json_object_object_get_ex(obj, "encryption_metadata", &meta))
		wipe_strings(meta);
	if (!status)
		status = json_object_new_null();
	json_object_object_add(obj, "encryption_metadata", status);
}

static void find_in(json_object *v, json_object **found, size_t max, size_t *count,
                    size_t *refused, unsigned int depth)
{
	size_t i, n;

	/* json-c's parser stops at 32 levels; this follows it at most that deep. */
	if (depth > 32)
		return;
	if (json_object_is_type(v, json_type_array)) {
		n = json_object_array_length(v);
		for (i = 0; i < n; i++)
			find_in(json_object_array_get_idx(v, i), found, max, count, refused,
			        depth + 1);
		return;
	}
	if (!json_object_is_type(v, json_type_object))
		return;
	if (json_object_object_get_ex(v, "encryption_metadata", NULL)) {
		if (*count < max) {
			found[(*count)++] = v;
		} else {
			set_status(v, failed_status("more media objects in one request than serve "
			                            "handles (32); not downloaded"));
			(*refused)++;
		}
		return;
	}
	{
		json_object_object_foreach(v, key, member) {
			(void)key;
			find_in(member, found, max, count, refused, depth + 1);
		}
	}
}

size_t fv__media_find(json_object *root, json_object **found, size_t max, size_t *refused)
{
	json_object *data;
	size_t count = 0, over = 0;

	if (json_object_is_type(root, json_type_object) &&
	    json_object_object_get_ex(root, "data", &data))
		find_in(data, found, max, &count, &over, 0);
	if (refused)
		*refused = over;
	return count;
}

int fv__media_take(fv_media **out, json_object *obj)
{
	int rc = fv__media_open_object(out, obj);

	set_status(obj, NULL);
	return rc;
}

/* ---- Downloading, verifying, decrypting ---- */

struct serve_media {
	const struct serve_media_config *cfg;
	struct serve_upstream *upstream;
	struct serve_metrics *metrics;
	pthread_mutex_t lock;        /* the resolver connection */
	int resolver;                /* -1: none (in_process: libcurl resolves) */
	int in_process;
	uint32_t next_id;
	char *ca;
	size_t ca_len;
};

struct media_file {
	json_object *obj;
	fv_media *media;
	struct fv__media_download *dl;
	struct media_request *req;
	struct curl_slist *resolve;
	unsigned char *buf;          /* the clear file */
	size_t len, cap;
	int done, ok;
	char reason[256];
	unsigned char sha256[32];
	uint64_t size;
	char filename[129];
	char part[32];               /* "media-N" */
};

struct media_request {
	struct serve_media *sm;
	uint64_t total;              /* clear bytes held for this request */
};

int fv__media_new(struct serve_media **out, const struct serve_media_config *cfg,
                  struct serve_upstream *upstream, int resolver, const char *ca, size_t ca_len,
                  struct serve_metrics *metrics)
{
	struct serve_media *sm = calloc(1, sizeof(*sm));

	*out = NULL;
	if (!sm)
		return fv__error_nomem();
	sm->cfg = cfg;
	sm->upstream = upstream;
	sm->metrics = metrics;
	sm->resolver = resolver;
	sm->in_process = resolver < 0;
	if (ca) {
		if (!(sm->ca = malloc(ca_len ? ca_len : 1))) {
			free(sm);
			return fv__error_nomem();
		}
		memcpy(sm->ca, ca, ca_len);
		sm->ca_len = ca_len;
	}
	pthread_mutex_init(&sm->lock, NULL);
	*out = sm;
	return FV_OK;
}

void fv__media_set_resolver(struct serve_media *sm, int fd)
{
	pthread_mutex_lock(&sm->lock);
	if (sm->resolver >= 0)
		close(sm->resolver);
	sm->resolver = fd;
	pthread_mutex_unlock(&sm->lock);
}

void fv__media_free(struct serve_media *sm)
{
	if (!sm)
		return;
	if (sm->resolver >= 0)
		close(sm->resolver);
	pthread_mutex_destroy(&sm->lock);
	free(sm->ca);
	free(sm);
}

/* "host:port:addr,addr" for CURLOPT_RESOLVE, from the resolver process. */
static int resolve(struct serve_media *sm, const char *host, const char *port, double deadline,
                   char *entry, size_t size)
{
	struct resolve_request q;
	struct resolve_reply r;
	size_t used, i;
	int rc = FV_OK;

	memset(&q, 0, sizeof(q));
	if (strlen(host) > MEDIA_HOST_MAX || strlen(port) >= sizeof(q.port))
		return fv__error_set(FV_ERR_DECRYPT, "cdn_url host '%.64s' is too long", host);
	memcpy(q.host, host, strlen(host));
	memcpy(q.port, port, strlen(port));
	pthread_mutex_lock(&sm->lock);
	q.id = ++sm->next_id;
	if (sm->resolver < 0) {
		rc = fv__error_set(FV_ERR_BACKEND, "no resolver: cannot look up '%s'", host);
		goto out;
	}
	if (send(sm->resolver, &q, sizeof(q), MSG_NOSIGNAL) != (ssize_t)sizeof(q)) {
		rc = fv__error_set(FV_ERR_BACKEND, "the resolver process is gone: cannot look up '%s'",
		                   host);
		goto out;
	}
	for (;;) {
		struct pollfd p = { sm->resolver, POLLIN, 0 };
		double left = deadline - fv__now_seconds() * 1e3;
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left + 1) == 0) {
			rc = fv__error_set(FV_ERR_BACKEND, "looking up '%s' timed out "
			                   "(serve.media.timeout_ms)", host);
			goto out;
		}
		n = recv(sm->resolver, &r, sizeof(r), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n != (ssize_t)sizeof(r)) {
			rc = fv__error_set(FV_ERR_BACKEND, "the resolver process is gone: cannot look up "
			                   "'%s'", host);
			goto out;
		}
		if (r.id == q.id)
			break;
		/* An answer to a question that timed out earlier. */
	}
	r.text[sizeof(r.text) - 1] = '\0';
	if (r.status != FV_OK || r.count == 0 || r.count > RESOLVE_MAX_ADDRS) {
		rc = fv__error_set(r.status != FV_OK ? (int)r.status : FV_ERR_BACKEND, "%s",
		                   r.text[0] ? r.text : "the resolver found no address");
		goto out;
	}
	used = (size_t)snprintf(entry, size, "%s:%s:", host, port);
	for (i = 0; i < r.count && used < size; i++) {
		r.addrs[i][RESOLVE_ADDR_MAX - 1] = '\0';
		used += (size_t)snprintf(entry + used, size - used, "%s%s", i ? "," : "", r.addrs[i]);
	}
	if (used >= size)
		rc = fv__error_set(FV_ERR_GENERIC, "the addresses of '%s' do not fit", host);
out:
	pthread_mutex_unlock(&sm->lock);
	return rc;
}

static int sink(void *arg, const void *clear, size_t len)
{
	struct media_file *f = arg;
	const struct serve_media_config *cfg = f->req->sm->cfg;

	if (f->req->total + len > cfg->max_total_bytes)
		return fv__error_set(FV_ERR_DECRYPT, "media '%s': the request's files together are "
		                     "larger than serve.media.max_total_bytes (%llu); refused",
		                     fv_media_id(f->media), (unsigned long long)cfg->max_total_bytes);
	if (len > f->cap - f->len) {
		size_t cap = f->cap ? f->cap * 2 : 64 * 1024;
		unsigned char *grown;

		while (cap - f->len < len)
			cap *= 2;
		if (cap > cfg->max_file_bytes + 16)
			cap = (size_t)cfg->max_file_bytes + 16;
		if (cap - f->len < len || !(grown = malloc(cap)))
			return fv__error_nomem();
		if (f->buf) {
			memcpy(grown, f->buf, f->len);
			OPENSSL_clear_free(f->buf, f->cap);
		}
		f->buf = grown;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, clear, len);
	f->len += len;
	f->req->total += len;
	return FV_OK;
}

static void file_failed(struct media_file *f, const char *reason)
{
	f->done = 1;
	f->ok = 0;
	snprintf(f->reason, sizeof(f->reason), "%s", reason);
	if (f->buf) {
		OPENSSL_clear_free(f->buf, f->cap);
		f->req->total -= f->len;
	}
	f->buf = NULL;
	f->len = f->cap = 0;
}

/* Take the keys out of the object (into a verifier) and prepare its download. */
static void file_start(struct media_file *f, double deadline)
{
	struct serve_media *sm = f->req->sm;
	fv_media_fetch_options opt;
	const char *name;
	size_t i, j = 0;
	char entry[RESOLVE_MAX_ADDRS * RESOLVE_ADDR_MAX + MEDIA_HOST_MAX + 16];

	if (fv__media_take(&f->media, f->obj) != FV_OK) {
		file_failed(f, fv_error_last()->message);
		return;
	}
	/* The file name as a multipart filename: safe characters only. */
	name = fv_media_file_name(f->media);
	for (i = 0; name && name[i] && j < sizeof(f->filename) - 1; i++) {
		char c = name[i];

		if (j == 0 && c == '.')
			continue;
		f->filename[j++] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		                    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
		                   ? c : '_';
	}
	f->filename[j] = '\0';
	if (!j)
		snprintf(f->filename, sizeof(f->filename), "%s", f->part);
	memset(&opt, 0, sizeof(opt));
	opt.allowed_hosts = (const char *const *)sm->cfg->allowed_hosts;
	opt.allowed_count = sm->cfg->host_count;
	opt.max_bytes = sm->cfg->max_file_bytes;
	opt.timeout_ms = (long)(deadline - fv__now_seconds() * 1e3);
	opt.ca_file = sm->ca ? NULL : sm->cfg->ca_file;
	if (opt.timeout_ms <= 0) {
		file_failed(f, "no time left for the download (serve.media.timeout_ms)");
		return;
	}
	if (fv__media_download_new(&f->dl, f->media, &opt, sink, f) != FV_OK) {
		file_failed(f, fv_error_last()->message);
		return;
	}
	if (!sm->in_process) {
		CURL *c = fv__media_download_easy(f->dl);
		const char *host = fv__media_download_host(f->dl);
		unsigned char lit[16];

		/* Address literals need no resolver: libcurl does not look them up. */
		if (host[0] != '[' && inet_pton(AF_INET, host, lit) != 1) {
			if (resolve(sm, host, fv__media_download_port(f->dl), deadline, entry,
			            sizeof(entry)) != FV_OK ||
			    !(f->resolve = curl_slist_append(NULL, entry))) {
				file_failed(f, fv_error_last()->message);
				return;
			}
			curl_easy_setopt(c, CURLOPT_RESOLVE, f->resolve);
		}
		curl_easy_setopt(c, CURLOPT_PROXY, "");
		opt.timeout_ms = (long)(deadline - fv__now_seconds() * 1e3);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, opt.timeout_ms > 0 ? opt.timeout_ms : 1L);
	}
	if (sm->ca) {
		struct curl_blob blob = { sm->ca, sm->ca_len, CURL_BLOB_NOCOPY };
		CURL *c = fv__media_download_easy(f->dl);

		curl_easy_setopt(c, CURLOPT_CAINFO, NULL);
		curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
		curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
	}
}

static void file_finish(struct media_file *f, CURLcode result)
{
	int rc = fv__media_download_done(f->dl, result);

	if (rc == FV_OK)
		rc = fv_media_final(f->media, sink, f, f->sha256, &f->size);
	if (rc != FV_OK) {
		file_failed(f, fv_error_last()->message);
		return;
	}
	f->done = 1;
	f->ok = 1;
}

static void file_clear(struct media_file *f)
{
	fv__media_download_free(f->dl);
	fv_media_free(f->media);
	curl_slist_free_all(f->resolve);
	if (f->buf)
		OPENSSL_clear_free(f->buf, f->cap);
	memset(f, 0, sizeof(*f));
}

/* Run every prepared download until they end or the deadline passes. */
static void run_downloads(struct media_file *files, size_t count, double deadline)
{
	CURLM *multi = curl_multi_init();
	int running = 0, queued;
	size_t i;

	if (!multi) {
		for (i = 0; i < count; i++)
			if (!files[i].done)
				file_failed(&files[i], "out of memory");
		return;
	}
	for (i = 0; i < count; i++)
		if (!files[i].done && curl_multi_add_handle(multi, fv__media_download_easy(files[i].dl))
		                      != CURLM_OK)
			file_failed(&files[i], "cannot start the download");
	for (;;) {
		CURLMsg *msg;
		double left;

		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			for (i = 0; i < count; i++)
				if (files[i].dl && !files[i].done &&
				    fv__media_download_easy(files[i].dl) == msg->easy_handle)
					file_finish(&files[i], msg->data.result);
		}
		left = deadline - fv__now_seconds() * 1e3;
		if (!running || left <= 0)
			break;
		curl_multi_poll(multi, NULL, 0, left > 100 ? 100 : (int)left + 1, NULL);
	}
	for (i = 0; i < count; i++) {
		if (files[i].dl)
			curl_multi_remove_handle(multi, fv__media_download_easy(files[i].dl));
		if (!files[i].done) {
			char why[300];

			snprintf(why, sizeof(why), "media '%s': download timed out "
			         "(serve.media.timeout_ms)", fv_media_id(files[i].media));
			file_failed(&files[i], why);
		}
	}
	curl_multi_cleanup(multi);
}

static json_object *ok_status(const struct media_file *f)
{
	json_object *st = json_object_new_object();
	char hex[65];
	size_t i;

	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", f->sha256[i]);
	if (st) {
		json_object_object_add(st, "status", json_object_new_string("ok"));
		json_object_object_add(st, "part", json_object_new_string(f->part));
		json_object_object_add(st, "size", json_object_new_int64((int64_t)f->size));
		json_object_object_add(st, "sha256", json_object_new_string(hex));
	}
	return st;
}

int fv__media_upstream_call(void *arg, const char *key_name, const char *request,
                            size_t request_len, long *http_status, char **response,
                            size_t *response_len)
{
	struct serve_media *sm = arg;
	json_object *root, *found[MEDIA_MAX_OBJECTS];
	struct media_file files[MEDIA_MAX_OBJECTS];
	struct upstream_part parts[MEDIA_MAX_OBJECTS + 1];
	struct media_request req;
	const char *text;
	size_t count, refused = 0, i, nparts = 0, text_len = 0;
	uint64_t clear_bytes = 0;
	double deadline = fv__now_seconds() * 1e3 + (double)sm->cfg->timeout_ms;
	int rc;

	root = fv__flow_json_parse(request, request_len);
	count = root ? fv__media_find(root, found, MEDIA_MAX_OBJECTS, &refused) : 0;
	if (!count) {
		/* No media objects: the request goes as it came, as JSON. */
		fv__flow_json_wipe_put(root);
		return fv__upstream_call(sm->upstream, key_name, request, request_len, http_status,
		                         response, response_len);
	}
	memset(files, 0, sizeof(files));
	memset(&req, 0, sizeof(req));
	req.sm = sm;
	for (i = 0; i < count; i++) {
		files[i].obj = found[i];
		files[i].req = &req;
		snprintf(files[i].part, sizeof(files[i].part), "media-%zu", i);
		file_start(&files[i], deadline);
	}
	run_downloads(files, count, deadline);
	parts[nparts++] = (struct upstream_part){ "request", NULL, "application/json", NULL, 0 };
	for (i = 0; i < count; i++) {
		if (files[i].ok) {
			clear_bytes += files[i].len;
			set_status(files[i].obj, ok_status(&files[i]));
			parts[nparts++] = (struct upstream_part){ files[i].part, files[i].filename,
			                                          "application/octet-stream",
			                                          files[i].buf ? (const void *)files[i].buf
			                                                       : (const void *)"",
			                                          files[i].len };
		} else {
			fv__log(FV_LOG_WARNING, "serve: %s (reported to the upstream as failed)",
			        files[i].reason);
			set_status(files[i].obj, failed_status(files[i].reason));
		}
	}
	/* parts: the request, then one per verified file. */
	fv__metrics_media(sm->metrics, nparts - 1, count + refused - (nparts - 1), clear_bytes);
	text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN |
	                                         JSON_C_TO_STRING_NOSLASHESCAPE, &text_len);
	if (text) {
		parts[0].data = text;
		parts[0].len = text_len;
		rc = fv__upstream_call_parts(sm->upstream, key_name, parts, nparts, http_status,
		                             response, response_len);
		OPENSSL_cleanse((char *)text, text_len);
	} else {
		rc = fv__error_nomem();
	}
	for (i = 0; i < count; i++)
		file_clear(&files[i]);
	fv__flow_json_wipe_put(root);
	return rc;
}
