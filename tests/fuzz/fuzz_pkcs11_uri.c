/*
 * The pkcs11 plugin's "uri" field: RFC 7512 parsing (through p11-kit) and
 * what the plugin takes from it. plugins/pkcs11/uri.c is compiled into this
 * target with the core's host services standing in for the loader's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../../plugins/pkcs11/plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

const fv_host *p11_host;
_Thread_local CK_RV p11_last_rv;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p11_target target;
	char *text;

	if (!p11_host) {
		p11_host = fv__host_services();
		fv_log_set(NULL, NULL, -1);
	}
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	fv_error_clear();
	if (p11_target_parse(&target, text, "keys.k") == FV_OK) {
		if (!p11_target_describe(&target))
			__builtin_trap();
		p11_target_clear(&target);
	} else {
		if (!fv_error_last()->message[0])
			__builtin_trap();
		/* A URI with a PIN in it is refused with the same message whatever
		 * the URI: nothing of it, the PIN above all, is repeated. */
		if (strcasestr(text, "pin-value")) {
			char message[1024];

			snprintf(message, sizeof(message), "%s", fv_error_last()->message);
			if (p11_target_parse(&target, "pkcs11:object=o?pin-value=canary",
			                     "keys.k") == FV_OK ||
			    strcmp(message, fv_error_last()->message) != 0)
				__builtin_trap();
		}
	}
	free(text);
	return 0;
}
