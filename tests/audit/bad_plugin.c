/*
 * Misbehaving provider plugins for tests/audit/plugins.sh, one build each:
 *   BAD_PLUGIN_CRASH        the entry point dies of SIGSEGV
 *   BAD_PLUGIN_HANG         the entry point never returns
 *   BAD_PLUGIN_SMALL_TABLE  the table claims a struct_size below ABI 1.0's
 *   BAD_PLUGIN_FUTURE_ABI   the table is from the next major ABI
 * The host must refuse each with a message and keep running.
 */
#include <signal.h>
#include <stddef.h>
#include <unistd.h>

#include <flowvault/provider.h>

#ifndef BAD_PLUGIN_NAME
#error "BAD_PLUGIN_NAME must be defined"
#endif

#ifdef BAD_PLUGIN_FUTURE_ABI
#define TABLE_ABI ((uint32_t)((FV_PROVIDER_ABI_MAJOR + 1) << 16))
#else
#define TABLE_ABI FV_PROVIDER_ABI_VERSION
#endif
#ifdef BAD_PLUGIN_SMALL_TABLE
/* Only abi_version and struct_size: what a truncated or foreign table has. */
#define TABLE_SIZE ((uint32_t)(2 * sizeof(uint32_t)))
#else
#define TABLE_SIZE ((uint32_t)sizeof(fv_provider))
#endif

static int bad_instance_open(const fv_config *cfg, fv_instance **out)
{
	(void)cfg;
	*out = NULL;
	return FV_ERR_UNSUPPORTED;
}

static void bad_instance_close(fv_instance *inst)
{
	(void)inst;
}

static int bad_key_open(fv_instance *inst, fv_pkey **out)
{
	(void)inst;
	*out = NULL;
	return FV_ERR_UNSUPPORTED;
}

static void bad_key_close(fv_pkey *key)
{
	(void)key;
}

static int bad_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	(void)key;
	(void)der;
	(void)len;
	return FV_ERR_UNSUPPORTED;
}

static int bad_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                       unsigned char *out, size_t *out_len)
{
	(void)key;
	(void)in;
	(void)in_len;
	(void)out;
	(void)out_len;
	return FV_ERR_UNSUPPORTED;
}

static const fv_config_field bad_fields[] = { { NULL, 0, 0, NULL } };

static const fv_provider bad_table = {
	.abi_version = TABLE_ABI,
	.struct_size = TABLE_SIZE,
	.name = BAD_PLUGIN_NAME,
	.version = "0.0.1",
	.capabilities = 0,
	.config_fields = bad_fields,
	.instance_open = bad_instance_open,
	.instance_close = bad_instance_close,
	.key_open = bad_key_open,
	.key_close = bad_key_close,
	.key_public_der = bad_public_der,
	.key_decrypt = bad_decrypt,
};

static int bad_entry(uint32_t host_abi_version, const fv_host *host,
                     const fv_provider **out)
{
	(void)host_abi_version;
	(void)host;
#ifdef BAD_PLUGIN_CRASH
	/* The default action, so that a sanitizer's handler cannot turn the
	 * crash into an ordinary exit. */
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
#endif
#ifdef BAD_PLUGIN_HANG
	for (;;)
		pause();
#endif
	*out = &bad_table;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(bad_entry)
