/*
 * The Azure Key Vault key provider (see azure.h). key_open reads the key
 * once (Get Key: its JWK gives the public key, its kid the version every
 * decrypt then names); each decrypt is one Decrypt call with RSA-OAEP-256,
 * with no token fetch or key lookup of its own. generate makes an RSA-HSM
 * key whose only operation is decrypt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "azure.h"

#define AZ_PLUGIN_VERSION "1.0.0"
#define AZ_BITS 2048
#define AZ_MODULUS_BYTES (AZ_BITS / 8)
/* Creating an HSM key can take seconds: more than a decrypt's budget. */
#define AZ_CREATE_BUDGET_MS 30000
#define AZ_CREATE_ATTEMPT_MS 20000

const fv_host *az_host;

struct fv_pkey {
	struct fv_instance *inst;
	unsigned char *spki;        /* DER SubjectPublicKeyInfo */
	size_t spki_len;
	char *kid;                  /* https://VAULT/keys/NAME/VERSION */
	char *decrypt_url;
	char kty[16];
	int exportable;
	char where[700];
};

static const fv_config_field az_fields[] = {
	{ "vault_url", FV_FIELD_STRING, FV_FIELD_REQUIRED,
	  "the vault's URL, https://NAME.vault.azure.net (or a Managed HSM's)" },
	{ "key_name", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE,
	  "name of the key in the vault" },
	{ "key_version", FV_FIELD_STRING, FV_FIELD_KEY_REFERENCE,
	  "version of the key (default: the newest when the key is opened)" },
	{ "key_type", FV_FIELD_STRING, 0,
	  "what generate makes: RSA-HSM (default) or RSA (software-protected)" },
	{ "tenant_id", FV_FIELD_STRING, 0,
	  "Microsoft Entra tenant (directory) id, for client_secret" },
	{ "client_id", FV_FIELD_STRING, 0,
	  "application (client) id for client_secret, or a user-assigned managed identity" },
	{ "client_secret", FV_FIELD_SECRET, 0,
	  "secret reference to the application's client secret" },
	{ "authority_host", FV_FIELD_STRING, 0,
	  "Microsoft Entra authority (default https://login.microsoftonline.com)" },
	{ "managed_identity", FV_FIELD_BOOL, 0,
	  "use the managed identity through IMDS (the default without other credentials)" },
	{ "imds_endpoint", FV_FIELD_STRING, 0,
	  "IMDS token endpoint (default http://169.254.169.254/metadata/identity/oauth2/token)" },
	{ "access_token", FV_FIELD_SECRET, 0,
	  "secret reference to a Key Vault access token, instead of the above" },
	CLOUD_HTTP_CONFIG_FIELDS,
	{ NULL, 0, 0, NULL }
};

/* ---- Small helpers ---- */

/* Key Vault names: letters, digits and '-'; versions: hex digits. */
static int valid_name(const char *s, int hex_only)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char c = s[n];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		      (!hex_only && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))))
			return 0;
	}
	return n > 0 && n <= 127;
}

/* VAULT/keys/NAME[/VERSION][/OP]?api-version=... */
static int key_url(const struct fv_instance *inst, const char *version, const char *op,
                   char **out)
{
	size_t n = strlen(inst->vault_url) + strlen(inst->key_name) + (version ? strlen(version) : 0) +
	           (op ? strlen(op) : 0) + 40;
	char *url = malloc(n);

	if (!url)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	snprintf(url, n, "%s/keys/%s%s%s%s%s?api-version=" AZ_API_VERSION, inst->vault_url,
	         inst->key_name, version ? "/" : "", version ? version : "", op ? "/" : "",
	         op ? op : "");
	*out = url;
	return FV_OK;
}

/* {"error": {"code": "BadParameter", "message": "..."}} */
static void vault_error(const struct cloud_response *resp, char *code, size_t code_len,
                        char *message, size_t message_len)
{
	json_object *doc = NULL, *err = NULL;
	const char *c = NULL, *m = NULL;

	if (cloud_json_parse(resp->body, resp->len, &doc) == FV_OK &&
	    json_object_object_get_ex(doc, "error", &err) &&
	    json_object_is_type(err, json_type_object)) {
		c = cloud_json_string(err, "code", NULL);
		m = cloud_json_string(err, "message", NULL);
	}
	snprintf(code, code_len, "%s", c ? c : "HTTP error");
	snprintf(message, message_len, "%s", m ? m : "(no message)");
	json_object_put(doc);
}

static int vault_failed(struct fv_instance *inst, const struct cloud_response *resp,
                        const char *what, const char *permission)
{
	char code[64], message[512];

	vault_error(resp, code, sizeof(code), message, sizeof(message));
	switch (resp->status) {
	case 401:
		return CLOUD_ERROR(az_host, FV_ERR_AUTH,
			"%s: Key Vault refused the token from the %s (%s: %s); check those credentials",
			inst->location, inst->auth.source, code, message);
	case 403:
		return CLOUD_ERROR(az_host, FV_ERR_AUTH,
			"%s: %s of key '%s' in %s denied for the %s (%s: %s); grant it %s",
			inst->location, what, inst->key_name, inst->vault_url, inst->auth.source, code,
			message, permission);
	case 404:
		return CLOUD_ERROR(az_host, FV_ERR_NOT_FOUND,
			"%s: key '%s%s%s' not found in %s (%s); check key_name and key_version, or create "
			"the key with `flowvault generate`",
			inst->location, inst->key_name, inst->key_version ? "/" : "",
			inst->key_version ? inst->key_version : "", inst->vault_url, code);
	default:
		return CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: %s of key '%s' in %s failed: HTTP %ld %s: %s",
			inst->location, what, inst->key_name, inst->vault_url, resp->status, code, message);
	}
}

/* ---- Instances ---- */

static void az_instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	az_auth_close(&inst->auth);
	cloud_http_free(inst->http);
	free(inst->location);
	free(inst->vault_url);
	free(inst->vault_host);
	free(inst->key_name);
	free(inst->key_version);
	free(inst->generated_version);
	free(inst);
}

static int az_instance_open(const fv_config *cfg, fv_instance **out)
{
	struct cloud_http_opts opts = { 0 };
	struct fv_instance *inst;
	const char *location, *vault = NULL, *name = NULL, *version = NULL, *kty = NULL, *host;
	size_t n;
	int rc;

	location = az_host->config_location(cfg);
	if (!location)
		location = "keys.?";
	if (az_host->config_string(cfg, "vault_url", &vault) != FV_OK || !vault ||
	    strncmp(vault, "https://", 8) != 0 || strpbrk(vault, "?#@ \t\r\n") || !vault[8])
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.vault_url: '%s' is not a vault URL like https://NAME.vault.azure.net",
			location, vault ? vault : "");
	if (az_host->config_string(cfg, "key_name", &name) != FV_OK || !name || !valid_name(name, 0))
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.key_name: '%s' is not a Key Vault key name (1-127 letters, digits and '-')",
			location, name ? name : "");
	if (az_host->config_string(cfg, "key_version", &version) != FV_OK || (version && !*version))
		version = NULL;
	if (version && !valid_name(version, 1))
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.key_version: '%s' is not a key version (hex digits, the last part of the kid)",
			location, version);
	if (az_host->config_string(cfg, "key_type", &kty) != FV_OK || !kty)
		kty = "RSA-HSM";
	if (strcmp(kty, "RSA-HSM") != 0 && strcmp(kty, "RSA") != 0)
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.key_type: '%s' is neither RSA-HSM nor RSA", location, kty);

	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	inst->location = strdup(location);
	inst->vault_url = strdup(vault);
	inst->key_name = strdup(name);
	inst->key_version = version ? strdup(version) : NULL;
	inst->software = strcmp(kty, "RSA") == 0;
	host = vault + 8;
	n = strcspn(host, "/:");
	inst->vault_host = malloc(n + 1);
	if (!inst->location || !inst->vault_url || !inst->key_name || !inst->vault_host ||
	    (version && !inst->key_version)) {
		az_instance_close(inst);
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	}
	memcpy(inst->vault_host, host, n);
	inst->vault_host[n] = '\0';
	n = strlen(inst->vault_url);
	while (n > 8 && inst->vault_url[n - 1] == '/')
		inst->vault_url[--n] = '\0';

	opts.plugin = AZ_PLUGIN;
	opts.location = inst->location;
	rc = cloud_http_config_read(az_host, cfg, &opts);
	if (rc == FV_OK)
		rc = cloud_http_new(az_host, &opts, &inst->http);
	if (rc == FV_OK)
		rc = az_auth_open(inst, cfg);
	if (rc != FV_OK) {
		az_instance_close(inst);
		return rc;
	}
	az_host->log(FV_LOG_DEBUG, "%s: %s: key '%s' in %s, credentials from the %s", AZ_PLUGIN,
	             inst->location, inst->key_name, inst->vault_url, inst->auth.source);
	*out = inst;
	return FV_OK;
}

/* ---- The key and its public half ---- */

static BIGNUM *jwk_number(json_object *jwk, const char *member)
{
	const char *text;
	unsigned char *bytes = NULL;
	size_t len = 0, n = 0;
	BIGNUM *bn = NULL;

	text = cloud_json_string(jwk, member, &len);
	if (text && cloud_base64url_decode(text, len, &bytes, &n) == FV_OK) {
		bn = n ? BN_bin2bn(bytes, (int)n, NULL) : NULL;
		cloud_buf_free(bytes, n);
	}
	return bn;
}

/* The JWK's n and e as DER SubjectPublicKeyInfo. */
static int spki_from_jwk(struct fv_pkey *key, json_object *jwk)
{
	BIGNUM *n = jwk_number(jwk, "n"), *e = jwk_number(jwk, "e");
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	unsigned char *p;
	int len, rc = FV_ERR_BACKEND;

	if (!n || !e)
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    !(params = OSSL_PARAM_BLD_to_param(bld)))
		goto out;
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	if (EVP_PKEY_get_bits(pkey) != AZ_BITS) {
		rc = FV_ERR_UNSUPPORTED;
		goto out;
	}
	len = i2d_PUBKEY(pkey, NULL);
	key->spki = len > 0 ? malloc((size_t)len) : NULL;
	p = key->spki;
	if (!key->spki || i2d_PUBKEY(pkey, &p) != len) {
		rc = FV_ERR_NOMEM;
		goto out;
	}
	key->spki_len = (size_t)len;
	rc = FV_OK;
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return rc;
}

/* Checks the key bundle from Get Key and keeps what decrypt needs. */
static int key_from_bundle(struct fv_instance *inst, struct fv_pkey *key,
                           const struct cloud_response *resp)
{
	json_object *doc = NULL, *jwk = NULL, *attrs = NULL, *ops = NULL, *v = NULL;
	const char *kid, *kty, *version;
	int rc, can_decrypt = 0, enabled = 1;
	size_t i;

	if (cloud_json_parse(resp->body, resp->len, &doc) != FV_OK ||
	    !json_object_object_get_ex(doc, "key", &jwk) || !json_object_is_type(jwk, json_type_object)) {
		json_object_put(doc);
		return CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: Get Key of '%s' answered without a key", inst->location, inst->key_name);
	}
	kid = cloud_json_string(jwk, "kid", NULL);
	kty = cloud_json_string(jwk, "kty", NULL);
	if (json_object_object_get_ex(jwk, "key_ops", &ops) && json_object_is_type(ops, json_type_array))
		for (i = 0; i < json_object_array_length(ops); i++) {
			const char *op = json_object_get_string(json_object_array_get_idx(ops, i));

			if (op && strcmp(op, "decrypt") == 0)
				can_decrypt = 1;
		}
	if (json_object_object_get_ex(doc, "attributes", &attrs)) {
		if (json_object_object_get_ex(attrs, "enabled", &v))
			enabled = json_object_get_boolean(v);
		if (json_object_object_get_ex(attrs, "exportable", &v))
			key->exportable = json_object_get_boolean(v);
	}
	version = kid ? strrchr(kid, '/') : NULL;
	if (!kid || !version || !valid_name(version + 1, 1)) {
		rc = CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: Get Key of '%s' answered without a kid", inst->location, inst->key_name);
		goto out;
	}
	if (!kty || (strcmp(kty, "RSA-HSM") != 0 && strcmp(kty, "RSA") != 0)) {
		rc = CLOUD_ERROR(az_host, FV_ERR_UNSUPPORTED,
			"%s: '%s' is a %s key; WhatsApp Flows needs RSA-2048 (`flowvault generate` makes one)",
			inst->location, kid, kty ? kty : "(no kty)");
		goto out;
	}
	if (!can_decrypt || !enabled) {
		rc = CLOUD_ERROR(az_host, FV_ERR_UNSUPPORTED,
			"%s: '%s' %s; enable it, or allow the decrypt operation in its key_ops",
			inst->location, kid, !enabled ? "is disabled" : "does not allow decrypt");
		goto out;
	}
	rc = spki_from_jwk(key, jwk);
	if (rc != FV_OK) {
		rc = CLOUD_ERROR(az_host, rc == FV_ERR_NOMEM ? rc : FV_ERR_UNSUPPORTED,
			"%s: '%s' is not an RSA-2048 key (its JWK n and e); WhatsApp Flows needs RSA-2048",
			inst->location, kid);
		goto out;
	}
	snprintf(key->kty, sizeof(key->kty), "%s", kty);
	key->kid = strdup(kid);
	rc = key->kid ? key_url(inst, version + 1, "decrypt", &key->decrypt_url)
	              : CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
out:
	json_object_put(doc);
	return rc;
}

static void az_key_close(fv_pkey *key)
{
	if (!key)
		return;
	free(key->spki);
	free(key->kid);
	free(key->decrypt_url);
	free(key);
}

static int get_key(struct fv_instance *inst, const char *version, struct cloud_response *resp)
{
	static const char *const headers[] = { "Accept: application/json", NULL };
	struct cloud_request req = { 0 };
	char *url = NULL;
	int rc;

	rc = key_url(inst, version, NULL, &url);
	if (rc != FV_OK)
		return rc;
	req.method = "GET";
	req.url = url;
	req.headers = headers;
	req.idempotent = 1;
	req.what = "Get Key";
	rc = az_request(inst, &req, cloud_deadline(inst->http), resp);
	free(url);
	return rc;
}

static int az_key_open(fv_instance *inst, fv_pkey **out)
{
	const char *version = inst->key_version ? inst->key_version : inst->generated_version;
	struct cloud_response resp;
	struct fv_pkey *key;
	int rc;

	key = calloc(1, sizeof(*key));
	if (!key)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	key->inst = inst;
	rc = get_key(inst, version, &resp);
	if (rc == FV_OK) {
		rc = resp.status == 200 ? key_from_bundle(inst, key, &resp)
		                        : vault_failed(inst, &resp, "Get Key", "the keys/get permission "
		                                       "(role Key Vault Crypto User)");
		cloud_response_free(&resp);
	}
	if (rc != FV_OK) {
		az_key_close(key);
		return rc;
	}
	snprintf(key->where, sizeof(key->where), "Azure Key Vault %s (%s)", key->kid, key->kty);
	if (strcmp(key->kty, "RSA-HSM") != 0)
		az_host->log(FV_LOG_WARNING,
			"%s: %s: '%s' is a software-protected key (kty %s), not RSA-HSM",
			AZ_PLUGIN, inst->location, key->kid, key->kty);
	*out = key;
	return FV_OK;
}

static int az_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (!key)
		return CLOUD_ERROR(az_host, FV_ERR_USAGE, "azure-keyvault: key_public_der: missing argument");
	return cloud_public_der_out(key->spki, key->spki_len, der, len);
}

/* ---- Decryption ---- */

static int plaintext_from(struct fv_pkey *key, const struct cloud_response *resp,
                          unsigned char *out, size_t *out_len)
{
	json_object *doc = NULL;
	const char *value;
	unsigned char *plain = NULL;
	size_t value_len = 0, plain_len = 0;
	int rc;

	if (cloud_json_parse(resp->body, resp->len, &doc) != FV_OK ||
	    !(value = cloud_json_string(doc, "value", &value_len)) ||
	    cloud_base64url_decode(value, value_len, &plain, &plain_len) != FV_OK) {
		cloud_json_free_wiped(doc);
		return CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: Decrypt answered without a base64url value", key->inst->location);
	}
	rc = cloud_plaintext_out(az_host, key->inst->location, plain, plain_len, AZ_MODULUS_BYTES,
	                         out, out_len);
	cloud_buf_free(plain, plain_len);
	cloud_json_free_wiped(doc);
	return rc;
}

static int az_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                          unsigned char *out, size_t *out_len)
{
	static const char *const headers[] = {
		"Content-Type: application/json", "Accept: application/json", NULL
	};
	struct cloud_request req = { 0 };
	struct cloud_response resp;
	struct fv_instance *inst;
	json_object *body = NULL;
	char *value = NULL, *text = NULL;
	size_t text_len = 0;
	int rc;

	if (!key || !in || !out_len)
		return CLOUD_ERROR(az_host, FV_ERR_USAGE, "azure-keyvault: key_decrypt: missing argument");
	inst = key->inst;
	if (in_len != AZ_MODULUS_BYTES)
		return CLOUD_ERROR(az_host, FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; the RSA-2048 key '%s' takes exactly %d",
			in_len, key->kid, AZ_MODULUS_BYTES);
	body = json_object_new_object();
	value = cloud_base64url_encode(in, in_len);
	if (body && value) {
		json_object_object_add(body, "alg", json_object_new_string("RSA-OAEP-256"));
		json_object_object_add(body, "value", json_object_new_string(value));
		text = cloud_json_body(body, &text_len);
	}
	free(value);
	json_object_put(body);
	if (!text)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	req.method = "POST";
	req.url = key->decrypt_url;
	req.headers = headers;
	req.body = text;
	req.body_len = text_len;
	req.idempotent = 1; /* decrypting twice changes nothing */
	req.what = "Decrypt";
	rc = az_request(inst, &req, cloud_deadline(inst->http), &resp);
	cloud_buf_free(text, text_len);
	if (rc != FV_OK)
		return rc;
	if (resp.status == 200) {
		rc = plaintext_from(key, &resp, out, out_len);
	} else if (resp.status == 400) {
		char code[64], message[512];

		vault_error(&resp, code, sizeof(code), message, sizeof(message));
		rc = CLOUD_ERROR(az_host, FV_ERR_DECRYPT,
			"Key Vault cannot decrypt the ciphertext with '%s' (%s: %s): it was encrypted to "
			"another key or with other parameters",
			key->kid, code, message);
	} else {
		rc = vault_failed(inst, &resp, "Decrypt",
		                  "the keys/decrypt permission (role Key Vault Crypto User)");
	}
	cloud_response_free(&resp);
	return rc;
}

static int az_key_describe(fv_pkey *key, fv_key_description *out)
{
	if (!key || !out)
		return FV_ERR_USAGE;
	/* attributes.exportable (a key with a release policy) tells whether the
	 * key can leave the vault; it is never in this process. */
	cloud_describe_fill(out, AZ_PLUGIN, key->where, key->kid, AZ_BITS,
	                    key->exportable ? FV_KEY_PROP_EXTRACTABLE : 0,
	                    FV_KEY_PROP_EXTRACTABLE | FV_KEY_PROP_IN_HOST_MEMORY);
	return FV_OK;
}

static int az_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (!key || !buf || !len)
		return FV_ERR_USAGE;
	snprintf(buf, len, "oaep: azure-keyvault; %s", key->where);
	return FV_OK;
}

/* ---- Generating a key ---- */

static int az_key_generate(fv_instance *inst)
{
	static const char *const headers[] = {
		"Content-Type: application/json", "Accept: application/json", NULL
	};
	struct cloud_request req = { 0 };
	struct cloud_response resp;
	json_object *body, *ops, *attrs, *tags, *doc = NULL, *jwk = NULL;
	char *url = NULL, *text = NULL;
	const char *kid, *version;
	size_t text_len = 0;
	int rc;

	if (inst->key_version)
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.key_version: Key Vault chooses the version of a new key; remove key_version "
			"to generate, then set it to the version printed", inst->location);
	/* Create Key on an existing name adds a version: refuse instead. */
	rc = get_key(inst, NULL, &resp);
	if (rc != FV_OK)
		return rc;
	if (resp.status == 200)
		rc = CLOUD_ERROR(az_host, FV_ERR_EXISTS,
			"%s: key '%s' already exists in %s; refusing to add a version to it (choose another "
			"key_name, or use the existing key)", inst->location, inst->key_name, inst->vault_url);
	else if (resp.status != 404)
		rc = vault_failed(inst, &resp, "Get Key", "the keys/get permission");
	cloud_response_free(&resp);
	if (rc != FV_OK)
		return rc;
	if (inst->software)
		az_host->log(FV_LOG_WARNING,
			"%s: %s: key_type is RSA: the key will be software-protected, not in an HSM",
			AZ_PLUGIN, inst->location);

	body = json_object_new_object();
	ops = json_object_new_array();
	attrs = json_object_new_object();
	tags = json_object_new_object();
	if (body && ops && attrs && tags) {
		json_object_object_add(body, "kty", json_object_new_string(inst->software ? "RSA" : "RSA-HSM"));
		json_object_object_add(body, "key_size", json_object_new_int(AZ_BITS));
		json_object_array_add(ops, json_object_new_string("decrypt"));
		json_object_object_add(body, "key_ops", ops);
		json_object_object_add(attrs, "enabled", json_object_new_boolean(1));
		json_object_object_add(attrs, "exportable", json_object_new_boolean(0));
		json_object_object_add(body, "attributes", attrs);
		json_object_object_add(tags, "managed-by", json_object_new_string("flowvault"));
		json_object_object_add(body, "tags", tags);
		ops = attrs = tags = NULL;
		text = cloud_json_body(body, &text_len);
	}
	json_object_put(body);
	json_object_put(ops);
	json_object_put(attrs);
	json_object_put(tags);
	if (!text || key_url(inst, NULL, "create", &url) != FV_OK) {
		free(text);
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	}
	req.method = "POST";
	req.url = url;
	req.headers = headers;
	req.body = text;
	req.body_len = text_len;
	req.idempotent = 0; /* a second Create Key would add a second version */
	req.what = "Create Key";
	req.attempt_timeout_ms = AZ_CREATE_ATTEMPT_MS;
	rc = az_request(inst, &req, cloud_now_ms() + AZ_CREATE_BUDGET_MS, &resp);
	cloud_buf_free(text, text_len);
	free(url);
	if (rc != FV_OK)
		return rc;
	if (resp.status != 200) {
		rc = vault_failed(inst, &resp, "Create Key",
		                  "the keys/create permission (role Key Vault Crypto Officer)");
		cloud_response_free(&resp);
		return rc;
	}
	kid = NULL;
	if (cloud_json_parse(resp.body, resp.len, &doc) == FV_OK &&
	    json_object_object_get_ex(doc, "key", &jwk))
		kid = cloud_json_string(jwk, "kid", NULL);
	version = kid ? strrchr(kid, '/') : NULL;
	if (!version || !valid_name(version + 1, 1)) {
		rc = CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: Create Key answered without a kid", inst->location);
	} else {
		free(inst->generated_version);
		inst->generated_version = strdup(version + 1);
		rc = inst->generated_version ? FV_OK : CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
		if (rc == FV_OK)
			az_host->log(FV_LOG_INFO, "%s: %s: created %s (%s, RSA-2048, decrypt only); set "
			             "\"key_version\": \"%s\" to pin it",
			             AZ_PLUGIN, inst->location, kid, inst->software ? "RSA" : "RSA-HSM",
			             version + 1);
	}
	json_object_put(doc);
	cloud_response_free(&resp);
	return rc;
}

/* ---- The table and the entry point ---- */

static const fv_provider az_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = AZ_PLUGIN,
	.version = AZ_PLUGIN_VERSION,
	/* No FV_CAP_DELETE: deleting a key in Key Vault is soft-delete and purge,
	 * better done by a person with the portal or az. */
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = az_fields,
	.instance_open = az_instance_open,
	.instance_close = az_instance_close,
	.key_generate = az_key_generate,
	.key_open = az_key_open,
	.key_close = az_key_close,
	.key_public_der = az_key_public_der,
	.key_decrypt = az_key_decrypt,
	.key_info = az_key_info,
	.key_describe = az_key_describe,
};

static int az_entry(uint32_t host_abi_version, const fv_host *h, const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, h) != FV_OK)
		return FV_ERR_PLUGIN;
	az_host = h;
	*out = &az_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(az_entry)
