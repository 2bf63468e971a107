/* Placeholder until this command lands. */
#include "cli.h"

static int run_rotate(struct cli *cli, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_failf(cli, EXIT_FAILURE_OTHER, "not available in this build");
}

const struct cli_command cli_cmd_rotate = {
	.name = "rotate",
	.synopsis = "rotate",
	.summary = "(not available in this build)",
	.help = "",
	.run = run_rotate,
};
