/* The configuration parser: any bytes must give a context or a clean error. */
#include <stdint.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_context *ctx = NULL;
	size_t i, n;

	if (fv__context_open_text(&ctx, (const char *)data, size, "fuzz.json") != FV_OK) {
		/* A failure always carries a message. */
		if (!fv_error_last()->message[0])
			__builtin_trap();
		return 0;
	}
	n = fv_context_key_count(ctx);
	for (i = 0; i < n; i++) {
		const char *name = fv_context_key_name(ctx, i);
		size_t p, phones = fv_context_key_phone_count(ctx, name);

		if (!fv_context_key_provider(ctx, name))
			__builtin_trap();
		for (p = 0; p < phones; p++)
			if (!fv_context_key_phone(ctx, name, p))
				__builtin_trap();
		(void)fv_context_key_waba(ctx, name);
	}
	fv_context_free(ctx);
	return 0;
}
