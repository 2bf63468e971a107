/* Helpers every command shares: errors, exit codes, context, JSON output. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	fprintf(stderr, "flowvault%s%s: %s\n", cli->command ? " " : "",
	        cli->command ? cli->command : "", message);
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
	static const char *const classes[] = { "ok", "error", "usage", "backend", "graph",
	                                       "mismatch", "undecryptable" };

	return report_error(cli, exit_code >= 0 && exit_code <= EXIT_UNDECRYPTABLE
	                                 ? classes[exit_code] : "error",
	                    message, exit_code);
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
	&cli_cmd_flow, &cli_cmd_serve, &cli_cmd_init, &cli_cmd_help, &cli_cmd_version,
	NULL
};

int cli_unknown_command(const struct cli *cli, const char *name)
{
	const char *names[sizeof(cli_commands) / sizeof(cli_commands[0])], *hint;
	size_t n;

	for (n = 0; cli_commands[n]; n++)
		names[n] = cli_commands[n]->name;
	hint = cli_suggest(name, names, n);
	if (hint)
		return cli_failf(cli, EXIT_USAGE, "unknown command '%s'; did you mean '%s'? "
		                 "(flowvault --help lists the commands)", name, hint);
	return cli_failf(cli, EXIT_USAGE, "unknown command '%s' (flowvault --help lists them)",
	                 name);
}

/* ---- Exit codes: the one table --help, README.md and flowvault(1) show ---- */

static const struct {
	int code;
	const char *meaning;
} exit_codes[] = {
	{ EXIT_OK, "success" },
	{ EXIT_FAILURE_OTHER, "other failure: an output file cannot be written, serve cannot "
	                      "listen (address in use), a rotation is interrupted, unfinished "
	                      "or still in its grace window" },
	{ EXIT_USAGE, "usage or configuration error: unknown command or option, a missing "
	              "or unreadable input file, the configuration or a secret reference "
	              "(unset or missing), a plugin that does not load" },
	{ EXIT_BACKEND, "key backend error: the key is missing, refused by "
	                "require_non_extractable, or its file, token, TPM, passphrase or "
	                "PIN fails; a key or secret file others may read is refused here too, "
	                "as a permission error of the key's store" },
	{ EXIT_GRAPH, "Graph API error: refused (e.g. a bad token), or retries ran out" },
	{ EXIT_MISMATCH, "a number holds another key, none, or a status other than VALID" },
	{ EXIT_UNDECRYPTABLE, "a Flows request cannot be decrypted (not for this key, or "
	                      "damaged)" },
};

void cli_print_exit_codes(FILE *out)
{
	size_t i;

	for (i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++)
		fprintf(out, "  %d  %s\n", exit_codes[i].code, exit_codes[i].meaning);
}

json_object *cli_exit_codes_json(void)
{
	json_object *a = json_object_new_array();
	size_t i;

	for (i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "code", json_object_new_int(exit_codes[i].code));
		json_object_object_add(o, "meaning", json_object_new_string(exit_codes[i].meaning));
		json_object_array_add(a, o);
	}
	return a;
}

/* ---- Where the documentation is ---- */

const char *cli_doc_path(const char *name, const char *in_sources)
{
	static char path[4200];
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	/* An installed flowvault (<prefix>/bin/flowvault) has its documents in
	 * <prefix>/share/doc/flowvault; from a build tree, name the source file. */
	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) && slash - exe >= 4 &&
		    strncmp(slash - 4, "/bin", 4) == 0) {
			slash[-4] = '\0';
			snprintf(path, sizeof(path), "%s/share/doc/flowvault/%s", exe, name);
			if (access(path, R_OK) == 0)
				return path;
		}
	}
	snprintf(path, sizeof(path), "%s in the flowvault sources", in_sources);
	return path;
}

const struct cli_command *cli_find_command(const char *name)
{
	size_t i;

	for (i = 0; name && cli_commands[i]; i++)
		if (strcmp(cli_commands[i]->name, name) == 0)
			return cli_commands[i];
	return NULL;
}

void cli_print_command_help(const struct cli *cli, const struct cli_command *cmd)
{
	if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "command", json_object_new_string(cmd->name));
		json_object_object_add(doc, "synopsis", json_object_new_string(cmd->synopsis));
		json_object_object_add(doc, "summary", json_object_new_string(cmd->summary));
		json_object_object_add(doc, "help", json_object_new_string(cmd->help));
		cli_print_json(doc);
		return;
	}
	printf("usage: flowvault [global options] %s\n\n%s\n%s", cmd->synopsis, cmd->summary,
	       cmd->help);
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
				cli_print_command_help(cli, cmd);
			return 1;
		}
	}
	return 0;
}

/* ---- "Did you mean": the closest known word ---- */

/* Optimal string alignment distance: edits, with a swap of two neighbours
 * counting as one ("kyes" is one from "keys"). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, *d, result;

	if (la > 64 || lb > 64)
		return (size_t)-1;
	d = calloc((la + 1) * (lb + 1), sizeof(*d));
	if (!d)
		return (size_t)-1;
#define D(i, j) d[(i) * (lb + 1) + (j)]
	for (i = 0; i <= la; i++)
		D(i, 0) = i;
	for (j = 0; j <= lb; j++)
		D(0, j) = j;
	for (i = 1; i <= la; i++)
		for (j = 1; j <= lb; j++) {
			size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			size_t best = D(i - 1, j) + 1;

			if (D(i, j - 1) + 1 < best)
				best = D(i, j - 1) + 1;
			if (D(i - 1, j - 1) + cost < best)
				best = D(i - 1, j - 1) + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    D(i - 2, j - 2) + 1 < best)
				best = D(i - 2, j - 2) + 1;
			D(i, j) = best;
		}
	result = D(la, lb);
#undef D
	free(d);
	return result;
}

const char *cli_suggest(const char *word, const char *const *candidates, size_t count)
{
	const char *best = NULL;
	size_t i, best_distance = (size_t)-1, len = strlen(word);
	/* Close enough to be a typo: 1 edit for short words, 2 from 5 letters
	 * (leading dashes do not count). */
	size_t limit = len - strspn(word, "-") >= 5 ? 2 : 1;

	for (i = 0; i < count; i++) {
		size_t dist = edit_distance(word, candidates[i]);

		if (dist < best_distance) {
			best_distance = dist;
			best = candidates[i];
		}
	}
	return best_distance <= limit ? best : NULL;
}

/* ---- Options, as each command's help lists them ---- */

#define GLOBAL_OPTIONS "--config FILE", "--json", "-v", "--verbose", "-q", "--quiet", \
	"--version", "-h", "--help"

struct option_spec {
	char name[48];    /* "--out" */
	char arg[32];     /* "FILE", or "" for a switch */
};

static int is_metavar(const char *w, size_t len)
{
	size_t i;

	if (!len || !isupper((unsigned char)w[0]))
		return 0;
	for (i = 0; i < len; i++)
		if (!isupper((unsigned char)w[i]) && w[i] != '_' && w[i] != '=' && w[i] != '.')
			return 0;
	return 1;
}

/* The options on the option lines of a help text: lines whose first word
 * starts with '-' ("  -o, --out FILE  write ..."). The help is where options
 * are documented for people, flowvault(1) and the shell completion; reading
 * them from there keeps one list. Returns how many were found. */
static size_t options_from_help(struct option_spec *out, size_t max, const char *help)
{
	const char *line = help;
	size_t n = 0;

	while (line && *line) {
		const char *end = strchr(line, '\n'), *p = line;

		if (!end)
			end = line + strlen(line);
		size_t first = n, k;

		while (p < end && *p == ' ')
			p++;
		while (p < end && *p == '-' && n < max) {
			const char *w = p;
			size_t len;

			while (p < end && *p != ' ' && *p != ',' && *p != '=')
				p++;
			len = (size_t)(p - w);
			if (len < 2 || len >= sizeof(out[n].name))
				break;
			memcpy(out[n].name, w, len);
			out[n].name[len] = '\0';
			out[n].arg[0] = '\0';
			if (p < end && (*p == ' ' || *p == '=')) {
				const char *a = p + 1, *ae = a;

				while (ae < end && *ae != ' ' && *ae != ',')
					ae++;
				if (is_metavar(a, (size_t)(ae - a)) &&
				    (size_t)(ae - a) < sizeof(out[n].arg)) {
					memcpy(out[n].arg, a, (size_t)(ae - a));
					out[n].arg[ae - a] = '\0';
					p = ae;
				}
			}
			n++;
			if (p < end && *p == ',')
				p++;
			while (p < end && *p == ' ')
				p++;
		}
		/* "-o, --out FILE": the short form takes the FILE too. */
		for (k = first; n > first && k + 1 < n; k++)
			if (!out[k].arg[0])
				memcpy(out[k].arg, out[n - 1].arg, sizeof(out[k].arg));
		line = *end ? end + 1 : NULL;
	}
	return n;
}

static size_t command_options(struct option_spec *specs, size_t max,
                              const struct cli_command *cmd)
{
	static const char *const global[] = { GLOBAL_OPTIONS };
	size_t n = 0, i;

	for (i = 0; i < sizeof(global) / sizeof(global[0]) && n < max; i++, n++) {
		const char *space = strchr(global[i], ' ');

		snprintf(specs[n].name, sizeof(specs[n].name), "%.*s",
		         (int)(space ? (size_t)(space - global[i]) : strlen(global[i])), global[i]);
		snprintf(specs[n].arg, sizeof(specs[n].arg), "%s", space ? space + 1 : "");
	}
	return n + (cmd ? options_from_help(specs + n, max - n, cmd->help) : 0);
}

/* The option `word` (without "=VALUE") names: exact, else the one option it
 * is an unambiguous prefix of (as getopt_long accepts). */
static const struct option_spec *find_option(const struct option_spec *specs, size_t n,
                                             const char *word, size_t len)
{
	const struct option_spec *found = NULL;
	size_t i, matches = 0;

	for (i = 0; i < n; i++) {
		if (strlen(specs[i].name) == len && strncmp(specs[i].name, word, len) == 0)
			return &specs[i];
		if (len > 2 && strncmp(specs[i].name, word, len) == 0 && strncmp(word, "--", 2) == 0) {
			if (!found || strcmp(found->name, specs[i].name) != 0)
				matches++;
			found = &specs[i];
		}
	}
	return matches == 1 ? found : NULL;
}

int cli_check_options(const struct cli *cli, const struct cli_command *cmd, int argc,
                      char **argv)
{
	struct option_spec specs[64];
	const char *names[64];
	size_t n = command_options(specs, sizeof(specs) / sizeof(specs[0]), cmd), i;
	int a;

	for (i = 0; i < n; i++)
		names[i] = specs[i].name;
	for (a = 1; a < argc; a++) {
		const char *w = argv[a], *eq, *hint;
		const struct option_spec *spec;
		size_t len;

		if (strcmp(w, "--") == 0)
			break;
		if (w[0] != '-' || w[1] == '\0')
			continue;
		eq = strchr(w, '=');
		len = eq && w[1] == '-' ? (size_t)(eq - w) : strlen(w);
		spec = find_option(specs, n, w, len);
		if (!spec) {
			char bare[64];

			snprintf(bare, sizeof(bare), "%.*s", (int)len, w);
			hint = cli_suggest(bare, names, n);
			if (hint)
				return cli_usage(cli, "unknown option '%s'; did you mean '%s'?", bare, hint);
			return cli_usage(cli, "unknown option '%s' (the options of %s are listed "
			                 "below)", bare, cmd ? cmd->name : "flowvault");
		}
		if (!spec->arg[0] || eq)
			continue;
		if (a + 1 >= argc || strcmp(argv[a + 1], "--") == 0)
			return cli_usage(cli, "%s needs a %s", spec->name, spec->arg);
		a++; /* its value, whatever it looks like */
	}
	return EXIT_OK;
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
	if (cmd)
		fprintf(stderr, "usage: flowvault [global options] %s\n"
		        "(flowvault help %s for details)\n", cmd->synopsis, cmd->name);
	else
		fprintf(stderr, "usage: flowvault [global options] COMMAND [ARGS]\n"
		        "(flowvault help for the commands and options)\n");
	return EXIT_USAGE;
}

static int json_printed;

int cli_json_printed(void)
{
	return json_printed;
}

void cli_print_json(struct json_object *doc)
{
	json_printed = 1;
	puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
	                                             JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(doc);
}
