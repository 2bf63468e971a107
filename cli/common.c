/* Helpers every command shares: errors, exit codes, context, JSON output. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"

int cli_exit_for_status(int status)
{
	switch (status) {
	case FV_OK:
		return EXIT_OK;
	case FV_ERR_USAGE:
	case FV_ERR_CONFIG:
	case FV_ERR_SECRET:
	case FV_ERR_PLUGIN:
		return EXIT_USAGE;
	case FV_ERR_NOT_FOUND:
	case FV_ERR_EXISTS:
	case FV_ERR_AUTH:
	case FV_ERR_BACKEND:
	case FV_ERR_UNSUPPORTED:
	case FV_ERR_DECRYPT:
	case FV_ERR_PERMISSION:
		return EXIT_BACKEND;
	case FV_ERR_GRAPH:
		return EXIT_GRAPH;
	case FV_ERR_MISMATCH:
		return EXIT_MISMATCH;
	default:
		return EXIT_FAILURE_OTHER;
	}
}

/* The message on stderr and, with --json, the one document on stdout. */
static int report_error(const struct cli *cli, const char *status, const char *message,
                        int exit_code)
{
	fprintf(stderr, "flowvault %s: %s\n", cli->command ? cli->command : "", message);
	if (cli->json) {
		json_object *doc = json_object_new_object(), *error = json_object_new_object();

		json_object_object_add(error, "status", json_object_new_string(status));
		json_object_object_add(error, "message", json_object_new_string(message));
		json_object_object_add(error, "exit_code", json_object_new_int(exit_code));
		json_object_object_add(doc, "error", error);
		cli_print_json(doc);
	}
	return exit_code;
}

int cli_fail(const struct cli *cli)
{
	const fv_error *err = fv_error_last();

	return report_error(cli, fv_status_name(err->status),
	                    err->message[0] ? err->message : fv_status_name(err->status),
	                    cli_exit_for_status(err->status));
}

int cli_failf(const struct cli *cli, int exit_code, const char *fmt, ...)
{
	char message[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return report_error(cli, exit_code == EXIT_USAGE ? "usage" : "error", message,
	                    exit_code);
}

int cli_open_context(struct cli *cli, fv_context **out, unsigned int flags)
{
	if (fv_context_open(out, cli->config_path, flags) != FV_OK)
		return cli_fail(cli);
	return EXIT_OK;
}

const struct cli_command *const cli_commands[] = {
	&cli_cmd_plugins, &cli_cmd_keys, &cli_cmd_generate, &cli_cmd_pubkey,
	&cli_cmd_register, &cli_cmd_status, &cli_cmd_rotate, &cli_cmd_doctor,
	&cli_cmd_flow, &cli_cmd_serve,
	NULL
};

const struct cli_command *cli_find_command(const char *name)
{
	size_t i;

	for (i = 0; name && cli_commands[i]; i++)
		if (strcmp(cli_commands[i]->name, name) == 0)
			return cli_commands[i];
	return NULL;
}

int cli_wants_help(const struct cli *cli, int argc, char **argv)
{
	const struct cli_command *cmd;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			cmd = cli_find_command(cli->command);
			if (cmd)
				printf("usage: flowvault [global options] %s\n\n%s\n%s", cmd->synopsis,
				       cmd->summary, cmd->help);
			return 1;
		}
	}
	return 0;
}

int cli_usage(const struct cli *cli, const char *fmt, ...)
{
	const struct cli_command *cmd = cli_find_command(cli->command);
	va_list ap;

	char message[1024];

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	report_error(cli, "usage", message, EXIT_USAGE);
	fprintf(stderr, "usage: flowvault [global options] %s\n"
	        "(flowvault %s --help for details)\n",
	        cmd ? cmd->synopsis : cli->command, cli->command);
	return EXIT_USAGE;
}

void cli_print_json(struct json_object *doc)
{
	puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
	                                             JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(doc);
}
