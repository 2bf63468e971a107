/*
 * Secrets, configuration, JSON, form and base64 helpers for the cloud
 * plugins.
 * See cloud.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <json-c/printbuf.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cloud.h"

/* ---- Secrets ---- */

static void *secret_alloc(const fv_host *host, size_t len)
{
	if (FV_HOST_HAS(host, secure_alloc) && FV_HOST_HAS(host, secure_free))
		return host->secure_alloc(len);
	return calloc(1, len);
}

static void secret_release(const fv_host *host, void *p, size_t len)
{
	if (!p)
		return;
	if (FV_HOST_HAS(host, secure_alloc) && FV_HOST_HAS(host, secure_free))
		host->secure_free(p, len);
	else
		OPENSSL_clear_free(p, len);
}

void cloud_secret_clear(const fv_host *host, struct cloud_secret *s)
{
	if (!s)
		return;
	secret_release(host, s->data, s->len + 1);
	s->data = NULL;
	s->len = 0;
}

int cloud_secret_set(const fv_host *host, const char *data, size_t len,
                     struct cloud_secret *out)
{
	char *copy;

	if (len >= SIZE_MAX - 1)
		return host->error(FV_ERR_NOMEM, "out of memory");
	copy = secret_alloc(host, len + 1);
	if (!copy)
		return host->error(FV_ERR_NOMEM, "out of memory");
	memcpy(copy, data, len);
	copy[len] = '\0';
	cloud_secret_clear(host, out);
	out->data = copy;
	out->len = len;
	return FV_OK;
}

int cloud_secret_resolve(const fv_host *host, const char *reference,
                         const char *purpose, struct cloud_secret *out)
{
	char *value = NULL;
	size_t len = 0;
	int rc;

	rc = host->secret_resolve(reference, purpose, &value, &len);
	if (rc != FV_OK)
		return rc;
	rc = cloud_secret_set(host, value, len, out);
	host->secret_free(value, len);
	return rc;
}

/* ---- Configuration ---- */

static int read_ms(const fv_host *host, const fv_config *cfg, const char *location,
                   const char *name, long min, long *out)
{
	int64_t v;
	int rc = host->config_int(cfg, name, &v);

	if (rc == FV_ERR_NOT_FOUND)
		return FV_OK;
	if (rc != FV_OK)
		return rc;
	if (v < min || v > CLOUD_TIMEOUT_MS_MAX)
		return host->error(FV_ERR_CONFIG,
			"%s.%s: %lld is out of range; give milliseconds from %ld to %d",
			location, name, (long long)v, min, CLOUD_TIMEOUT_MS_MAX);
	*out = (long)v;
	return FV_OK;
}

int cloud_http_config_read(const fv_host *host, const fv_config *cfg,
                           struct cloud_http_opts *opts)
{
	const char *location = host->config_location(cfg);
	const char *ca = NULL;
	long total = CLOUD_TIMEOUT_MS_DEFAULT;
	int rc;

	if (!location)
		location = "keys.?";
	rc = host->config_string(cfg, "ca_file", &ca);
	if (rc == FV_OK && ca && *ca)
		opts->ca_file = ca;
	else if (rc != FV_OK && rc != FV_ERR_NOT_FOUND)
		return rc;
	opts->timeout_ms = 0;
	opts->attempt_timeout_ms = 0;
	opts->connect_timeout_ms = 0;
	if ((rc = read_ms(host, cfg, location, "timeout_ms", 100, &opts->timeout_ms)) != FV_OK ||
	    (rc = read_ms(host, cfg, location, "attempt_timeout_ms", 50,
	                  &opts->attempt_timeout_ms)) != FV_OK ||
	    (rc = read_ms(host, cfg, location, "connect_timeout_ms", 50,
	                  &opts->connect_timeout_ms)) != FV_OK)
		return rc;
	if (opts->timeout_ms)
		total = opts->timeout_ms;
	if (opts->attempt_timeout_ms > total || opts->connect_timeout_ms > total)
		return host->error(FV_ERR_CONFIG,
			"%s: attempt_timeout_ms and connect_timeout_ms must not exceed timeout_ms (%ld)",
			location, total);
	if (total > 9500)
		host->log(FV_LOG_WARNING,
			"%s.timeout_ms: %ld ms is longer than WhatsApp waits for a Flows reply (10 s); "
			"`serve` answers late instead of with an error",
			location, total);
	return FV_OK;
}

int cloud_config_string(const fv_host *host, const fv_config *cfg, const char *name,
                        const char **out)
{
	int rc = host->config_string(cfg, name, out);

	if (rc == FV_ERR_NOT_FOUND || (rc == FV_OK && (!*out || !**out))) {
		*out = NULL;
		return FV_OK;
	}
	return rc;
}

/* ---- Provider glue ---- */

char *cloud_strdup(const char *s, int *failed)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*failed = 1;
	return d;
}

int cloud_public_der_out(const unsigned char *src, size_t src_len, unsigned char *der,
                         size_t *len)
{
	if (!len)
		return FV_ERR_USAGE;
	if (!der) {
		*len = src_len;
		return FV_OK;
	}
	if (*len < src_len) {
		*len = src_len;
		return FV_ERR_BUFFER_TOO_SMALL;
	}
	memcpy(der, src, src_len);
	*len = src_len;
	return FV_OK;
}

int cloud_plaintext_out(const fv_host *host, const char *location,
                        const unsigned char *plain, size_t plain_len, size_t modulus_bytes,
                        unsigned char *out, size_t *out_len)
{
	/* OAEP with SHA-256 leaves at most k - 2*32 - 2 bytes of message. */
	if (modulus_bytes < 66 || plain_len > modulus_bytes - 66)
		return CLOUD_ERROR(host, FV_ERR_BACKEND,
			"%s: the service answered %zu bytes of plain text, more than RSA-OAEP allows",
			location, plain_len);
	if (!out || *out_len < plain_len) {
		*out_len = plain_len;
		return FV_ERR_BUFFER_TOO_SMALL;
	}
	memcpy(out, plain, plain_len);
	*out_len = plain_len;
	return FV_OK;
}

void cloud_describe_fill(fv_key_description *d, const char *service, const char *location,
                         const char *remote_id, unsigned int bits, uint32_t properties,
                         uint32_t properties_known)
{
#define FITS(member) (d->struct_size >= offsetof(fv_key_description, member) + sizeof(d->member))
	if (FITS(oaep))
		d->oaep = service;
	if (FITS(backend))
		d->backend = service;
	if (FITS(location))
		d->location = location;
	if (FITS(remote_id))
		d->remote_id = remote_id;
	if (FITS(bits))
		d->bits = bits;
	if (FITS(properties_known)) {
		d->properties = properties;
		d->properties_known = properties_known;
	}
#undef FITS
}

/* ---- JSON ---- */

int cloud_json_parse(const char *body, size_t len, json_object **out)
{
	struct json_tokener *tok;
	json_object *obj;

	*out = NULL;
	if (!body || len > INT_MAX)
		return FV_ERR_BACKEND;
	tok = json_tokener_new();
	if (!tok)
		return FV_ERR_NOMEM;
	obj = json_tokener_parse_ex(tok, body, (int)len);
	/* The tokener copies string values into its buffer: a token or a
	 * plaintext may be there. */
	if (tok->pb && tok->pb->buf)
		OPENSSL_cleanse(tok->pb->buf, (size_t)tok->pb->size);
	if (obj && (json_tokener_get_error(tok) != json_tokener_success ||
	            (size_t)json_tokener_get_parse_end(tok) != len)) {
		/* Trailing bytes after the document: not a JSON body. */
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && (body[end] == ' ' || body[end] == '\n' ||
		                     body[end] == '\r' || body[end] == '\t'))
			end++;
		if (end != len) {
			cloud_json_free_wiped(obj);
			obj = NULL;
		}
	}
	json_tokener_free(tok);
	if (!obj)
		return FV_ERR_BACKEND;
	if (!json_object_is_type(obj, json_type_object)) {
		cloud_json_free_wiped(obj);
		return FV_ERR_BACKEND;
	}
	*out = obj;
	return FV_OK;
}

static void wipe_strings(json_object *obj)
{
	size_t i, n;

	switch (json_object_get_type(obj)) {
	case json_type_string:
		OPENSSL_cleanse((void *)json_object_get_string(obj),
		                (size_t)json_object_get_string_len(obj));
		break;
	case json_type_object: {
		json_object_object_foreach(obj, key, val) {
			(void)key;
			wipe_strings(val);
		}
		break;
	}
	case json_type_array:
		n = json_object_array_length(obj);
		for (i = 0; i < n; i++)
			wipe_strings(json_object_array_get_idx(obj, i));
		break;
	default:
		break;
	}
}

void cloud_json_free_wiped(json_object *obj)
{
	if (!obj)
		return;
	wipe_strings(obj);
	json_object_put(obj);
}

const char *cloud_json_string(json_object *obj, const char *key, size_t *len)
{
	json_object *v;

	if (!obj || !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	if (len)
		*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

int cloud_json_int(json_object *obj, const char *key, int64_t *out)
{
	json_object *v;

	if (!obj || !json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return 0;
	*out = json_object_get_int64(v);
	return 1;
}

char *cloud_json_body(json_object *obj, size_t *len)
{
	size_t n = 0;
	const char *text = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	char *copy;

	if (!text)
		return NULL;
	copy = malloc(n + 1);
	if (copy) {
		memcpy(copy, text, n + 1);
		*len = n;
	}
	/* json-c keeps the text with the object until it is freed. */
	OPENSSL_cleanse((void *)text, n);
	return copy;
}

void cloud_buf_free(void *buf, size_t len)
{
	if (buf)
		OPENSSL_clear_free(buf, len);
}

/* ---- Files ---- */

int cloud_file_read(const char *path, size_t max, char **out, size_t *len, mode_t *mode)
{
	struct stat st;
	size_t used = 0;
	char *buf = NULL;
	int err = 0, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return errno;
	/* O_NONBLOCK and this check: a FIFO or a device never blocks us. */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		err = EINVAL;
	else if ((uint64_t)st.st_size > max)
		err = EFBIG;
	else if (!(buf = OPENSSL_malloc((size_t)st.st_size + 1)))
		err = ENOMEM;
	if (err) {
		close(fd);
		return err;
	}
	while (used < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t)st.st_size - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	if (mode)
		*mode = st.st_mode;
	*out = buf;
	*len = used;
	return 0;
}

/* ---- Forms ---- */

/* `value` percent-encoded in memory wiped when freed; curl's own copy is
 * wiped before it goes back. */
static char *form_escape(const char *value, size_t len, size_t *out_len)
{
	char *e, *copy;
	size_t n;

	if (len > INT_MAX)
		return NULL;
	e = curl_easy_escape(NULL, value, (int)len);
	if (!e)
		return NULL;
	n = strlen(e);
	copy = OPENSSL_malloc(n + 1);
	if (copy)
		memcpy(copy, e, n + 1);
	OPENSSL_cleanse(e, n);
	curl_free(e);
	*out_len = n;
	return copy;
}

char *cloud_form_body(const struct cloud_form_field *fields, size_t n_fields, size_t *len)
{
	char *body = OPENSSL_zalloc(1), *grown, *value;
	size_t used = 0, value_len = 0, name_len, i;

	for (i = 0; body && i < n_fields; i++) {
		value = form_escape(fields[i].value, fields[i].len, &value_len);
		name_len = strlen(fields[i].name);
		grown = value ? OPENSSL_malloc(used + 1 + name_len + 1 + value_len + 1) : NULL;
		if (grown) {
			memcpy(grown, body, used);
			if (used)
				grown[used++] = '&';
			memcpy(grown + used, fields[i].name, name_len);
			used += name_len;
			grown[used++] = '=';
			memcpy(grown + used, value, value_len + 1);
			used += value_len;
		}
		cloud_buf_free(value, value_len + 1);
		/* The old body is wiped: it may hold an earlier field's secret. */
		cloud_buf_free(body, strlen(body) + 1);
		body = grown;
	}
	if (body)
		*len = used;
	return body;
}

/* ---- base64 ---- */

char *cloud_base64_encode(const unsigned char *in, size_t len)
{
	size_t n;
	char *out;

	if (len > INT_MAX / 4 * 3 - 3)
		return NULL;
	n = 4 * ((len + 2) / 3);
	out = malloc(n + 1);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	out[n] = '\0';
	return out;
}

char *cloud_base64url_encode(const unsigned char *in, size_t len)
{
	char *out = cloud_base64_encode(in, len);
	size_t i, n;

	if (!out)
		return NULL;
	n = strlen(out);
	while (n && out[n - 1] == '=')
		out[--n] = '\0';
	for (i = 0; i < n; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

int cloud_base64_decode(const char *in, size_t len, unsigned char **out,
                        size_t *out_len)
{
	EVP_ENCODE_CTX *ctx;
	unsigned char *buf;
	int n1 = 0, n2 = 0, ok;
	size_t i;

	*out = NULL;
	*out_len = 0;
	if (len > INT_MAX || len % 4 != 0)
		return FV_ERR_BACKEND;
	for (i = 0; i < len; i++) /* the EVP decoder skips whitespace; we do not */
		if (in[i] == ' ' || in[i] == '\n' || in[i] == '\r' || in[i] == '\t')
			return FV_ERR_BACKEND;
	buf = malloc(len / 4 * 3 + 1);
	ctx = EVP_ENCODE_CTX_new();
	if (!buf || !ctx) {
		free(buf);
		EVP_ENCODE_CTX_free(ctx);
		return FV_ERR_NOMEM;
	}
	EVP_DecodeInit(ctx);
	ok = EVP_DecodeUpdate(ctx, buf, &n1, (const unsigned char *)in, (int)len) >= 0 &&
	     EVP_DecodeFinal(ctx, buf + n1, &n2) == 1;
	EVP_ENCODE_CTX_free(ctx);
	if (!ok) {
		OPENSSL_clear_free(buf, len / 4 * 3 + 1);
		return FV_ERR_BACKEND;
	}
	*out = buf;
	*out_len = (size_t)n1 + (size_t)n2;
	return FV_OK;
}

int cloud_base64url_decode(const char *in, size_t len, unsigned char **out,
                           size_t *out_len)
{
	size_t padded = (len + 3) / 4 * 4, i;
	char *std;
	int rc;

	if (len > INT_MAX || len % 4 == 1)
		return FV_ERR_BACKEND;
	std = malloc(padded + 1);
	if (!std)
		return FV_ERR_NOMEM;
	for (i = 0; i < len; i++) {
		char c = in[i];

		if (c == '+' || c == '/')
			break; /* not the URL alphabet */
		std[i] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	if (i != len) {
		OPENSSL_clear_free(std, padded + 1);
		return FV_ERR_BACKEND;
	}
	while (i < padded)
		std[i++] = '=';
	std[padded] = '\0';
	rc = cloud_base64_decode(std, padded, out, out_len);
	OPENSSL_clear_free(std, padded + 1);
	return rc;
}
