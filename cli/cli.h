/*
 * The flowvault command-line tool: shared declarations of cli/ files.
 * The tool is a client of the public API (include/flowvault/) only.
 */
#ifndef FLOWVAULT_CLI_H
#define FLOWVAULT_CLI_H

#include <stdio.h>

#include <flowvault/flowvault.h>

/* Exit codes: the table in common.c, shown by `flowvault --help`; README.md
 * and flowvault(1) have the same table (tests/cli/exit_codes.sh). */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_FAILURE_OTHER = 1,
	EXIT_USAGE = 2,      /* usage or configuration error */
	EXIT_BACKEND = 3,    /* key backend: file, token, TPM, passphrase, PIN */
	EXIT_GRAPH = 4,      /* Graph API refused, or retries ran out */
	EXIT_MISMATCH = 5,   /* registered key differs or status not VALID */
	EXIT_UNDECRYPTABLE = 6 /* a Flows request cannot be decrypted */
};

/* Global options, parsed before the command name. */
struct cli {
	const char *config_path;   /* --config, or NULL for the search order */
	int json;                  /* --json: one JSON document on stdout */
	int verbose;               /* -v, repeatable */
	int quiet;                 /* -q */
	const char *command;       /* the command's name, for messages */
};

/* One command: `run` gets argv starting at the command name. */
struct cli_command {
	const char *name;
	const char *synopsis;      /* "pubkey KEY [--out FILE]" */
	const char *summary;       /* one line for `flowvault --help` */
	const char *help;          /* the rest of `flowvault COMMAND --help` */
	int (*run)(struct cli *cli, int argc, char **argv);
};

/* Map a library status to an exit code (EXIT_*). */
int cli_exit_for_status(int status);
/* Print "flowvault CMD: <last library error>" to stderr; return its exit code. */
int cli_fail(const struct cli *cli);
/* Print "flowvault CMD: <message>" to stderr and return `exit_code`. */
int cli_failf(const struct cli *cli, int exit_code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Open the context with the global options (prints the error on failure). */
int cli_open_context(struct cli *cli, fv_context **out, unsigned int flags);
/* True when argv holds -h or --help; prints the command's help then. */
int cli_wants_help(const struct cli *cli, int argc, char **argv);
/* Print a command's help (JSON with --json). */
void cli_print_command_help(const struct cli *cli, const struct cli_command *cmd);
/* Check the options in argv (starting at the command name) against the
 * command's help and the global options: an unknown option (with the
 * closest known one) or an option without its value is a usage error,
 * reported here. Returns EXIT_OK or EXIT_USAGE. */
int cli_check_options(const struct cli *cli, const struct cli_command *cmd, int argc,
                      char **argv);
/* The candidate `word` is most likely a typo of, or NULL. */
const char *cli_suggest(const char *word, const char *const *candidates, size_t count);
/* Print the usage line of the current command and return EXIT_USAGE. */
int cli_usage(const struct cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Write a JSON document (json-c object) to stdout with a newline; frees it. */
struct json_object;
void cli_print_json(struct json_object *doc);
/* Whether cli_print_json has printed a document. */
int cli_json_printed(void);

/* Commands: each cli/cmd_<name>.c defines its own entry, help included;
 * common.c lists them in the order `flowvault --help` shows. */
extern const struct cli_command cli_cmd_plugins;
extern const struct cli_command cli_cmd_keys;
extern const struct cli_command cli_cmd_generate;
extern const struct cli_command cli_cmd_pubkey;
extern const struct cli_command cli_cmd_register;
extern const struct cli_command cli_cmd_status;
extern const struct cli_command cli_cmd_flow;
extern const struct cli_command cli_cmd_serve;
extern const struct cli_command cli_cmd_rotate;
extern const struct cli_command cli_cmd_doctor;
extern const struct cli_command cli_cmd_init;
extern const struct cli_command cli_cmd_help;     /* main.c */
extern const struct cli_command cli_cmd_version;  /* main.c */


/* Report an unknown command (with the closest one); returns EXIT_USAGE. */
int cli_unknown_command(const struct cli *cli, const char *name);
/* The exit-code table, as `--help` lists it and as JSON [{"code", "meaning"}]. */
void cli_print_exit_codes(FILE *out);
struct json_object *cli_exit_codes_json(void);
/* Where document `name` (e.g. "README.md") is: <prefix>/share/doc/flowvault/NAME
 * when running from an installed tree and it is there, else "IN_SOURCES in
 * the flowvault sources". Static storage, valid until the next call. */
const char *cli_doc_path(const char *name, const char *in_sources);
/* `flow media-decrypt` (cmd_media.c); argv starts at "media-decrypt". */
int cli_flow_media_decrypt(struct cli *cli, int argc, char **argv);

/* All commands, NULL-terminated, and one by name (NULL if unknown). */
extern const struct cli_command *const cli_commands[];
const struct cli_command *cli_find_command(const char *name);

#endif
