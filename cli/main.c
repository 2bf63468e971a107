/* flowvault: the command-line front end of libflowvault. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli.h"

static void print_help(const struct cli *cli)
{
	size_t i;

	if (cli->json) {
		json_object *doc = json_object_new_object(), *cmds = json_object_new_array();

		for (i = 0; cli_commands[i]; i++) {
			json_object *c = json_object_new_object();

			json_object_object_add(c, "name", json_object_new_string(cli_commands[i]->name));
			json_object_object_add(c, "synopsis",
			                       json_object_new_string(cli_commands[i]->synopsis));
			json_object_object_add(c, "summary",
			                       json_object_new_string(cli_commands[i]->summary));
			json_object_array_add(cmds, c);
		}
		json_object_object_add(doc, "commands", cmds);
		json_object_object_add(doc, "exit_codes", cli_exit_codes_json());
		cli_print_json(doc);
		return;
	}
	printf("usage: flowvault [global options] COMMAND [ARGS]\n\n"
	       "Keep the WhatsApp Flows private key in its store (PEM file, HSM, TPM),\n"
	       "register its public key through the Graph API, and decrypt Flows requests.\n\n"
	       "Commands:\n");
	for (i = 0; cli_commands[i]; i++)
		printf("  %-10s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
	printf("\nGlobal options (anywhere on the command line):\n"
	       "  --config FILE  configuration file (default: $FLOWVAULT_CONFIG,\n"
	       "                 $XDG_CONFIG_HOME/flowvault/config.json, /etc/flowvault/config.json)\n"
	       "  --json         print exactly one JSON document on stdout, also on failure\n"
	       "  -v, --verbose  more detail on stderr (twice for debug)\n"
	       "  -q, --quiet    errors only on stderr\n"
	       "  --version      print the version (as flowvault version)\n"
	       "  -h, --help     this help; flowvault help COMMAND for a command\n\n"
	       "Exit codes:\n");
	cli_print_exit_codes(stdout);
	printf("\nEnvironment:\n"
	       "  FLOWVAULT_CONFIG       configuration file\n"
	       "  FLOWVAULT_PLUGIN_PATH  extra plugin directories, ':'-separated\n"
	       "  XDG_CONFIG_HOME        where to look for flowvault/config.json\n"
	       "\nMore: flowvault(1), flowvault.json(5); %s\n", cli_doc_path("README.md", "README.md"));
}

/* Remove global options from argv wherever they are (up to "--"); return the
 * new argc. A malformed one is remembered in *error and reported once the
 * whole line is read (so that a later --json applies). */
static int take_global_options(struct cli *cli, int argc, char **argv,
                               int *want_version, int *want_help, const char **error)
{
	int in, out = 1, rest = 0;

	for (in = 1; in < argc; in++) {
		const char *a = argv[in];

		if (rest || a[0] != '-') {
			argv[out++] = argv[in];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			rest = 1;
			argv[out++] = argv[in];
		} else if (strcmp(a, "--config") == 0) {
			if (in + 1 >= argc)
				*error = "--config needs a FILE";
			else
				cli->config_path = argv[++in];
		} else if (strncmp(a, "--config=", 9) == 0) {
			cli->config_path = a + 9;
		} else if (strcmp(a, "--json") == 0) {
			cli->json = 1;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			cli->verbose++;
		} else if (strcmp(a, "-vv") == 0) {
			cli->verbose += 2;
		} else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
			cli->quiet = 1;
		} else if (strcmp(a, "--version") == 0) {
			*want_version = 1;
		} else if ((strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) && out == 1) {
			*want_help = 1; /* before the command; after it, the command's help */
		} else {
			argv[out++] = argv[in];
		}
	}
	argv[out] = NULL;
	return out;
}

/* flowvault version: this program, the library it runs with, the plugin ABI
 * and the libraries underneath. */
static int print_version(const struct cli *cli)
{
	const fv_library_version *v = fv_library_versions();
	char abi[16];

	snprintf(abi, sizeof(abi), "%d.%d", FV_PROVIDER_ABI_MAJOR, FV_PROVIDER_ABI_MINOR);
	if (cli->json) {
		json_object *doc = json_object_new_object(), *libs = json_object_new_object();

		json_object_object_add(doc, "version", json_object_new_string(FLOWVAULT_VERSION_STRING));
		json_object_object_add(doc, "provider_abi", json_object_new_string(abi));
		for (; v->name; v++)
			json_object_object_add(libs, v->name, json_object_new_string(v->version));
		json_object_object_add(doc, "libraries", libs);
		cli_print_json(doc);
		return EXIT_OK;
	}
	printf("flowvault %s (provider ABI %s)\n", FLOWVAULT_VERSION_STRING, abi);
	for (; v->name; v++)
		printf("  %-14s %s\n", v->name, v->version);
	return EXIT_OK;
}

static int run_help(struct cli *cli, int argc, char **argv)
{
	const struct cli_command *cmd;

	if (argc < 2) {
		print_help(cli);
		return EXIT_OK;
	}
	if (argc > 2)
		return cli_usage(cli, "expected at most one COMMAND");
	if (!(cmd = cli_find_command(argv[1])))
		return cli_unknown_command(cli, argv[1]);
	cli_print_command_help(cli, cmd);
	return EXIT_OK;
}

static int run_version(struct cli *cli, int argc, char **argv)
{
	if (argc > 1)
		return cli_usage(cli, "unexpected argument '%s'", argv[1]);
	return print_version(cli);
}

const struct cli_command cli_cmd_help = {
	.name = "help",
	.synopsis = "help [COMMAND]",
	.summary = "show the help of flowvault or of one COMMAND",
	.help =
		"Without COMMAND, the list of commands, global options, exit codes and\n"
		"environment variables; with it, the help of that command (the same as\n"
		"flowvault COMMAND --help). With --json: {\"commands\": [{\"name\", \"synopsis\",\n"
		"\"summary\"}], \"exit_codes\": [{\"code\", \"meaning\"}]}, or for a COMMAND\n"
		"{\"command\", \"synopsis\", \"summary\", \"help\"}.\n",
	.run = run_help,
};

const struct cli_command cli_cmd_version = {
	.name = "version",
	.synopsis = "version",
	.summary = "show the versions of flowvault, its plugin ABI and its libraries",
	.help =
		"Prints flowvault's version, the provider ABI version plugins must be built\n"
		"for (same major, minor up to this one), and the versions of the libraries\n"
		"it is running with, as they report themselves: libflowvault, OpenSSL,\n"
		"json-c, libcurl, libmicrohttpd. flowvault plugins shows each plugin's own\n"
		"version. With --json: {\"version\", \"provider_abi\", \"libraries\": {NAME:\n"
		"VERSION}}.\n",
	.run = run_version,
};

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	const struct cli_command *cmd;
	const char *option_error = NULL;
	int want_version = 0, want_help = 0, level, rc;

	/* A p11-kit server or an upstream that goes away mid-write must give an
	 * error message, not a silent death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	argc = take_global_options(&cli, argc, argv, &want_version, &want_help, &option_error);
	if (option_error)
		return cli_failf(&cli, EXIT_USAGE, "%s", option_error);
	if (want_version)
		return print_version(&cli);
	if (want_help) {
		print_help(&cli);
		return EXIT_OK;
	}
	if (argc < 2) {
		if (cli.json)
			return cli_failf(&cli, EXIT_USAGE, "missing COMMAND (flowvault help lists them)");
		print_help(&cli);
		return EXIT_USAGE;
	}
	cmd = cli_find_command(argv[1]);
	if (!cmd) {
		if (argv[1][0] == '-' && argv[1][1])
			return cli_check_options(&cli, NULL, argc, argv);
		return cli_unknown_command(&cli, argv[1]);
	}
	cli.command = cmd->name;
	level = cli.quiet ? FV_LOG_ERROR
	        : cli.verbose >= 2 ? FV_LOG_DEBUG
	        : cli.verbose == 1 ? FV_LOG_INFO : FV_LOG_WARNING;
	fv_log_set(NULL, NULL, level);
	/* tpm2-tss prints its own error lines to stderr; our messages already say
	 * what failed. Debug verbosity, or the user's own TSS2_LOG, shows them. */
	if (cli.verbose < 2)
		setenv("TSS2_LOG", "all+NONE", 0);
	if (cli_wants_help(&cli, argc - 1, argv + 1))
		return EXIT_OK;
	if ((rc = cli_check_options(&cli, cmd, argc - 1, argv + 1)) != EXIT_OK)
		return rc;
	rc = cmd->run(&cli, argc - 1, argv + 1);
	/* A command with nothing else to say (serve) still answers --json. */
	if (cli.json && !cli_json_printed()) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "command", json_object_new_string(cmd->name));
		json_object_object_add(doc, "ok", json_object_new_boolean(rc == EXIT_OK));
		json_object_object_add(doc, "exit_code", json_object_new_int(rc));
		cli_print_json(doc);
	}
	/* stdout carries the result (PEM, JSON, Flows body): a full disk or a
	 * closed descriptor must not pass for success. */
	if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EXIT_OK)
		rc = cli_failf(&cli, EXIT_FAILURE_OTHER, "cannot write to standard output: %s",
		               strerror(errno));
	return rc;
}
