/*
 * Flows media verifier: a media object's JSON, or a downloaded file fed in
 * pieces of varying size, must never crash; a file the fixed keys did not
 * make must never be accepted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flowvault/flowvault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keys of any value: no fuzz input is a file made with them and a valid
 * MAC, so fv_media_final must refuse every one. */
static const char object[] =
	"{\"media_id\":\"fuzz\",\"cdn_url\":\"https://mmg.whatsapp.net/x\",\"file_name\":\"f\","
	"\"encryption_metadata\":{"
	"\"encryption_key\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","
	"\"hmac_key\":\"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\","
	"\"iv\":\"QEFCQ0RFRkdISUpLTE1OTw==\","
	"\"encrypted_hash\":\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\","
	"\"plaintext_hash\":\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"}}";

static int count_sink(void *arg, const void *clear, size_t len)
{
	(void)clear;
	*(size_t *)arg += len;
	return FV_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_media *media = NULL;
	unsigned char digest[32];
	uint64_t clear_size;
	size_t seen = 0, step;

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		/* The rest is a media object. */
		if (fv_media_open(&media, (const char *)data + 1, size - 1) == FV_OK)
			fv_media_free(media);
		return 0;
	}
	if (fv_media_open(&media, object, sizeof(object) - 1) != FV_OK)
		__builtin_trap();
	step = (size_t)(data[0] >> 1) + 1;
	data++;
	size--;
	while (size > 0) {
		size_t n = size < step ? size : step;

		if (fv_media_update(media, data, n, count_sink, &seen) != FV_OK)
			__builtin_trap();
		data += n;
		size -= n;
	}
	if (fv_media_final(media, count_sink, &seen, digest, &clear_size) == FV_OK)
		__builtin_trap(); /* accepted a file nobody made with these keys */
	fv_media_free(media);
	return 0;
}
