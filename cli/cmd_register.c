/*
 * flowvault register KEY: put KEY's public key on its phone numbers through
 * the Graph API, read it back, and check it. Also the shared body of
 * `flowvault status` (cli_graph_command).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "table.h"
#include "cmd_graph.h"

struct id_list {
	char **ids;
	size_t count, capacity;
};

/* Append unless already there: a number listed twice is checked once. */
static int id_list_add(struct id_list *l, const char *id)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		if (strcmp(l->ids[i], id) == 0)
			return 0;
	if (l->count == l->capacity) {
		size_t cap = l->capacity ? l->capacity * 2 : 16;
		char **grown = realloc(l->ids, cap * sizeof(*grown));

		if (!grown)
			return -1;
		l->ids = grown;
		l->capacity = cap;
	}
	if (!(l->ids[l->count] = strdup(id)))
		return -1;
	l->count++;
	return 0;
}

static void id_list_free(struct id_list *l)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		free(l->ids[i]);
	free(l->ids);
}

static int is_graph_id(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void print_meant_for(fv_context *ctx, const char *name)
{
	size_t i, n = fv_context_key_phone_count(ctx, name);
	const char *waba = fv_context_key_waba(ctx, name);

	if (!n && !waba) {
		printf("key %s is meant for no phone numbers (no \"phone_numbers\" or \"waba_id\" "
		       "in its configuration)\n", name);
		return;
	}
	printf("key %s is meant for:", name);
	if (n) {
		printf(" phone numbers");
		for (i = 0; i < n; i++)
			printf("%s %s", i ? "," : "", fv_context_key_phone(ctx, name, i));
	}
	if (waba)
		printf("%s WABA %s (all its numbers)", n ? ";" : "", waba);
	printf("\n");
}

static json_object *result_json(const fv_graph_result *r)
{
	json_object *o = json_object_new_object(), *error = NULL;
	const char *status = fv_graph_key_status_name(r->key_status);

	json_object_object_add(o, "phone_number_id", json_object_new_string(r->phone_number_id));
	json_object_object_add(o, "registered", json_object_new_boolean(r->registered));
	json_object_object_add(o, "status", status ? json_object_new_string(status) : NULL);
	json_object_object_add(o, "matches_local", json_object_new_boolean(r->matches_local));
	if (r->status != FV_OK && r->status != FV_ERR_MISMATCH) {
		error = json_object_new_object();
		json_object_object_add(error, "code", json_object_new_int(r->error_code));
		json_object_object_add(error, "message", json_object_new_string(r->message));
		json_object_object_add(error, "fbtrace_id",
		                       r->fbtrace_id ? json_object_new_string(r->fbtrace_id) : NULL);
	}
	json_object_object_add(o, "error", error);
	return o;
}

/* The result that says the access token was refused (190), or NULL. */
static const fv_graph_result *token_refused(const fv_graph_result *r, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++)
		if (r[i].status == FV_ERR_GRAPH && r[i].error_code == 190)
			return &r[i];
	return NULL;
}

/* Progress on a terminal: "registering: 12/40 numbers, 1 failed", on one
 * line rewritten in place. */
struct progress {
	const char *verb;
	int shown;
};

static void show_progress(void *arg, size_t done, size_t total, size_t failed)
{
	struct progress *p = arg;

	fprintf(stderr, "\r%s: %zu/%zu phone numbers, %zu failed so far\033[K", p->verb, done,
	        total, failed);
	fflush(stderr);
	p->shown = 1;
}

static void end_progress(struct progress *p)
{
	if (p->shown)
		fputs("\r\033[K", stderr);
	p->shown = 0;
}

static void print_table(const char *name, const char *fp, const fv_graph_result *r,
                        size_t count, int mode, const char *endpoint)
{
	size_t i, ok = 0;

	printf("key %s  fingerprint %s\n%s %zu phone number%s at %s\n\n", name, fp,
	       mode == FV_GRAPH_REGISTER ? "registered on" : "checked on", count,
	       count == 1 ? "" : "s", endpoint);
	{
		static const char *const header[] = { "PHONE NUMBER ID", "REGISTERED", "STATUS",
		                                      "MATCHES", "TRIES", "RESULT" };
		cli_table *t = cli_table_new(6);

		if (t)
			cli_table_row(t, header);
		for (i = 0; i < count; i++) {
			const char *status = fv_graph_key_status_name(r[i].key_status);
			const char *result = r[i].status == FV_OK ? "ok"
			                   : r[i].status == FV_ERR_MISMATCH ? "mismatch" : "error";
			char tries[16], result_cell[160];
			const char *cells[6];

			if (r[i].status == FV_OK)
				ok++;
			snprintf(tries, sizeof(tries), "%u", r[i].attempts);
			if (r[i].key_status == FV_GRAPH_KEY_UNKNOWN && r[i].status_text)
				snprintf(result_cell, sizeof(result_cell), "%s (status \"%s\")", result,
				         r[i].status_text);
			else
				snprintf(result_cell, sizeof(result_cell), "%s", result);
			cells[0] = r[i].phone_number_id;
			cells[1] = r[i].registered ? "yes" : "no";
			cells[2] = status ? status : "-";
			cells[3] = r[i].registered ? (r[i].matches_local ? "yes" : "no") : "-";
			cells[4] = tries;
			cells[5] = result_cell;
			if (t)
				cli_table_row(t, cells);
		}
		if (t) {
			cli_table_print(t, stdout);
			cli_table_free(t);
		}
	}
	if (ok < count) {
		const fv_graph_result *refused = token_refused(r, count);

		/* A refused token: every number would say the same; the one
		 * message goes to stderr (cli_graph_command). */
		if (!refused)
			printf("\n");
		for (i = 0; !refused && i < count; i++)
			if (r[i].status != FV_OK)
				printf("%s: %s\n", r[i].phone_number_id, r[i].message);
	}
	printf("\n%zu of %zu phone numbers OK\n", ok, count);
}

static int print_dry_run(const struct cli *cli, const char *name, const char *fp,
                         const struct id_list *targets)
{
	size_t i;

	if (cli->json) {
		json_object *doc = json_object_new_object(), *ids = json_object_new_array();

		for (i = 0; i < targets->count; i++)
			json_object_array_add(ids, json_object_new_string(targets->ids[i]));
		json_object_object_add(doc, "key", json_object_new_string(name));
		json_object_object_add(doc, "fingerprint_sha256", json_object_new_string(fp));
		json_object_object_add(doc, "dry_run", json_object_new_boolean(1));
		json_object_object_add(doc, "phone_number_ids", ids);
		cli_print_json(doc);
		return EXIT_OK;
	}
	printf("dry run: would upload key %s (fingerprint %s) to %zu phone number%s, then read "
	       "each back:\n", name, fp, targets->count, targets->count == 1 ? "" : "s");
	for (i = 0; i < targets->count; i++)
		printf("  %s\n", targets->ids[i]);
	return EXIT_OK;
}

int cli_graph_command(struct cli *cli, int argc, char **argv, int mode)
{
	static const struct option options[] = {
		{ "phone", required_argument, NULL, 'p' },
		{ "waba", required_argument, NULL, 'w' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	struct id_list phones = { 0 }, wabas = { 0 }, targets = { 0 };
	char fp[FV_FINGERPRINT_HEX_SIZE];
	fv_graph_result *results = NULL;
	fv_context *ctx = NULL;
	fv_graph *graph = NULL;
	fv_key *key = NULL;
	const char *name;
	int c, rc = EXIT_OK, status, dry_run = 0;
	struct progress progress = { mode == FV_GRAPH_REGISTER ? "registering" : "checking", 0 };
	size_t i;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c == 'p' || c == 'w') {
			if (!is_graph_id(optarg)) {
				rc = cli_usage(cli, "%s '%s' is not a Graph id (decimal digits)",
				               c == 'p' ? "--phone" : "--waba", optarg);
				goto out;
			}
			if (id_list_add(c == 'p' ? &phones : &wabas, optarg) != 0) {
				rc = cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
				goto out;
			}
		} else if (c == 'n' && mode == FV_GRAPH_REGISTER) {
			dry_run = 1;
		} else {
			rc = cli_usage(cli, "unknown option '%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (argc - optind != 1) {
		rc = cli_usage(cli, argc - optind < 1 ? "missing KEY" : "expected one KEY");
		goto out;
	}
	name = argv[optind];
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		goto out;
	if (fv_key_open(&key, ctx, name) != FV_OK || fv_key_fingerprint(fp, key) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}

	/* Command-line targets replace the configured ones. */
	if (!phones.count && !wabas.count) {
		const char *waba = fv_context_key_waba(ctx, name);
		size_t n = fv_context_key_phone_count(ctx, name);

		for (i = 0; i < n; i++)
			if (id_list_add(&phones, fv_context_key_phone(ctx, name, i)) != 0)
				goto nomem;
		if (waba && id_list_add(&wabas, waba) != 0)
			goto nomem;
	}
	if (!phones.count && !wabas.count) {
		rc = cli_failf(cli, EXIT_USAGE,
			"key %s is meant for no phone numbers: add \"phone_numbers\" or \"waba_id\" to "
			"keys.%s in the configuration, or pass --phone ID / --waba ID", name, name);
		goto out;
	}
	for (i = 0; i < phones.count; i++)
		if (id_list_add(&targets, phones.ids[i]) != 0)
			goto nomem;
	if ((!dry_run || wabas.count) && fv_graph_open(&graph, ctx) != FV_OK) {
		rc = cli_fail(cli);
		goto out;
	}
	for (i = 0; i < wabas.count; i++) {
		char **ids = NULL;
		size_t n = 0, j;

		if (fv_graph_waba_phone_numbers(&ids, &n, graph, wabas.ids[i]) != FV_OK) {
			rc = cli_fail(cli);
			goto out;
		}
		for (j = 0; j < n; j++)
			if (id_list_add(&targets, ids[j]) != 0) {
				fv_graph_ids_free(ids);
				goto nomem;
			}
		fv_graph_ids_free(ids);
		if (n == 0 && !cli->quiet)
			fprintf(stderr, "flowvault %s: WABA %s has no phone numbers\n", cli->command,
			        wabas.ids[i]);
	}
	if (!targets.count) {
		rc = cli_failf(cli, EXIT_USAGE, "no phone numbers to %s for key %s",
		               mode == FV_GRAPH_REGISTER ? "register" : "check", name);
		goto out;
	}
	if (dry_run) {
		rc = print_dry_run(cli, name, fp, &targets);
		goto out;
	}

	if (!cli->json && !cli->quiet && isatty(STDERR_FILENO))
		fv_graph_set_progress(graph, show_progress, &progress);
	status = fv_graph_check(&results, graph, key, (const char *const *)targets.ids,
	                        targets.count, mode);
	end_progress(&progress);
	if (!results) {
		rc = cli_fail(cli);
		goto out;
	}
	if (cli->json) {
		json_object *doc = json_object_new_object(), *array = json_object_new_array();

		json_object_object_add(doc, "key", json_object_new_string(name));
		json_object_object_add(doc, "fingerprint_sha256", json_object_new_string(fp));
		for (i = 0; i < targets.count; i++)
			json_object_array_add(array, result_json(&results[i]));
		json_object_object_add(doc, "results", array);
		cli_print_json(doc);
	} else {
		if (mode == FV_GRAPH_STATUS)
			print_meant_for(ctx, name);
		print_table(name, fp, results, targets.count, mode, fv_graph_endpoint(graph));
	}
	if (status == FV_OK) {
		rc = EXIT_OK;
	} else {
		/* The results above are the one JSON document; the summary goes to
		 * stderr only. */
		const fv_error *err = fv_error_last();

		const fv_graph_result *refused = token_refused(results, targets.count);

		if (refused)
			fprintf(stderr, "flowvault %s: the access token was refused (Graph error 190), "
			        "so the run stopped: %s\nfix: create a new system-user token and update "
			        "the secret graph.access_token refers to\n", cli->command,
			        refused->message);
		else
			fprintf(stderr, "flowvault %s: %s\n", cli->command, err->message);
		rc = cli_exit_for_status(err->status);
	}
	goto out;
nomem:
	rc = cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
out:
	fv_graph_results_free(results, targets.count);
	fv_graph_free(graph);
	fv_key_free(key);
	fv_context_free(ctx);
	id_list_free(&phones);
	id_list_free(&wabas);
	id_list_free(&targets);
	return rc;
}

static int run_register(struct cli *cli, int argc, char **argv)
{
	return cli_graph_command(cli, argc, argv, FV_GRAPH_REGISTER);
}

const struct cli_command cli_cmd_register = {
	.name = "register",
	.synopsis = "register KEY [--phone ID]... [--waba ID]... [--dry-run]",
	.summary = "upload KEY's public key to its phone numbers and check it is VALID",
	.help =
		"For each target phone number, uploads KEY's public key (SPKI PEM) through the\n"
		"Graph API (POST /{phone-number-id}/whatsapp_business_encryption), reads it\n"
		"back, and checks that (a) the stored key is KEY's (same SubjectPublicKeyInfo,\n"
		"compared as DER) and (b) its signature status is VALID. An upload replaces\n"
		"the number's previous key. Numbers run concurrently (graph.max_in_flight at\n"
		"a time); one number's failure never stops the others, and running register\n"
		"again after a partial failure is safe and finishes the job.\n"
		"\n"
		"Targets: the --phone and --waba options when given; otherwise the key's\n"
		"\"phone_numbers\" and \"waba_id\" from the configuration. A WABA stands for all\n"
		"of its phone numbers (listed through the Graph API, every page).\n"
		"\n"
		"Options:\n"
		"  --phone ID  a phone-number id (repeatable)\n"
		"  --waba ID   a WhatsApp Business Account id: all its numbers (repeatable)\n"
		"  --dry-run   list the numbers and the key fingerprint; upload nothing\n"
		"              (a WABA is still listed, which only reads)\n"
		"\n"
		"Output: one row per number: REGISTERED, STATUS (VALID, MISMATCH, another\n"
		"value as UNKNOWN, - when none), MATCHES (stored key is KEY's), TRIES, RESULT;\n"
		"then what went wrong and what to do for each failed number.\n"
		"With --json: {\"key\", \"fingerprint_sha256\", \"results\": [{\"phone_number_id\",\n"
		"\"registered\", \"status\": \"VALID\"|\"MISMATCH\"|\"UNKNOWN\"|null, \"matches_local\",\n"
		"\"error\": null | {\"code\", \"message\", \"fbtrace_id\"}}]}; with --dry-run:\n"
		"{\"key\", \"fingerprint_sha256\", \"dry_run\": true, \"phone_number_ids\"}.\n"
		"\n"
		"Retries: rate limits, temporary errors, HTTP 429/5xx, refused or reset\n"
		"connections and timeouts are retried up to graph.max_retries times with\n"
		"exponential backoff and full jitter; an X-Business-Use-Case-Usage wait is\n"
		"honoured up to graph.max_wait_seconds, beyond that register stops and says\n"
		"when to try again. Invalid tokens (190), permissions (10, 200-299) and\n"
		"invalid parameters (100) are not retried.\n"
		"\n"
		"Configuration: the \"graph\" section (base_url, api_version, access_token as a\n"
		"secret reference such as \"env:WHATSAPP_ACCESS_TOKEN\", ca_file, timeouts,\n"
		"retries); see docs/graph.md. The token is sent only in the Authorization\n"
		"header; -v shows requests with \"Authorization: Bearer ***\".\n"
		"\n"
		"Exit codes: 0 every number holds KEY with status VALID; 2 usage or\n"
		"configuration; 3 the key cannot be read; 4 the Graph API refused or retries\n"
		"ran out for some number (wins over 5); 5 some number reports MISMATCH, another\n"
		"key, or no key after the upload.\n",
	.run = run_register,
};
