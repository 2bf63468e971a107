/*
 * The Vault Transit key provider: an rsa-2048 (or 3072/4096) Transit key in
 * HashiCorp Vault or OpenBao decrypts Flows requests; the private key never
 * leaves Vault. See vault_transit.h for the files.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "vault_transit.h"

const fv_host *vault_host;

struct fv_pkey {
	struct fv_instance *inst;
	char *remote_id;              /* "https://vault:8200/v1/transit/keys/flows" (+ ns) */
	char *location;
	char *decrypt_path;           /* "<mount>/decrypt/<key>" */
	char prefix[32];              /* "vault:v3:" */
	unsigned char *der;
	size_t der_len;
	unsigned int bits;
	size_t modulus_bytes;
	uint32_t properties, properties_known;
};

static const fv_config_field vault_fields[] = {
	{ "address", FV_FIELD_STRING, FV_FIELD_REQUIRED,
	  "Vault or OpenBao address, https://HOST:PORT" },
	{ "mount", FV_FIELD_STRING, 0, "path of the Transit secrets engine (default transit)" },
	{ "key", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE,
	  "name of the Transit key" },
	{ "namespace", FV_FIELD_STRING, 0, "Vault Enterprise / OpenBao namespace" },
	{ "token", FV_FIELD_SECRET, 0, "secret reference to a Vault token" },
	{ "role_id", FV_FIELD_STRING, 0, "AppRole role_id (with secret_id)" },
	{ "secret_id", FV_FIELD_SECRET, 0, "secret reference to the AppRole secret_id" },
	{ "kubernetes_role", FV_FIELD_STRING, 0,
	  "Vault role for Kubernetes service-account login" },
	{ "jwt_file", FV_FIELD_STRING, FV_FIELD_PATH,
	  "service-account token file (default " VAULT_JWT_DEFAULT ")" },
	{ "auth_mount", FV_FIELD_STRING, 0,
	  "path of the auth method (default approle or kubernetes)" },
	CLOUD_HTTP_CONFIG_FIELDS,
	{ NULL, 0, 0, NULL }
};

/* ---- Instances ---- */

static void vault_instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	vault_token_cleanup(inst);
	cloud_http_free(inst->http);
	pthread_mutex_destroy(&inst->token_lock);
	pthread_mutex_destroy(&inst->login_lock);
	free(inst->location);
	free(inst->address);
	free(inst->mount);
	free(inst->key);
	free(inst->namespace_header);
	free(inst->auth_source);
	free(inst->token_ref);
	free(inst->role_id);
	free(inst->secret_id_ref);
	free(inst->kubernetes_role);
	free(inst->jwt_file);
	free(inst->auth_mount);
	free(inst);
}

/* Names that go into URL paths: Vault's own character set, no "..". */
static int path_name_ok(const char *s, int slashes)
{
	size_t i;

	if (!s || !*s || strstr(s, "..") || s[0] == '/' || s[strlen(s) - 1] == '/')
		return 0;
	for (i = 0; s[i]; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.' &&
		    !(slashes && s[i] == '/'))
			return 0;
	return 1;
}

static int vault_instance_open(const fv_config *cfg, fv_instance **out)
{
	const char *location = vault_host->config_location(cfg);
	const char *address = NULL, *mount = NULL, *key = NULL, *ns = NULL, *token = NULL;
	const char *role_id = NULL, *secret_id = NULL, *k8s_role = NULL, *jwt = NULL, *auth_mount = NULL;
	struct fv_instance *inst;
	char buf[600];
	size_t n;
	int failed = 0, methods, rc;

	if (!location)
		location = "keys.?";
	if ((rc = cloud_config_string(vault_host, cfg, "address", &address)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "mount", &mount)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "key", &key)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "namespace", &ns)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "token", &token)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "role_id", &role_id)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "secret_id", &secret_id)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "kubernetes_role", &k8s_role)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "jwt_file", &jwt)) != FV_OK ||
	    (rc = cloud_config_string(vault_host, cfg, "auth_mount", &auth_mount)) != FV_OK)
		return rc;
	if (!address || strncmp(address, "https://", 8) != 0 || strlen(address) > 400)
		return VAULT_ERROR(FV_ERR_CONFIG,
			"%s.address: %s; give the server's https:// address (Vault is reached over TLS only)",
			location, address ? "not an https:// URL" : "missing");
	if (!mount)
		mount = "transit";
	if (!path_name_ok(mount, 1))
		return VAULT_ERROR(FV_ERR_CONFIG, "%s.mount: '%s' is not a mount path", location, mount);
	if (!path_name_ok(key, 0))
		return VAULT_ERROR(FV_ERR_CONFIG, "%s.key: %s; give the Transit key's name (letters, digits, _ - .)",
		                   location, key ? "not a key name" : "missing");
	if (ns && !path_name_ok(ns, 1))
		return VAULT_ERROR(FV_ERR_CONFIG, "%s.namespace: '%s' is not a namespace path", location, ns);
	if (auth_mount && !path_name_ok(auth_mount, 1))
		return VAULT_ERROR(FV_ERR_CONFIG, "%s.auth_mount: '%s' is not a mount path", location, auth_mount);
	methods = !!token + !!(role_id || secret_id) + !!k8s_role;
	if (methods != 1)
		return VAULT_ERROR(FV_ERR_CONFIG,
			"%s: give exactly one way to authenticate: \"token\" (a secret reference), "
			"\"role_id\" + \"secret_id\" (AppRole), or \"kubernetes_role\" (service-account login)",
			location);
	if ((role_id || secret_id) && (!role_id || !secret_id))
		return VAULT_ERROR(FV_ERR_CONFIG, "%s: AppRole needs both role_id and secret_id", location);

	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&inst->token_lock, NULL);
	pthread_mutex_init(&inst->login_lock, NULL);
	inst->location = cloud_strdup(location, &failed);
	n = strlen(address);
	while (n > 8 && address[n - 1] == '/')
		n--;
	snprintf(buf, sizeof(buf), "%.*s", (int)n, address);
	inst->address = cloud_strdup(buf, &failed);
	inst->mount = cloud_strdup(mount, &failed);
	inst->key = cloud_strdup(key, &failed);
	if (ns) {
		snprintf(buf, sizeof(buf), "X-Vault-Namespace: %s", ns);
		inst->namespace_header = cloud_strdup(buf, &failed);
	}
	if (token) {
		inst->auth = VAULT_AUTH_TOKEN;
		inst->token_ref = cloud_strdup(token, &failed);
		snprintf(buf, sizeof(buf), "token (%s.token)", location);
	} else if (role_id) {
		inst->auth = VAULT_AUTH_APPROLE;
		inst->role_id = cloud_strdup(role_id, &failed);
		inst->secret_id_ref = cloud_strdup(secret_id, &failed);
		inst->auth_mount = cloud_strdup(auth_mount ? auth_mount : "approle", &failed);
		snprintf(buf, sizeof(buf), "AppRole login (role_id %s at auth/%s)", role_id,
		         auth_mount ? auth_mount : "approle");
	} else {
		inst->auth = VAULT_AUTH_KUBERNETES;
		inst->kubernetes_role = cloud_strdup(k8s_role, &failed);
		inst->jwt_file = cloud_strdup(jwt ? jwt : VAULT_JWT_DEFAULT, &failed);
		inst->auth_mount = cloud_strdup(auth_mount ? auth_mount : "kubernetes", &failed);
		snprintf(buf, sizeof(buf), "Kubernetes login (role %s at auth/%s, token file '%s')",
		         k8s_role, auth_mount ? auth_mount : "kubernetes", jwt ? jwt : VAULT_JWT_DEFAULT);
	}
	inst->auth_source = cloud_strdup(buf, &failed);
	if (failed) {
		vault_instance_close(inst);
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	}
	inst->http_opts.plugin = "vault-transit";
	inst->http_opts.location = inst->location;
	rc = cloud_http_config_read(vault_host, cfg, &inst->http_opts);
	if (rc == FV_OK)
		rc = cloud_http_new(vault_host, &inst->http_opts, &inst->http);
	if (rc != FV_OK) {
		vault_instance_close(inst);
		return rc;
	}
	*out = inst;
	return FV_OK;
}

/* ---- Keys ---- */

static void vault_key_close(fv_pkey *key)
{
	if (!key)
		return;
	free(key->remote_id);
	free(key->location);
	free(key->decrypt_path);
	free(key->der);
	free(key);
}

static int member_bool(json_object *obj, const char *name, int *out)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, name, &v) || !json_object_is_type(v, json_type_boolean))
		return 0;
	*out = json_object_get_boolean(v);
	return 1;
}

static unsigned int bits_of_type(const char *type)
{
	if (!type)
		return 0;
	if (strcmp(type, "rsa-2048") == 0)
		return 2048;
	if (strcmp(type, "rsa-3072") == 0)
		return 3072;
	if (strcmp(type, "rsa-4096") == 0)
		return 4096;
	return 0;
}

/* PEM "PUBLIC KEY" -> DER SubjectPublicKeyInfo of an RSA key. */
static int der_from_pem(const char *pem, unsigned char **der, size_t *der_len, int *bits)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pub = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	unsigned char *p;
	int n = pub && EVP_PKEY_is_a(pub, "RSA") ? i2d_PUBKEY(pub, NULL) : -1;

	BIO_free(bio);
	*bits = pub ? EVP_PKEY_get_bits(pub) : 0;
	if (n <= 0 || !(*der = malloc((size_t)n))) {
		EVP_PKEY_free(pub);
		return 0;
	}
	p = *der;
	i2d_PUBKEY(pub, &p);
	*der_len = (size_t)n;
	EVP_PKEY_free(pub);
	return 1;
}

/* Check the key read from Vault and keep what decrypts need. */
static int key_from_read(struct fv_instance *inst, json_object *doc, struct fv_pkey *key)
{
	json_object *data = NULL, *versions = NULL, *latest_entry = NULL;
	const char *type, *pem = NULL;
	int64_t latest = 0, min_decrypt = 0;
	int exportable = 0, backup = 0, supports_decryption = 1, supports_signing = 0, imported = 0;
	int bits = 0;
	char buf[900], version[24];

	json_object_object_get_ex(doc, "data", &data);
	type = cloud_json_string(data, "type", NULL);
	if (!bits_of_type(type))
		return VAULT_ERROR(FV_ERR_UNSUPPORTED,
			"%s.key: Transit key '%s' is of type %s; WhatsApp Flows needs rsa-2048 "
			"(or rsa-3072/rsa-4096), which `flowvault generate` creates",
			inst->location, inst->key, type ? type : "(unknown)");
	member_bool(data, "supports_decryption", &supports_decryption);
	if (!supports_decryption)
		return VAULT_ERROR(FV_ERR_UNSUPPORTED, "%s.key: Transit key '%s' does not support decryption",
		                   inst->location, inst->key);
	if (!cloud_json_int(data, "latest_version", &latest) || latest < 1)
		return VAULT_ERROR(FV_ERR_BACKEND, "%s: Vault's answer for key '%s' has no latest_version",
		                   inst->location, inst->key);
	cloud_json_int(data, "min_decryption_version", &min_decrypt);
	if (min_decrypt > latest)
		return VAULT_ERROR(FV_ERR_UNSUPPORTED,
			"%s.key: Transit key '%s' refuses decryption with its latest version %lld (min_decryption_version %lld)",
			inst->location, inst->key, (long long)latest, (long long)min_decrypt);
	snprintf(version, sizeof(version), "%lld", (long long)latest);
	json_object_object_get_ex(data, "keys", &versions);
	if (versions && json_object_object_get_ex(versions, version, &latest_entry))
		pem = cloud_json_string(latest_entry, "public_key", NULL);
	if (!pem || !der_from_pem(pem, &key->der, &key->der_len, &bits) ||
	    (unsigned int)bits != bits_of_type(type))
		return VAULT_ERROR(FV_ERR_BACKEND,
			"%s: Vault's answer for key '%s' has no RSA public key (PEM) of %s for version %s",
			inst->location, inst->key, type, version);
	key->bits = (unsigned int)bits;
	key->modulus_bytes = ((size_t)bits + 7) / 8;
	snprintf(key->prefix, sizeof(key->prefix), "vault:v%s:", version);

	/* exportable or allow_plaintext_backup: the private key can leave Vault. */
	member_bool(data, "exportable", &exportable);
	member_bool(data, "allow_plaintext_backup", &backup);
	key->properties_known = FV_KEY_PROP_EXTRACTABLE | FV_KEY_PROP_IN_HOST_MEMORY;
	if (exportable || backup)
		key->properties |= FV_KEY_PROP_EXTRACTABLE;
	if (member_bool(data, "supports_signing", &supports_signing)) {
		key->properties_known |= FV_KEY_PROP_CAN_SIGN;
		if (supports_signing)
			key->properties |= FV_KEY_PROP_CAN_SIGN;
	}
	if (member_bool(data, "imported_key", &imported)) {
		key->properties_known |= FV_KEY_PROP_GENERATED_INSIDE;
		if (!imported)
			key->properties |= FV_KEY_PROP_GENERATED_INSIDE;
	}

	snprintf(buf, sizeof(buf), "%s/v1/%s/keys/%s%s%s", inst->address, inst->mount, inst->key,
	         inst->namespace_header ? " (namespace " : "",
	         inst->namespace_header ? inst->namespace_header + 19 : "");
	if (inst->namespace_header)
		strncat(buf, ")", sizeof(buf) - strlen(buf) - 1);
	key->remote_id = strdup(buf);
	snprintf(buf, sizeof(buf), "Transit key %s (version %s) at %s/v1/%s", inst->key, version,
	         inst->address, inst->mount);
	key->location = strdup(buf);
	snprintf(buf, sizeof(buf), "%s/decrypt/%s", inst->mount, inst->key);
	key->decrypt_path = strdup(buf);
	if (!key->remote_id || !key->location || !key->decrypt_path)
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	return FV_OK;
}

static int vault_key_open(fv_instance *inst, fv_pkey **out)
{
	struct vault_error err;
	json_object *resp = NULL;
	struct fv_pkey *key;
	char path[600];
	int rc;

	key = calloc(1, sizeof(*key));
	if (!key)
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	key->inst = inst;
	snprintf(path, sizeof(path), "%s/keys/%s", inst->mount, inst->key);
	rc = vault_call(inst, "GET", path, NULL, 1, cloud_deadline(inst->http), &resp, &err);
	if (rc == FV_OK)
		rc = key_from_read(inst, resp, key);
	json_object_put(resp);
	if (rc != FV_OK) {
		vault_key_close(key);
		return rc;
	}
	VAULT_LOG(FV_LOG_DEBUG, "vault-transit: %s: %s, RSA-%u, decrypt as %s...", inst->location,
	          key->location, key->bits, key->prefix);
	*out = key;
	return FV_OK;
}

static int vault_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (!key || !len)
		return VAULT_ERROR(FV_ERR_USAGE, "vault-transit: key_public_der: missing argument");
	return cloud_public_der_out(key->der, key->der_len, der, len);
}

static int vault_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                             unsigned char *out, size_t *out_len)
{
	struct fv_instance *inst;
	struct vault_error err;
	json_object *req = NULL, *resp = NULL, *data = NULL;
	unsigned char *plain = NULL;
	size_t plain_len = 0, b64_len = 0;
	char *b64 = NULL, *ciphertext = NULL;
	const char *plain_b64;
	int rc;

	if (!key || !in || !out_len)
		return VAULT_ERROR(FV_ERR_USAGE, "vault-transit: key_decrypt: missing argument");
	inst = key->inst;
	if (in_len != key->modulus_bytes)
		return VAULT_ERROR(FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; the RSA-%u Transit key %s takes exactly %zu",
			in_len, key->bits, inst->key, key->modulus_bytes);
	b64 = cloud_base64_encode(in, in_len);
	if (b64 && (ciphertext = malloc(strlen(key->prefix) + strlen(b64) + 1)))
		sprintf(ciphertext, "%s%s", key->prefix, b64);
	req = json_object_new_object();
	/* OAEP with SHA-256 (and MGF1-SHA-256): the default everywhere, and
	 * said explicitly for servers that let the request choose. */
	if (!ciphertext || !req ||
	    json_object_object_add(req, "ciphertext", json_object_new_string(ciphertext)) ||
	    json_object_object_add(req, "padding_scheme", json_object_new_string("oaep")) ||
	    json_object_object_add(req, "hash_algorithm", json_object_new_string("sha2-256"))) {
		rc = VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = vault_call(inst, "POST", key->decrypt_path, req, 1, cloud_deadline(inst->http), &resp,
	                &err);
	if (rc != FV_OK) {
		/* A ciphertext Vault could not decrypt is refused with 400 and a
		 * message about decryption; any other refusal is not the sender's. */
		if (err.status == 400 && strstr(err.message, "decrypt"))
			rc = VAULT_ERROR(FV_ERR_DECRYPT,
				"the ciphertext fails the RSA-OAEP (SHA-256) check with Transit key %s: "
				"it was encrypted to another key or with other parameters",
				inst->key);
		goto out;
	}
	json_object_object_get_ex(resp, "data", &data);
	plain_b64 = cloud_json_string(data, "plaintext", &b64_len);
	if (!plain_b64 || cloud_base64_decode(plain_b64, b64_len, &plain, &plain_len) != FV_OK) {
		rc = VAULT_ERROR(FV_ERR_BACKEND, "%s: Vault's decrypt answer has no base64 plaintext",
		                 inst->location);
		goto out;
	}
	rc = cloud_plaintext_out(vault_host, inst->location, plain, plain_len, key->modulus_bytes,
	                         out, out_len);
out:
	cloud_buf_free(plain, plain_len);
	cloud_json_free_wiped(resp);
	json_object_put(req);
	free(ciphertext);
	free(b64);
	return rc;
}

static int vault_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (!key || !buf || len == 0)
		return FV_ERR_USAGE;
	snprintf(buf, len, "vault-transit: %s (RSA-%u); oaep: vault-transit", key->location, key->bits);
	return FV_OK;
}

static int vault_key_describe(fv_pkey *key, fv_key_description *d)
{
	if (!key || !d)
		return FV_ERR_USAGE;
	cloud_describe_fill(d, "vault-transit", key->location, key->remote_id, key->bits,
	                    key->properties, key->properties_known);
	return FV_OK;
}

/* ---- Generating a key ---- */

static int vault_key_generate(fv_instance *inst)
{
	struct vault_error err;
	json_object *req = NULL, *resp = NULL;
	char path[600];
	int rc;

	snprintf(path, sizeof(path), "%s/keys/%s", inst->mount, inst->key);
	rc = vault_call(inst, "GET", path, NULL, 1, cloud_deadline(inst->http), &resp, &err);
	json_object_put(resp);
	resp = NULL;
	if (rc == FV_OK)
		return VAULT_ERROR(FV_ERR_EXISTS,
			"%s.key: Transit key '%s' already exists at %s; refusing to replace it (choose another name)",
			inst->location, inst->key, inst->mount);
	if (rc != FV_ERR_NOT_FOUND)
		return rc;
	req = json_object_new_object();
	if (!req || json_object_object_add(req, "type", json_object_new_string("rsa-2048")) ||
	    json_object_object_add(req, "exportable", json_object_new_boolean(0)) ||
	    json_object_object_add(req, "allow_plaintext_backup", json_object_new_boolean(0))) {
		json_object_put(req);
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	}
	rc = vault_call(inst, "POST", path, req, 0, cloud_deadline(inst->http), &resp, &err);
	json_object_put(req);
	json_object_put(resp);
	if (rc == FV_OK)
		VAULT_LOG(FV_LOG_INFO, "vault-transit: %s: created rsa-2048 key '%s' (not exportable) at %s",
		          inst->location, inst->key, inst->mount);
	return rc;
}

/* ---- The table and the entry point ---- */

static const fv_provider vault_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "vault-transit",
	.version = VAULT_PLUGIN_VERSION,
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = vault_fields,
	.instance_open = vault_instance_open,
	.instance_close = vault_instance_close,
	.key_generate = vault_key_generate,
	.key_open = vault_key_open,
	.key_close = vault_key_close,
	.key_public_der = vault_key_public_der,
	.key_decrypt = vault_key_decrypt,
	.key_info = vault_key_info,
	.key_list = NULL,
	.key_delete = NULL,
	.key_describe = vault_key_describe,
};

static int vault_entry(uint32_t host_abi_version, const fv_host *h, const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, h) != FV_OK)
		return FV_ERR_PLUGIN;
	vault_host = h;
	*out = &vault_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(vault_entry)
