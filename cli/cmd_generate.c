/* flowvault generate KEY: create the configured key inside its backend. */
#include <stdio.h>

#include <json-c/json.h>

#include "cli.h"

static int run_generate(struct cli *cli, int argc, char **argv)
{
	char fp[FV_FINGERPRINT_HEX_SIZE];
	fv_context *ctx;
	fv_key *key = NULL;
	const char *name;
	char *pem = NULL;
	int rc;

	if (argc != 2 || argv[1][0] == '-')
		return cli_usage(cli, argc < 2 ? "missing KEY" : "expected one KEY");
	name = argv[1];
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		return rc;
	if (fv_key_generate(&key, ctx, name) != FV_OK ||
	    fv_key_fingerprint(fp, key) != FV_OK ||
	    fv_key_public_pem(&pem, key) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}
	if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "key", json_object_new_string(name));
		json_object_object_add(doc, "provider", json_object_new_string(fv_key_provider(key)));
		json_object_object_add(doc, "pem", json_object_new_string(pem));
		json_object_object_add(doc, "fingerprint_sha256", json_object_new_string(fp));
		cli_print_json(doc);
	} else {
		printf("generated key '%s' (%s)\nfingerprint (SHA-256 of SPKI): %s\n", name,
		       fv_key_provider(key), fp);
	}
out:
	fv_free(pem);
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}

const struct cli_command cli_cmd_generate = {
	.name = "generate",
	.synopsis = "generate KEY",
	.summary = "generate an RSA-2048 key pair inside KEY's backend",
	.help =
		"Generates the key that configuration entry KEY names, inside its backend:\n"
		"an encrypted PKCS#8 file (pem), a non-extractable token object (pkcs11), a\n"
		"TPM-bound key (tpm2). Refuses when a key is already there, and leaves\n"
		"nothing behind on failure. Prints the new key's fingerprint.\n",
	.run = run_generate,
};
