/*
 * What another node's admin listener answers (core/nodes.c), without
 * sockets: the first byte picks what to parse.
 *   0: a /healthz body: when accepted, every name and fingerprint has its
 *      checked form, and serve's own rendering of the result parses back
 *      to the same result
 *   1: a serve.nodes URL (what is accepted is http(s)://HOST[:PORT] only)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_health(const char *text, size_t len)
{
	struct node_health h, again;
	char fps[SERVE_MAX_KEYS][FV_FINGERPRINT_HEX_SIZE];
	const char *names[SERVE_MAX_KEYS];
	uint32_t ok_mask = 0;
	char *body;
	size_t i;
	int status;

	if (fv__node_health_parse(&h, text, len) != FV_OK)
		return;
	if (h.key_count > SERVE_MAX_KEYS)
		__builtin_trap();
	for (i = 0; i < h.key_count; i++) {
		size_t n = strnlen(h.keys[i].name, sizeof(h.keys[i].name));
		size_t f = strnlen(h.keys[i].fingerprint, sizeof(h.keys[i].fingerprint));

		if (n == 0 || n > NODE_KEY_NAME_MAX || (f != 0 && f != FV_FINGERPRINT_HEX_SIZE - 1) ||
		    strspn(h.keys[i].name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                           "0123456789._-") != n ||
		    strspn(h.keys[i].fingerprint, "0123456789abcdef") != f)
			__builtin_trap();
		names[i] = h.keys[i].name;
		memcpy(fps[i], h.keys[i].fingerprint, FV_FINGERPRINT_HEX_SIZE);
		if (h.keys[i].ok)
			ok_mask |= 1u << i;
	}
	body = fv__health_body(&status, names, h.key_count, ok_mask, fps, h.generation);
	if (!body)
		return;
	if (fv__node_health_parse(&again, body, strlen(body)) != FV_OK ||
	    again.key_count != h.key_count || again.generation != h.generation)
		__builtin_trap();
	for (i = 0; i < h.key_count; i++)
		if (strcmp(again.keys[i].name, h.keys[i].name) != 0 ||
		    strcmp(again.keys[i].fingerprint, h.keys[i].fingerprint) != 0 ||
		    again.keys[i].ok != h.keys[i].ok)
			__builtin_trap();
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (size < 1)
		return 0;
	fv_log_set(NULL, NULL, -1);
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	if (data[0] % 2 == 0) {
		check_health(text, size - 1);
	} else if (fv__node_url_check(text, "fuzz.nodes[0]") == FV_OK &&
	           strncmp(text, "https://", 8) != 0 && strncmp(text, "http://", 7) != 0) {
		__builtin_trap();
	}
	fv_error_clear();
	free(text);
	return 0;
}
