/*
 * flowvault rotate: replace a key by a new one on all its phone numbers,
 * crash-safe (the work is in libflowvault, lifecycle.h); this file parses
 * options, shows progress and prints where the rotation stands.
 */
#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	static const char msg[] = "\nflowvault rotate: stopping after the requests in flight "
	                          "(press Ctrl-C again to stop at once)\n";
	ssize_t ignored;

	(void)sig;
	interrupted = 1;
	ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)ignored;
}

struct progress_view {
	const struct cli *cli;
	int tty;
	int last_state;
	int bar_drawn;
};

static int show_progress(void *arg, int state, size_t done, size_t total, const char *message)
{
	struct progress_view *v = arg;

	if (!v->cli->quiet && !v->cli->json) {
		if (v->tty && total > 0 && state == FV_ROTATION_REGISTERING) {
			const int width = 30;
			int filled = (int)((double)done / (double)total * width);

			fprintf(stderr, "\r[%.*s%*s] %zu/%zu phone numbers", filled,
			        "##############################", width - filled, "", done, total);
			v->bar_drawn = 1;
		} else if (state != v->last_state || !v->tty) {
			if (v->bar_drawn)
				fputc('\n', stderr);
			v->bar_drawn = 0;
			if (state != v->last_state || v->cli->verbose)
				fprintf(stderr, "flowvault rotate: %s\n", message);
		}
		fflush(stderr);
	}
	v->last_state = state;
	return interrupted;
}

/* "90", "90s", "15m", "24h", "7d" -> seconds; -1 when not a duration. */
static long parse_duration(const char *s)
{
	char *end;
	long n;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	n = strtol(s, &end, 10);
	if (n <= 0 || n > 365L * 24 * 3600)
		return -1;
	if (!*end || strcmp(end, "s") == 0)
		return n;
	if (strcmp(end, "m") == 0)
		return n * 60;
	if (strcmp(end, "h") == 0)
		return n * 3600;
	if (strcmp(end, "d") == 0)
		return n * 86400;
	return -1;
}

static void time_text(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!t) {
		snprintf(buf, len, "-");
		return;
	}
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&tt, &tm));
}

static json_object *time_json(int64_t t)
{
	return t ? json_object_new_int64(t) : NULL;
}

static json_object *rotation_json(const fv_rotation *r)
{
	json_object *doc = json_object_new_object(), *results = json_object_new_array();
	int state = fv_rotation_state(r);
	size_t i, n = fv_rotation_target_count(r);
	const char *fp = fv_rotation_fingerprint(r), *note = fv_rotation_serve_note(r);

	json_object_object_add(doc, "state", json_object_new_string(fv_rotation_state_name(state)));
	json_object_object_add(doc, "key", fv_rotation_key(r) ? json_object_new_string(fv_rotation_key(r)) : NULL);
	json_object_object_add(doc, "new_key", fv_rotation_new_key(r) ? json_object_new_string(fv_rotation_new_key(r)) : NULL);
	json_object_object_add(doc, "fingerprint_sha256", fp && *fp ? json_object_new_string(fp) : NULL);
	json_object_object_add(doc, "journal", json_object_new_string(fv_rotation_journal_path(r)));
	json_object_object_add(doc, "started_at", time_json(fv_rotation_started_at(r)));
	json_object_object_add(doc, "switched_at", time_json(fv_rotation_switched_at(r)));
	json_object_object_add(doc, "grace_seconds", json_object_new_int64(fv_rotation_grace_seconds(r)));
	json_object_object_add(doc, "grace_until", fv_rotation_switched_at(r)
		? json_object_new_int64(fv_rotation_switched_at(r) + fv_rotation_grace_seconds(r)) : NULL);
	json_object_object_add(doc, "finished_at", time_json(fv_rotation_finished_at(r)));
	json_object_object_add(doc, "aborted_at", time_json(fv_rotation_aborted_at(r)));
	json_object_object_add(doc, "old_key_destroyed", json_object_new_boolean(fv_rotation_old_destroyed(r)));
	json_object_object_add(doc, "phone_numbers_total", json_object_new_int64((int64_t)n));
	json_object_object_add(doc, "phone_numbers_registered",
	                       json_object_new_int64((int64_t)fv_rotation_registered_count(r)));
	for (i = 0; i < n; i++) {
		json_object *o = json_object_new_object();
		const char *err = fv_rotation_target_error(r, i);

		json_object_object_add(o, "phone_number_id", json_object_new_string(fv_rotation_target(r, i)));
		json_object_object_add(o, "state", json_object_new_string(
		                               fv_rotation_number_state_name(fv_rotation_target_state(r, i))));
		json_object_object_add(o, "registered", json_object_new_boolean(fv_rotation_target_registered(r, i)));
		json_object_object_add(o, "error", err ? json_object_new_string(err) : NULL);
		json_object_array_add(results, o);
	}
	json_object_object_add(doc, "results", results);
	json_object_object_add(doc, "serve_note", note ? json_object_new_string(note) : NULL);
	return doc;
}

static void print_rotation(const fv_rotation *r)
{
	int state = fv_rotation_state(r);
	size_t i, n = fv_rotation_target_count(r), failed = 0;
	char when[64];
	const char *fp = fv_rotation_fingerprint(r), *note = fv_rotation_serve_note(r);

	if (state == FV_ROTATION_NONE) {
		printf("no rotation recorded (journal %s)\n", fv_rotation_journal_path(r));
		return;
	}
	printf("rotation %s -> %s: %s\n", fv_rotation_key(r), fv_rotation_new_key(r),
	       fv_rotation_state_name(state));
	time_text(when, sizeof(when), fv_rotation_started_at(r));
	printf("  started       %s\n", when);
	printf("  new key       %s\n", fp && *fp ? fp : "(not generated yet)");
	if (state >= FV_ROTATION_REGISTERING || n) {
		size_t on_new = 0;

		for (i = 0; i < n; i++)
			on_new += fv_rotation_target_state(r, i) == FV_ROTATION_NUMBER_NEW_KEY;
		printf("  phone numbers %zu of %zu on %s\n", on_new, n, fv_rotation_new_key(r));
	}
	if (fv_rotation_switched_at(r)) {
		time_text(when, sizeof(when), fv_rotation_switched_at(r));
		printf("  switched      %s\n", when);
		time_text(when, sizeof(when), fv_rotation_switched_at(r) + fv_rotation_grace_seconds(r));
		printf("  grace until   %s\n", when);
	}
	if (fv_rotation_finished_at(r)) {
		time_text(when, sizeof(when), fv_rotation_finished_at(r));
		printf("  finished      %s%s\n", when,
		       fv_rotation_old_destroyed(r) ? " (old key destroyed)" : "");
	}
	if (fv_rotation_aborted_at(r)) {
		time_text(when, sizeof(when), fv_rotation_aborted_at(r));
		printf("  aborted       %s (every number back on %s)\n", when, fv_rotation_key(r));
	}
	printf("  journal       %s\n", fv_rotation_journal_path(r));
	for (i = 0; i < n; i++)
		if (fv_rotation_target_error(r, i)) {
			if (!failed++)
				printf("\n");
			printf("%s: %s\n", fv_rotation_target(r, i), fv_rotation_target_error(r, i));
		}
	switch (state) {
	case FV_ROTATION_SWITCHED:
		printf("\nnext: flowvault rotate --finish %s (after the grace window), or "
		       "flowvault rotate --abort to go back\n", fv_rotation_new_key(r));
		break;
	case FV_ROTATION_ABORTING:
		printf("\nnext: flowvault rotate --abort (to complete going back)\n");
		break;
	case FV_ROTATION_FINISHED:
	case FV_ROTATION_ABORTED:
		break;
	default:
		printf("\nnext: flowvault rotate --resume\n");
	}
	if (note)
		printf("note: %s\n", note);
}

/* Print where the rotation stands; on failure the error goes with it (one
 * JSON document with --json). */
static int report(const struct cli *cli, fv_rotation *r, int status)
{
	int code = status == FV_OK ? EXIT_OK : cli_exit_for_status(status);

	if (status != FV_OK)
		fprintf(stderr, "flowvault %s: %s\n", cli->command, fv_error_last()->message);
	if (cli->json) {
		json_object *doc = r ? rotation_json(r) : json_object_new_object(), *error = NULL;

		if (status != FV_OK) {
			error = json_object_new_object();
			json_object_object_add(error, "status", json_object_new_string(fv_status_name(status)));
			json_object_object_add(error, "message", json_object_new_string(fv_error_last()->message));
			json_object_object_add(error, "exit_code", json_object_new_int(code));
		}
		json_object_object_add(doc, "error", error);
		cli_print_json(doc);
	} else if (r && !cli->quiet) {
		print_rotation(r);
	}
	return code;
}

static int run_rotate(struct cli *cli, int argc, char **argv)
{
	enum { OPT_NEW = 1, OPT_SET, OPT_GRACE, OPT_RESUME, OPT_STATUS, OPT_FINISH, OPT_FORCE,
	       OPT_DESTROY, OPT_ABORT, OPT_DESTROY_NEW, OPT_NO_REGISTER };
	static const struct option options[] = {
		{ "new", required_argument, NULL, OPT_NEW },
		{ "set", required_argument, NULL, OPT_SET },
		{ "grace", required_argument, NULL, OPT_GRACE },
		{ "resume", no_argument, NULL, OPT_RESUME },
		{ "status", no_argument, NULL, OPT_STATUS },
		{ "finish", required_argument, NULL, OPT_FINISH },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "destroy-old", no_argument, NULL, OPT_DESTROY },
		{ "abort", no_argument, NULL, OPT_ABORT },
		{ "destroy-new", no_argument, NULL, OPT_DESTROY_NEW },
		{ "no-register", no_argument, NULL, OPT_NO_REGISTER },
		{ NULL, 0, NULL, 0 },
	};
	const char **sets = calloc((size_t)argc + 1, sizeof(*sets));
	const char *new_name = NULL, *finish = NULL, *key = NULL;
	int c, resume = 0, status_only = 0, force = 0, destroy = 0, rc, st;
	int abort_it = 0, destroy_new = 0, no_register = 0;
	size_t nset = 0;
	long grace = 0;
	struct progress_view view = { .cli = cli, .last_state = -1 };
	fv_rotate_options opts = { 0 };
	struct sigaction sa, old_int, old_term;
	fv_context *ctx = NULL;
	fv_rotation *r = NULL;

	if (!sets)
		return cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case OPT_NEW: new_name = optarg; break;
		case OPT_SET: sets[nset++] = optarg; break;
		case OPT_GRACE:
			if ((grace = parse_duration(optarg)) < 0) {
				rc = cli_usage(cli, "--grace '%s': expected a duration such as 3600, 90m, "
				               "24h or 7d", optarg);
				goto out;
			}
			break;
		case OPT_RESUME: resume = 1; break;
		case OPT_STATUS: status_only = 1; break;
		case OPT_FINISH: finish = optarg; break;
		case OPT_FORCE: force = 1; break;
		case OPT_DESTROY: destroy = 1; break;
		case OPT_ABORT: abort_it = 1; break;
		case OPT_DESTROY_NEW: destroy_new = 1; break;
		case OPT_NO_REGISTER: no_register = 1; break;
		default:
			rc = cli_usage(cli, "unknown option or missing value: '%s'", argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc)
		key = argv[optind++];
	if (optind < argc) {
		rc = cli_usage(cli, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (resume + status_only + abort_it + (finish != NULL) + (key != NULL) != 1) {
		rc = cli_usage(cli, "give exactly one of: KEY --new NAME, --resume, --status, "
		               "--finish NAME, --abort");
		goto out;
	}
	if (key && !new_name) {
		rc = cli_usage(cli, "rotating %s needs --new NAME (the new key's name)", key);
		goto out;
	}
	if (!key && (new_name || nset)) {
		rc = cli_usage(cli, "--new and --set go with KEY (start a rotation)");
		goto out;
	}
	if (!finish && (force || destroy || no_register)) {
		rc = cli_usage(cli, "--force, --destroy-old and --no-register go with --finish NAME");
		goto out;
	}
	if (!abort_it && destroy_new) {
		rc = cli_usage(cli, "--destroy-new goes with --abort");
		goto out;
	}
	if ((resume || status_only || abort_it) && grace) {
		rc = cli_usage(cli, "--grace goes with KEY --new NAME or --finish NAME");
		goto out;
	}
	if ((rc = cli_open_context(cli, &ctx, 0)) != EXIT_OK)
		goto out;

	if (status_only) {
		st = fv_rotation_read(&r, ctx);
		rc = report(cli, r, st);
		goto out;
	}
	if (finish) {
		st = fv_rotate_finish(&r, ctx, finish, (force ? FV_ROTATE_FORCE : 0u) |
		                      (destroy ? FV_ROTATE_DESTROY_OLD : 0u) |
		                      (no_register ? FV_ROTATE_NO_REGISTER : 0u), grace);
		rc = report(cli, r, st);
		goto out;
	}

	view.tty = isatty(STDERR_FILENO);
	opts.set = sets;
	opts.grace_seconds = grace;
	opts.progress = show_progress;
	opts.progress_arg = &view;
	/* First Ctrl-C: stop cleanly after the numbers in flight; second: now. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	if (abort_it)
		st = fv_rotate_abort(&r, ctx, destroy_new ? FV_ROTATE_DESTROY_NEW : 0u, &opts);
	else if (resume)
		st = fv_rotate_resume(&r, ctx, &opts);
	else
		st = fv_rotate_start(&r, ctx, key, new_name, &opts);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (view.bar_drawn && !cli->quiet && !cli->json)
		fputc('\n', stderr);
	rc = report(cli, r, st);
out:
	fv_rotation_free(r);
	fv_context_free(ctx);
	free(sets);
	return rc;
}

const struct cli_command cli_cmd_rotate = {
	.name = "rotate",
	.synopsis = "rotate KEY --new NAME [--set FIELD=VALUE]... [--grace DURATION] | "
	            "--resume | --status | --finish NAME [--force] [--destroy-old] [--no-register] | "
	            "--abort [--destroy-new]",
	.summary = "replace KEY by a new key on all its phone numbers, crash-safe",
	.help =
		"Starts a rotation of KEY to a new key NAME and runs it up to the switch:\n"
		"  1. adds keys.NAME to the configuration: a copy of keys.KEY with a new key\n"
		"     reference (a file path is derived: same directory, NAME plus the old\n"
		"     extension; other references must be given with --set), and puts NAME\n"
		"     right after KEY in serve.keys;\n"
		"  2. generates NAME in KEY's backend;\n"
		"  3. registers NAME on every phone number of KEY (its phone_numbers and the\n"
		"     numbers of its waba_id) and reads each back: same key, status VALID;\n"
		"  4. switches: NAME takes over KEY's phone_numbers and waba_id, and comes\n"
		"     before KEY in serve.keys, so serve tries NAME first and KEY second\n"
		"     during the grace window.\n"
		"Every step is recorded in the journal <config>.rotation.journal before the\n"
		"next begins. Interrupted at any point (crash, kill, Ctrl-C), the rotation\n"
		"continues with --resume; numbers already registered are not uploaded again.\n"
		"Before any number moves, a flowvault serve on this machine must already hold\n"
		"the key the numbers move to (checked through its /healthz). When\n"
		"serve.pid_file names a running process, rotate sends it SIGHUP and waits\n"
		"until /healthz reports serve.keys as configured; otherwise restart serve\n"
		"when rotate asks, then --resume.\n"
		"\n"
		"Options:\n"
		"  --new NAME           name of the new key entry (required with KEY)\n"
		"  --set FIELD=VALUE    a provider field of the new entry (repeatable), e.g.\n"
		"                       --set 'uri=pkcs11:token=flows;object=NAME'\n"
		"  --grace DURATION     how long the old key stays in serve.keys after the\n"
		"                       switch: seconds, or 90m, 24h, 7d (default 24h)\n"
		"  --resume             continue the unfinished rotation at its first unfinished\n"
		"                       step\n"
		"  --status             show where the last rotation stands; change nothing\n"
		"  --finish NAME        after the grace window: list and read every number of\n"
		"                       NAME again (its phone_numbers and WABA), register NAME\n"
		"                       on those that lack it, then remove the previous key from\n"
		"                       serve.keys (the rotation to NAME ends)\n"
		"  --force              with --finish: do not wait for the grace window\n"
		"  --destroy-old        with --finish: also delete the previous key in its\n"
		"                       backend and its configuration entry (only plugins that\n"
		"                       can delete keys, such as pkcs11); the configuration is\n"
		"                       rewritten first, the key deleted last\n"
		"  --no-register        with --finish: refuse, naming them, when numbers lack\n"
		"                       NAME instead of registering it\n"
		"  --abort              go back from an unfinished rotation (before --finish):\n"
		"                       register the previous key again on every number (read\n"
		"                       back, VALID), put it first in serve.keys, remove NAME\n"
		"                       from serve.keys; NAME stays in the configuration and\n"
		"                       its store, unused. Journaled and resumable: run it again\n"
		"                       after an interruption\n"
		"  --destroy-new        with --abort: also delete NAME in its backend and its\n"
		"                       configuration entry (plugins that can delete keys)\n"
		"\n"
		"The configuration file is rewritten atomically (same mode and owner; a\n"
		"rewrite keeps every setting but not comments or formatting). On a terminal\n"
		"a progress bar shows the registration; with --json one document describes\n"
		"the rotation: {\"state\", \"key\", \"new_key\", \"fingerprint_sha256\",\n"
		"\"journal\", \"started_at\", \"switched_at\", \"grace_seconds\", \"grace_until\",\n"
		"\"finished_at\", \"aborted_at\", \"old_key_destroyed\", \"phone_numbers_total\",\n"
		"\"phone_numbers_registered\", \"results\": [{\"phone_number_id\", \"state\":\n"
		"\"old_key\" | \"new_key\" | \"failed\", \"registered\", \"error\"}], \"serve_note\",\n"
		"\"error\": null | {\"status\", \"message\", \"exit_code\"}}.\n"
		"\n"
		"Exit codes: 0 done (or, with --status, read); 1 interrupted, grace window\n"
		"not over, or a running serve lacks the new key; 2 usage or configuration\n"
		"(a rotation already in progress, a missing --set, --abort after --finish);\n"
		"3 key backend (also: --destroy-old/--destroy-new with a plugin that cannot\n"
		"delete); 4 Graph API error; 5 a number does not show the key as VALID\n"
		"(also: --finish --no-register with numbers lacking NAME).\n",
	.run = run_rotate,
};
