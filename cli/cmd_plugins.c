/* flowvault plugins: what is on the plugin search path, loaded or refused. */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"
#include "table.h"

struct listing {
	const struct cli *cli;
	json_object *array;   /* --json */
	cli_table *table;     /* text */
	int refused;
};

static void capability_names(char *buf, size_t len, uint32_t caps, json_object *array)
{
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ FV_CAP_GENERATE, "generate" }, { FV_CAP_LIST, "list" },
		{ FV_CAP_DELETE, "delete" }, { FV_CAP_INFO, "info" },
		{ FV_CAP_DESCRIBE, "describe" },
	};
	size_t i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(caps & names[i].bit))
			continue;
		if (array)
			json_object_array_add(array, json_object_new_string(names[i].name));
		if (used < len)
			used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "," : "",
			                         names[i].name);
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

static int print_plugin(void *arg, const fv_plugin_info *info)
{
	struct listing *l = arg;
	char caps[64], abi[16] = "-";

	if (info->abi_version)
		snprintf(abi, sizeof(abi), "%u.%u", (unsigned)(info->abi_version >> 16),
		         (unsigned)(info->abi_version & 0xffff));
	if (l->array) {
		json_object *o = json_object_new_object(), *capa = json_object_new_array();

		capability_names(caps, sizeof(caps), info->capabilities, capa);
		json_object_object_add(o, "name", json_object_new_string(info->name));
		json_object_object_add(o, "path", json_object_new_string(info->path));
		json_object_object_add(o, "loaded", json_object_new_boolean(!info->refused));
		json_object_object_add(o, "version",
		                       info->version ? json_object_new_string(info->version) : NULL);
		json_object_object_add(o, "abi_version",
		                       info->abi_version ? json_object_new_string(abi) : NULL);
		json_object_object_add(o, "capabilities", capa);
		json_object_object_add(o, "refused",
		                       info->refused ? json_object_new_string(info->refused) : NULL);
		json_object_array_add(l->array, o);
	} else {
		const char *cells[5];

		capability_names(caps, sizeof(caps), info->capabilities, NULL);
		cells[0] = info->name;
		cells[1] = info->refused ? "-" : info->version;
		cells[2] = info->refused ? "-" : abi;
		cells[3] = info->refused ? "-" : caps;
		cells[4] = info->path;
		cli_table_row(l->table, cells);
		if (info->refused)
			cli_table_note(l->table, "refused: %s", info->refused);
	}
	if (info->refused)
		l->refused++;
	return 0;
}

static int run_plugins(struct cli *cli, int argc, char **argv)
{
	static const char *const header[] = { "NAME", "VERSION", "ABI", "CAPABILITIES", "PATH" };
	struct listing l = { cli, NULL, NULL, 0 };
	fv_context *ctx;
	int rc;

	(void)argv;
	if (argc > 1)
		return cli_usage(cli, "unexpected argument '%s'", argv[1]);
	if ((rc = cli_open_context(cli, &ctx, FV_CONTEXT_CONFIG_OPTIONAL)) != EXIT_OK)
		return rc;
	if (cli->json)
		l.array = json_object_new_array();
	else if ((l.table = cli_table_new(5)))
		cli_table_row(l.table, header);
	fv_plugins_foreach(ctx, print_plugin, &l);
	cli_table_print(l.table, stdout);
	cli_table_free(l.table);
	if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "search_path",
		                       json_object_new_string(fv_plugins_search_path(ctx)));
		json_object_object_add(doc, "plugins", l.array);
		cli_print_json(doc);
	} else if (!cli->quiet) {
		fprintf(stderr, "search path: %s\n", fv_plugins_search_path(ctx));
	}
	fv_context_free(ctx);
	return EXIT_OK;
}

const struct cli_command cli_cmd_plugins = {
	.name = "plugins",
	.synopsis = "plugins",
	.summary = "list key-provider plugins on the search path, and why any were refused",
	.help =
		"Loads every <name>.so found on the plugin search path (plugin_path in the\n"
		"configuration, then $FLOWVAULT_PLUGIN_PATH, then <bin>/../lib/flowvault/plugins)\n"
		"and shows its version, provider ABI version and capabilities. A plugin is\n"
		"refused when the file or a directory above it is writable by group or others\n"
		"or owned by another user, when it lacks the entry symbol, or when it was\n"
		"built for another ABI major version; the reason says what to fix.\n"
		"A configuration file is optional for this command.\n",
	.run = run_plugins,
};
