/*
 * serve.media's finder: a decrypted Flows request (outside input) goes
 * through fv__media_find and fv__media_take. It must never crash, and
 * afterwards no encryption_metadata in the request may hold anything but
 * null or a failed status: no key material can reach the upstream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_taken(json_object *obj)
{
	json_object *meta, *status;

	if (!json_object_object_get_ex(obj, "encryption_metadata", &meta))
		__builtin_trap();
	if (meta == NULL)
		return;
	/* Only an object over the limit gets a status right away. */
	if (!json_object_is_type(meta, json_type_object) ||
	    !json_object_object_get_ex(meta, "status", &status) ||
	    strcmp(json_object_get_string(status), "failed") != 0 ||
	    json_object_object_length(meta) != 2)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *root, *found[MEDIA_MAX_OBJECTS], *again[MEDIA_MAX_OBJECTS * 4];
	size_t n, i;

	root = fv__flow_json_parse((const char *)data, size);
	if (!root)
		return 0;
	n = fv__media_find(root, found, MEDIA_MAX_OBJECTS, NULL);
	for (i = 0; i < n; i++) {
		fv_media *m = NULL;

		if (fv__media_take(&m, found[i]) == FV_OK)
			fv_media_free(m);
	}
	/* Every media object, handled or over the limit, is keyless now. */
	n = fv__media_find(root, again, sizeof(again) / sizeof(again[0]), NULL);
	for (i = 0; i < n; i++)
		check_taken(again[i]);
	fv__flow_json_wipe_put(root);
	return 0;
}
