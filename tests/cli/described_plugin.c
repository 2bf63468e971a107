/*
 * A provider plugin for the cli tests: an RSA key from a plain PEM file whose
 * key_describe reports the FV_KEY_PROP_* bits given in the key entry
 * ("properties", those a token has determined), so `keys` and `doctor` can be
 * tested with keys that carry warnings or are refused, without a token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <flowvault/provider.h>

/* Like a PKCS#11 token: every property but the TPM ones is determined. */
#define ALL_PROPERTIES (0x3ffu & ~(FV_KEY_PROP_FIXED_TPM | FV_KEY_PROP_FIXED_PARENT))

static const fv_host *host;

struct fv_instance {
	char path[4096];
	uint32_t properties;
};

struct fv_pkey {
	EVP_PKEY *pkey;
	char location[4200];
	uint32_t properties;
};

static const fv_config_field fields[] = {
	{ "path", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE | FV_FIELD_PATH,
	  "an unencrypted PEM private key" },
	{ "properties", FV_FIELD_INT, 0, "FV_KEY_PROP_* bits that hold" },
	{ NULL, 0, 0, NULL }
};

static int described_instance_open(const fv_config *cfg, fv_instance **out)
{
	struct fv_instance *inst = calloc(1, sizeof(*inst));
	const char *path = NULL;
	int64_t props = FV_KEY_PROP_SENSITIVE | FV_KEY_PROP_ALWAYS_SENSITIVE |
	                FV_KEY_PROP_NEVER_EXTRACTABLE | FV_KEY_PROP_GENERATED_INSIDE;

	if (!inst)
		return host->error(FV_ERR_NOMEM, "out of memory");
	host->config_string(cfg, "path", &path);
	host->config_int(cfg, "properties", &props);
	snprintf(inst->path, sizeof(inst->path), "%s", path ? path : "");
	inst->properties = (uint32_t)props & ALL_PROPERTIES;
	*out = inst;
	return FV_OK;
}

static void described_instance_close(fv_instance *inst)
{
	free(inst);
}

static int described_key_open(fv_instance *inst, fv_pkey **out)
{
	struct fv_pkey *key;
	FILE *f = fopen(inst->path, "r");

	if (!f)
		return host->error(FV_ERR_NOT_FOUND, "cannot open '%s'", inst->path);
	key = calloc(1, sizeof(*key));
	if (key)
		key->pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!key || !key->pkey) {
		free(key);
		ERR_clear_error();
		return host->error(FV_ERR_BACKEND, "'%s' is not a plain PEM private key", inst->path);
	}
	snprintf(key->location, sizeof(key->location), "%s", inst->path);
	key->properties = inst->properties;
	*out = key;
	return FV_OK;
}

static void described_key_close(fv_pkey *key)
{
	EVP_PKEY_free(key->pkey);
	free(key);
}

static int described_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	int n = i2d_PUBKEY(key->pkey, NULL);

	if (n <= 0)
		return host->error(FV_ERR_BACKEND, "cannot encode the public key");
	if (der && *len < (size_t)n) {
		*len = (size_t)n;
		return FV_ERR_BUFFER_TOO_SMALL;
	}
	if (der)
		i2d_PUBKEY(key->pkey, &der);
	*len = (size_t)n;
	return FV_OK;
}

static int described_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                                 unsigned char *out, size_t *out_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
	int ok = ctx && EVP_PKEY_decrypt_init(ctx) > 0 &&
	         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
	         EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
	         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0 &&
	         EVP_PKEY_decrypt(ctx, out, out_len, in, in_len) > 0;

	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok ? FV_OK : host->error(FV_ERR_DECRYPT, "OAEP decryption failed");
}

static int described_key_describe(fv_pkey *key, fv_key_description *d)
{
	d->oaep = "host";
	d->backend = "file";
	d->location = key->location;
	d->bits = (unsigned int)EVP_PKEY_get_bits(key->pkey);
	d->properties = key->properties;
	d->properties_known = ALL_PROPERTIES;
	return FV_OK;
}

static const fv_provider described_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "described",
	.version = "1.0.0",
	.capabilities = FV_CAP_DESCRIBE,
	.config_fields = fields,
	.instance_open = described_instance_open,
	.instance_close = described_instance_close,
	.key_open = described_key_open,
	.key_close = described_key_close,
	.key_public_der = described_key_public_der,
	.key_decrypt = described_key_decrypt,
	.key_describe = described_key_describe,
};

static int described_entry(uint32_t abi, const fv_host *h, const fv_provider **out)
{
	if (fv_provider_host_check(abi, h) != FV_OK)
		return FV_ERR_PLUGIN;
	host = h;
	*out = &described_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(described_entry)
