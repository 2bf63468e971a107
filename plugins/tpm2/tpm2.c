/*
 * flowvault key provider for TPM 2.0, through tpm2-tss ESAPI: the entry
 * point, the function table, the configuration and the key handles.
 *
 * The key is an RSA-2048 decryption key created inside the TPM; it is kept
 * as a TSS2 PRIVATE KEY file (interchangeable with tpm2-openssl and
 * tpm2-tss-engine) or at a persistent handle. Decryption is
 * TPM2_RSA_Decrypt with OAEP and SHA-256, so the private key never leaves
 * the TPM. One ESYS context per instance, used under its mutex.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "tpm2_plugin.h"

const fv_host *tpm2_host;

static const fv_config_field config_fields[] = {
	{ "tcti", FV_FIELD_STRING, 0,
	  "tpm2-tss TCTI: device:/dev/tpmrm0, tabrmd, swtpm:host=127.0.0.1,port=2321 (default: tpm2-tss's)" },
	{ "key_file", FV_FIELD_STRING, FV_FIELD_KEY_REFERENCE | FV_FIELD_PATH,
	  "TSS2 PRIVATE KEY PEM file (tpm2-openssl format); or use handle" },
	{ "handle", FV_FIELD_STRING, FV_FIELD_KEY_REFERENCE,
	  "persistent handle of the key, e.g. \"0x81000010\"; or use key_file" },
	{ "parent", FV_FIELD_STRING, 0,
	  "parent for generate, and the storage key that salts a handle key's session: persistent handle \"0x81xxxxxx\" or \"owner\" (default: 0x81000001 if present, else owner)" },
	{ "auth", FV_FIELD_SECRET, 0,
	  "the key's authorization value: env:NAME, file:PATH or prompt (default: none)" },
	{ NULL, 0, 0, NULL }
};

/* "0x81000010" (or decimal) -> handle; 0 when it is not one. */
static uint32_t parse_handle(const char *s)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end || v > UINT32_MAX)
		return 0;
	return (uint32_t)v;
}

static void instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	pthread_mutex_lock(&inst->lock);
	tpm2_key_unload(inst);
	tpm2_disconnect(inst);
	pthread_mutex_unlock(&inst->lock);
	pthread_mutex_destroy(&inst->lock);
	tpm2_auth_free(inst);
	free(inst->where);
	free(inst->tcti);
	free(inst->key_file);
	free(inst->auth_ref);
	free(inst);
}

static int instance_open(const fv_config *cfg, fv_instance **out)
{
	const char *tcti = NULL, *key_file = NULL, *handle = NULL, *parent = NULL,
	           *auth = NULL;
	fv_instance *inst;
	int rc = FV_ERR_NOMEM;

	*out = NULL;
	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return FV_ERR_NOMEM;
	inst->tcti_fd = -1;
	if (pthread_mutex_init(&inst->lock, NULL) != 0) {
		free(inst);
		return FV_ERR_GENERIC;
	}
	inst->key_tr = ESYS_TR_NONE;
	inst->session = ESYS_TR_NONE;
	inst->where = strdup(tpm2_host->config_location(cfg));
	if (!inst->where)
		goto fail;
	tpm2_host->config_string(cfg, "tcti", &tcti);
	tpm2_host->config_string(cfg, "key_file", &key_file);
	tpm2_host->config_string(cfg, "handle", &handle);
	tpm2_host->config_string(cfg, "parent", &parent);
	tpm2_host->config_string(cfg, "auth", &auth);

	if (!key_file == !handle) {
		rc = TPM2_ERROR(FV_ERR_CONFIG,
			"%s: set exactly one of key_file (a TSS2 key file) and handle (a persistent handle such as \"0x81000010\")",
			inst->where);
		goto fail;
	}
	if (handle) {
		inst->handle = parse_handle(handle);
		if ((inst->handle >> 24) != 0x81) {
			rc = TPM2_ERROR(FV_ERR_CONFIG,
				"%s.handle: '%s' is not a persistent handle; use 0x81000000 to 0x81ffffff, e.g. \"0x81000010\"",
				inst->where, handle);
			goto fail;
		}
	}
	if (parent) {
		if (strcasecmp(parent, "owner") == 0)
			inst->parent = TPM2_OWNER_PARENT;
		else
			inst->parent = parse_handle(parent);
		if (inst->parent != TPM2_OWNER_PARENT && (inst->parent >> 24) != 0x81) {
			rc = TPM2_ERROR(FV_ERR_CONFIG,
				"%s.parent: '%s' is neither a persistent handle (0x81xxxxxx) nor \"owner\"",
				inst->where, parent);
			goto fail;
		}
	}
	if (inst->handle && inst->parent == inst->handle) {
		rc = TPM2_ERROR(FV_ERR_CONFIG, "%s: parent and handle are the same handle",
		                inst->where);
		goto fail;
	}
	if ((tcti && !(inst->tcti = strdup(tcti))) ||
	    (key_file && !(inst->key_file = strdup(key_file))) ||
	    (auth && !(inst->auth_ref = strdup(auth)))) {
		rc = FV_ERR_NOMEM;
		goto fail;
	}
	*out = inst;
	return FV_OK;
fail:
	instance_close(inst);
	return rc;
}

static int key_generate(fv_instance *inst)
{
	int rc;

	pthread_mutex_lock(&inst->lock);
	rc = tpm2_generate(inst);
	pthread_mutex_unlock(&inst->lock);
	return rc;
}

struct fv_pkey {
	fv_instance *inst;
	unsigned char *spki;
	size_t spki_len;
	char location[512];      /* for key_describe */
};

static void key_close(fv_pkey *key)
{
	fv_instance *inst;

	if (!key)
		return;
	inst = key->inst;
	pthread_mutex_lock(&inst->lock);
	/* With the last handle gone, flush the key and let go of the TPM (a
	 * device node, a socket); the next key_open connects afresh. */
	if (inst->key_refs > 0 && --inst->key_refs == 0) {
		tpm2_key_unload(inst);
		tpm2_disconnect(inst);
	}
	pthread_mutex_unlock(&inst->lock);
	OPENSSL_free(key->spki);
	free(key);
}

/* Read the key file (again) and check it before touching the TPM. */
static int prepare_file(fv_instance *inst)
{
	char what[256];
	int rc;

	rc = tpm2_keyblob_read(&inst->blob, inst->key_file, inst->where);
	if (rc != FV_OK)
		return rc;
	snprintf(what, sizeof(what), "%s.key_file '%s'", inst->where, inst->key_file);
	rc = tpm2_public_check(&inst->blob.pub, what);
	if (rc != FV_OK)
		return rc;
	if (inst->parent && inst->parent != inst->blob.parent)
		TPM2_LOG(FV_LOG_WARNING,
		         "%s records parent 0x%08x, which is used to load it; %s.parent (0x%08x) only applies to generate",
		         what, inst->blob.parent, inst->where, inst->parent);
	if (!inst->blob.empty_auth && !inst->auth_ref)
		TPM2_LOG(FV_LOG_WARNING,
		         "%s: the key file says the key has an authorization value, but %s.auth is not set",
		         what, inst->where);
	if (inst->blob.empty_auth && inst->auth_ref)
		TPM2_LOG(FV_LOG_WARNING,
		         "%s: the key file says the key has no authorization value, but %s.auth is set",
		         what, inst->where);
	inst->have_blob = 1;
	return FV_OK;
}

static int key_open(fv_instance *inst, fv_pkey **out)
{
	char what[256];
	fv_pkey *key;
	int rc;

	*out = NULL;
	key = calloc(1, sizeof(*key));
	if (!key)
		return FV_ERR_NOMEM;
	key->inst = inst;

	pthread_mutex_lock(&inst->lock);
	rc = FV_OK;
	if (inst->key_refs == 0) {
		if (inst->key_file)
			rc = prepare_file(inst);
		if (rc == FV_OK)
			rc = tpm2_auth_resolve(inst);
		if (rc == FV_OK)
			rc = tpm2_key_load(inst);
	}
	if (rc == FV_OK) {
		if (inst->key_file)
			snprintf(what, sizeof(what), "%s.key_file '%s'", inst->where, inst->key_file);
		else
			snprintf(what, sizeof(what), "%s.handle 0x%08x", inst->where, inst->handle);
		rc = tpm2_public_to_spki(&key->spki, &key->spki_len, &inst->key_pub, what);
		if (rc == FV_OK)
			inst->key_refs++;
	}
	if (rc != FV_OK && inst->key_refs == 0) {
		tpm2_key_unload(inst);
		tpm2_disconnect(inst);
	}
	pthread_mutex_unlock(&inst->lock);
	if (rc != FV_OK) {
		OPENSSL_free(key->spki);
		free(key);
		return rc;
	}
	*out = key;
	return FV_OK;
}

static int key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (!der || *len < key->spki_len) {
		*len = key->spki_len;
		if (!der)
			return FV_OK;
		return TPM2_ERROR(FV_ERR_BUFFER_TOO_SMALL, "public key needs %zu bytes",
		                  key->spki_len);
	}
	memcpy(der, key->spki, key->spki_len);
	*len = key->spki_len;
	return FV_OK;
}

static int key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                       unsigned char *out, size_t *out_len)
{
	fv_instance *inst = key->inst;
	int rc;

	pthread_mutex_lock(&inst->lock);
	rc = tpm2_decrypt(inst, in, in_len, out, out_len);
	pthread_mutex_unlock(&inst->lock);
	return rc;
}

static int key_info(fv_pkey *key, char *buf, size_t len)
{
	fv_instance *inst = key->inst;

	if (inst->key_file)
		snprintf(buf, len, "oaep: tpm; key_file '%s' (parent 0x%08x); TCTI %s; RSA-2048",
		         inst->key_file, inst->blob.parent, tpm2_tcti_name(inst));
	else
		snprintf(buf, len, "oaep: tpm; handle 0x%08x; TCTI %s; RSA-2048", inst->handle,
		         tpm2_tcti_name(inst));
	return FV_OK;
}

/*
 * What the TPM says about the key: its object attributes, read from the
 * public area the TPM loaded (for a key file, the TPM checks the public area
 * against the private part when it loads it, so the file cannot lie).
 */
static int key_describe(fv_pkey *key, fv_key_description *out)
{
	const fv_instance *inst = key->inst;
	const TPMT_PUBLIC *a = &inst->key_pub.publicArea;
	const TPMA_OBJECT attrs = a->objectAttributes;
	uint32_t props = 0;

	if (inst->key_file)
		snprintf(key->location, sizeof(key->location),
		         "TPM key file '%s' (parent 0x%08x), TCTI %s", inst->key_file,
		         inst->blob.parent, tpm2_tcti_name(inst));
	else
		snprintf(key->location, sizeof(key->location), "TPM handle 0x%08x, TCTI %s",
		         inst->handle, tpm2_tcti_name(inst));
	if (attrs & TPMA_OBJECT_FIXEDTPM)
		props |= FV_KEY_PROP_FIXED_TPM;
	if (attrs & TPMA_OBJECT_FIXEDPARENT)
		props |= FV_KEY_PROP_FIXED_PARENT;
	if (attrs & TPMA_OBJECT_SENSITIVEDATAORIGIN)
		props |= FV_KEY_PROP_GENERATED_INSIDE;
	if (attrs & TPMA_OBJECT_SIGN_ENCRYPT)
		props |= FV_KEY_PROP_CAN_SIGN;

#define DESC_SET(member, value)                                                  \
	do {                                                                         \
		if (out->struct_size >= offsetof(fv_key_description, member) +           \
		                        sizeof(out->member))                             \
			out->member = (value);                                               \
	} while (0)
	DESC_SET(oaep, "tpm");
	DESC_SET(backend, "tpm");
	DESC_SET(location, key->location);
	DESC_SET(bits, (unsigned int)a->parameters.rsaDetail.keyBits);
	DESC_SET(properties, props);
	/* The private key is in the TPM, never in this process; an unrestricted
	 * decryption key cannot unwrap (import) other keys. */
	DESC_SET(properties_known, FV_KEY_PROP_FIXED_TPM | FV_KEY_PROP_FIXED_PARENT |
	                           FV_KEY_PROP_GENERATED_INSIDE | FV_KEY_PROP_CAN_SIGN |
	                           FV_KEY_PROP_CAN_UNWRAP | FV_KEY_PROP_IN_HOST_MEMORY);
#undef DESC_SET
	return FV_OK;
}

static const fv_provider provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "tpm2",
	.version = TPM2_PLUGIN_VERSION,
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = config_fields,
	.instance_open = instance_open,
	.instance_close = instance_close,
	.key_generate = key_generate,
	.key_open = key_open,
	.key_close = key_close,
	.key_public_der = key_public_der,
	.key_decrypt = key_decrypt,
	.key_info = key_info,
	.key_list = NULL,
	.key_delete = NULL,
	.key_describe = key_describe,
};

static int tpm2_entry(uint32_t host_abi_version, const fv_host *host,
                      const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, host) != FV_OK)
		return FV_ERR_PLUGIN;
	tpm2_host = host;
	*out = &provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(tpm2_entry)
