/* flowvault keys: every configured key, whether it may be used, and its facts. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "keyreport.h"
#include "table.h"

static json_object *targets_json(fv_context *ctx, const char *name)
{
	json_object *phones = json_object_new_array();
	size_t i, n = fv_context_key_phone_count(ctx, name);

	for (i = 0; i < n; i++)
		json_object_array_add(phones,
		                      json_object_new_string(fv_context_key_phone(ctx, name, i)));
	return phones;
}

static void key_json(json_object *array, fv_context *ctx, const struct cli_key_report *r)
{
	json_object *o = json_object_new_object();
	const char *waba = fv_context_key_waba(ctx, r->name);

	json_object_object_add(o, "name", json_object_new_string(r->name));
	json_object_object_add(o, "provider",
	                       json_object_new_string(fv_context_key_provider(ctx, r->name)));
	json_object_object_add(o, "reachable", json_object_new_boolean(r->state != CLI_KEY_UNREACHABLE));
	cli_key_report_json(o, r);
	json_object_object_add(o, "phone_numbers", targets_json(ctx, r->name));
	json_object_object_add(o, "waba_id", waba ? json_object_new_string(waba) : NULL);
	json_object_array_add(array, o);
}

static void key_rows(cli_table *t, fv_context *ctx, const struct cli_key_report *r)
{
	const char *cells[4];
	const char *waba = fv_context_key_waba(ctx, r->name);
	size_t p, phones = fv_context_key_phone_count(ctx, r->name), i;
	char line[1024];

	cells[0] = r->name;
	cells[1] = fv_context_key_provider(ctx, r->name);
	cells[2] = cli_key_state_name(r->state);
	cells[3] = r->fingerprint[0] ? r->fingerprint : "-";
	cli_table_row(t, cells);
	cli_key_summary(line, sizeof(line), r->details);
	if (line[0])
		cli_table_note(t, "%s", line);
	if (r->details && r->details->info[0])
		cli_table_note(t, "%s", r->details->info);
	if (phones || waba) {
		size_t used = (size_t)snprintf(line, sizeof(line), "for:");

		for (p = 0; p < phones && used < sizeof(line); p++)
			used += (size_t)snprintf(line + used, sizeof(line) - used, " %s",
			                         fv_context_key_phone(ctx, r->name, p));
		if (waba && used < sizeof(line))
			snprintf(line + used, sizeof(line) - used, "%s WABA %s", phones ? "," : "", waba);
		cli_table_note(t, "%s", line);
	}
	for (i = 0; r->details && i < r->details->warning_count; i++)
		cli_table_note(t, "warning (%s%s): %s", r->details->warnings[i].property,
		               r->details->warnings[i].refused && r->details->require_non_extractable
		                       ? ", refused" : "",
		               r->details->warnings[i].message);
	if (r->state != CLI_KEY_OK)
		cli_table_note(t, "%s%s", r->state == CLI_KEY_REFUSED ? "refused: " : "", r->message);
}

/* keys --names: the configured names, opening nothing (for completion). */
static int print_names(const struct cli *cli, fv_context *ctx)
{
	size_t i, n = fv_context_key_count(ctx);

	if (cli->json) {
		json_object *a = json_object_new_array(), *doc = json_object_new_object();

		for (i = 0; i < n; i++)
			json_object_array_add(a, json_object_new_string(fv_context_key_name(ctx, i)));
		json_object_object_add(doc, "config",
		                       json_object_new_string(fv_context_config_path(ctx)));
		json_object_object_add(doc, "names", a);
		cli_print_json(doc);
	} else {
		for (i = 0; i < n; i++)
			printf("%s\n", fv_context_key_name(ctx, i));
	}
	fv_context_free(ctx);
	return EXIT_OK;
}

static int run_keys(struct cli *cli, int argc, char **argv)
{
	static const char *const header[] = { "NAME", "PROVIDER", "STATE",
	                                      "FINGERPRINT (SHA-256 of SPKI)" };
	json_object *array = NULL;
	cli_table *table = NULL;
	fv_context *ctx;
	size_t i, n;
	int rc, worst = EXIT_OK;

	if (argc > 2 || (argc == 2 && strcmp(argv[1], "--names") != 0))
		return cli_usage(cli, "unexpected argument '%s'", argv[argc - 1]);
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		return rc;
	n = fv_context_key_count(ctx);
	if (argc == 2)
		return print_names(cli, ctx);
	if (cli->json) {
		array = json_object_new_array();
	} else if (n) {
		table = cli_table_new(4);
		cli_table_row(table, header);
	}
	for (i = 0; i < n; i++) {
		struct cli_key_report r;

		cli_key_report_open(&r, ctx, fv_context_key_name(ctx, i));
		if (r.state != CLI_KEY_OK && worst == EXIT_OK)
			worst = cli_exit_for_status(r.status);
		if (array)
			key_json(array, ctx, &r);
		else
			key_rows(table, ctx, &r);
		cli_key_report_clear(&r);
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
	cli_table_print(table, stdout);
	cli_table_free(table);
	fv_context_free(ctx);
	return worst;
}

const struct cli_command cli_cmd_keys = {
	.name = "keys",
	.synopsis = "keys [--names]",
	.summary = "list configured keys: provider, state, fingerprint, warnings",
	.help =
		"Opens every key in the configuration through its plugin and prints its\n"
		"provider, its state, the SHA-256 fingerprint of its public key (SPKI DER),\n"
		"then under it: where the key is (backend, location, size, where OAEP is\n"
		"checked), what the plugin says about it, the phone numbers / WABA it is\n"
		"meant for, and each property that weakens it (warning: extractable, can\n"
		"sign, ...). States:\n"
		"  ok           opens and may be used\n"
		"  refused      opens, but keys.NAME.require_non_extractable (default true)\n"
		"               refuses one of its properties; the reason follows\n"
		"  unreachable  does not open; the reason follows\n"
		"With --json: {\"config\", \"keys\": [{\"name\", \"provider\", \"state\",\n"
		"\"reachable\", \"fingerprint_sha256\", \"oaep\", \"backend\", \"location\",\n"
		"\"remote_id\", \"bits\", \"properties\", \"warnings\": [{\"property\", \"message\",\n"
		"\"refused\"}], \"require_non_extractable\", \"info\", \"error\", \"phone_numbers\",\n"
		"\"waba_id\"}]}; flowvault(1) describes each member.\n"
		"Exits 0 only when every key is ok; otherwise with the first failure's code\n"
		"(3 for a refused key).\n"
		"\n"
		"Options:\n"
		"  --names  only the configured names, one a line, opening no key; as JSON\n"
		"           {\"config\", \"names\"}\n",
	.run = run_keys,
};
