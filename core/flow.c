/*
 * Flows data-exchange crypto: request decryption with a vault-held key,
 * response encryption, the X-Hub-Signature-256 check, and a request handler
 * that needs no sockets (the server and the fuzzers both drive it).
 *
 * Every length is checked before it is used. What this file derives from a
 * request or its answer is wiped before it is freed: the AES key, the clear
 * text, and the values json-c copies out of clear text while checking it
 * (strings, numbers, member names, the tokener's buffer). Not wiped: member
 * names the tokener copies while it reads an object (freed as it goes; they
 * name fields, the values are wiped), and the HTTP layers' own buffers
 * (libmicrohttpd, libcurl), which this file does not allocate.
 */
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <json-c/printbuf.h>

#include "internal.h"

/* Big enough for RSA-4096 plain text; Flows uses RSA-2048 (16 bytes out). */
#define RSA_PLAIN_MAX 512
/* encrypted_aes_key of an RSA-16384 key at most: anything longer is junk. */
#define AES_KEY_B64_MAX 2800

struct fv_flow_session {
	unsigned char key[FV_FLOW_AES_KEY_BYTES];
	unsigned char iv[FV_FLOW_IV_BYTES];   /* the response IV: request IV inverted */
};

void fv_flow_session_free(fv_flow_session *session)
{
	if (session)
		OPENSSL_clear_free(session, sizeof(*session));
}

void fv_flow_clear_free(char *clear, size_t clear_len)
{
	if (clear)
		OPENSSL_clear_free(clear, clear_len + 1);
}

/* ---- base64 (standard alphabet, padding required, no white space) ---- */

static int b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/*
 * Decode into a new buffer. EVP_DecodeBlock trims white space and counts
 * padding as zero bytes, so the strict shape is checked here first and the
 * padding subtracted after.
 */
static int b64_decode(unsigned char **out, size_t *out_len, const char *in,
                      size_t in_len)
{
	size_t pad = 0, i;
	unsigned char *buf;
	int n;

	*out = NULL;
	if (in_len == 0 || in_len % 4 != 0 || in_len > (size_t)INT_MAX / 2)
		return FV_ERR_DECRYPT;
	if (in[in_len - 1] == '=')
		pad = in[in_len - 2] == '=' ? 2 : 1;
	for (i = 0; i < in_len - pad; i++)
		if (!b64_char((unsigned char)in[i]))
			return FV_ERR_DECRYPT;
	buf = OPENSSL_malloc(in_len / 4 * 3 + 1);
	if (!buf)
		return fv__error_nomem();
	n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)in_len);
	if (n < 0 || (size_t)n != in_len / 4 * 3) {
		OPENSSL_free(buf);
		return FV_ERR_DECRYPT;
	}
	*out = buf;
	*out_len = (size_t)n - pad;
	return FV_OK;
}

static int b64_encode(char **out, size_t *out_len, const unsigned char *in,
                      size_t in_len)
{
	size_t cap;
	char *buf;
	int n;

	if (in_len > (size_t)INT_MAX / 2)
		return fv__error_set(FV_ERR_USAGE, "response too large to encode");
	cap = (in_len + 2) / 3 * 4 + 1;
	buf = malloc(cap);
	if (!buf)
		return fv__error_nomem();
	n = EVP_EncodeBlock((unsigned char *)buf, in, (int)in_len);
	if (n < 0 || (size_t)n + 1 != cap) {
		free(buf);
		return fv__error_set(FV_ERR_GENERIC, "base64 encoding failed");
	}
	*out = buf;
	*out_len = (size_t)n;
	return FV_OK;
}

/* ---- AES-128-GCM with a 16-byte IV ---- */

static int gcm_crypt(int encrypt, unsigned char *out, const unsigned char *in,
                     size_t in_len, unsigned char tag[FV_FLOW_TAG_BYTES],
                     const unsigned char key[FV_FLOW_AES_KEY_BYTES],
                     const unsigned char iv[FV_FLOW_IV_BYTES])
{
	EVP_CIPHER_CTX *c;
	int ok, n = 0, fin = 0;

	if (in_len > (size_t)INT_MAX)
		return 0;
	c = EVP_CIPHER_CTX_new();
	if (!c)
		return 0;
	/* GCM's IV is 12 bytes unless told otherwise: Flows uses 16. */
	ok = EVP_CipherInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL, encrypt) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, FV_FLOW_IV_BYTES, NULL) == 1 &&
	     EVP_CipherInit_ex(c, NULL, NULL, key, iv, encrypt) == 1 &&
	     (in_len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)in_len) == 1);
	if (ok && !encrypt)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, FV_FLOW_TAG_BYTES, tag) == 1;
	/* For decryption, Final is where the tag is compared (in constant time). */
	ok = ok && EVP_CipherFinal_ex(c, out + n, &fin) == 1 && (size_t)n + (size_t)fin == in_len;
	if (ok && encrypt)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, FV_FLOW_TAG_BYTES, tag) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok;
}

/* ---- The request envelope ---- */

struct envelope {
	json_object *root;
	const char *data, *aes_key, *iv;   /* base64, borrowed from root */
	size_t data_len, aes_key_len, iv_len;
};

static int string_field(json_object *root, const char *name, const char **s,
                        size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(root, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return 0;
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return 1;
}

/* True when the `len` bytes at `p` are JSON white space (bounded: the text
 * need not be NUL-terminated). */
static int only_space(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return 0;
	return 1;
}

/* Overwrite every value json-c copied out of clear text (strings, member
 * names, numbers and the text json-c keeps of a double), then free it. */
static void json_wipe_put(json_object *obj)
{
	size_t i, n;

	if (!obj)
		return;
	switch (json_object_get_type(obj)) {
	case json_type_string:
		OPENSSL_cleanse((char *)json_object_get_string(obj),
		                (size_t)json_object_get_string_len(obj));
		break;
	case json_type_double: {
		char *text = json_object_get_userdata(obj);

		if (text)
			OPENSSL_cleanse(text, strlen(text));
		json_object_set_double(obj, 0);
		break;
	}
	case json_type_int:
		json_object_set_int64(obj, 0);
		break;
	case json_type_array:
		n = json_object_array_length(obj);
		for (i = 0; i < n; i++)
			json_wipe_put(json_object_get(json_object_array_get_idx(obj, i)));
		break;
	case json_type_object: {
		json_object_object_foreach(obj, key, value) {
			json_wipe_put(json_object_get(value));
			OPENSSL_cleanse(key, strlen(key));
		}
		break;
	}
	default:
		break;
	}
	json_object_put(obj);
}

/* Parse a JSON document of exactly `len` bytes (white space around it is
 * fine); NULL when it is not JSON, not UTF-8, or has trailing bytes. Free
 * the result with json_wipe_put when the text was secret. */
static json_object *parse_json(const char *text, size_t len)
{
	struct json_tokener *tok;
	json_object *obj;
	size_t end;

	if (len > (size_t)INT_MAX - 1 || memchr(text, '\0', len))
		return NULL;
	tok = json_tokener_new();
	if (!tok)
		return NULL;
	/*
	 * The tokener collects each token in its print buffer, which grows by
	 * realloc and would leave unwiped copies of clear text behind: give it
	 * room for the whole text up front, and wipe it afterwards. (The
	 * member is documented as internal; json-c 0.16 offers no other way.)
	 */
	if (printbuf_memset(tok->pb, 0, 0, (int)len + 1) < 0) {
		json_tokener_free(tok);
		return NULL;
	}
	printbuf_reset(tok->pb);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (obj && (json_tokener_get_error(tok) != json_tokener_success ||
	            (end < len && !only_space(text + end, len - end)))) {
		json_wipe_put(obj);
		obj = NULL;
	}
	OPENSSL_cleanse(tok->pb->buf, (size_t)tok->pb->size);
	json_tokener_free(tok);
	return obj;
}

json_object *fv__flow_json_parse(const char *text, size_t len)
{
	return parse_json(text, len);
}

void fv__flow_json_wipe_put(json_object *obj)
{
	json_wipe_put(obj);
}

static int envelope_parse(struct envelope *env, const void *body, size_t body_len)
{
	memset(env, 0, sizeof(*env));
	if (!body)
		return FV_ERR_DECRYPT;
	env->root = parse_json(body, body_len);
	if (!env->root || !json_object_is_type(env->root, json_type_object) ||
	    !string_field(env->root, "encrypted_flow_data", &env->data, &env->data_len) ||
	    !string_field(env->root, "encrypted_aes_key", &env->aes_key, &env->aes_key_len) ||
	    !string_field(env->root, "initial_vector", &env->iv, &env->iv_len)) {
		json_object_put(env->root);
		env->root = NULL;
		return fv__error_set(FV_ERR_DECRYPT,
			"the request body is not a JSON object with string fields encrypted_flow_data, "
			"encrypted_aes_key and initial_vector");
	}
	return FV_OK;
}

/* The symmetric part of one request, after the AES key is known. */
static int decrypt_payload(char **clear, size_t *clear_len, fv_flow_session **session,
                           const struct envelope *env,
                           const unsigned char key[FV_FLOW_AES_KEY_BYTES])
{
	unsigned char *iv = NULL, *data = NULL, *plain = NULL;
	size_t iv_len = 0, data_len = 0, plain_len = 0, i;
	json_object *obj = NULL;
	fv_flow_session *s = NULL;
	int rc;

	if ((rc = b64_decode(&iv, &iv_len, env->iv, env->iv_len)) != FV_OK ||
	    iv_len != FV_FLOW_IV_BYTES) {
		rc = rc == FV_ERR_NOMEM ? rc : fv__error_set(FV_ERR_DECRYPT,
			"initial_vector is not base64 of %d bytes", FV_FLOW_IV_BYTES);
		goto out;
	}
	if ((rc = b64_decode(&data, &data_len, env->data, env->data_len)) != FV_OK ||
	    data_len < FV_FLOW_TAG_BYTES) {
		rc = rc == FV_ERR_NOMEM ? rc : fv__error_set(FV_ERR_DECRYPT,
			"encrypted_flow_data is not base64 of cipher text and a %d-byte tag",
			FV_FLOW_TAG_BYTES);
		goto out;
	}
	plain_len = data_len - FV_FLOW_TAG_BYTES;
	plain = OPENSSL_malloc(plain_len + 1);
	if (!plain) {
		rc = fv__error_nomem();
		goto out;
	}
	if (!gcm_crypt(0, plain, data, plain_len, data + plain_len, key, iv)) {
		rc = fv__error_set(FV_ERR_DECRYPT,
			"encrypted_flow_data fails the AES-GCM tag check with the decrypted AES key");
		goto out;
	}
	plain[plain_len] = '\0';
	obj = parse_json((const char *)plain, plain_len);
	if (!obj || !json_object_is_type(obj, json_type_object)) {
		rc = fv__error_set(FV_ERR_DECRYPT,
			"the decrypted request is not a UTF-8 JSON object");
		goto out;
	}
	if (session) {
		s = OPENSSL_malloc(sizeof(*s));
		if (!s) {
			rc = fv__error_nomem();
			goto out;
		}
		memcpy(s->key, key, sizeof(s->key));
		for (i = 0; i < FV_FLOW_IV_BYTES; i++)
			s->iv[i] = (unsigned char)~iv[i];
		*session = s;
	}
	*clear = (char *)plain;
	*clear_len = plain_len;
	plain = NULL;
	rc = FV_OK;
out:
	/* json-c keeps its own copies of the clear text's values. */
	json_wipe_put(obj);
	if (plain)
		OPENSSL_clear_free(plain, plain_len + 1);
	OPENSSL_free(iv);
	OPENSSL_free(data);
	return rc;
}

/* OAEP through the key's backend, then AES. Returns FV_ERR_DECRYPT for
 * anything that is the request's fault. */
static int decrypt_with_key(char **clear, size_t *clear_len, fv_flow_session **session,
                            fv_key *key, const struct envelope *env)
{
	unsigned char *wrapped = NULL;
	unsigned char aes_key[RSA_PLAIN_MAX];
	size_t wrapped_len = 0, aes_len = sizeof(aes_key);
	int rc;

	if (env->aes_key_len > AES_KEY_B64_MAX ||
	    b64_decode(&wrapped, &wrapped_len, env->aes_key, env->aes_key_len) != FV_OK)
		return fv__error_set(FV_ERR_DECRYPT, "encrypted_aes_key is not valid base64");
	rc = fv_key_decrypt(aes_key, &aes_len, key, wrapped, wrapped_len);
	OPENSSL_free(wrapped);
	if (rc == FV_ERR_BUFFER_TOO_SMALL || (rc == FV_OK && aes_len != FV_FLOW_AES_KEY_BYTES)) {
		OPENSSL_cleanse(aes_key, sizeof(aes_key));
		return fv__error_set(FV_ERR_DECRYPT,
			"key '%s': encrypted_aes_key does not hold a %d-byte AES key",
			fv_key_name(key), FV_FLOW_AES_KEY_BYTES);
	}
	if (rc != FV_OK)
		return rc; /* the message names the key and the reason */
	rc = decrypt_payload(clear, clear_len, session, env, aes_key);
	OPENSSL_cleanse(aes_key, sizeof(aes_key));
	if (rc == FV_ERR_DECRYPT)
		fv__error_prefix("key '%s'", fv_key_name(key));
	return rc;
}

int fv_flow_decrypt_request_any(char **clear, size_t *clear_len,
                                fv_flow_session **session, size_t *key_index,
                                fv_key *const *keys, size_t key_count,
                                const void *body, size_t body_len)
{
	struct envelope env;
	int rc, backend_rc = FV_OK;
	char backend_msg[512] = "";
	size_t i, dummy_len;

	if (!clear || !keys || key_count == 0 || (!body && body_len))
		return fv__error_set(FV_ERR_USAGE, "fv_flow_decrypt_request: missing argument");
	*clear = NULL;
	if (!clear_len)
		clear_len = &dummy_len;
	if (session)
		*session = NULL;
	if ((rc = envelope_parse(&env, body, body_len)) != FV_OK)
		return rc;
	rc = FV_ERR_DECRYPT;
	for (i = 0; i < key_count; i++) {
		rc = decrypt_with_key(clear, clear_len, session, keys[i], &env);
		if (rc == FV_OK) {
			if (key_index)
				*key_index = i;
			break;
		}
		if (rc == FV_ERR_NOMEM)
			break;
		if (rc != FV_ERR_DECRYPT && backend_rc == FV_OK) {
			backend_rc = rc;
			snprintf(backend_msg, sizeof(backend_msg), "%s", fv_error_last()->message);
		}
	}
	json_object_put(env.root);
	if (rc == FV_OK || rc == FV_ERR_NOMEM)
		return rc;
	if (backend_rc != FV_OK)
		return fv__error_set(backend_rc, "%s", backend_msg);
	if (key_count > 1) {
		char last[512];

		snprintf(last, sizeof(last), "%s", fv_error_last()->message);
		return fv__error_set(FV_ERR_DECRYPT,
			"none of the %zu keys can decrypt the request (last: %s); it was encrypted "
			"to another public key: check the key registered with WhatsApp",
			key_count, last);
	}
	return FV_ERR_DECRYPT;
}

int fv_flow_decrypt_request(char **clear, size_t *clear_len, fv_flow_session **session,
                            fv_key *key, const void *body, size_t body_len)
{
	if (!key)
		return fv__error_set(FV_ERR_USAGE, "fv_flow_decrypt_request: key is NULL");
	return fv_flow_decrypt_request_any(clear, clear_len, session, NULL, &key, 1,
	                                   body, body_len);
}

int fv_flow_encrypt_response(char **body, size_t *body_len,
                             const fv_flow_session *session, const void *clear,
                             size_t clear_len)
{
	unsigned char *sealed;
	size_t sealed_len, dummy;
	int rc;

	if (!body || !session || (!clear && clear_len))
		return fv__error_set(FV_ERR_USAGE, "fv_flow_encrypt_response: missing argument");
	*body = NULL;
	if (!body_len)
		body_len = &dummy;
	if (clear_len > (size_t)INT_MAX - FV_FLOW_TAG_BYTES)
		return fv__error_set(FV_ERR_USAGE, "response of %zu bytes is too large", clear_len);
	sealed_len = clear_len + FV_FLOW_TAG_BYTES;
	sealed = OPENSSL_malloc(sealed_len);
	if (!sealed)
		return fv__error_nomem();
	if (!gcm_crypt(1, sealed, clear ? clear : (const void *)"", clear_len,
	               sealed + clear_len, session->key, session->iv)) {
		OPENSSL_free(sealed);
		return fv__error_set(FV_ERR_GENERIC, "AES-128-GCM encryption failed");
	}
	rc = b64_encode(body, body_len, sealed, sealed_len);
	OPENSSL_free(sealed);
	return rc;
}

/* ---- X-Hub-Signature-256 ---- */

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int fv_flow_signature_check(const char *header, const void *body, size_t body_len,
                            const void *secret, size_t secret_len)
{
	unsigned char want[32], mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	size_t i;
	int ok;

	if (!secret || (!body && body_len))
		return fv__error_set(FV_ERR_USAGE, "fv_flow_signature_check: missing argument");
	if (!header)
		return fv__error_set(FV_ERR_AUTH, "the X-Hub-Signature-256 header is missing");
	if (strncmp(header, "sha256=", 7) != 0 || strlen(header) != 7 + 64)
		return fv__error_set(FV_ERR_AUTH,
			"the X-Hub-Signature-256 header is not 'sha256=' and 64 hex digits");
	for (i = 0; i < 32; i++) {
		int hi = hex_value((unsigned char)header[7 + 2 * i]);
		int lo = hex_value((unsigned char)header[8 + 2 * i]);

		if (hi < 0 || lo < 0)
			return fv__error_set(FV_ERR_AUTH,
				"the X-Hub-Signature-256 header is not 'sha256=' and 64 hex digits");
		want[i] = (unsigned char)(hi << 4 | lo);
	}
	if (secret_len > (size_t)INT_MAX ||
	    !HMAC(EVP_sha256(), secret, (int)secret_len, body ? body : (const void *)"",
	          body_len, mac, &mac_len) || mac_len != 32)
		return fv__error_set(FV_ERR_GENERIC, "HMAC-SHA256 failed");
	ok = CRYPTO_memcmp(mac, want, 32) == 0;
	OPENSSL_cleanse(mac, sizeof(mac));
	return ok ? FV_OK
	          : fv__error_set(FV_ERR_AUTH,
	                          "X-Hub-Signature-256 does not match the body for any app secret");
}

/* ---- The request handler ---- */

struct app_secret {
	char *value;
	size_t len;
};

struct fv_flow_handler {
	fv_key **keys;
	size_t key_count;
	struct app_secret *secrets;
	size_t secret_count;
	fv_flow_upstream_fn upstream;
	void *upstream_arg;
	atomic_int no_upstream_logged;
	/* Set by fv__flow_handler_new_unwrap: no keys here, the RSA step is a call. */
	const char *const *key_names;
	fv__flow_unwrap_fn unwrap;
	void *unwrap_arg;
};

void fv_flow_handler_free(fv_flow_handler *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->secret_count; i++)
		fv__secure_free(h->secrets[i].value, h->secrets[i].len + 1);
	free(h->secrets);
	free(h->keys);
	free(h);
}

/* The handler without its keys: app secrets and upstream. */
static int handler_new(fv_flow_handler **out, const fv_flow_handler_config *cfg)
{
	fv_flow_handler *h;
	size_t i;

	*out = NULL;
	if (cfg->app_secret_count && (!cfg->app_secrets || !cfg->app_secret_lens))
		return fv__error_set(FV_ERR_USAGE, "fv_flow_handler_new: app secrets missing");
	h = calloc(1, sizeof(*h));
	if (!h)
		return fv__error_nomem();
	h->secrets = calloc(cfg->app_secret_count + 1, sizeof(*h->secrets));
	if (!h->secrets) {
		fv_flow_handler_free(h);
		return fv__error_nomem();
	}
	for (i = 0; i < cfg->app_secret_count; i++) {
		/* Kept for the server's lifetime: on the secure heap, out of core dumps. */
		h->secrets[i].value = fv__secure_alloc(cfg->app_secret_lens[i] + 1);
		if (!h->secrets[i].value) {
			fv_flow_handler_free(h);
			return fv__error_nomem();
		}
		memcpy(h->secrets[i].value, cfg->app_secrets[i], cfg->app_secret_lens[i]);
		h->secrets[i].value[cfg->app_secret_lens[i]] = '\0';
		h->secrets[i].len = cfg->app_secret_lens[i];
		h->secret_count = i + 1;
	}
	h->upstream = cfg->upstream;
	h->upstream_arg = cfg->upstream_arg;
	*out = h;
	return FV_OK;
}

int fv_flow_handler_new(fv_flow_handler **out, const fv_flow_handler_config *cfg)
{
	fv_flow_handler *h;
	size_t i;
	int rc;

	if (!out || !cfg || !cfg->keys || cfg->key_count == 0)
		return fv__error_set(FV_ERR_USAGE,
			"fv_flow_handler_new: at least one key is needed");
	for (i = 0; i < cfg->key_count; i++)
		if (!cfg->keys[i])
			return fv__error_set(FV_ERR_USAGE, "fv_flow_handler_new: key %zu is NULL", i);
	if ((rc = handler_new(&h, cfg)) != FV_OK)
		return rc;
	h->keys = calloc(cfg->key_count, sizeof(*h->keys)); // NOLINT(bugprone-sizeof-expression): an array of fv_key pointers
	if (!h->keys) {
		fv_flow_handler_free(h);
		return fv__error_nomem();
	}
	memcpy(h->keys, cfg->keys, cfg->key_count * sizeof(*h->keys)); // NOLINT(bugprone-sizeof-expression): an array of fv_key pointers
	h->key_count = cfg->key_count;
	*out = h;
	return FV_OK;
}

int fv__flow_handler_new_unwrap(fv_flow_handler **out, const fv_flow_handler_config *cfg,
                                const char *const *key_names, size_t key_count,
                                fv__flow_unwrap_fn unwrap, void *unwrap_arg)
{
	fv_flow_handler *h;
	int rc;

	if (!out || !cfg || !key_names || !key_count || !unwrap)
		return fv__error_set(FV_ERR_USAGE, "fv__flow_handler_new_unwrap: missing argument");
	if ((rc = handler_new(&h, cfg)) != FV_OK)
		return rc;
	h->key_names = key_names;
	h->key_count = key_count;
	h->unwrap = unwrap;
	h->unwrap_arg = unwrap_arg;
	*out = h;
	return FV_OK;
}

const char *fv_flow_outcome_name(int outcome)
{
	switch (outcome) {
	case FV_FLOW_ANSWERED: return "answered";
	case FV_FLOW_PING: return "ping";
	case FV_FLOW_ERROR_ACK: return "error-notification";
	case FV_FLOW_BAD_SIGNATURE: return "bad-signature";
	case FV_FLOW_UNDECRYPTABLE: return "undecryptable";
	case FV_FLOW_EXPIRED: return "flow-token-expired";
	case FV_FLOW_UPSTREAM_ERROR: return "upstream-error";
	case FV_FLOW_NO_UPSTREAM: return "no-upstream";
	case FV_FLOW_KEY_ERROR: return "key-error";
	case FV_FLOW_INTERNAL_ERROR: return "internal-error";
	case FV_FLOW_KEYS_UNAVAILABLE: return "keys-unavailable";
	default: return "unknown";
	}
}

static void reply_set(fv_flow_reply *reply, int status, int outcome)
{
	reply->http_status = status;
	reply->outcome = outcome;
}

/* Encrypt `clear` into the reply; a 500 if that fails. */
static int reply_encrypt(fv_flow_reply *reply, const fv_flow_session *session,
                         const char *clear, size_t clear_len, int status, int outcome)
{
	char *body = NULL;
	size_t body_len = 0;
	int rc;

	rc = fv_flow_encrypt_response(&body, &body_len, session, clear, clear_len);
	if (rc == FV_ERR_NOMEM)
		return rc;
	if (rc != FV_OK) {
		fv__log(FV_LOG_ERROR, "serve: cannot encrypt the response: %s",
		        fv_error_last()->message);
		reply_set(reply, 500, FV_FLOW_INTERNAL_ERROR);
		return FV_OK;
	}
	free(reply->body);
	reply->body = body;
	reply->body_len = body_len;
	reply->content_type = "text/plain";
	reply_set(reply, status, outcome);
	return FV_OK;
}

/* What kind of request a clear JSON object is, without reading its values
 * beyond the two markers the protocol defines. */
static int classify(const char *clear, size_t clear_len)
{
	json_object *obj = parse_json(clear, clear_len), *v, *data;
	int outcome = FV_FLOW_ANSWERED;

	if (obj && json_object_object_get_ex(obj, "action", &v) &&
	    json_object_is_type(v, json_type_string) &&
	    strcmp(json_object_get_string(v), "ping") == 0)
		outcome = FV_FLOW_PING;
	else if (obj && json_object_object_get_ex(obj, "data", &data) &&
	         json_object_is_type(data, json_type_object) &&
	         json_object_object_get_ex(data, "error", &v))
		outcome = FV_FLOW_ERROR_ACK;
	json_wipe_put(obj);
	return outcome;
}

/* The request's RSA step through the handler's unwrap call (the server's
 * key process), then the AES part here. *unavailable when the keys could not
 * be asked. */
static int decrypt_by_call(fv_flow_handler *h, char **clear, size_t *clear_len,
                           fv_flow_session **session, size_t *key_index,
                           const void *body, size_t body_len, int *unavailable)
{
	struct envelope env;
	unsigned char *wrapped = NULL;
	unsigned char aes_key[FV_FLOW_AES_KEY_BYTES];
	size_t wrapped_len = 0;
	int rc;

	*clear = NULL;
	*session = NULL;
	if ((rc = envelope_parse(&env, body, body_len)) != FV_OK)
		return rc;
	if (env.aes_key_len > AES_KEY_B64_MAX ||
	    b64_decode(&wrapped, &wrapped_len, env.aes_key, env.aes_key_len) != FV_OK) {
		json_object_put(env.root);
		return fv__error_set(FV_ERR_DECRYPT, "encrypted_aes_key is not valid base64");
	}
	switch (h->unwrap(h->unwrap_arg, aes_key, key_index, wrapped, wrapped_len)) {
	case FV__UNWRAP_OK:
		rc = decrypt_payload(clear, clear_len, session, &env, aes_key);
		if (rc == FV_ERR_DECRYPT)
			fv__error_prefix("key '%s'", h->key_names[*key_index]);
		break;
	case FV__UNWRAP_UNDECRYPTABLE:
		rc = fv__error_set(FV_ERR_DECRYPT, "no key in serve.keys decrypts encrypted_aes_key "
		                   "to a %d-byte AES key", FV_FLOW_AES_KEY_BYTES);
		break;
	case FV__UNWRAP_UNAVAILABLE:
		*unavailable = 1;
		rc = fv__error_set(FV_ERR_BACKEND, "the key process is not available");
		break;
	default:
		rc = fv__error_set(FV_ERR_BACKEND, "a key backend failed (see the key process's log)");
		break;
	}
	OPENSSL_cleanse(aes_key, sizeof(aes_key));
	OPENSSL_free(wrapped);
	json_object_put(env.root);
	return rc;
}

static int call_upstream(fv_flow_reply *reply, fv_flow_handler *h,
                         const fv_flow_session *session, const char *clear,
                         size_t clear_len)
{
	char *answer = NULL;
	size_t answer_len = 0;
	long status = 0;
	double started;
	json_object *obj = NULL;
	const char *key_name = h->unwrap ? h->key_names[reply->key_index]
	                                 : fv_key_name(h->keys[reply->key_index]);
	int rc;

	if (!h->upstream) {
		/* Once per handler: the configuration is wrong, not the request. */
		if (atomic_exchange(&h->no_upstream_logged, 1) == 0)
			fv__log(FV_LOG_ERROR,
				"serve: a request needs the business logic but serve.upstream is not "
				"configured; only pings and error notifications can be answered "
				"(answering 500)");
		reply_set(reply, 500, FV_FLOW_NO_UPSTREAM);
		return FV_OK;
	}
	started = fv__now_seconds();
	rc = h->upstream(h->upstream_arg, key_name, clear, clear_len, &status, &answer,
	                 &answer_len);
	reply->upstream_seconds = fv__now_seconds() - started;
	if (rc != FV_OK) {
		reply_set(reply, 500, FV_FLOW_UPSTREAM_ERROR);
		rc = FV_OK;
		goto out;
	}
	if (status == 427) {
		/* An expired flow token: pass the status through, and the upstream's
		 * {"error_msg": ...} encrypted when it gave one. */
		if (answer_len && (obj = parse_json(answer, answer_len)) != NULL)
			rc = reply_encrypt(reply, session, answer, answer_len, 427, FV_FLOW_EXPIRED);
		else
			reply_set(reply, 427, FV_FLOW_EXPIRED);
		goto out;
	}
	if (status < 200 || status > 299) {
		fv__log(FV_LOG_ERROR, "serve: upstream answered HTTP %ld (answering 500)", status);
		reply_set(reply, 500, FV_FLOW_UPSTREAM_ERROR);
		goto out;
	}
	if (!answer_len || !(obj = parse_json(answer, answer_len)) ||
	    !json_object_is_type(obj, json_type_object)) {
		fv__log(FV_LOG_ERROR,
		        "serve: upstream answered HTTP %ld without a JSON object (answering 500)",
		        status);
		reply_set(reply, 500, FV_FLOW_UPSTREAM_ERROR);
		goto out;
	}
	rc = reply_encrypt(reply, session, answer, answer_len, 200, FV_FLOW_ANSWERED);
out:
	json_wipe_put(obj);
	if (answer) {
		OPENSSL_cleanse(answer, answer_len);
		free(answer);
	}
	return rc;
}

int fv_flow_handle(fv_flow_reply *reply, fv_flow_handler *h, const void *body,
                   size_t body_len, const char *signature)
{
	static const char ping_answer[] = "{\"data\":{\"status\":\"active\"}}";
	static const char ack_answer[] = "{\"data\":{\"acknowledged\":true}}";
	fv_flow_session *session = NULL;
	char *clear = NULL;
	size_t clear_len = 0, key_index = 0, i;
	double started;
	int rc = FV_OK, unavailable = 0;

	if (!reply)
		return fv__error_set(FV_ERR_USAGE, "fv_flow_handle: reply is NULL");
	memset(reply, 0, sizeof(*reply));
	reply->key_index = -1;
	if (!h || (!body && body_len))
		return fv__error_set(FV_ERR_USAGE, "fv_flow_handle: missing argument");
	if (!body)
		body = "";

	if (h->secret_count) {
		int matched = 0;

		/* Every secret is tried so timing does not reveal which one matched. */
		for (i = 0; i < h->secret_count; i++)
			matched |= fv_flow_signature_check(signature, body, body_len,
			                                   h->secrets[i].value,
			                                   h->secrets[i].len) == FV_OK;
		if (!matched) {
			reply_set(reply, 432, FV_FLOW_BAD_SIGNATURE);
			goto done;
		}
	}

	started = fv__now_seconds();
	if (h->unwrap)
		rc = decrypt_by_call(h, &clear, &clear_len, &session, &key_index, body, body_len,
		                     &unavailable);
	else
		rc = fv_flow_decrypt_request_any(&clear, &clear_len, &session, &key_index,
		                                 h->keys, h->key_count, body, body_len);
	reply->decrypt_seconds = fv__now_seconds() - started;
	if (unavailable) {
		/* Not the request's fault and not the key's: WhatsApp retries. */
		reply_set(reply, 503, FV_FLOW_KEYS_UNAVAILABLE);
		rc = FV_OK;
		goto done;
	}
	if (rc == FV_ERR_NOMEM)
		goto done;
	if (rc == FV_ERR_DECRYPT) {
		fv__log(FV_LOG_DEBUG, "serve: undecryptable request: %s",
		        fv_error_last()->message);
		reply_set(reply, 421, FV_FLOW_UNDECRYPTABLE);
		rc = FV_OK;
		goto done;
	}
	if (rc != FV_OK) {
		/* The key store failed: a 421 would make WhatsApp refetch a public key
		 * that is fine, so this is a server error. */
		fv__log(FV_LOG_ERROR, "serve: key backend failed (answering 500): %s",
		        fv_error_last()->message);
		reply_set(reply, 500, FV_FLOW_KEY_ERROR);
		rc = FV_OK;
		goto done;
	}
	reply->key_index = (long)key_index;

	switch (classify(clear, clear_len)) {
	case FV_FLOW_PING:
		rc = reply_encrypt(reply, session, ping_answer, sizeof(ping_answer) - 1, 200,
		                   FV_FLOW_PING);
		break;
	case FV_FLOW_ERROR_ACK:
		rc = reply_encrypt(reply, session, ack_answer, sizeof(ack_answer) - 1, 200,
		                   FV_FLOW_ERROR_ACK);
		break;
	default:
		rc = call_upstream(reply, h, session, clear, clear_len);
		break;
	}
done:
	fv_flow_clear_free(clear, clear_len);
	fv_flow_session_free(session);
	if (rc != FV_OK) {
		fv_flow_reply_clear(reply);
		return rc;
	}
	if (!reply->body) {
		reply->body = calloc(1, 1);
		reply->body_len = 0;
		reply->content_type = NULL;
		if (!reply->body)
			return fv__error_nomem();
	}
	return FV_OK;
}

void fv_flow_reply_clear(fv_flow_reply *reply)
{
	if (!reply)
		return;
	free(reply->body);
	memset(reply, 0, sizeof(*reply));
	reply->key_index = -1;
}
