/* Placeholder until this command lands. */
#include "cli.h"

static int run_doctor(struct cli *cli, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_failf(cli, EXIT_FAILURE_OTHER, "not available in this build");
}

const struct cli_command cli_cmd_doctor = {
	.name = "doctor",
	.synopsis = "doctor",
	.summary = "(not available in this build)",
	.help = "",
	.run = run_doctor,
};
