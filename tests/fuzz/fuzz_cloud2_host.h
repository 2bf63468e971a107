/*
 * A host table for fuzzing a cloud plugin's parsers in-process: messages and
 * logs are dropped, secrets come from memory. Included by fuzz_gcp_kms.c and
 * fuzz_azure_keyvault.c after the plugin's sources.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_log(int level, const char *fmt, ...) FV_PRINTF(2, 3);
static void fuzz_log(int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

static int fuzz_error(int status, const char *fmt, ...) FV_PRINTF(2, 3);
static int fuzz_error(int status, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	/* Format anyway: a bad format argument must show up under ASan. */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return status;
}

static void *fuzz_secure_alloc(size_t len)
{
	return calloc(1, len);
}

static void fuzz_secure_free(void *p, size_t len)
{
	if (p)
		memset(p, 0, len);
	free(p);
}

static const fv_host fuzz_host = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_host),
	.log = fuzz_log,
	.error = fuzz_error,
	.secure_alloc = fuzz_secure_alloc,
	.secure_free = fuzz_secure_free,
};

/* A response of `len` bytes of `data`, as cloud_http_perform returns it. */
static void fuzz_response(struct cloud_response *resp, long status, const uint8_t *data,
                          size_t len)
{
	memset(resp, 0, sizeof(*resp));
	resp->status = status;
	resp->body = malloc(len + 1);
	if (!resp->body)
		abort();
	memcpy(resp->body, data, len);
	resp->body[len] = '\0';
	resp->len = len;
}
