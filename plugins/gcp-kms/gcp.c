/*
 * The Google Cloud KMS key provider (see gcp.h). Every call is one REST
 * request inside one deadline: getPublicKey when the key is opened,
 * asymmetricDecrypt per decrypt (no token fetch or key lookup per decrypt),
 * cryptoKeys.create for generate. CRC32C checksums go both ways, as Google
 * asks of its clients: pemCrc32c and plaintextCrc32c are checked here, and
 * ciphertextCrc32c is sent and must come back verified.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <isa-l/crc.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "gcp.h"

#define GCP_PLUGIN_VERSION "1.0.0"
#define GCP_ALGORITHM "RSA_DECRYPT_OAEP_2048_SHA256"
#define GCP_BITS 2048
#define GCP_MODULUS_BYTES (GCP_BITS / 8)
/* How long generate waits for Cloud KMS to make the key (HSM keys take a
 * few seconds; the version is PENDING_GENERATION until then). */
#define GCP_GENERATE_WAIT_MS 60000
/* cryptoKeys.create may take longer than a decrypt's attempt budget. */
#define GCP_CREATE_BUDGET_MS 30000
#define GCP_CREATE_ATTEMPT_MS 20000

const fv_host *gcp_host;

struct fv_pkey {
	struct fv_instance *inst;
	unsigned char *spki;       /* DER SubjectPublicKeyInfo */
	size_t spki_len;
	char *decrypt_url;
	char protection[16];       /* "HSM", "SOFTWARE", ... */
	char where[700];           /* for key_describe's location */
};

static const fv_config_field gcp_fields[] = {
	{ "key_version", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE,
	  "CryptoKeyVersion resource name: projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V" },
	{ "protection_level", FV_FIELD_STRING, 0,
	  "where generate makes the key: HSM (default) or SOFTWARE" },
	{ "endpoint", FV_FIELD_STRING, 0,
	  "Cloud KMS API endpoint (default https://cloudkms.googleapis.com)" },
	{ "credentials_file", FV_FIELD_STRING, FV_FIELD_PATH,
	  "service-account key file (JSON); default $GOOGLE_APPLICATION_CREDENTIALS, then the metadata server" },
	{ "access_token", FV_FIELD_SECRET, 0,
	  "secret reference to an OAuth 2.0 access token, instead of a key file or the metadata server" },
	CLOUD_HTTP_CONFIG_FIELDS,
	{ NULL, 0, 0, NULL }
};

/* ---- Small helpers ---- */

static uint32_t crc32c(const void *data, size_t len)
{
	/* ISA-L's iSCSI CRC (Castagnoli) without the standard's inversions. */
	return ~crc32_iscsi((unsigned char *)data, (int)len, 0xffffffffu);
}

/* "projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V", each
 * id of letters, digits, '-', '_' or '.': nothing that changes the URL. */
static int valid_version_name(const char *name)
{
	static const char *const collections[] = {
		"projects", "locations", "keyRings", "cryptoKeys", "cryptoKeyVersions"
	};
	const char *p = name;
	size_t i;

	for (i = 0; i < 5; i++) {
		size_t n = strlen(collections[i]), id = 0;

		if (strncmp(p, collections[i], n) != 0 || p[n] != '/')
			return 0;
		p += n + 1;
		while (p[id] && p[id] != '/') {
			char c = p[id];

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
				return 0;
			id++;
		}
		if (id == 0 || id > 128)
			return 0;
		p += id;
		if (i < 4) {
			if (*p != '/')
				return 0;
			p++;
		}
	}
	return *p == '\0';
}

static int url_join(const struct fv_instance *inst, const char *path, const char *suffix,
                    char **out)
{
	size_t n = strlen(inst->endpoint) + strlen(path) + strlen(suffix) + 6;
	char *url = malloc(n);

	if (!url)
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	snprintf(url, n, "%s/v1/%s%s", inst->endpoint, path, suffix);
	*out = url;
	return FV_OK;
}

/* ---- Requests and Google's errors ---- */

/* {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}} */
static void google_error(const struct cloud_response *resp, char *status, size_t status_len,
                         char *message, size_t message_len)
{
	json_object *doc = NULL, *err = NULL;
	const char *s = NULL, *m = NULL;

	if (cloud_json_parse(resp->body, resp->len, &doc) == FV_OK &&
	    json_object_object_get_ex(doc, "error", &err) &&
	    json_object_is_type(err, json_type_object)) {
		s = cloud_json_string(err, "status", NULL);
		m = cloud_json_string(err, "message", NULL);
	}
	snprintf(status, status_len, "%s", s ? s : "HTTP error");
	snprintf(message, message_len, "%s", m ? m : "(no message)");
	json_object_put(doc);
}

/* One authorized request (see gcp_request); the caller maps errors. */
static int kms_request(struct fv_instance *inst, const char *method, const char *url,
                       const char *body, size_t body_len, int idempotent, const char *what,
                       int64_t deadline_ms, long attempt_ms, struct cloud_response *resp)
{
	static const char *const json_headers[] = {
		"Content-Type: application/json", "Accept: application/json", NULL
	};
	static const char *const get_headers[] = { "Accept: application/json", NULL };
	struct cloud_request req = { 0 };

	req.method = method;
	req.url = url;
	req.headers = body ? json_headers : get_headers;
	req.body = body;
	req.body_len = body_len;
	req.idempotent = idempotent;
	req.what = what;
	req.attempt_timeout_ms = attempt_ms;
	return gcp_request(inst, &req, deadline_ms, resp);
}

/* A non-2xx answer as a flowvault status and message. */
static int kms_failed(struct fv_instance *inst, const struct cloud_response *resp,
                      const char *what, const char *object, const char *permission)
{
	char status[64], message[512];

	google_error(resp, status, sizeof(status), message, sizeof(message));
	switch (resp->status) {
	case 401:
		return CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: Cloud KMS refused the credentials from the %s (%s: %s); check them, or "
			"configure another source (credentials_file, access_token, metadata server)",
			inst->location, inst->auth.source, status, message);
	case 403:
		return CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: %s of '%s' denied for the %s (%s: %s); grant it %s on the key",
			inst->location, what, object, inst->auth.source, status, message, permission);
	case 404:
		return CLOUD_ERROR(gcp_host, FV_ERR_NOT_FOUND,
			"%s: '%s' not found in Cloud KMS (%s); check key_version, or create the key with "
			"`flowvault generate`",
			inst->location, object, message);
	case 409:
		return CLOUD_ERROR(gcp_host, FV_ERR_EXISTS,
			"%s: '%s' already exists in Cloud KMS; refusing to touch it (choose another key "
			"name in key_version, or use the existing key)",
			inst->location, object);
	default:
		return CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: %s of '%s' failed: HTTP %ld %s: %s",
			inst->location, what, object, resp->status, status, message);
	}
}

/* ---- Instances ---- */

static void gcp_instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	gcp_auth_close(&inst->auth);
	cloud_http_free(inst->http);
	free(inst->location);
	free(inst->version_name);
	free(inst->endpoint);
	free(inst);
}

static int gcp_instance_open(const fv_config *cfg, fv_instance **out)
{
	struct cloud_http_opts opts = { 0 };
	struct fv_instance *inst;
	const char *location, *name = NULL, *endpoint = NULL, *level = NULL;
	size_t n;
	int rc;

	location = gcp_host->config_location(cfg);
	if (!location)
		location = "keys.?";
	if (gcp_host->config_string(cfg, "key_version", &name) != FV_OK || !name ||
	    !valid_version_name(name))
		return CLOUD_ERROR(gcp_host, FV_ERR_CONFIG,
			"%s.key_version: '%s' is not a CryptoKeyVersion resource name; give "
			"projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V",
			location, name ? name : "");
	if (gcp_host->config_string(cfg, "endpoint", &endpoint) != FV_OK || !endpoint)
		endpoint = GCP_ENDPOINT_DEFAULT;
	if (strncmp(endpoint, "https://", 8) != 0 || strpbrk(endpoint, "?# \t\r\n"))
		return CLOUD_ERROR(gcp_host, FV_ERR_CONFIG,
			"%s.endpoint: '%s' is not an https:// URL", location, endpoint);
	if (gcp_host->config_string(cfg, "protection_level", &level) != FV_OK || !level)
		level = "HSM";
	if (strcmp(level, "HSM") != 0 && strcmp(level, "SOFTWARE") != 0)
		return CLOUD_ERROR(gcp_host, FV_ERR_CONFIG,
			"%s.protection_level: '%s' is neither HSM nor SOFTWARE", location, level);

	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	inst->location = strdup(location);
	inst->version_name = strdup(name);
	inst->endpoint = strdup(endpoint);
	inst->software = strcmp(level, "SOFTWARE") == 0;
	if (!inst->location || !inst->version_name || !inst->endpoint) {
		gcp_instance_close(inst);
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	}
	n = strlen(inst->endpoint);
	while (n > 8 && inst->endpoint[n - 1] == '/')
		inst->endpoint[--n] = '\0';

	opts.plugin = GCP_PLUGIN;
	opts.location = inst->location;
	rc = cloud_http_config_read(gcp_host, cfg, &opts);
	if (rc == FV_OK)
		rc = cloud_http_new(gcp_host, &opts, &inst->http);
	if (rc == FV_OK)
		rc = gcp_auth_open(inst, cfg);
	if (rc != FV_OK) {
		gcp_instance_close(inst);
		return rc;
	}
	gcp_host->log(FV_LOG_DEBUG, "%s: %s: %s via %s, credentials from the %s", GCP_PLUGIN,
	              inst->location, inst->version_name, inst->endpoint, inst->auth.source);
	*out = inst;
	return FV_OK;
}

/* ---- The public key ---- */

/* The PEM from getPublicKey, checked: CRC32C, name, algorithm, RSA-2048. */
static int public_key_from(struct fv_instance *inst, struct fv_pkey *key,
                           const struct cloud_response *resp)
{
	json_object *doc = NULL;
	const char *pem, *name, *algorithm, *crc, *level;
	size_t pem_len = 0;
	EVP_PKEY *pkey = NULL;
	unsigned char *p;
	char *end = NULL;
	unsigned long long want;
	BIO *bio;
	int len, rc;

	if (cloud_json_parse(resp->body, resp->len, &doc) != FV_OK)
		return CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: getPublicKey of '%s' answered without JSON", inst->location, inst->version_name);
	pem = cloud_json_string(doc, "pem", &pem_len);
	name = cloud_json_string(doc, "name", NULL);
	algorithm = cloud_json_string(doc, "algorithm", NULL);
	crc = cloud_json_string(doc, "pemCrc32c", NULL);
	level = cloud_json_string(doc, "protectionLevel", NULL);
	if (!pem || !crc) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: getPublicKey of '%s' answered without pem or pemCrc32c",
			inst->location, inst->version_name);
		goto out;
	}
	want = strtoull(crc, &end, 10);
	if (!end || *end || want != crc32c(pem, pem_len)) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: the public key of '%s' does not match its pemCrc32c: damaged in transit; try again",
			inst->location, inst->version_name);
		goto out;
	}
	if (name && strcmp(name, inst->version_name) != 0) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: Cloud KMS answered with the public key of '%s', not '%s'",
			inst->location, name, inst->version_name);
		goto out;
	}
	if (!algorithm || strcmp(algorithm, GCP_ALGORITHM) != 0) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_UNSUPPORTED,
			"%s: '%s' has algorithm %s; WhatsApp Flows needs " GCP_ALGORITHM
			" (purpose ASYMMETRIC_DECRYPT); create such a key with `flowvault generate`",
			inst->location, inst->version_name, algorithm ? algorithm : "(none)");
		goto out;
	}
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	if (!pkey || !EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_get_bits(pkey) != GCP_BITS) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: the public key of '%s' is not an RSA-2048 key in PEM",
			inst->location, inst->version_name);
		goto out;
	}
	len = i2d_PUBKEY(pkey, NULL);
	key->spki = len > 0 ? malloc((size_t)len) : NULL;
	p = key->spki;
	if (!key->spki || i2d_PUBKEY(pkey, &p) != len) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	key->spki_len = (size_t)len;
	snprintf(key->protection, sizeof(key->protection), "%s", level ? level : "unknown");
	rc = FV_OK;
out:
	EVP_PKEY_free(pkey);
	json_object_put(doc);
	return rc;
}

static void gcp_key_close(fv_pkey *key)
{
	if (!key)
		return;
	free(key->spki);
	free(key->decrypt_url);
	free(key);
}

static int gcp_key_open(fv_instance *inst, fv_pkey **out)
{
	struct cloud_response resp;
	struct fv_pkey *key;
	char *url = NULL;
	int rc;

	key = calloc(1, sizeof(*key));
	if (!key)
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	key->inst = inst;
	rc = url_join(inst, inst->version_name, ":asymmetricDecrypt", &key->decrypt_url);
	if (rc == FV_OK)
		rc = url_join(inst, inst->version_name, "/publicKey", &url);
	if (rc == FV_OK)
		rc = kms_request(inst, "GET", url, NULL, 0, 1, "getPublicKey",
		                 cloud_deadline(inst->http), 0, &resp);
	free(url);
	if (rc != FV_OK) {
		gcp_key_close(key);
		return rc;
	}
	if (resp.status == 200) {
		rc = public_key_from(inst, key, &resp);
	} else if (resp.status == 400) {
		char status[64], message[512];

		google_error(&resp, status, sizeof(status), message, sizeof(message));
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: '%s' cannot be used now (%s: %s); enable the key version, or wait until "
			"Cloud KMS has generated it",
			inst->location, inst->version_name, status, message);
	} else {
		rc = kms_failed(inst, &resp, "getPublicKey", inst->version_name,
		                "roles/cloudkms.publicKeyViewer (cloudkms.cryptoKeyVersions.viewPublicKey)");
	}
	cloud_response_free(&resp);
	if (rc != FV_OK) {
		gcp_key_close(key);
		return rc;
	}
	snprintf(key->where, sizeof(key->where), "Cloud KMS %s (%s) at %s", inst->version_name,
	         key->protection, inst->endpoint);
	if (strcmp(key->protection, "HSM") != 0)
		gcp_host->log(FV_LOG_WARNING,
			"%s: %s: '%s' has protection level %s, not HSM: Cloud KMS keeps it in software",
			GCP_PLUGIN, inst->location, inst->version_name, key->protection);
	*out = key;
	return FV_OK;
}

static int gcp_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (!key)
		return CLOUD_ERROR(gcp_host, FV_ERR_USAGE, "gcp-kms: key_public_der: missing argument");
	return cloud_public_der_out(key->spki, key->spki_len, der, len);
}

/* ---- Decryption ---- */

static int decrypt_body(const unsigned char *in, size_t in_len, char **out, size_t *out_len)
{
	json_object *req = json_object_new_object();
	char *b64 = cloud_base64_encode(in, in_len);
	char crc[16];

	*out = NULL;
	if (req && b64) {
		snprintf(crc, sizeof(crc), "%u", crc32c(in, in_len));
		json_object_object_add(req, "ciphertext", json_object_new_string(b64));
		json_object_object_add(req, "ciphertextCrc32c", json_object_new_string(crc));
		*out = cloud_json_body(req, out_len);
	}
	free(b64);
	json_object_put(req);
	return *out ? FV_OK : CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
}

/* The plaintext, checked against plaintextCrc32c and verifiedCiphertextCrc32c. */
static int plaintext_from(struct fv_pkey *key, const struct cloud_response *resp,
                          unsigned char *out, size_t *out_len)
{
	struct fv_instance *inst = key->inst;
	json_object *doc = NULL, *verified = NULL;
	const char *b64, *crc;
	unsigned char *plain = NULL;
	size_t b64_len = 0, plain_len = 0;
	unsigned long long want;
	char *end = NULL;
	int rc;

	if (cloud_json_parse(resp->body, resp->len, &doc) != FV_OK)
		return CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: asymmetricDecrypt answered without JSON", inst->location);
	b64 = cloud_json_string(doc, "plaintext", &b64_len);
	crc = cloud_json_string(doc, "plaintextCrc32c", NULL);
	if (!json_object_object_get_ex(doc, "verifiedCiphertextCrc32c", &verified) ||
	    !json_object_get_boolean(verified)) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: Cloud KMS did not verify the ciphertext's CRC32C; the request may have been "
			"damaged in transit",
			inst->location);
		goto out;
	}
	if (!b64 || !crc) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: asymmetricDecrypt answered without plaintext or plaintextCrc32c", inst->location);
		goto out;
	}
	rc = cloud_base64_decode(b64, b64_len, &plain, &plain_len);
	if (rc != FV_OK) {
		rc = CLOUD_ERROR(gcp_host, rc, "%s: asymmetricDecrypt answered with bad base64",
		                 inst->location);
		goto out;
	}
	want = strtoull(crc, &end, 10);
	if (!end || *end || want != crc32c(plain, plain_len)) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: the plaintext from Cloud KMS does not match its plaintextCrc32c: damaged in transit",
			inst->location);
		goto out;
	}
	rc = cloud_plaintext_out(gcp_host, inst->location, plain, plain_len, GCP_MODULUS_BYTES,
	                         out, out_len);
out:
	if (plain)
		cloud_buf_free(plain, plain_len);
	cloud_json_free_wiped(doc);
	return rc;
}

static int gcp_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                           unsigned char *out, size_t *out_len)
{
	struct fv_instance *inst;
	struct cloud_response resp;
	char *body = NULL;
	size_t body_len = 0;
	int rc;

	if (!key || !in || !out_len)
		return CLOUD_ERROR(gcp_host, FV_ERR_USAGE, "gcp-kms: key_decrypt: missing argument");
	inst = key->inst;
	if (in_len != GCP_MODULUS_BYTES)
		return CLOUD_ERROR(gcp_host, FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; the RSA-2048 key '%s' takes exactly %d",
			in_len, inst->version_name, GCP_MODULUS_BYTES);
	rc = decrypt_body(in, in_len, &body, &body_len);
	if (rc != FV_OK)
		return rc;
	/* Decrypting twice changes nothing: safe to retry. */
	rc = kms_request(inst, "POST", key->decrypt_url, body, body_len, 1, "asymmetricDecrypt",
	                 cloud_deadline(inst->http), 0, &resp);
	cloud_buf_free(body, body_len);
	if (rc != FV_OK)
		return rc;
	if (resp.status == 200) {
		rc = plaintext_from(key, &resp, out, out_len);
	} else if (resp.status == 400) {
		/* INVALID_ARGUMENT / FAILED_PRECONDITION: the ciphertext is not for
		 * this key or its padding is wrong. */
		char status[64], message[512];

		google_error(&resp, status, sizeof(status), message, sizeof(message));
		rc = CLOUD_ERROR(gcp_host, FV_ERR_DECRYPT,
			"Cloud KMS cannot decrypt the ciphertext with '%s' (%s: %s): it was encrypted to "
			"another key or with other parameters",
			inst->version_name, status, message);
	} else {
		rc = kms_failed(inst, &resp, "asymmetricDecrypt", inst->version_name,
		                "roles/cloudkms.cryptoKeyDecrypter (cloudkms.cryptoKeyVersions.useToDecrypt)");
	}
	cloud_response_free(&resp);
	return rc;
}

static int gcp_key_describe(fv_pkey *key, fv_key_description *out)
{
	if (!key || !out)
		return FV_ERR_USAGE;
	/* Cloud KMS never exports an asymmetric private key, and it is never in
	 * this process. */
	cloud_describe_fill(out, GCP_PLUGIN, key->where, key->inst->version_name, GCP_BITS, 0,
	                    FV_KEY_PROP_EXTRACTABLE | FV_KEY_PROP_IN_HOST_MEMORY);
	return FV_OK;
}

static int gcp_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (!key || !buf || !len)
		return FV_ERR_USAGE;
	snprintf(buf, len, "oaep: gcp-kms; %s", key->where);
	return FV_OK;
}

/* ---- Generating a key ---- */

static int create_body(const struct fv_instance *inst, char **out, size_t *out_len)
{
	json_object *key = json_object_new_object(), *tmpl = json_object_new_object(),
	            *labels = json_object_new_object();

	*out = NULL;
	if (key && tmpl && labels) {
		json_object_object_add(tmpl, "algorithm", json_object_new_string(GCP_ALGORITHM));
		json_object_object_add(tmpl, "protectionLevel",
		                       json_object_new_string(inst->software ? "SOFTWARE" : "HSM"));
		json_object_object_add(labels, "managed-by", json_object_new_string("flowvault"));
		json_object_object_add(key, "purpose", json_object_new_string("ASYMMETRIC_DECRYPT"));
		json_object_object_add(key, "versionTemplate", tmpl);
		json_object_object_add(key, "labels", labels);
		tmpl = labels = NULL;
		*out = cloud_json_body(key, out_len);
	}
	json_object_put(key);
	json_object_put(tmpl);
	json_object_put(labels);
	return *out ? FV_OK : CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
}

/* Wait until Cloud KMS has generated the first version (ENABLED). */
static int wait_enabled(struct fv_instance *inst)
{
	int64_t until = cloud_now_ms() + GCP_GENERATE_WAIT_MS;
	struct timespec pause = { 0, 200 * 1000 * 1000 };
	char *url = NULL;
	int rc;

	rc = url_join(inst, inst->version_name, "", &url);
	while (rc == FV_OK) {
		struct cloud_response resp;
		json_object *doc = NULL;
		const char *state = NULL;

		rc = kms_request(inst, "GET", url, NULL, 0, 1, "cryptoKeyVersions.get",
		                 cloud_deadline(inst->http), 0, &resp);
		if (rc != FV_OK)
			break;
		if (resp.status != 200) {
			rc = kms_failed(inst, &resp, "cryptoKeyVersions.get", inst->version_name,
			                "roles/cloudkms.viewer");
			cloud_response_free(&resp);
			break;
		}
		if (cloud_json_parse(resp.body, resp.len, &doc) == FV_OK)
			state = cloud_json_string(doc, "state", NULL);
		if (state && strcmp(state, "ENABLED") == 0) {
			json_object_put(doc);
			cloud_response_free(&resp);
			break;
		}
		if (!state || strcmp(state, "PENDING_GENERATION") != 0 || cloud_now_ms() > until) {
			rc = CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
				"%s: Cloud KMS made '%s' but it is %s%s; look at the key in the console",
				inst->location, inst->version_name, state ? state : "in no known state",
				state && strcmp(state, "PENDING_GENERATION") == 0 ? " after a minute" : "");
			json_object_put(doc);
			cloud_response_free(&resp);
			break;
		}
		json_object_put(doc);
		cloud_response_free(&resp);
		nanosleep(&pause, NULL);
	}
	free(url);
	return rc;
}

static int gcp_key_generate(fv_instance *inst)
{
	const char *versions = strstr(inst->version_name, "/cryptoKeyVersions/");
	const char *key_id, *ring_end;
	struct cloud_response resp;
	char *ring = NULL, *url = NULL, *suffix = NULL, *body = NULL;
	size_t body_len = 0, n;
	int rc;

	/* projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V */
	if (!versions || strcmp(versions, "/cryptoKeyVersions/1") != 0)
		return CLOUD_ERROR(gcp_host, FV_ERR_CONFIG,
			"%s.key_version: generate makes a new key, whose first version is 1; set "
			"key_version to .../cryptoKeys/NEW-NAME/cryptoKeyVersions/1",
			inst->location);
	ring_end = strstr(inst->version_name, "/cryptoKeys/");
	key_id = ring_end + strlen("/cryptoKeys/");
	n = (size_t)(ring_end - inst->version_name);
	ring = malloc(n + 1);
	suffix = malloc(strlen("/cryptoKeys?cryptoKeyId=") + (size_t)(versions - key_id) + 1);
	if (!ring || !suffix) {
		free(ring);
		free(suffix);
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	}
	memcpy(ring, inst->version_name, n);
	ring[n] = '\0';
	sprintf(suffix, "/cryptoKeys?cryptoKeyId=%.*s", (int)(versions - key_id), key_id);
	if (inst->software)
		gcp_host->log(FV_LOG_WARNING,
			"%s: %s: protection_level is SOFTWARE: the key will not be in an HSM",
			GCP_PLUGIN, inst->location);
	rc = url_join(inst, ring, suffix, &url);
	if (rc == FV_OK)
		rc = create_body(inst, &body, &body_len);
	/* Not idempotent: a lost answer after the key was made must not make the
	 * retry fail with "already exists" for a key we did create. */
	if (rc == FV_OK)
		rc = kms_request(inst, "POST", url, body, body_len, 0, "cryptoKeys.create",
		                 cloud_now_ms() + GCP_CREATE_BUDGET_MS, GCP_CREATE_ATTEMPT_MS, &resp);
	if (rc == FV_OK) {
		if (resp.status != 200) {
			char object[600];

			snprintf(object, sizeof(object), "%.*s", (int)(versions - inst->version_name),
			         inst->version_name);
			rc = kms_failed(inst, &resp, "cryptoKeys.create", object,
			                "roles/cloudkms.admin (cloudkms.cryptoKeys.create) on the key ring");
		}
		cloud_response_free(&resp);
	}
	if (rc == FV_OK)
		rc = wait_enabled(inst);
	if (rc == FV_OK)
		gcp_host->log(FV_LOG_INFO, "%s: %s: created %s (%s, %s)", GCP_PLUGIN, inst->location,
		              inst->version_name, GCP_ALGORITHM, inst->software ? "SOFTWARE" : "HSM");
	free(ring);
	free(suffix);
	free(url);
	if (body)
		cloud_buf_free(body, body_len);
	return rc;
}

/* ---- The table and the entry point ---- */

static const fv_provider gcp_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = GCP_PLUGIN,
	.version = GCP_PLUGIN_VERSION,
	/* No FV_CAP_DELETE: destroying a key version is scheduled in Cloud KMS
	 * and better done by a person in the console or with gcloud. */
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = gcp_fields,
	.instance_open = gcp_instance_open,
	.instance_close = gcp_instance_close,
	.key_generate = gcp_key_generate,
	.key_open = gcp_key_open,
	.key_close = gcp_key_close,
	.key_public_der = gcp_key_public_der,
	.key_decrypt = gcp_key_decrypt,
	.key_info = gcp_key_info,
	.key_describe = gcp_key_describe,
};

static int gcp_entry(uint32_t host_abi_version, const fv_host *h, const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, h) != FV_OK)
		return FV_ERR_PLUGIN;
	gcp_host = h;
	*out = &gcp_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(gcp_entry)
