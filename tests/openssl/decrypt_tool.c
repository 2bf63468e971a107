/*
 * fv-openssl-decrypt CONFIG KEY CIPHERTEXT_FILE: decrypt one RSA-OAEP-SHA256
 * block with a configured key through the public API and write the plain
 * text to stdout. On failure, print "<status name>: <message>" to stderr and
 * exit with flowvault's documented exit code for that status, so the shell
 * tests can check both.
 *
 * With FV_TEST_CHECK_DEFAULT_CTX=NAME it also checks, once the key is open,
 * that provider NAME is not loaded in OpenSSL's default library context
 * (exit 9 if it is): plugins must keep their providers to themselves.
 */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/provider.h>

#include <flowvault/flowvault.h>

static int exit_code(int status)
{
	switch (status) {
	case FV_OK:
		return 0;
	case FV_ERR_USAGE:
	case FV_ERR_CONFIG:
	case FV_ERR_SECRET:
	case FV_ERR_PLUGIN:
		return 2;
	case FV_ERR_NOT_FOUND:
	case FV_ERR_EXISTS:
	case FV_ERR_AUTH:
	case FV_ERR_BACKEND:
	case FV_ERR_UNSUPPORTED:
	case FV_ERR_DECRYPT:
	case FV_ERR_PERMISSION:
		return 3;
	default:
		return 1;
	}
}

static int failed(int status)
{
	const fv_error *e = fv_error_last();

	fprintf(stderr, "%s: %s\n", fv_status_name(status), e->message);
	return exit_code(status);
}

int main(int argc, char **argv)
{
	unsigned char in[1024], out[1024];
	size_t in_len, out_len = sizeof(out);
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	FILE *f;
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: %s CONFIG KEY CIPHERTEXT_FILE\n", argv[0]);
		return 2;
	}
	f = fopen(argv[3], "rb");
	if (!f) {
		perror(argv[3]);
		return 1;
	}
	in_len = fread(in, 1, sizeof(in), f);
	fclose(f);
	if ((rc = fv_context_open(&ctx, argv[1], 0)) != FV_OK)
		return failed(rc);
	if ((rc = fv_key_open(&key, ctx, argv[2])) != FV_OK) {
		rc = failed(rc);
		fv_context_free(ctx);
		return rc;
	}
	if (getenv("FV_TEST_CHECK_DEFAULT_CTX")) {
		const char *name = getenv("FV_TEST_CHECK_DEFAULT_CTX");

		if (OSSL_PROVIDER_available(NULL, name)) {
			fprintf(stderr, "default context: %s is loaded\n", name);
			fv_key_free(key);
			fv_context_free(ctx);
			return 9;
		}
		fprintf(stderr, "default context: %s not loaded\n", name);
	}
	rc = fv_key_decrypt(out, &out_len, key, in, in_len);
	if (rc == FV_OK)
		fwrite(out, 1, out_len, stdout);
	else
		rc = failed(rc);
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}
