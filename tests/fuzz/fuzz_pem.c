/*
 * PEM key loading through the real pem plugin: every input is written to a
 * key file and opened the way `flowvault pubkey` would open it.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fv_context *ctx;
static char key_path[256];

static void setup(void)
{
	char dir[] = "/tmp/fvfuzz-pem.XXXXXX", config[512];

	if (!mkdtemp(dir))
		abort();
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	/* The seed corpus's encrypted keys use this passphrase. */
	setenv("FV_FUZZ_PASSPHRASE", "fuzz", 1);
	fv_log_set(NULL, NULL, -1);
	snprintf(config, sizeof(config),
	         "{\"keys\":{\"k\":{\"provider\":\"pem\",\"path\":\"%s\","
	         "\"passphrase\":\"env:FV_FUZZ_PASSPHRASE\"}}}", key_path);
	if (fv__context_open_text(&ctx, config, strlen(config), "fuzz.json") != FV_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *der = NULL;
	size_t der_len = 0;
	fv_key *key = NULL;
	int fd;

	if (!ctx)
		setup();
	unlink(key_path);
	fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (fv_key_open(&key, ctx, "k") == FV_OK) {
		if (fv_key_public_der(&der, &der_len, key) != FV_OK || der_len == 0)
			__builtin_trap();
		fv_free(der);
		fv_key_free(key);
	} else if (!fv_error_last()->message[0]) {
		__builtin_trap();
	}
	return 0;
}
