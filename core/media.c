/*
 * Flows media uploads (PhotoPicker, DocumentPicker): verify and decrypt a
 * file downloaded from its cdn_url with the keys of its encryption_metadata,
 * as Meta's media-upload reference describes:
 *
 *   cdn_file  = ciphertext || mac10
 *   SHA-256(cdn_file)                                  == encrypted_hash
 *   HMAC-SHA256(hmac_key, iv || ciphertext)[0..10)     == mac10
 *   clear     = AES-256-CBC-decrypt(encryption_key, iv, ciphertext), PKCS#7
 *   SHA-256(clear)                                     == plaintext_hash
 *
 * One streaming pass computes all four; nothing is judged before the end, and
 * the verdicts are given in that order, so a padding error is only ever
 * reported for a file whose MAC is right (no padding oracle). Clear bytes go
 * to the caller's sink as they are produced: a caller that must not keep an
 * unverified file (the CLI) writes to a temporary file it removes on failure.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "media_internal.h"

#define MAC_BYTES 10
#define BLOCK 16
#define KEY_BYTES 32
#define HASH_BYTES 32
/* Longest base64 field we accept: 32 bytes encode to 44 characters. */
#define FIELD_B64_MAX 64

struct fv_media {
	char *media_id, *cdn_url, *file_name;
	unsigned char enc_key[KEY_BYTES], hmac_key[KEY_BYTES], iv[BLOCK];
	unsigned char encrypted_hash[HASH_BYTES], plaintext_hash[HASH_BYTES];
	EVP_MD_CTX *file_hash, *clear_hash;
	EVP_MAC_CTX *mac;
	EVP_CIPHER_CTX *cipher;
	/* The last MAC_BYTES bytes seen: the MAC, if the file ends here. */
	unsigned char tail[MAC_BYTES];
	size_t tail_len;
	uint64_t cdn_len, clear_len;
	int finished;
};

/* Strict standard base64 of exactly `want` bytes into `out`. */
static int b64_field(unsigned char *out, size_t want, json_object *meta,
                     const char *name, const char *id)
{
	unsigned char buf[FIELD_B64_MAX];
	json_object *v;
	const char *s;
	size_t len, pad = 0, i;
	int n;

	if (!json_object_object_get_ex(meta, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': encryption_metadata.%s is missing or not a string", id, name);
	s = json_object_get_string(v);
	len = (size_t)json_object_get_string_len(v);
	if (len == 0 || len % 4 || len > sizeof(buf))
		goto bad;
	if (s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/'))
			goto bad;
	n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n - pad != want)
		goto bad;
	memcpy(out, buf, want);
	OPENSSL_cleanse(buf, sizeof(buf));
	return FV_OK;
bad:
	OPENSSL_cleanse(buf, sizeof(buf));
	return fv__error_set(FV_ERR_DECRYPT,
		"media '%s': encryption_metadata.%s is not base64 of %zu bytes", id, name, want);
}

static int string_member(char **out, json_object *obj, const char *name, int required,
                         const char *id)
{
	json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(obj, name, &v)) {
		if (!required)
			return FV_OK;
		return fv__error_set(FV_ERR_DECRYPT, "media '%s': %s is missing", id, name);
	}
	if (!json_object_is_type(v, json_type_string))
		return fv__error_set(FV_ERR_DECRYPT, "media '%s': %s is not a string", id, name);
	*out = strdup(json_object_get_string(v));
	return *out ? FV_OK : fv__error_nomem();
}

void fv_media_free(fv_media *m)
{
	if (!m)
		return;
	EVP_MD_CTX_free(m->file_hash);
	EVP_MD_CTX_free(m->clear_hash);
	EVP_MAC_CTX_free(m->mac);
	EVP_CIPHER_CTX_free(m->cipher);
	free(m->media_id);
	free(m->cdn_url);
	free(m->file_name);
	OPENSSL_clear_free(m, sizeof(*m));
}

static int media_start(fv_media *m)
{
	OSSL_PARAM params[2];
	EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	int ok;

	params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	m->file_hash = EVP_MD_CTX_new();
	m->clear_hash = EVP_MD_CTX_new();
	m->mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
	m->cipher = EVP_CIPHER_CTX_new();
	EVP_MAC_free(hmac);
	ok = m->file_hash && m->clear_hash && m->mac && m->cipher &&
	     EVP_DigestInit_ex(m->file_hash, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestInit_ex(m->clear_hash, EVP_sha256(), NULL) == 1 &&
	     EVP_MAC_init(m->mac, m->hmac_key, sizeof(m->hmac_key), params) == 1 &&
	     EVP_MAC_update(m->mac, m->iv, sizeof(m->iv)) == 1 &&
	     EVP_DecryptInit_ex(m->cipher, EVP_aes_256_cbc(), NULL, m->enc_key, m->iv) == 1;
	/* The contexts hold what they need now. */
	OPENSSL_cleanse(m->enc_key, sizeof(m->enc_key));
	OPENSSL_cleanse(m->hmac_key, sizeof(m->hmac_key));
	return ok ? FV_OK : fv__error_set(FV_ERR_GENERIC, "media: OpenSSL cannot set up SHA-256, HMAC or AES");
}

int fv__media_open_object(fv_media **out, json_object *obj)
{
	json_object *meta;
	fv_media *m;
	const char *id;
	int rc;

	*out = NULL;
	if (!json_object_is_type(obj, json_type_object))
		return fv__error_set(FV_ERR_DECRYPT,
			"media object: not a JSON object with media_id, cdn_url, file_name and encryption_metadata");
	if (!(m = OPENSSL_zalloc(sizeof(*m))))
		return fv__error_nomem();
	if ((rc = string_member(&m->media_id, obj, "media_id", 1, "?")) != FV_OK)
		goto fail;
	id = m->media_id;
	if ((rc = string_member(&m->cdn_url, obj, "cdn_url", 0, id)) != FV_OK ||
	    (rc = string_member(&m->file_name, obj, "file_name", 0, id)) != FV_OK)
		goto fail;
	if (!json_object_object_get_ex(obj, "encryption_metadata", &meta) ||
	    !json_object_is_type(meta, json_type_object)) {
		rc = fv__error_set(FV_ERR_DECRYPT, "media '%s': encryption_metadata is missing", id);
		goto fail;
	}
	if ((rc = b64_field(m->enc_key, KEY_BYTES, meta, "encryption_key", id)) != FV_OK ||
	    (rc = b64_field(m->hmac_key, KEY_BYTES, meta, "hmac_key", id)) != FV_OK ||
	    (rc = b64_field(m->iv, BLOCK, meta, "iv", id)) != FV_OK ||
	    (rc = b64_field(m->encrypted_hash, HASH_BYTES, meta, "encrypted_hash", id)) != FV_OK ||
	    (rc = b64_field(m->plaintext_hash, HASH_BYTES, meta, "plaintext_hash", id)) != FV_OK)
		goto fail;
	if ((rc = media_start(m)) != FV_OK)
		goto fail;
	*out = m;
	return FV_OK;
fail:
	fv_media_free(m);
	return rc;
}

int fv_media_open(fv_media **out, const char *json, size_t len)
{
	json_object *obj;
	int rc;

	if (!out || (!json && len))
		return fv__error_set(FV_ERR_USAGE, "fv_media_open: missing argument");
	*out = NULL;
	if (len > INT_MAX || !json || memchr(json, '\0', len))
		return fv__error_set(FV_ERR_DECRYPT, "media object: not JSON text");
	/* Parsed without leaving copies of the keys in json-c's buffers, and
	 * every value wiped when freed. */
	if (!(obj = fv__flow_json_parse(json, len)))
		return fv__error_set(FV_ERR_DECRYPT,
			"media object: not a JSON object with media_id, cdn_url, file_name and encryption_metadata");
	rc = fv__media_open_object(out, obj);
	fv__flow_json_wipe_put(obj);
	return rc;
}

const char *fv_media_id(const fv_media *m)
{
	return m ? m->media_id : NULL;
}

const char *fv_media_cdn_url(const fv_media *m)
{
	return m ? m->cdn_url : NULL;
}

const char *fv_media_file_name(const fv_media *m)
{
	return m ? m->file_name : NULL;
}

/* Ciphertext bytes (the MAC already held back): MAC, decrypt, hash, sink. */
static int consume(fv_media *m, const unsigned char *p, size_t len, fv_media_sink_fn sink,
                   void *arg)
{
	unsigned char clear[4096 + BLOCK];

	while (len > 0) {
		size_t n = len > 4096 ? 4096 : len;
		int out = 0, rc;

		if (EVP_MAC_update(m->mac, p, n) != 1 ||
		    EVP_DecryptUpdate(m->cipher, clear, &out, p, (int)n) != 1)
			return fv__error_set(FV_ERR_GENERIC, "media '%s': OpenSSL failed", m->media_id);
		if (out > 0) {
			EVP_DigestUpdate(m->clear_hash, clear, (size_t)out);
			m->clear_len += (uint64_t)out;
			rc = sink ? sink(arg, clear, (size_t)out) : FV_OK;
			OPENSSL_cleanse(clear, (size_t)out);
			if (rc != FV_OK)
				return rc;
		}
		p += n;
		len -= n;
	}
	return FV_OK;
}

int fv_media_update(fv_media *m, const void *data, size_t len, fv_media_sink_fn sink,
                    void *arg)
{
	const unsigned char *p = data;
	int rc;

	if (!m || (!data && len) || m->finished)
		return fv__error_set(FV_ERR_USAGE, "fv_media_update: missing argument or finished");
	if (!len)
		return FV_OK;
	EVP_DigestUpdate(m->file_hash, p, len);
	m->cdn_len += len;
	/* Release what can no longer be part of the trailing MAC. */
	if (m->tail_len + len <= MAC_BYTES) {
		memcpy(m->tail + m->tail_len, p, len);
		m->tail_len += len;
		return FV_OK;
	}
	{
		size_t from_tail = m->tail_len + len - MAC_BYTES;

		if (from_tail > m->tail_len)
			from_tail = m->tail_len;
		if ((rc = consume(m, m->tail, from_tail, sink, arg)) != FV_OK)
			return rc;
		memmove(m->tail, m->tail + from_tail, m->tail_len - from_tail);
		m->tail_len -= from_tail;
	}
	if (len > MAC_BYTES - m->tail_len) {
		size_t pass = len - (MAC_BYTES - m->tail_len);

		if ((rc = consume(m, p, pass, sink, arg)) != FV_OK)
			return rc;
		p += pass;
		len -= pass;
	}
	memcpy(m->tail + m->tail_len, p, len);
	m->tail_len += len;
	return FV_OK;
}

int fv_media_final(fv_media *m, fv_media_sink_fn sink, void *arg,
                   unsigned char sha256[32], uint64_t *size)
{
	unsigned char file_digest[HASH_BYTES], clear_digest[HASH_BYTES], mac[HASH_BYTES];
	unsigned char last[2 * BLOCK];
	unsigned int dlen = 0;
	size_t mac_len = 0;
	int out = 0, padding_ok, rc = FV_OK;
	uint64_t cipher_len;

	if (!m || m->finished)
		return fv__error_set(FV_ERR_USAGE, "fv_media_final: missing argument or finished");
	m->finished = 1;
	cipher_len = m->cdn_len >= MAC_BYTES ? m->cdn_len - MAC_BYTES : 0;
	if (m->cdn_len < BLOCK + MAC_BYTES || cipher_len % BLOCK)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': the file is %llu bytes; it must be AES blocks of 16 bytes and a "
			"10-byte MAC (at least 26 bytes): truncated or not a WhatsApp media file",
			m->media_id, (unsigned long long)m->cdn_len);
	EVP_DigestFinal_ex(m->file_hash, file_digest, &dlen);
	if (CRYPTO_memcmp(file_digest, m->encrypted_hash, HASH_BYTES) != 0)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': verification failed: the file's SHA-256 does not match encrypted_hash "
			"(a different or damaged download)", m->media_id);
	if (EVP_MAC_final(m->mac, mac, &mac_len, sizeof(mac)) != 1 || mac_len != HASH_BYTES)
		return fv__error_set(FV_ERR_GENERIC, "media '%s': HMAC failed", m->media_id);
	if (CRYPTO_memcmp(mac, m->tail, MAC_BYTES) != 0)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': verification failed: the MAC does not match (wrong hmac_key or iv, "
			"or a tampered file)", m->media_id);
	padding_ok = EVP_DecryptFinal_ex(m->cipher, last, &out) == 1;
	if (!padding_ok)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': verification failed: the decrypted file has invalid padding "
			"(wrong encryption_key)", m->media_id);
	if (out > 0) {
		EVP_DigestUpdate(m->clear_hash, last, (size_t)out);
		m->clear_len += (uint64_t)out;
		if (sink)
			rc = sink(arg, last, (size_t)out);
		OPENSSL_cleanse(last, sizeof(last));
		if (rc != FV_OK)
			return rc;
	}
	EVP_DigestFinal_ex(m->clear_hash, clear_digest, &dlen);
	if (CRYPTO_memcmp(clear_digest, m->plaintext_hash, HASH_BYTES) != 0)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': verification failed: the clear file's SHA-256 does not match "
			"plaintext_hash", m->media_id);
	if (sha256)
		memcpy(sha256, clear_digest, HASH_BYTES);
	if (size)
		*size = m->clear_len;
	return FV_OK;
}

/* ---- Download over verified HTTPS ---- */

static const char *const default_hosts[] = { "mmg.whatsapp.net", ".whatsapp.net", NULL };

/* `host` is `pattern`, or a subdomain of it when `pattern` starts with ".". */
static int host_allowed(const char *host, const char *pattern)
{
	size_t h = strlen(host), p = strlen(pattern);

	if (pattern[0] != '.')
		return strcasecmp(host, pattern) == 0;
	return h > p && strcasecmp(host + h - p, pattern) == 0;
}

int fv__media_host_allowed(const char *host, const char *const *hosts, size_t count)
{
	size_t i;

	if (!hosts) {
		hosts = default_hosts;
		count = sizeof(default_hosts) / sizeof(default_hosts[0]) - 1;
	}
	for (i = 0; i < count && hosts[i]; i++)
		if (host_allowed(host, hosts[i]))
			return 1;
	return 0;
}

struct fv__media_download {
	fv_media *media;
	fv_media_sink_fn sink;
	void *arg;
	uint64_t max_bytes, got;
	int rc;
	char reason[256];        /* why the sink stopped: several downloads share a thread */
	CURL *curl;
	CURLU *url;
	char *host, *port;
	char error[CURL_ERROR_SIZE];
};

static size_t on_data(char *data, size_t size, size_t n, void *userp)
{
	struct fv__media_download *d = userp;
	size_t len = size * n;

	d->got += len;
	if (d->got > d->max_bytes)
		d->rc = fv__error_set(FV_ERR_DECRYPT,
			"media '%s': the download is larger than %llu bytes; refused",
			d->media->media_id, (unsigned long long)d->max_bytes);
	else
		d->rc = fv_media_update(d->media, data, len, d->sink, d->arg);
	if (d->rc != FV_OK) {
		snprintf(d->reason, sizeof(d->reason), "%s", fv_error_last()->message);
		return 0;
	}
	return len;
}

void fv__media_download_free(struct fv__media_download *d)
{
	if (!d)
		return;
	curl_easy_cleanup(d->curl);
	curl_url_cleanup(d->url);
	curl_free(d->host);
	curl_free(d->port);
	free(d);
}

int fv__media_download_new(struct fv__media_download **out, fv_media *m,
                           const fv_media_fetch_options *opt, fv_media_sink_fn sink,
                           void *arg)
{
	static const fv_media_fetch_options defaults = { NULL, 0, FV_MEDIA_DEFAULT_MAX_BYTES,
	                                                 FV_MEDIA_DEFAULT_TIMEOUT_MS, NULL };
	struct fv__media_download *d;
	char *scheme = NULL;
	int rc;

	*out = NULL;
	if (!m)
		return fv__error_set(FV_ERR_USAGE, "fv_media_fetch: media is NULL");
	if (!opt)
		opt = &defaults;
	if (!m->cdn_url)
		return fv__error_set(FV_ERR_DECRYPT, "media '%s': no cdn_url to download", m->media_id);
	if (!(d = calloc(1, sizeof(*d))))
		return fv__error_nomem();
	d->url = curl_url();
	if (!d->url || curl_url_set(d->url, CURLUPART_URL, m->cdn_url, 0) != CURLUE_OK ||
	    curl_url_get(d->url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(d->url, CURLUPART_HOST, &d->host, 0) != CURLUE_OK ||
	    curl_url_get(d->url, CURLUPART_PORT, &d->port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
		rc = fv__error_set(FV_ERR_DECRYPT, "media '%s': cdn_url is not a URL", m->media_id);
		goto fail;
	}
	if (strcmp(scheme, "https") != 0) {
		rc = fv__error_set(FV_ERR_DECRYPT,
			"media '%s': cdn_url is not https; only verified HTTPS downloads are made",
			m->media_id);
		goto fail;
	}
	if (!fv__media_host_allowed(d->host, opt->allowed_hosts, opt->allowed_count)) {
		rc = fv__error_set(FV_ERR_DECRYPT,
			"media '%s': cdn_url host '%s' is not in the allowed CDN hosts; refused",
			m->media_id, d->host);
		goto fail;
	}
	d->media = m;
	d->sink = sink;
	d->arg = arg;
	d->max_bytes = opt->max_bytes ? opt->max_bytes : FV_MEDIA_DEFAULT_MAX_BYTES;
	d->rc = FV_OK;
	if (!(d->curl = curl_easy_init())) {
		rc = fv__error_nomem();
		goto fail;
	}
	curl_easy_setopt(d->curl, CURLOPT_CURLU, d->url);
	curl_easy_setopt(d->curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(d->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(d->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(d->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(d->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(d->curl, CURLOPT_TIMEOUT_MS,
	                 opt->timeout_ms > 0 ? opt->timeout_ms : FV_MEDIA_DEFAULT_TIMEOUT_MS);
	curl_easy_setopt(d->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)d->max_bytes);
	curl_easy_setopt(d->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(d->curl, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(d->curl, CURLOPT_ERRORBUFFER, d->error);
	curl_easy_setopt(d->curl, CURLOPT_PRIVATE, d);
	curl_easy_setopt(d->curl, CURLOPT_USERAGENT, "flowvault/" FLOWVAULT_VERSION_STRING);
	if (opt->ca_file)
		curl_easy_setopt(d->curl, CURLOPT_CAINFO, opt->ca_file);
	curl_free(scheme);
	*out = d;
	return FV_OK;
fail:
	curl_free(scheme);
	fv__media_download_free(d);
	return rc;
}

CURL *fv__media_download_easy(struct fv__media_download *d)
{
	return d->curl;
}

const char *fv__media_download_host(const struct fv__media_download *d)
{
	return d->host;
}

const char *fv__media_download_port(const struct fv__media_download *d)
{
	return d->port;
}

int fv__media_download_done(struct fv__media_download *d, CURLcode cc)
{
	const char *id = d->media->media_id;
	long status = 0;

	curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
	if (d->rc != FV_OK)
		return fv__error_set(d->rc, "%s", d->reason);
	if (cc == CURLE_FILESIZE_EXCEEDED)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': the download is larger than %llu bytes; refused", id,
			(unsigned long long)d->max_bytes);
	if (cc == CURLE_OPERATION_TIMEDOUT)
		return fv__error_set(FV_ERR_BACKEND, "media '%s': download from %s timed out", id,
		                     d->host);
	if (cc != CURLE_OK)
		return fv__error_set(FV_ERR_BACKEND, "media '%s': download from %s failed: %s", id,
		                     d->host, d->error[0] ? d->error : curl_easy_strerror(cc));
	if (status >= 300 && status < 400)
		return fv__error_set(FV_ERR_DECRYPT,
			"media '%s': %s answered with a redirect (HTTP %ld); redirects are not followed",
			id, d->host, status);
	if (status != 200)
		return fv__error_set(FV_ERR_BACKEND, "media '%s': %s answered HTTP %ld", id, d->host,
		                     status);
	return FV_OK;
}

int fv_media_fetch(fv_media *m, const fv_media_fetch_options *opt, fv_media_sink_fn sink,
                   void *arg)
{
	struct fv__media_download *d;
	int rc;

	if ((rc = fv__media_download_new(&d, m, opt, sink, arg)) != FV_OK)
		return rc;
	rc = fv__media_download_done(d, curl_easy_perform(d->curl));
	fv__media_download_free(d);
	return rc;
}
