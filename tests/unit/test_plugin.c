/*
 * A provider plugin for the loader and configuration tests, built several
 * times (see CMakeLists.txt):
 *  - plain: loads; echoes the configuration it was given through key_info,
 *    so tests can see what the host's config services hand to a plugin;
 *  - TEST_PLUGIN_ABI_MAJOR=2: a table from a future, incompatible ABI;
 *  - TEST_PLUGIN_SHORT_TABLE: a table shorter than the 1.0 layout;
 *  - TEST_PLUGIN_DECLINE: the entry point refuses the host.
 * The "public key" is not a real one: "TESTDER:" and the label.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flowvault/provider.h>

#ifndef TEST_PLUGIN_NAME
#error "TEST_PLUGIN_NAME must be defined"
#endif
#ifdef TEST_PLUGIN_ABI_MAJOR
#define TABLE_ABI_VERSION ((uint32_t)(TEST_PLUGIN_ABI_MAJOR << 16))
#else
#define TABLE_ABI_VERSION FV_PROVIDER_ABI_VERSION
#endif
#ifdef TEST_PLUGIN_SHORT_TABLE
#define TABLE_SIZE ((uint32_t)(FV_PROVIDER_MIN_SIZE - sizeof(void *)))
#else
#define TABLE_SIZE ((uint32_t)sizeof(fv_provider))
#endif

static const fv_host *test_host;

struct fv_instance {
	char info[1024];
	char label[128];
};

struct fv_pkey {
	unsigned char der[160];
	size_t der_len;
	char info[1024];
};

static const fv_config_field test_fields[] = {
	{ "label", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE, "key label" },
	{ "count", FV_FIELD_INT, 0, "a number" },
	{ "flag", FV_FIELD_BOOL, 0, "a switch" },
	{ "list", FV_FIELD_STRING_ARRAY, 0, "some strings" },
	{ "secret", FV_FIELD_SECRET, 0, "a secret reference" },
	{ "file", FV_FIELD_STRING, FV_FIELD_PATH, "a file" },
	{ NULL, 0, 0, NULL }
};

static int test_instance_open(const fv_config *cfg, fv_instance **out)
{
	struct fv_instance *inst = calloc(1, sizeof(*inst));
	const char *label = NULL, *file = NULL, *secret_ref = NULL, *item;
	int64_t count = -1;
	int flag = -1, rc;
	size_t n = 0, i, used;
	char *secret = NULL;
	size_t secret_len = 0;

	if (!inst)
		return test_host->error(FV_ERR_NOMEM, "out of memory");
	if (test_host->config_string(cfg, "label", &label) != FV_OK) {
		free(inst);
		return test_host->error(FV_ERR_CONFIG, "%s.label: missing",
		                        test_host->config_location(cfg));
	}
	snprintf(inst->label, sizeof(inst->label), "%s", label);
	test_host->config_int(cfg, "count", &count);
	test_host->config_bool(cfg, "flag", &flag);
	test_host->config_string(cfg, "file", &file);
	if (test_host->config_string(cfg, "secret", &secret_ref) == FV_OK) {
		rc = test_host->secret_resolve(secret_ref, "test secret", &secret, &secret_len);
		if (rc != FV_OK) {
			free(inst);
			return rc;
		}
		test_host->secret_free(secret, secret_len);
	}
	used = (size_t)snprintf(inst->info, sizeof(inst->info),
		"location=%s label=%s count=%lld flag=%d file=%s secret_len=%zu list=",
		test_host->config_location(cfg), label, (long long)count, flag,
		file ? file : "-", secret_ref ? secret_len : (size_t)0);
	if (test_host->config_array_size(cfg, "list", &n) == FV_OK)
		for (i = 0; i < n && used < sizeof(inst->info); i++)
			if (test_host->config_string_at(cfg, "list", i, &item) == FV_OK)
				used += (size_t)snprintf(inst->info + used, sizeof(inst->info) - used,
				                         "%s%s", i ? "," : "", item);
	*out = inst;
	return FV_OK;
}

static void test_instance_close(fv_instance *inst)
{
	free(inst);
}

static int test_key_open(fv_instance *inst, fv_pkey **out)
{
	struct fv_pkey *key;

	if (strcmp(inst->label, "absent") == 0)
		return test_host->error(FV_ERR_NOT_FOUND, "no key labelled 'absent'");
	key = calloc(1, sizeof(*key));
	if (!key)
		return test_host->error(FV_ERR_NOMEM, "out of memory");
	key->der_len = (size_t)snprintf((char *)key->der, sizeof(key->der), "TESTDER:%s",
	                                inst->label);
	memcpy(key->info, inst->info, sizeof(key->info));
	*out = key;
	return FV_OK;
}

static void test_key_close(fv_pkey *key)
{
	free(key);
}

static int test_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (der && *len < key->der_len) {
		*len = key->der_len;
		return FV_ERR_BUFFER_TOO_SMALL;
	}
	if (der)
		memcpy(der, key->der, key->der_len);
	*len = key->der_len;
	return FV_OK;
}

static int test_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                            unsigned char *out, size_t *out_len)
{
	(void)key, (void)in, (void)in_len, (void)out, (void)out_len;
	return test_host->error(FV_ERR_UNSUPPORTED, "the test plugin does not decrypt");
}

static int test_key_info(fv_pkey *key, char *buf, size_t len)
{
	snprintf(buf, len, "%s", key->info);
	return FV_OK;
}

static const fv_provider test_provider = {
	.abi_version = TABLE_ABI_VERSION,
	.struct_size = TABLE_SIZE,
	.name = TEST_PLUGIN_NAME,
	.version = "9.9.9",
	.capabilities = FV_CAP_INFO,
	.config_fields = test_fields,
	.instance_open = test_instance_open,
	.instance_close = test_instance_close,
	.key_open = test_key_open,
	.key_close = test_key_close,
	.key_public_der = test_key_public_der,
	.key_decrypt = test_key_decrypt,
	.key_info = test_key_info,
};

static int test_entry(uint32_t host_abi_version, const fv_host *host,
                      const fv_provider **out)
{
	if (FV_PROVIDER_ABI_MAJOR_OF(host_abi_version) != FV_PROVIDER_ABI_MAJOR ||
	    host->struct_size < FV_HOST_MIN_SIZE)
		return FV_ERR_PLUGIN;
	test_host = host;
#ifdef TEST_PLUGIN_DECLINE
	(void)out;
	(void)test_provider;
	return host->error(FV_ERR_PLUGIN, "testdecline needs a newer host (on purpose)");
#else
	*out = &test_provider;
	return FV_OK;
#endif
}

FV_PROVIDER_DEFINE_ENTRY(test_entry)
