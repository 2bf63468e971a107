/*
 * Keys: a configured entry opened through its provider plugin. Public-key
 * encodings and fingerprints are computed here, once, for every plugin.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "internal.h"

/* Generous for RSA-2048 (294 bytes) and anything a plugin might return. */
#define SPKI_DER_MAX 4096

struct fv_key {
	char *name;
	char *provider;
	const struct fv_plugin *plugin;
	struct fv_config *cfg;
	fv_instance *instance;
	fv_pkey *pkey;
	unsigned char der[SPKI_DER_MAX];  /* SPKI, fetched once at open */
	size_t der_len;
};

/* Open the plugin instance for a key entry; on error the message is prefixed
 * with the key's name. */
static int instance_open(const struct fv_plugin **plugin, struct fv_config **cfg,
                         fv_instance **inst, fv_context *ctx, const char *name)
{
	const struct fv_key_entry *entry;
	int rc;

	*cfg = NULL;
	*inst = NULL;
	if (!ctx || !name)
		return fv__error_set(FV_ERR_USAGE, "no key name given");
	entry = fv__config_key(ctx, name);
	if (!entry) {
		char known[512] = "";
		size_t i, used = 0;

		for (i = 0; i < ctx->key_count && used < sizeof(known); i++)
			used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s",
			                         i ? ", " : "", ctx->keys[i].name);
		return fv__error_set(FV_ERR_CONFIG, "no key '%s' in %s (configured: %s)", name,
		                     ctx->config_path ? ctx->config_path : "the configuration",
		                     used ? known : "none");
	}
	if (fv__plugin_get(plugin, ctx, entry->provider) != FV_OK || !*plugin)
		return fv__error_prefix("keys.%s.provider", name);
	if ((rc = fv__config_view_new(cfg, ctx, name, (*plugin)->ops->config_fields)) != FV_OK)
		return rc;
	fv_error_clear();
	rc = (*plugin)->ops->instance_open(*cfg, inst);
	if (rc != FV_OK) {
		if (rc > 0 || fv_error_last()->status == FV_OK)
			fv__error_set(rc < 0 ? rc : FV_ERR_PLUGIN, "the %s plugin failed without a message",
			              entry->provider);
		fv__error_prefix("key '%s' (%s)", name, entry->provider);
		rc = fv_error_last()->status;
		fv__config_view_free(*cfg);
		*cfg = NULL;
		*inst = NULL;
	}
	return rc;
}

/* A plugin call failed: make sure there is a message, name the key. */
static int plugin_failed(int rc, const char *name, const char *provider,
                         const char *what)
{
	if (rc > 0)
		rc = FV_ERR_PLUGIN;
	if (fv_error_last()->status == FV_OK || !fv_error_last()->message[0])
		fv__error_set(rc, "%s failed (the %s plugin gave no reason)", what, provider);
	fv__error_prefix("key '%s' (%s)", name, provider);
	return rc;
}

/* Open the key of an instance already in `key` and read its public key. */
static int key_open_on_instance(fv_key *key, const char *name)
{
	int rc;

	key->name = strdup(name);
	key->provider = strdup(key->plugin->name);
	if (!key->name || !key->provider)
		return fv__error_nomem();
	fv_error_clear();
	rc = key->plugin->ops->key_open(key->instance, &key->pkey);
	if (rc != FV_OK) {
		key->pkey = NULL;
		return plugin_failed(rc, name, key->provider, "open");
	}
	key->der_len = sizeof(key->der);
	rc = key->plugin->ops->key_public_der(key->pkey, key->der, &key->der_len);
	if (rc == FV_OK && (key->der_len == 0 || key->der_len > sizeof(key->der)))
		rc = fv__error_set(FV_ERR_PLUGIN, "public key has an impossible length %zu",
		                   key->der_len);
	if (rc != FV_OK)
		return plugin_failed(rc, name, key->provider, "reading the public key");
	return FV_OK;
}

static int key_new(fv_key **out, fv_context *ctx, const char *name)
{
	fv_key *key;
	int rc;

	*out = NULL;
	key = calloc(1, sizeof(*key));
	if (!key)
		return fv__error_nomem();
	rc = instance_open(&key->plugin, &key->cfg, &key->instance, ctx, name);
	if (rc != FV_OK || !key->plugin) {
		free(key);
		return rc != FV_OK ? rc : FV_ERR_PLUGIN;
	}
	*out = key;
	return FV_OK;
}

int fv_key_generate(fv_key **out, fv_context *ctx, const char *name)
{
	int (*generate)(fv_instance *);
	fv_key *key;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = key_new(&key, ctx, name)) != FV_OK)
		return rc;
	generate = (key->plugin->ops->capabilities & FV_CAP_GENERATE)
	                   ? FV_PLUGIN_OP(key->plugin, key_generate) : NULL;
	if (!generate) {
		rc = fv__error_set(FV_ERR_UNSUPPORTED,
			"key '%s': the %s plugin cannot generate keys; create the key with the backend's own tools",
			name, key->plugin->name);
	} else {
		fv_error_clear();
		rc = generate(key->instance);
		if (rc != FV_OK)
			rc = plugin_failed(rc, name, key->plugin->name, "generate");
	}
	if (rc == FV_OK && out) {
		/* Same instance: the plugin may hand over the key it just made. */
		if ((rc = key_open_on_instance(key, name)) == FV_OK) {
			*out = key;
			return FV_OK;
		}
	}
	fv_key_free(key);
	return rc;
}

int fv_key_open(fv_key **out, fv_context *ctx, const char *name)
{
	fv_key *key;
	int rc;

	if (!out)
		return fv__error_set(FV_ERR_USAGE, "fv_key_open: out is NULL");
	if ((rc = key_new(&key, ctx, name)) != FV_OK) {
		*out = NULL;
		return rc;
	}
	if ((rc = key_open_on_instance(key, name)) != FV_OK) {
		fv_key_free(key);
		return rc;
	}
	*out = key;
	return FV_OK;
}

void fv_key_free(fv_key *key)
{
	if (!key)
		return;
	if (key->pkey)
		key->plugin->ops->key_close(key->pkey);
	if (key->instance)
		key->plugin->ops->instance_close(key->instance);
	fv__config_view_free(key->cfg);
	free(key->name);
	free(key->provider);
	free(key);
}

const char *fv_key_name(const fv_key *key)
{
	return key ? key->name : NULL;
}

const char *fv_key_provider(const fv_key *key)
{
	return key ? key->provider : NULL;
}

int fv_key_public_der(unsigned char **der, size_t *der_len, fv_key *key)
{
	if (!der || !der_len || !key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_public_der: missing argument");
	*der = malloc(key->der_len);
	if (!*der)
		return fv__error_nomem();
	memcpy(*der, key->der, key->der_len);
	*der_len = key->der_len;
	return FV_OK;
}

/* Parse SPKI DER and write it back as PEM exactly as `openssl pkey -pubout`. */
int fv_key_public_pem(char **pem, fv_key *key)
{
	const unsigned char *p;
	EVP_PKEY *pub;
	BIO *bio;
	char *data;
	long len;
	int rc = FV_OK;

	if (!pem || !key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_public_pem: missing argument");
	*pem = NULL;
	p = key->der;
	pub = d2i_PUBKEY(NULL, &p, (long)key->der_len);
	if (!pub || p != key->der + key->der_len) {
		EVP_PKEY_free(pub);
		return fv__error_set(FV_ERR_PLUGIN,
			"key '%s' (%s): the plugin returned a public key that is not valid SPKI DER",
			key->name, key->provider);
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio || !PEM_write_bio_PUBKEY(bio, pub)) {
		rc = fv__error_nomem();
	} else {
		len = BIO_get_mem_data(bio, &data);
		*pem = malloc((size_t)len + 1);
		if (!*pem) {
			rc = fv__error_nomem();
		} else {
			memcpy(*pem, data, (size_t)len);
			(*pem)[len] = '\0';
		}
	}
	BIO_free(bio);
	EVP_PKEY_free(pub);
	return rc;
}

int fv_spki_fingerprint(char hex[FV_FINGERPRINT_HEX_SIZE], const unsigned char *der,
                        size_t der_len)
{
	unsigned char digest[32];
	unsigned int len = 0;
	size_t i;

	if (!hex || !der)
		return fv__error_set(FV_ERR_USAGE, "fv_spki_fingerprint: missing argument");
	if (!EVP_Digest(der, der_len, digest, &len, EVP_sha256(), NULL) || len != 32)
		return fv__error_set(FV_ERR_GENERIC, "SHA-256 failed");
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return FV_OK;
}

int fv_key_fingerprint(char hex[FV_FINGERPRINT_HEX_SIZE], fv_key *key)
{
	if (!key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_fingerprint: key is NULL");
	return fv_spki_fingerprint(hex, key->der, key->der_len);
}

int fv_key_decrypt(unsigned char *out, size_t *out_len, fv_key *key,
                   const unsigned char *in, size_t in_len)
{
	int rc;

	if (!out || !out_len || !key || !in)
		return fv__error_set(FV_ERR_USAGE, "fv_key_decrypt: missing argument");
	fv_error_clear();
	rc = key->plugin->ops->key_decrypt(key->pkey, in, in_len, out, out_len);
	if (rc != FV_OK)
		return plugin_failed(rc, key->name, key->provider, "decrypt");
	return FV_OK;
}

int fv_key_info(char *buf, size_t len, fv_key *key)
{
	int (*info)(fv_pkey *, char *, size_t);
	int rc;

	if (!buf || !len || !key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_info: missing argument");
	buf[0] = '\0';
	info = (key->plugin->ops->capabilities & FV_CAP_INFO)
	               ? FV_PLUGIN_OP(key->plugin, key_info) : NULL;
	if (!info)
		return FV_OK;
	rc = info(key->pkey, buf, len);
	buf[len - 1] = '\0';
	if (rc != FV_OK)
		return plugin_failed(rc, key->name, key->provider, "describing the key");
	return FV_OK;
}
