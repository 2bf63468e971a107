/*
 * sdk_decrypt CONFIG KEY CIPHERTEXT: decrypt one RSA-OAEP-SHA256 block with
 * a configured key through the application API, plain text on stdout.
 * Built by tests/sdk/install.sh against an INSTALLED libflowvault, to prove
 * that the installed headers and library are enough for an application.
 */
#include <stdio.h>
#include <stdlib.h>

#include <flowvault/flowvault.h>

static int fail(const char *what)
{
	const fv_error *err = fv_error_last();

	fprintf(stderr, "sdk_decrypt: %s: %s (%s)\n", what, err->message,
	        fv_status_name(err->status));
	return 1;
}

int main(int argc, char **argv)
{
	unsigned char in[1024], out[1024];
	size_t in_len, out_len = sizeof(out);
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	FILE *f;
	int rc = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: sdk_decrypt CONFIG KEY CIPHERTEXT\n");
		return 2;
	}
	f = fopen(argv[3], "rb");
	if (!f) {
		perror(argv[3]);
		return 2;
	}
	in_len = fread(in, 1, sizeof(in), f);
	fclose(f);
	if (fv_context_open(&ctx, argv[1], 0) != FV_OK)
		return fail("open configuration");
	if (fv_key_open(&key, ctx, argv[2]) != FV_OK)
		rc = fail("open key");
	else if (fv_key_decrypt(out, &out_len, key, in, in_len) != FV_OK)
		rc = fail("decrypt");
	else
		rc = fwrite(out, 1, out_len, stdout) == out_len ? 0 : 1;
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}
