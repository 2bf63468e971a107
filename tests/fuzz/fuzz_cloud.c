/*
 * Parsers of outside input in the cloud plugins: the AWS shared credentials
 * and config files (profile.c), and the JSON and base64 helpers every cloud
 * plugin reads service answers with (plugins/common/util.c).
 * The first byte picks the parser; the rest is the input.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aws_kms.h"
#include "cloud.h"

const fv_host *aws_host;

static int fuzz_error(int status, const char *fmt, ...)
{
	(void)fmt;
	return status;
}

static void fuzz_log(int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

static const fv_host fuzz_host = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_host),
	.log = fuzz_log,
	.error = fuzz_error,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data + 1;
	size_t len = size ? size - 1 : 0;
	struct aws_profile prof;
	json_object *doc = NULL;
	unsigned char *out = NULL;
	size_t out_len = 0;

	if (size == 0)
		return 0;
	aws_host = &fuzz_host;
	switch (data[0] % 4) {
	case 0:
	case 1:
		memset(&prof, 0, sizeof(prof));
		aws_profile_parse(&fuzz_host, text, len, data[0] % 8 < 4 ? "default" : "flows",
		                  data[0] % 2, &prof);
		aws_profile_clear(&fuzz_host, &prof);
		break;
	case 2:
		if (cloud_json_parse(text, len, &doc) == FV_OK) {
			size_t n = 0;

			(void)cloud_json_string(doc, "Plaintext", &n);
			cloud_json_free_wiped(doc);
		}
		break;
	default:
		if (cloud_base64_decode(text, len, &out, &out_len) == FV_OK)
			cloud_buf_free(out, out_len);
		if (cloud_base64url_decode(text, len, &out, &out_len) == FV_OK)
			cloud_buf_free(out, out_len);
		break;
	}
	return 0;
}
