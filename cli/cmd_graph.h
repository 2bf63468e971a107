/* Shared by `flowvault register` and `flowvault status` (cmd_register.c). */
#ifndef FLOWVAULT_CLI_CMD_GRAPH_H
#define FLOWVAULT_CLI_CMD_GRAPH_H

#include "cli.h"

/* Run register (mode FV_GRAPH_REGISTER) or status (FV_GRAPH_STATUS) with
 * argv starting at the command name; returns the exit code. */
int cli_graph_command(struct cli *cli, int argc, char **argv, int mode);

#endif
