/*
 * Print what the public API says about a configured key (fv_key_details,
 * filled from the plugin's key_describe), one "name: value" per line, and
 * whether the key passes require_non_extractable. For the cloud tests.
 *     describe_key CONFIG KEY
 */
#include <stdio.h>

#include <flowvault/flowvault.h>

int main(int argc, char **argv)
{
	const fv_key_details *d;
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: describe_key CONFIG KEY\n");
		return 2;
	}
	if ((rc = fv_context_open(&ctx, argv[1], 0)) != FV_OK ||
	    (rc = fv_key_open(&key, ctx, argv[2])) != FV_OK ||
	    (rc = fv_key_details_get(&d, key)) != FV_OK) {
		fprintf(stderr, "describe_key: %s\n", fv_error_last()->message);
		fv_key_free(key);
		fv_context_free(ctx);
		return 1;
	}
	printf("oaep: %s\nbackend: %s\nlocation: %s\nremote_id: %s\nbits: %u\n",
	       d->oaep ? d->oaep : "(null)", d->backend ? d->backend : "(null)",
	       d->location ? d->location : "(null)", d->remote_id ? d->remote_id : "(null)",
	       d->bits);
	printf("properties: 0x%x known: 0x%x warnings: %zu\n", (unsigned)d->properties,
	       (unsigned)d->properties_known, d->warning_count);
	printf("policy: %s\n", fv_key_policy_check(key) == FV_OK ? "ok" : "refused");
	fv_key_free(key);
	fv_context_free(ctx);
	return 0;
}
