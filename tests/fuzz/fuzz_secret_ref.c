/* Secret references: classification must never crash nor echo the value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *ref = malloc(size + 1);

	if (!ref)
		return 0;
	memcpy(ref, data, size);
	ref[size] = '\0';
	if (fv__secret_check_field(ref, "fuzz.secret") != FV_OK) {
		/* A refused value may be the secret itself: the message must be the
		 * same as for any other value of its kind, i.e. not show the value. */
		char message[1024];
		const char *canary = strncmp(ref, "env:", 4) == 0   ? "env:"
		                     : strncmp(ref, "file:", 5) == 0 ? "file:"
		                                                     : "literal";

		snprintf(message, sizeof(message), "%s", fv_error_last()->message);
		if (fv__secret_check_field(canary, "fuzz.secret") == FV_OK ||
		    strcmp(message, fv_error_last()->message) != 0)
			__builtin_trap();
	} else if (fv_secret_check_reference(ref) != FV_OK) {
		__builtin_trap();
	}
	free(ref);
	return 0;
}
