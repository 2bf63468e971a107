/*
 * flowvault init: write a starter configuration for one key and check it
 * with the library before it takes its place. Never overwrites; asks only
 * on a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

/* The fields a starter entry of a provider gets, with their defaults
 * ("%s" is the key's name). Other providers take their fields from --set. */
static const struct template_field {
	const char *provider, *field, *value, *question;
} template_fields[] = {
	{ "pem", "path", "keys/%s.pem", "key file (made by flowvault generate)" },
	{ "pem", "passphrase", "env:FLOWVAULT_PASSPHRASE",
	  "secret reference for its passphrase (env:NAME or file:PATH)" },
	{ "pkcs11", "module", "/usr/lib/softhsm/libsofthsm2.so",
	  "PKCS#11 module (a path, or a name p11-kit knows)" },
	{ "pkcs11", "uri", "pkcs11:token=flowvault;object=%s", "PKCS#11 URI of the key" },
	{ "pkcs11", "pin", "env:FLOWVAULT_PIN", "secret reference for the user PIN" },
	{ "tpm2", "tcti", "device:/dev/tpmrm0", "TCTI (device:..., tabrmd, swtpm:...)" },
	{ "tpm2", "key_file", "keys/%s.tss2", "key file (made by flowvault generate)" },
};

struct init_options {
	const char *provider, *key, *waba;
	const char **set;          /* FIELD=VALUE */
	size_t set_count;
	const char **phones;
	size_t phone_count;
	int no_prompt;
};

/* The path the configuration goes to: --config, else the first place of the
 * search order ($FLOWVAULT_CONFIG, then the XDG location). */
static int target_path(char *out, size_t len, const struct cli *cli)
{
	const char *env = getenv("FLOWVAULT_CONFIG"), *xdg = getenv("XDG_CONFIG_HOME"),
	           *home = getenv("HOME");
	int n;

	if (cli->config_path)
		n = snprintf(out, len, "%s", cli->config_path);
	else if (env && *env)
		n = snprintf(out, len, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(out, len, "%s/flowvault/config.json", xdg);
	else if (home && *home)
		n = snprintf(out, len, "%s/.config/flowvault/config.json", home);
	else
		return -1;
	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* mkdir -p of the directories above `path`, new ones 0700. */
static int make_parents(const char *path)
{
	char dir[PATH_MAX];
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	if (!(p = strrchr(dir, '/')) || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(dir, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int interactive(const struct init_options *o)
{
	return !o->no_prompt && isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
}

/* Ask `question` with a default on the terminal; the answer or the default. */
static char *ask(const char *question, const char *def)
{
	char line[1024];
	size_t n;

	fprintf(stderr, "%s [%s]: ", question, def);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return strdup(def);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	return strdup(n ? line : def);
}

static const char *set_value(const struct init_options *o, const char *field)
{
	size_t i, len = strlen(field);

	for (i = 0; i < o->set_count; i++)
		if (strncmp(o->set[i], field, len) == 0 && o->set[i][len] == '=')
			return o->set[i] + len + 1;
	return NULL;
}

/* A value given as text: true/false and integers as JSON, arrays from
 * "[...]" JSON, anything else a string. */
static json_object *field_value(const char *text)
{
	json_object *v;

	if (text[0] == '[' || strcmp(text, "true") == 0 || strcmp(text, "false") == 0 ||
	    (text[0] >= '0' && text[0] <= '9' && strspn(text, "0123456789") == strlen(text))) {
		v = json_tokener_parse(text);
		if (v)
			return v;
	}
	return json_object_new_string(text);
}

/* A template value with "%s" replaced by the key's name. */
static void expand_default(char *out, size_t len, const char *pattern, const char *key)
{
	const char *mark = strstr(pattern, "%s");

	if (mark)
		snprintf(out, len, "%.*s%s%s", (int)(mark - pattern), pattern, key, mark + 2);
	else
		snprintf(out, len, "%s", pattern);
}

static json_object *build_config(const struct init_options *o)
{
	json_object *root = json_object_new_object(), *keys = json_object_new_object(),
	            *entry = json_object_new_object();
	size_t i;

	json_object_object_add(entry, "provider", json_object_new_string(o->provider));
	for (i = 0; i < sizeof(template_fields) / sizeof(template_fields[0]); i++) {
		const struct template_field *t = &template_fields[i];
		char def[512];
		char *answer = NULL;
		const char *value;

		if (strcmp(t->provider, o->provider) != 0)
			continue;
		expand_default(def, sizeof(def), t->value, o->key);
		value = set_value(o, t->field);
		if (!value && interactive(o))
			value = answer = ask(t->question, def);
		json_object_object_add(entry, t->field, field_value(value ? value : def));
		free(answer);
	}
	for (i = 0; i < o->set_count; i++) {
		char field[128];
		size_t len = strcspn(o->set[i], "=");

		snprintf(field, sizeof(field), "%.*s", (int)len, o->set[i]);
		if (!json_object_object_get_ex(entry, field, NULL))
			json_object_object_add(entry, field, field_value(o->set[i] + len + 1));
	}
	if (o->phone_count) {
		json_object *phones = json_object_new_array();

		for (i = 0; i < o->phone_count; i++)
			json_object_array_add(phones, json_object_new_string(o->phones[i]));
		json_object_object_add(entry, "phone_numbers", phones);
	}
	if (o->waba)
		json_object_object_add(entry, "waba_id", json_object_new_string(o->waba));
	json_object_object_add(keys, o->key, entry);
	json_object_object_add(root, "keys", keys);
	if (o->phone_count || o->waba) {
		json_object *graph = json_object_new_object();

		json_object_object_add(graph, "access_token",
		                       json_object_new_string("env:WHATSAPP_ACCESS_TOKEN"));
		json_object_object_add(root, "graph", graph);
	}
	return root;
}

/* Read the candidate file back through the library, as every command will:
 * the configuration and the provider's fields must be valid. A key that is
 * not there yet, or a secret not exported yet, is expected at this point. */
static int validate(const struct cli *cli, const char *tmp, const char *key)
{
	fv_context *ctx = NULL;
	fv_key *k = NULL;
	int status = fv_context_open(&ctx, tmp, 0);

	if (status == FV_OK)
		status = fv_key_open_ex(&k, ctx, key, FV_KEY_OPEN_INSPECT);
	fv_key_free(k);
	fv_context_free(ctx);
	if (status == FV_ERR_CONFIG || status == FV_ERR_PLUGIN || status == FV_ERR_USAGE)
		return cli_failf(cli, EXIT_USAGE, "the configuration would not be valid, nothing "
		                 "written: %s", fv_error_last()->message);
	return EXIT_OK;
}

static int write_config(const struct cli *cli, const char *path, json_object *root,
                        const char *key)
{
	const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
	                                                  JSON_C_TO_STRING_SPACED |
	                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
	char tmp[PATH_MAX + 16];
	size_t len = strlen(text);
	int fd, err = 0, rc;

	if (access(path, F_OK) == 0)
		return cli_failf(cli, EXIT_USAGE, "'%s' already exists; flowvault init never "
		                 "overwrites: edit it, or move it away first", path);
	if (make_parents(path) != 0)
		return cli_failf(cli, EXIT_FAILURE_OTHER, "cannot create the directory of '%s': %s",
		                 path, strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0)
		return cli_failf(cli, EXIT_FAILURE_OTHER, "cannot write next to '%s': %s", path,
		                 strerror(errno));
	if (fchmod(fd, 0600) != 0 || write(fd, text, len) != (ssize_t)len ||
	    write(fd, "\n", 1) != 1 || fsync(fd) != 0)
		err = errno ? errno : EIO;
	if (close(fd) != 0 && !err)
		err = errno;
	if (err) {
		unlink(tmp);
		return cli_failf(cli, EXIT_FAILURE_OTHER, "cannot write '%s': %s", tmp, strerror(err));
	}
	if ((rc = validate(cli, tmp, key)) != EXIT_OK) {
		unlink(tmp);
		return rc;
	}
	/* link() fails when the name exists: no window in which another file
	 * at `path` could be replaced. */
	if (link(tmp, path) != 0) {
		err = errno;
		unlink(tmp);
		if (err == EEXIST)
			return cli_failf(cli, EXIT_USAGE, "'%s' already exists; flowvault init never "
			                 "overwrites: edit it, or move it away first", path);
		return cli_failf(cli, EXIT_FAILURE_OTHER, "cannot create '%s': %s", path,
		                 strerror(err));
	}
	unlink(tmp);
	return EXIT_OK;
}

/* The directory of a starter key file ("keys/flows.pem", relative to the
 * configuration), so that flowvault generate can write there. */
static void make_key_directory(const char *config_path, json_object *root, const char *key)
{
	json_object *entry = json_object_object_get(json_object_object_get(root, "keys"), key);
	static const char *const file_fields[] = { "path", "key_file" };
	char file[PATH_MAX];
	size_t i;

	for (i = 0; i < 2; i++) {
		json_object *v = json_object_object_get(entry, file_fields[i]);
		const char *value = json_object_get_string(v), *slash = strrchr(config_path, '/');

		if (!json_object_is_type(v, json_type_string) || !strchr(value, '/'))
			continue;
		if (value[0] == '/')
			snprintf(file, sizeof(file), "%s", value);
		else
			snprintf(file, sizeof(file), "%.*s%s", slash ? (int)(slash - config_path + 1) : 0,
			         config_path, value);
		(void)make_parents(file); /* generate says it when this did not work */
	}
}

static int run_init(struct cli *cli, int argc, char **argv)
{
	static const struct option options[] = {
		{ "provider", required_argument, NULL, 'p' },
		{ "key", required_argument, NULL, 'k' },
		{ "set", required_argument, NULL, 's' },
		{ "phone", required_argument, NULL, 'n' },
		{ "waba", required_argument, NULL, 'w' },
		{ "no-prompt", no_argument, NULL, 'N' },
		{ NULL, 0, NULL, 0 },
	};
	struct init_options o = { .key = "flows" };
	char path[PATH_MAX], *asked = NULL;
	json_object *root = NULL;
	int c, rc;

	o.set = calloc((size_t)argc + 1, sizeof(*o.set));
	o.phones = calloc((size_t)argc + 1, sizeof(*o.phones));
	if (!o.set || !o.phones) {
		rc = cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
		goto out;
	}
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == 'p') {
			o.provider = optarg;
		} else if (c == 'k') {
			o.key = optarg;
		} else if (c == 's') {
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				rc = cli_usage(cli, "--set '%s': expected FIELD=VALUE", optarg);
				goto out;
			}
			o.set[o.set_count++] = optarg;
		} else if (c == 'n') {
			o.phones[o.phone_count++] = optarg;
		} else if (c == 'w') {
			o.waba = optarg;
		} else if (c == 'N') {
			o.no_prompt = 1;
		} else {
			rc = cli_usage(cli, "unknown option '%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		rc = cli_usage(cli, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (!o.provider)
		o.provider = interactive(&o) ? (asked = ask("provider (pem, pkcs11, tpm2, ...)", "pem"))
		                             : "pem";
	if (!o.provider) {
		rc = cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
		goto out;
	}
	if (target_path(path, sizeof(path), cli) != 0) {
		rc = cli_usage(cli, "no place for the configuration: give --config FILE");
		goto out;
	}
	root = build_config(&o);
	if ((rc = write_config(cli, path, root, o.key)) != EXIT_OK)
		goto out;
	make_key_directory(path, root, o.key);
	if (cli->json) {
		json_object *doc = json_object_new_object(), *next = json_object_new_array();
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "flowvault generate %s", o.key);
		json_object_array_add(next, json_object_new_string(cmd));
		json_object_array_add(next, json_object_new_string("flowvault doctor"));
		json_object_object_add(doc, "config", json_object_new_string(path));
		json_object_object_add(doc, "key", json_object_new_string(o.key));
		json_object_object_add(doc, "provider", json_object_new_string(o.provider));
		json_object_object_add(doc, "next", next);
		cli_print_json(doc);
	} else if (!cli->quiet) {
		printf("wrote %s (mode 0600): key '%s' (%s)\n"
		       "next: create the key with  flowvault%s%s generate %s\n"
		       "      then check it all with flowvault%s%s doctor\n",
		       path, o.key, o.provider, cli->config_path ? " --config " : "",
		       cli->config_path ? cli->config_path : "", o.key,
		       cli->config_path ? " --config " : "", cli->config_path ? cli->config_path : "");
	}
out:
	json_object_put(root);
	free(asked);
	free(o.set);
	free(o.phones);
	return rc;
}

const struct cli_command cli_cmd_init = {
	.name = "init",
	.synopsis = "init [--provider NAME] [--key NAME] [--set FIELD=VALUE]... "
	            "[--phone ID]... [--waba ID] [--no-prompt]",
	.summary = "write a starter configuration for one key",
	.help =
		"Writes a configuration with one key entry to --config FILE, or else to the\n"
		"first place flowvault looks ($FLOWVAULT_CONFIG, then\n"
		"$XDG_CONFIG_HOME/flowvault/config.json or ~/.config/flowvault/config.json),\n"
		"with mode 0600, creating missing directories with mode 0700. It never\n"
		"overwrites a file. The file is read back through the library first and\n"
		"only takes its place when the configuration and the provider's fields are\n"
		"valid. For a system service, write /etc/flowvault/config.json with --config.\n"
		"\n"
		"Starter fields: pem: path, passphrase; pkcs11: module, uri, pin; tpm2:\n"
		"tcti, key_file. Other providers take their fields from --set. On a\n"
		"terminal, init asks for the provider and each starter field, showing the\n"
		"default; without one (or with --no-prompt) it takes the defaults and\n"
		"the options, and never waits for input. With --phone or --waba the file\n"
		"also gets a graph section whose token is env:WHATSAPP_ACCESS_TOKEN.\n"
		"\n"
		"Options:\n"
		"  --provider NAME     the key's plugin (default: pem)\n"
		"  --key NAME          the key's name (default: flows)\n"
		"  --set FIELD=VALUE   a field of the key entry (repeatable); true, false,\n"
		"                      integers and [JSON arrays] keep their type\n"
		"  --phone ID          a phone-number id the key is for (repeatable)\n"
		"  --waba ID           a WhatsApp Business Account the key is for\n"
		"  --no-prompt         do not ask, even on a terminal\n"
		"\n"
		"With --json: {\"config\", \"key\", \"provider\", \"next\": [commands]}.\n"
		"Exit codes: 0 written; 2 the file exists, or the result would not be valid\n"
		"(nothing is written then); 1 the file cannot be written.\n",
	.run = run_init,
};
