/*
 * Keys: a configured entry opened through its provider plugin. Public-key
 * encodings and fingerprints are computed here, once, for every plugin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "internal.h"

/* Generous for RSA-2048 (294 bytes) and anything a plugin might return. */
#define SPKI_DER_MAX 4096

/* Warnings a key can carry: at most one per entry of key_warning_table. */
#define KEY_WARNINGS_MAX 10

struct fv_key {
	char *name;
	char *provider;
	int require_non_extractable;
	fv_key_description desc;          /* from key_describe, when offered */
	char info[512];                   /* from key_info, when offered */
	fv_key_warning warnings[KEY_WARNINGS_MAX];
	fv_key_details details;
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

/*
 * Properties that weaken a key, and whether require_non_extractable refuses
 * them. A property counts only when the plugin says it determined it.
 */
static const struct key_warning_rule {
	uint32_t prop;
	int when_set;        /* warn when the property holds (1) or fails (0) */
	int refused;
	const char *name;
	const char *message;
} key_warning_table[] = {
	{ FV_KEY_PROP_EXTRACTABLE, 1, 1, "extractable",
	  "the key can be exported from its store (CKA_EXTRACTABLE is true)" },
	{ FV_KEY_PROP_SENSITIVE, 0, 1, "not-sensitive",
	  "the key's private parts can be read from its store (CKA_SENSITIVE is false)" },
	{ FV_KEY_PROP_ALWAYS_SENSITIVE, 0, 1, "not-always-sensitive",
	  "the key was readable at some point (CKA_ALWAYS_SENSITIVE is false): a copy may exist outside the store" },
	{ FV_KEY_PROP_NEVER_EXTRACTABLE, 0, 1, "was-extractable",
	  "the key was extractable at some point (CKA_NEVER_EXTRACTABLE is false): it may have been imported or exported" },
	{ FV_KEY_PROP_FIXED_TPM, 0, 1, "not-fixed-tpm",
	  "the TPM key can be duplicated to another TPM (fixedTPM is clear)" },
	{ FV_KEY_PROP_FIXED_PARENT, 0, 1, "not-fixed-parent",
	  "the TPM key can be duplicated under another parent (fixedParent is clear)" },
	{ FV_KEY_PROP_GENERATED_INSIDE, 0, 0, "imported",
	  "the key was not generated inside its store" },
	{ FV_KEY_PROP_CAN_SIGN, 1, 0, "can-sign",
	  "the key can also sign: it should be used for decryption only" },
	{ FV_KEY_PROP_CAN_UNWRAP, 1, 0, "can-unwrap",
	  "the key can also unwrap other keys: it should be used for decryption only" },
};

/* Modulus size from the SPKI, for plugins that do not say. */
static unsigned int spki_bits(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)len);
	int bits = pub ? EVP_PKEY_get_bits(pub) : 0;

	EVP_PKEY_free(pub);
	return bits > 0 ? (unsigned int)bits : 0;
}

static int key_details_fill(fv_key *key)
{
	int (*describe)(fv_pkey *, fv_key_description *);
	int (*info)(fv_pkey *, char *, size_t);
	fv_key_details *d = &key->details;
	size_t i;
	int rc;

	memset(&key->desc, 0, sizeof(key->desc));
	key->desc.struct_size = sizeof(key->desc);
	describe = (key->plugin->ops->capabilities & FV_CAP_DESCRIBE)
	                   ? FV_PLUGIN_OP(key->plugin, key_describe) : NULL;
	if (describe) {
		fv_error_clear();
		rc = describe(key->pkey, &key->desc);
		if (rc != FV_OK)
			return plugin_failed(rc, key->name, key->provider, "describing the key");
		/* Whatever the plugin wrote, only this many bytes are ours. */
		key->desc.struct_size = sizeof(key->desc);
	}
	info = (key->plugin->ops->capabilities & FV_CAP_INFO)
	               ? FV_PLUGIN_OP(key->plugin, key_info) : NULL;
	key->info[0] = '\0';
	if (info && info(key->pkey, key->info, sizeof(key->info)) != FV_OK)
		key->info[0] = '\0';
	key->info[sizeof(key->info) - 1] = '\0';

	memset(d, 0, sizeof(*d));
	d->oaep = key->desc.oaep;
	d->backend = key->desc.backend;
	d->location = key->desc.location;
	d->remote_id = key->desc.remote_id;
	d->bits = key->desc.bits ? key->desc.bits : spki_bits(key->der, key->der_len);
	d->properties = key->desc.properties & key->desc.properties_known;
	d->properties_known = key->desc.properties_known;
	d->require_non_extractable = key->require_non_extractable;
	d->info = key->info;
	for (i = 0; i < sizeof(key_warning_table) / sizeof(key_warning_table[0]); i++) {
		const struct key_warning_rule *r = &key_warning_table[i];
		int holds = (d->properties & r->prop) != 0;

		if (!(d->properties_known & r->prop) || holds != r->when_set ||
		    d->warning_count >= KEY_WARNINGS_MAX)
			continue;
		key->warnings[d->warning_count].property = r->name;
		key->warnings[d->warning_count].message = r->message;
		key->warnings[d->warning_count].refused = r->refused;
		d->warning_count++;
	}
	d->warnings = key->warnings;
	return FV_OK;
}

int fv_key_details_get(const fv_key_details **out, fv_key *key)
{
	if (!out || !key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_details_get: missing argument");
	*out = &key->details;
	return FV_OK;
}

int fv_key_policy_check(fv_key *key)
{
	char refused[768] = "";
	size_t i, used = 0;

	if (!key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_policy_check: key is NULL");
	if (!key->require_non_extractable)
		return FV_OK;
	for (i = 0; i < key->details.warning_count && used < sizeof(refused); i++)
		if (key->warnings[i].refused)
			used += (size_t)snprintf(refused + used, sizeof(refused) - used, "%s%s",
			                         used ? "; " : "", key->warnings[i].message);
	if (!used)
		return FV_OK;
	return fv__error_set(FV_ERR_PERMISSION,
		"key '%s' (%s): refusing a key that can leave its store: %s. Generate a new key "
		"inside the store (flowvault generate %s), or set keys.%s.require_non_extractable "
		"to false to use this one anyway",
		key->name, key->provider, refused, key->name, key->name);
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
	return key_details_fill(key);
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
	key->require_non_extractable = fv__config_key(ctx, name)->require_non_extractable;
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
		if ((rc = key_open_on_instance(key, name)) == FV_OK &&
		    (rc = fv_key_policy_check(key)) == FV_OK) {
			*out = key;
			return FV_OK;
		}
	}
	fv_key_free(key);
	return rc;
}

int fv_key_open_ex(fv_key **out, fv_context *ctx, const char *name,
                   unsigned int flags)
{
	fv_key *key;
	int rc;

	if (!out)
		return fv__error_set(FV_ERR_USAGE, "fv_key_open: out is NULL");
	if ((rc = key_new(&key, ctx, name)) != FV_OK) {
		*out = NULL;
		return rc;
	}
	if ((rc = key_open_on_instance(key, name)) != FV_OK ||
	    (!(flags & FV_KEY_OPEN_INSPECT) && (rc = fv_key_policy_check(key)) != FV_OK)) {
		fv_key_free(key);
		*out = NULL;
		return rc;
	}
	*out = key;
	return FV_OK;
}

int fv_key_open(fv_key **out, fv_context *ctx, const char *name)
{
	return fv_key_open_ex(out, ctx, name, 0);
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
	if (!buf || !len || !key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_info: missing argument");
	snprintf(buf, len, "%s", key->info);
	return FV_OK;
}
