/* flowvault: the command-line front end of libflowvault. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char exit_code_help[] =
	"Exit codes:\n"
	"  0  success\n"
	"  1  other failure\n"
	"  2  usage or configuration error\n"
	"  3  key backend error (file, token, TPM, passphrase, PIN)\n"
	"  4  Graph API error (refused, or retries ran out)\n"
	"  5  registered key differs from the local key, or status is not VALID\n"
	"  6  a Flows request cannot be decrypted\n";

static void print_help(void)
{
	size_t i;

	printf("usage: flowvault [global options] COMMAND [ARGS]\n\n"
	       "Keep the WhatsApp Flows private key in its store (PEM file, HSM, TPM),\n"
	       "register its public key through the Graph API, and decrypt Flows requests.\n\n"
	       "Commands:\n");
	for (i = 0; cli_commands[i]; i++)
		printf("  %-10s %s\n", cli_commands[i]->name, cli_commands[i]->summary);
	printf("\nGlobal options (anywhere on the command line):\n"
	       "  --config FILE  configuration file (default: $FLOWVAULT_CONFIG,\n"
	       "                 $XDG_CONFIG_HOME/flowvault/config.json, /etc/flowvault/config.json)\n"
	       "  --json         print exactly one JSON document on stdout\n"
	       "  -v, --verbose  more detail on stderr (twice for debug)\n"
	       "  -q, --quiet    errors only on stderr\n"
	       "  --version      print the version\n"
	       "  -h, --help     this help; flowvault COMMAND --help for a command\n\n"
	       "%s\n"
	       "Environment:\n"
	       "  FLOWVAULT_CONFIG       configuration file\n"
	       "  FLOWVAULT_PLUGIN_PATH  extra plugin directories, ':'-separated\n"
	       "  XDG_CONFIG_HOME        where to look for flowvault/config.json\n",
	       exit_code_help);
}

/* Remove global options from argv wherever they are (up to "--"); return the
 * new argc, or -1 after printing a usage error. */
static int take_global_options(struct cli *cli, int argc, char **argv,
                               int *want_version, int *want_help)
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
			if (in + 1 >= argc) {
				fprintf(stderr, "flowvault: --config needs a FILE\n");
				return -1;
			}
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

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	const struct cli_command *cmd;
	int want_version = 0, want_help = 0, level, rc;

	argc = take_global_options(&cli, argc, argv, &want_version, &want_help);
	if (argc < 0)
		return EXIT_USAGE;
	if (want_version) {
		printf("flowvault %s (provider ABI %d.%d)\n", FLOWVAULT_VERSION,
		       FV_PROVIDER_ABI_MAJOR, FV_PROVIDER_ABI_MINOR);
		return EXIT_OK;
	}
	if (want_help) {
		print_help();
		return EXIT_OK;
	}
	if (argc < 2) {
		print_help();
		return EXIT_USAGE;
	}
	cmd = cli_find_command(argv[1]);
	if (!cmd) {
		fprintf(stderr, "flowvault: unknown command '%s' (flowvault --help lists them)\n",
		        argv[1]);
		return EXIT_USAGE;
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
	rc = cmd->run(&cli, argc - 1, argv + 1);
	/* stdout carries the result (PEM, JSON, Flows body): a full disk or a
	 * closed descriptor must not pass for success. */
	if ((fflush(stdout) != 0 || ferror(stdout)) && rc == EXIT_OK)
		rc = cli_failf(&cli, EXIT_FAILURE_OTHER, "cannot write to standard output: %s",
		               strerror(errno));
	return rc;
}
