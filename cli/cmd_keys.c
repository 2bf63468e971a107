/* flowvault keys: every configured key, whether it opens, and its fingerprint. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"

static json_object *targets_json(fv_context *ctx, const char *name)
{
	json_object *phones = json_object_new_array();
	size_t i, n = fv_context_key_phone_count(ctx, name);

	for (i = 0; i < n; i++)
		json_object_array_add(phones,
		                      json_object_new_string(fv_context_key_phone(ctx, name, i)));
	return phones;
}

static int run_keys(struct cli *cli, int argc, char **argv)
{
	json_object *array = NULL;
	fv_context *ctx;
	size_t i, n;
	int rc, worst = EXIT_OK;

	if (argc > 1)
		return cli_usage(cli, "unexpected argument '%s'", argv[1]);
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		return rc;
	n = fv_context_key_count(ctx);
	if (cli->json)
		array = json_object_new_array();
	else if (n)
		printf("%-16s %-8s %-10s %s\n", "NAME", "PROVIDER", "STATE", "FINGERPRINT (SHA-256 of SPKI)");
	for (i = 0; i < n; i++) {
		const char *name = fv_context_key_name(ctx, i);
		char fp[FV_FINGERPRINT_HEX_SIZE] = "", info[256] = "";
		fv_key *key = NULL;
		const char *why = NULL;
		char why_buf[1024];
		size_t p, phones = fv_context_key_phone_count(ctx, name);
		const char *waba = fv_context_key_waba(ctx, name);
		int status = fv_key_open(&key, ctx, name);

		if (status == FV_OK)
			status = fv_key_fingerprint(fp, key);
		if (status == FV_OK)
			status = fv_key_info(info, sizeof(info), key);
		if (status != FV_OK) {
			snprintf(why_buf, sizeof(why_buf), "%s", fv_error_last()->message);
			why = why_buf;
			if (worst == EXIT_OK)
				worst = cli_exit_for_status(status);
		}
		if (array) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "name", json_object_new_string(name));
			json_object_object_add(o, "provider",
				json_object_new_string(fv_context_key_provider(ctx, name)));
			json_object_object_add(o, "reachable", json_object_new_boolean(!why));
			json_object_object_add(o, "fingerprint_sha256",
			                       fp[0] ? json_object_new_string(fp) : NULL);
			json_object_object_add(o, "info", info[0] ? json_object_new_string(info) : NULL);
			json_object_object_add(o, "error", why ? json_object_new_string(why) : NULL);
			json_object_object_add(o, "phone_numbers", targets_json(ctx, name));
			json_object_object_add(o, "waba_id", waba ? json_object_new_string(waba) : NULL);
			json_object_array_add(array, o);
		} else {
			printf("%-16s %-8s %-10s %s\n", name, fv_context_key_provider(ctx, name),
			       why ? "unreachable" : "ok", why ? "-" : fp);
			if (info[0])
				printf("%-16s %s\n", "", info);
			if (phones || waba) {
				printf("%-16s for:", "");
				for (p = 0; p < phones; p++)
					printf(" %s", fv_context_key_phone(ctx, name, p));
				if (waba)
					printf("%s WABA %s", phones ? "," : "", waba);
				printf("\n");
			}
			if (why)
				printf("%-16s %s\n", "", why);
		}
		fv_key_free(key);
	}
	if (array) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "config",
		                       json_object_new_string(fv_context_config_path(ctx)));
		json_object_object_add(doc, "keys", array);
		cli_print_json(doc);
	} else if (n == 0 && !cli->quiet) {
		fprintf(stderr, "no keys configured in %s\n", fv_context_config_path(ctx));
	}
	fv_context_free(ctx);
	return worst;
}

const struct cli_command cli_cmd_keys = {
	.name = "keys",
	.synopsis = "keys",
	.summary = "list configured keys: provider, reachable or why not, fingerprint",
	.help =
		"Opens every key in the configuration through its plugin and prints its\n"
		"provider, whether it could be opened (and if not, why), the SHA-256\n"
		"fingerprint of its public key (SPKI DER), what the plugin says about it\n"
		"(for example where OAEP runs) and the phone numbers / WABA it is meant for.\n"
		"Exits 0 only when every key opens; otherwise with the first failure's code.\n",
	.run = run_keys,
};
