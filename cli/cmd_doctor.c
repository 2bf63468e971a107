/*
 * flowvault doctor: check a whole installation and say what to fix: the
 * configuration, the plugins, every key (a real decryption), the Graph API
 * token, every number's registered key, the serve settings, the other
 * nodes (serve.nodes), an unfinished rotation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "keyreport.h"

struct doctor {
	const struct cli *cli;
	json_object *checks;
	int exit_code;           /* of the first failure */
	size_t failed, passed, skipped;
	/* For the next item only: its subject in the text output when it differs
	 * from the JSON one, and whether it is a detail shown with -v only. */
	const char *text_subject;
	int detail;
};

enum { CHECK_OK, CHECK_FAIL, CHECK_SKIP, CHECK_WARN };

/* Record one check (and print it as text); returns its JSON object, to which
 * a caller may add structured members. */
static json_object *item(struct doctor *d, int outcome, int exit_code, const char *check,
                         const char *subject, const char *message, const char *fix)
{
	static const char *const names[] = { "ok", "fail", "skip", "warn" };
	json_object *o = json_object_new_object();

	if (outcome == CHECK_FAIL) {
		d->failed++;
		if (d->exit_code == EXIT_OK)
			d->exit_code = exit_code;
	} else if (outcome == CHECK_SKIP) {
		d->skipped++;
	} else {
		d->passed++;
	}
	json_object_object_add(o, "check", json_object_new_string(check));
	json_object_object_add(o, "subject", subject ? json_object_new_string(subject) : NULL);
	json_object_object_add(o, "status", json_object_new_string(names[outcome]));
	json_object_object_add(o, "message", json_object_new_string(message ? message : ""));
	json_object_object_add(o, "fix", fix ? json_object_new_string(fix) : NULL);
	json_object_object_add(o, "exit_code", outcome == CHECK_FAIL ? json_object_new_int(exit_code) : NULL);
	json_object_array_add(d->checks, o);
	if (d->text_subject)
		subject = d->text_subject;
	if (!d->cli->json && !(d->cli->quiet && outcome != CHECK_FAIL) &&
	    !(d->detail && !d->cli->verbose)) {
		static const char *const tags[] = { "[ok]  ", "[FAIL]", "[skip]", "[warn]" };

		printf("%s %-8s %s%s%s\n", tags[outcome], check, subject ? subject : "",
		       subject && message && *message ? ": " : "", message ? message : "");
		if (fix && outcome != CHECK_OK)
			printf("       fix: %s\n", fix);
	}
	d->text_subject = NULL;
	d->detail = 0;
	return o;
}

static void failf(struct doctor *d, int status, const char *check, const char *subject,
                  const char *fix)
{
	item(d, CHECK_FAIL, cli_exit_for_status(status), check, subject,
	     fv_error_last()->message, fix);
}

/* ---- The checks ---- */

static int check_config(struct doctor *d, fv_context **ctx)
{
	char fix_buf[4400];
	const char *fix;
	int rc = fv_context_open(ctx, d->cli->config_path, 0);

	snprintf(fix_buf, sizeof(fix_buf), "write a starter one with flowvault init (the "
	         "example: %s), or pass --config FILE",
	         cli_doc_path("flowvault.example.json", "config/flowvault.example.json"));
	if (rc == FV_OK) {
		item(d, CHECK_OK, 0, "config", fv_context_config_path(*ctx),
		     "valid JSON, known fields, safe ownership and mode", NULL);
		return 0;
	}
	if (strstr(fv_error_last()->message, "chmod") || strstr(fv_error_last()->message, "chown"))
		fix = "make the file and its directories writable only by you or root "
		      "(the message names the command)";
	else if (strstr(fv_error_last()->message, "not valid JSON"))
		fix = "correct the JSON at the line shown";
	else if (strstr(fv_error_last()->message, "no configuration found"))
		fix = fix_buf;
	else
		fix = "correct the field the message names; flowvault.json(5) lists every field";
	failf(d, rc, "config", d->cli->config_path, fix);
	return -1;
}

/* A fix that adds something to the refusal, which often names the command. */
static const char *fix_for_plugin(const char *refused)
{
	if (strstr(refused, "chmod") || strstr(refused, "chown"))
		return "run the command the message gives, or remove the file from the plugin path";
	if (strstr(refused, "ABI"))
		return "install the plugin built for this flowvault (flowvault version shows "
		       "its ABI), or remove it from the plugin path";
	return "replace the file with a flowvault plugin, or remove it from the plugin path";
}

static int plugin_cb(void *arg, const fv_plugin_info *info)
{
	struct doctor *d = arg;
	char text_subject[512];
	json_object *o;

	snprintf(text_subject, sizeof(text_subject), "%s (%s)", info->name, info->path);
	d->text_subject = text_subject;
	if (!info->refused)
		o = item(d, CHECK_OK, 0, "plugin", info->name, "loads", NULL);
	else if (strstr(info->refused, "shadowed"))
		o = item(d, CHECK_WARN, 0, "plugin", info->name, info->refused,
		         "remove the duplicate if it is not meant to be there");
	else
		o = item(d, CHECK_FAIL, EXIT_USAGE, "plugin", info->name, info->refused,
		         fix_for_plugin(info->refused));
	json_object_object_add(o, "path", json_object_new_string(info->path));
	return 0;
}

struct key_state {
	const char *name;
	int ok;
	char fingerprint[FV_FINGERPRINT_HEX_SIZE];
	fv_key *key;
};

/* What to do about a key that does not open, beyond what its message says. */
static const char *fix_for_key(int status, const char *message)
{
	if (strstr(message, "chmod") || strstr(message, "chown"))
		return "run the command the message gives";
	switch (status) {
	case FV_ERR_NOT_FOUND:
		return "create it with flowvault generate KEY, or correct its reference in the "
		       "configuration";
	case FV_ERR_AUTH:
		return "correct the passphrase or PIN the key's secret reference gives";
	case FV_ERR_SECRET:
		return "make the secret reference resolve: export the variable, or create the "
		       "file with mode 0600";
	case FV_ERR_PLUGIN:
		return "flowvault plugins shows whether the key's plugin loads, and why not";
	case FV_ERR_UNSUPPORTED:
		return "use an RSA-2048 key the plugin supports (flowvault generate KEY makes one)";
	case FV_ERR_PERMISSION:
		return "give the user running flowvault access to the key's store";
	default:
		return "make the store reachable (token present, TPM or daemon running, service "
		       "reachable); flowvault -v keys shows the backend's own words";
	}
}

static void check_keys(struct doctor *d, fv_context *ctx, struct key_state *keys, size_t n)
{
	char msg[1200], fix[512];
	size_t i, w;

	for (i = 0; i < n; i++) {
		struct cli_key_report r;
		json_object *o;
		int rc;

		keys[i].name = fv_context_key_name(ctx, i);
		cli_key_report_open(&r, ctx, keys[i].name);
		rc = r.status;
		if (r.state == CLI_KEY_UNREACHABLE && rc == FV_ERR_CONFIG) {
			/* Provider fields are checked when the key opens. */
			snprintf(msg, sizeof(msg), "keys.%s", keys[i].name);
			item(d, CHECK_FAIL, cli_exit_for_status(rc), "config", msg, r.message,
			     "correct the field the message names; flowvault.json(5) lists the "
			     "fields of each provider");
			continue;
		}
		if (r.state == CLI_KEY_UNREACHABLE) {
			item(d, CHECK_FAIL, cli_exit_for_status(rc), "key", keys[i].name, r.message,
			     fix_for_key(rc, r.message));
			continue;
		}
		for (w = 0; w < r.details->warning_count; w++) {
			const fv_key_warning *kw = &r.details->warnings[w];

			if (kw->refused && r.details->require_non_extractable)
				continue; /* part of the refusal below */
			snprintf(msg, sizeof(msg), "%s: %s", kw->property, kw->message);
			snprintf(fix, sizeof(fix), "create a key inside its store (flowvault rotate "
			         "%s --new NAME moves its numbers to it)%s", keys[i].name,
			         kw->refused ? "; keys.NAME.require_non_extractable is false, "
			                       "so this key is accepted" : "");
			o = item(d, CHECK_WARN, 0, "key", keys[i].name, msg, fix);
			json_object_object_add(o, "warning", cli_key_warning_json(kw));
		}
		if (r.state == CLI_KEY_REFUSED) {
			snprintf(fix, sizeof(fix), "create a key inside its store (flowvault rotate %s "
			         "--new NAME moves its numbers to it), or accept this one with "
			         "\"require_non_extractable\": false in keys.%s", keys[i].name,
			         keys[i].name);
			o = item(d, CHECK_FAIL, cli_exit_for_status(rc), "key", keys[i].name, r.message,
			         fix);
			json_object_object_add(o, "state", json_object_new_string("refused"));
			cli_key_report_clear(&r);
			continue;
		}
		rc = fv_key_self_test(r.key);
		if (rc != FV_OK) {
			failf(d, rc, "key", keys[i].name, fix_for_key(rc, fv_error_last()->message));
			cli_key_report_clear(&r);
			continue;
		}
		keys[i].ok = 1;
		keys[i].key = r.key;
		r.key = NULL;
		memcpy(keys[i].fingerprint, r.fingerprint, sizeof(keys[i].fingerprint));
		snprintf(msg, sizeof(msg), "opens; OAEP-SHA256 test decryption ok; fingerprint %s",
		         keys[i].fingerprint);
		o = item(d, CHECK_OK, 0, "key", keys[i].name, msg, NULL);
		json_object_object_add(o, "fingerprint_sha256",
		                       json_object_new_string(keys[i].fingerprint));
		cli_key_report_clear(&r);
	}
}

static const char *graph_fix(const fv_graph_result *r)
{
	switch (r->error_code) {
	case 190: return "the access token is expired or invalid: create a new system-user "
	                 "token and update the secret graph.access_token refers to";
	case 10: return "the token lacks whatsapp_business_management permission, or the "
	                "number is not allow-listed";
	case 100: return "check the phone-number id in the configuration";
	default: return "check graph.base_url, graph.ca_file and the network; retry later if "
	                "the Graph API reported a temporary error";
	}
}

/* The phone numbers of key `name`: configured ones first (*configured of
 * them), then its WABA's. */
static int targets_of(char ***out, size_t *count, size_t *configured, fv_context *ctx,
                      fv_graph *graph, const char *name)
{
	size_t n = fv_context_key_phone_count(ctx, name), i, w = 0;
	const char *waba = fv_context_key_waba(ctx, name);
	char **waba_ids = NULL, **ids;

	if (waba && (!graph || fv_graph_waba_phone_numbers(&waba_ids, &w, graph, waba) != FV_OK))
		return -1;
	ids = calloc(n + w + 1, sizeof(*ids));
	for (i = 0; ids && i < n; i++)
		ids[i] = strdup(fv_context_key_phone(ctx, name, i));
	for (i = 0; ids && i < w; i++)
		ids[n + i] = strdup(waba_ids[i]);
	fv_graph_ids_free(waba_ids);
	*out = ids;
	*count = ids ? n + w : 0;
	*configured = n;
	return ids ? 0 : -1;
}

static int in_serve(fv_context *ctx, const struct key_state *keys, size_t nkeys,
                    const char *fingerprint)
{
	size_t i, j;

	for (i = 0; i < fv_context_serve_key_count(ctx); i++)
		for (j = 0; j < nkeys; j++)
			if (keys[j].ok && strcmp(keys[j].name, fv_context_serve_key(ctx, i)) == 0 &&
			    strcmp(keys[j].fingerprint, fingerprint) == 0)
				return 1;
	return 0;
}

/* One number's verdict: ok, or a failure with its own fix. */
static void check_number(struct doctor *d, fv_context *ctx, const struct key_state *keys,
                         size_t n, const struct key_state *k, const fv_graph_result *r,
                         const char *waba)
{
	char subject[256], msg[512];
	json_object *o;

	snprintf(subject, sizeof(subject), "%s on %s", k->name, r->phone_number_id);
	if (r->status == FV_ERR_GRAPH) {
		o = item(d, CHECK_FAIL, EXIT_GRAPH, "number", subject, r->message, graph_fix(r));
	} else if (r->status != FV_OK) {
		o = item(d, CHECK_FAIL, EXIT_MISMATCH, "number", subject, r->message,
		         !r->registered ? "run flowvault register KEY (or finish the rotation "
		                          "that moves it)"
		         : !r->matches_local ? "run flowvault register KEY to replace the key "
		                               "registered there"
		         : "check the number's WABA in WhatsApp Manager, then run flowvault "
		           "register KEY again");
	} else if (fv_context_has_serve(ctx) && !in_serve(ctx, keys, n, r->remote_fingerprint)) {
		o = item(d, CHECK_FAIL, EXIT_MISMATCH, "number", subject,
		         "holds a key that serve.keys does not list: flowvault serve would "
		         "answer its requests with 421",
		         "add the key to serve.keys (and restart serve)");
	} else {
		snprintf(msg, sizeof(msg), "registered, VALID%s",
		         fv_context_has_serve(ctx) ? ", served" : "");
		d->detail = waba != NULL; /* a WABA's numbers are summed up below */
		o = item(d, CHECK_OK, 0, "number", subject, msg, NULL);
	}
	json_object_object_add(o, "key", json_object_new_string(k->name));
	json_object_object_add(o, "phone_number_id", json_object_new_string(r->phone_number_id));
	json_object_object_add(o, "waba_id", waba ? json_object_new_string(waba) : NULL);
	json_object_object_add(o, "fingerprint_sha256",
	                       r->remote_fingerprint[0] ? json_object_new_string(r->remote_fingerprint)
	                                                : NULL);
}

static void check_graph(struct doctor *d, fv_context *ctx, struct key_state *keys, size_t n)
{
	fv_graph *graph = NULL;
	size_t i, j, any = 0;
	int token_checked = 0, token_refused = 0;

	for (i = 0; i < n; i++)
		any += fv_context_key_phone_count(ctx, keys[i].name) +
		       (fv_context_key_waba(ctx, keys[i].name) != NULL);
	if (!fv_context_has_graph(ctx)) {
		if (any)
			item(d, CHECK_FAIL, EXIT_USAGE, "graph", NULL,
			     "keys name phone numbers but the configuration has no \"graph\" section",
			     "add \"graph\": {\"access_token\": \"env:WHATSAPP_ACCESS_TOKEN\"}");
		else
			item(d, CHECK_SKIP, 0, "graph", NULL, "no \"graph\" section", NULL);
		return;
	}
	if (fv_graph_open(&graph, ctx) != FV_OK) {
		failf(d, fv_error_last()->status, "graph", "access token",
		      "set graph.access_token to a secret reference that resolves (env:NAME, "
		      "file:PATH) and holds a system-user token");
		return;
	}
	for (i = 0; i < n && !token_refused; i++) {
		const char *waba = fv_context_key_waba(ctx, keys[i].name);
		fv_graph_result *res = NULL;
		char **ids = NULL, subject[256], msg[512];
		size_t count = 0, configured = 0, waba_ok = 0, waba_failed = 0;

		if (!fv_context_key_phone_count(ctx, keys[i].name) && !waba)
			continue;
		if (targets_of(&ids, &count, &configured, ctx, graph, keys[i].name) != 0) {
			/* The client stops at a refused token (190): so do the checks. */
			token_refused = strstr(fv_error_last()->message, "Graph API error 190 ") != NULL;
			failf(d, fv_error_last()->status, "graph", keys[i].name,
			      token_refused ? "the access token is expired or invalid: create a new "
			                      "system-user token and update the secret "
			                      "graph.access_token refers to"
			                    : "check the key's waba_id and the token's access to that "
			                      "WABA");
			token_checked = 1;
			if (token_refused)
				item(d, CHECK_SKIP, 0, "number", NULL,
				     "not checked: the access token was refused (see the graph check)",
				     NULL);
			continue;
		}
		if (!keys[i].ok) {
			item(d, CHECK_SKIP, 0, "number", keys[i].name,
			     "the key does not open; its numbers are not checked", NULL);
			fv_graph_ids_free(ids);
			continue;
		}
		fv_graph_check(&res, graph, keys[i].key, (const char *const *)ids, count,
		               FV_GRAPH_STATUS);
		for (j = 0; res && j < count && !token_refused; j++) {
			if (!token_checked) {
				token_checked = 1;
				if (res[j].status == FV_ERR_GRAPH)
					item(d, CHECK_FAIL, EXIT_GRAPH, "graph", fv_graph_endpoint(graph),
					     res[j].message, graph_fix(&res[j]));
				else
					item(d, CHECK_OK, 0, "graph", fv_graph_endpoint(graph),
					     "the access token works", NULL);
			}
			if (res[j].status == FV_ERR_GRAPH && res[j].error_code == 190) {
				/* Every other number would say the same. */
				token_refused = 1;
				item(d, CHECK_SKIP, 0, "number", NULL,
				     "not checked: the access token was refused (see the graph check)",
				     NULL);
				break;
			}
			check_number(d, ctx, keys, n, &keys[i], &res[j], j < configured ? NULL : waba);
			if (j >= configured) {
				if (res[j].status == FV_OK && !(fv_context_has_serve(ctx) &&
				    !in_serve(ctx, keys, n, res[j].remote_fingerprint)))
					waba_ok++;
				else
					waba_failed++;
			}
		}
		if (res && waba && !token_refused) {
			json_object *o;

			snprintf(subject, sizeof(subject), "%s on WABA %s", keys[i].name, waba);
			snprintf(msg, sizeof(msg), "%zu of %zu numbers registered, VALID%s%s", waba_ok,
			         count - configured, fv_context_has_serve(ctx) ? ", served" : "",
			         waba_failed ? " (the others are listed above)"
			                     : d->cli->verbose ? "" : " (-v lists them)");
			o = item(d, waba_failed ? CHECK_WARN : CHECK_OK, 0, "waba", subject, msg,
			         waba_failed ? "see the failed numbers above" : NULL);
			json_object_object_add(o, "key", json_object_new_string(keys[i].name));
			json_object_object_add(o, "waba_id", json_object_new_string(waba));
			json_object_object_add(o, "numbers",
			                       json_object_new_int64((int64_t)(count - configured)));
			json_object_object_add(o, "numbers_ok", json_object_new_int64((int64_t)waba_ok));
		}
		if (!res)
			failf(d, fv_error_last()->status, "number", keys[i].name,
			      "check the phone-number ids in the configuration");
		fv_graph_results_free(res, count);
		fv_graph_ids_free(ids);
	}
	if (!token_checked)
		item(d, CHECK_SKIP, 0, "graph", fv_graph_endpoint(graph),
		     any ? "the token was resolved but not used: no key with phone numbers opens"
		         : "no phone numbers configured; the token was resolved but not used", NULL);
	fv_graph_free(graph);
}

static void check_serve(struct doctor *d, fv_context *ctx, struct key_state *keys, size_t n)
{
	char subject[128];
	size_t i, j;
	int problems = 0;

	if (!fv_context_has_serve(ctx)) {
		item(d, CHECK_SKIP, 0, "serve", NULL, "no \"serve\" section", NULL);
		return;
	}
	for (i = 0; i < fv_context_serve_key_count(ctx); i++) {
		const char *name = fv_context_serve_key(ctx, i);

		for (j = 0; j < n && strcmp(keys[j].name, name) != 0; j++)
			;
		if (j < n && !keys[j].ok) {
			snprintf(subject, sizeof(subject), "serve.keys[%zu]", i);
			item(d, CHECK_FAIL, EXIT_BACKEND, "serve", subject,
			     "names a key that does not open (see its key check above)",
			     "fix the key, or remove it from serve.keys");
			problems++;
		}
	}
	for (i = 0; i < fv_context_serve_secret_count(ctx); i++) {
		char *secret = NULL;
		size_t len = 0;

		snprintf(subject, sizeof(subject), "serve.app_secrets[%zu]", i);
		if (fv_secret_resolve(&secret, &len, fv_context_serve_secret(ctx, i),
		                      "app secret") != FV_OK) {
			failf(d, fv_error_last()->status, "serve", subject,
			      "make the reference resolve (export the variable, create the file "
			      "with mode 0600)");
			problems++;
			continue;
		}
		if (len == 0) {
			item(d, CHECK_FAIL, EXIT_USAGE, "serve", subject, "the app secret is empty",
			     "store the app secret from the Meta app dashboard");
			problems++;
		}
		fv_secret_free(secret, len);
	}
	if (fv_context_serve_allow_unsigned(ctx)) {
		item(d, CHECK_WARN, 0, "serve", "serve.allow_unsigned",
		     "is true: requests are served without checking their X-Hub-Signature-256, "
		     "so anyone who reaches the endpoint can make the key decrypt",
		     "list the Meta app secret in serve.app_secrets (e.g. \"env:APP_SECRET\") "
		     "and remove \"allow_unsigned\"");
	}
	for (i = 0; i < 2; i++) {
		char *path = fv_context_serve_tls_file(ctx, (int)i);

		if (path && access(path, R_OK) != 0) {
			char msg[600];

			snprintf(msg, sizeof(msg), "cannot read '%s'", path);
			item(d, CHECK_FAIL, EXIT_USAGE, "serve", i ? "serve.key" : "serve.cert", msg,
			     "point serve.cert and serve.key at the TLS certificate and key files");
			problems++;
		}
		fv_free(path);
	}
	if (fv_context_serve_admin_insecure(ctx))
		item(d, CHECK_WARN, 0, "serve", "serve.admin_insecure",
		     "is true: the admin listener (/healthz, /metrics) is reachable from other "
		     "machines without TLS or without a token",
		     "set serve.admin_cert, serve.admin_key and serve.admin_token, then remove "
		     "\"admin_insecure\"");
	if (!problems)
		item(d, CHECK_OK, 0, "serve", NULL,
		     "keys open, app secrets resolve, TLS files readable", NULL);
}

/* Each node of serve.nodes: reachable, authenticated, holding every key of
 * serve.keys (with this machine's fingerprint) as ok. */
static void check_nodes(struct doctor *d, fv_context *ctx, const struct key_state *keys,
                        size_t n)
{
	fv_node_status *nodes = NULL;
	size_t count = 0, i, k, j;

	if (!fv_context_has_serve(ctx))
		return;
	if (fv_nodes_query(&nodes, &count, ctx) != FV_OK) {
		failf(d, fv_error_last()->status, "nodes", "serve.nodes",
		      "fix serve.nodes, serve.nodes_ca or serve.admin_token");
		return;
	}
	for (i = 0; i < count; i++) {
		const fv_node_status *node = &nodes[i];
		json_object *o, *list;
		char msg[1200], fix[600] = "", held[700] = "";
		size_t used = 0;
		int ok = node->error == NULL;

		for (k = 0; k < node->key_count && used < sizeof(held); k++)
			used += (size_t)snprintf(held + used, sizeof(held) - used, "%s%s (%s, %.16s)",
			                         k ? ", " : "", node->keys[k].name,
			                         node->keys[k].ok ? "ok" : "unavailable",
			                         node->keys[k].fingerprint[0] ? node->keys[k].fingerprint
			                                                       : "no fingerprint");
		if (node->error) {
			snprintf(msg, sizeof(msg), "%s", node->error);
			snprintf(fix, sizeof(fix), "%s", !node->reachable
			         ? "start flowvault serve on that node, or check the address, TLS "
			           "(serve.nodes_ca) and firewall"
			         : !node->authenticated
			         ? "give that node the same serve.admin_token"
			         : "point serve.nodes at the node's serve.admin_listen");
		} else {
			snprintf(msg, sizeof(msg), "generation %ld; keys: %s", node->generation,
			         node->key_count ? held : "none");
			for (k = 0; k < fv_context_serve_key_count(ctx) && ok; k++) {
				const char *name = fv_context_serve_key(ctx, k);
				const fv_node_key *nk = fv_node_find_key(node, name);

				for (j = 0; j < n && strcmp(keys[j].name, name) != 0; j++)
					;
				if (!nk || !nk->ok ||
				    (j < n && keys[j].ok && strcmp(nk->fingerprint, keys[j].fingerprint) != 0)) {
					ok = 0;
					snprintf(msg, sizeof(msg), "%s key %s of serve.keys (generation %ld; "
					         "keys: %s)", !nk ? "lacks" : !nk->ok ? "cannot decrypt with"
					         : "holds another", name, node->generation,
					         node->key_count ? held : "none");
					snprintf(fix, sizeof(fix), "distribute this configuration to that node "
					         "and reload flowvault serve there (systemctl reload, or SIGHUP)");
				}
			}
		}
		o = item(d, ok ? CHECK_OK : CHECK_FAIL, EXIT_FAILURE_OTHER, "nodes", node->url, msg,
		         ok ? NULL : fix);
		json_object_object_add(o, "reachable", json_object_new_boolean(node->reachable));
		json_object_object_add(o, "authenticated",
		                       json_object_new_boolean(node->authenticated));
		json_object_object_add(o, "generation", node->generation >= 0
		                       ? json_object_new_int64(node->generation) : NULL);
		list = json_object_new_array();
		for (k = 0; k < node->key_count; k++) {
			json_object *key = json_object_new_object();

			json_object_object_add(key, "name", json_object_new_string(node->keys[k].name));
			json_object_object_add(key, "fingerprint",
			                       json_object_new_string(node->keys[k].fingerprint));
			json_object_object_add(key, "ok", json_object_new_boolean(node->keys[k].ok));
			json_object_array_add(list, key);
		}
		json_object_object_add(o, "keys", list);
	}
	fv_nodes_free(nodes, count);
}

static void check_rotation(struct doctor *d, fv_context *ctx)
{
	fv_rotation *r = NULL;
	char msg[512];
	int state;

	if (fv_rotation_read(&r, ctx) != FV_OK) {
		failf(d, fv_error_last()->status, "rotation", NULL,
		      "the rotation journal next to the configuration is damaged; read it");
		return;
	}
	state = fv_rotation_state(r);
	if (state == FV_ROTATION_NONE || state == FV_ROTATION_FINISHED ||
	    state == FV_ROTATION_ABORTED) {
		item(d, CHECK_OK, 0, "rotation", NULL, "none in progress", NULL);
	} else if (state == FV_ROTATION_SWITCHED) {
		int64_t over = fv_rotation_grace_overrun(r, (int64_t)time(NULL));
		char when[64] = "", until[64] = "", fix[512];
		time_t at = (time_t)fv_rotation_switched_at(r);
		time_t end = at + (time_t)fv_rotation_grace_seconds(r);
		struct tm tm;

		if (at && gmtime_r(&at, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
		if (at && gmtime_r(&end, &tm))
			strftime(until, sizeof(until), "%Y-%m-%d %H:%M UTC", &tm);
		if (over > 0) {
			snprintf(msg, sizeof(msg), "%s -> %s has been in its grace window %lld s longer "
			         "than planned; the previous key is still served", fv_rotation_key(r),
			         fv_rotation_new_key(r), (long long)over);
			snprintf(fix, sizeof(fix), "flowvault rotate --finish %s (or --abort to go back)",
			         fv_rotation_new_key(r));
		} else {
			/* serve reads serve.keys when it starts or reloads: one started
			 * before the switch and not reloaded lacks the new key. */
			snprintf(msg, sizeof(msg), "%s -> %s switched%s%s: serve.keys lists both, and the "
			         "numbers hold %s; a flowvault serve started before the switch and not "
			         "reloaded since still lacks %s", fv_rotation_key(r), fv_rotation_new_key(r),
			         when[0] ? " at " : "", when, fv_rotation_new_key(r), fv_rotation_new_key(r));
			snprintf(fix, sizeof(fix), "reload flowvault serve if it runs since before the "
			         "switch (systemctl reload flowvault-serve); after the grace window%s%s: "
			         "flowvault rotate --finish %s", until[0] ? ", from " : "", until,
			         fv_rotation_new_key(r));
		}
		item(d, CHECK_WARN, 0, "rotation", NULL, msg, fix);
	} else {
		snprintf(msg, sizeof(msg), "%s -> %s stopped at step \"%s\" (%zu of %zu numbers moved)",
		         fv_rotation_key(r), fv_rotation_new_key(r), fv_rotation_state_name(state),
		         fv_rotation_registered_count(r), fv_rotation_target_count(r));
		item(d, CHECK_FAIL, EXIT_FAILURE_OTHER, "rotation", NULL, msg,
		     "flowvault rotate --resume");
	}
	fv_rotation_free(r);
}

static int run_doctor(struct cli *cli, int argc, char **argv)
{
	struct doctor d = { .cli = cli };
	struct key_state *keys = NULL;
	fv_context *ctx = NULL;
	size_t i, n = 0;

	if (argc > 1)
		return cli_usage(cli, "unexpected argument '%s'", argv[1]);
	d.checks = json_object_new_array();
	if (check_config(&d, &ctx) == 0) {
		fv_plugins_foreach(ctx, plugin_cb, &d);
		n = fv_context_key_count(ctx);
		keys = calloc(n + 1, sizeof(*keys));
		if (!keys) {
			json_object_put(d.checks);
			fv_context_free(ctx);
			return cli_failf(cli, EXIT_FAILURE_OTHER, "out of memory");
		}
		if (!n)
			item(&d, CHECK_FAIL, EXIT_USAGE, "key", NULL, "no keys configured",
			     "add an entry under \"keys\" and create it with flowvault generate");
		check_keys(&d, ctx, keys, n);
		check_graph(&d, ctx, keys, n);
		check_serve(&d, ctx, keys, n);
		check_nodes(&d, ctx, keys, n);
		check_rotation(&d, ctx);
	}
	if (cli->json) {
		json_object *doc = json_object_new_object();

		json_object_object_add(doc, "ok", json_object_new_boolean(d.failed == 0));
		json_object_object_add(doc, "failed", json_object_new_int64((int64_t)d.failed));
		json_object_object_add(doc, "exit_code", json_object_new_int(d.exit_code));
		json_object_object_add(doc, "checks", d.checks);
		cli_print_json(doc);
	} else {
		json_object_put(d.checks);
		if (!cli->quiet)
			printf("\n%zu passed, %zu failed, %zu skipped\n", d.passed, d.failed, d.skipped);
	}
	for (i = 0; i < n; i++)
		fv_key_free(keys[i].key);
	free(keys);
	fv_context_free(ctx);
	return d.exit_code;
}

const struct cli_command cli_cmd_doctor = {
	.name = "doctor",
	.synopsis = "doctor",
	.summary = "check configuration, plugins, keys, Graph API, numbers and serve",
	.help =
		"Runs every check below and prints one line per check, with what to fix\n"
		"for each failure:\n"
		"  config    the configuration is found, valid JSON with known fields, and\n"
		"            neither it nor a directory above it is writable by others\n"
		"  plugin    every plugin on the search path loads\n"
		"  key       every configured key opens and decrypts a fresh OAEP-SHA256\n"
		"            test message encrypted to its public key\n"
		"  graph     the access token resolves and works (one read request)\n"
		"  number    every configured phone number (and every number of a\n"
		"            configured WABA) holds its key with status VALID, and, when\n"
		"            there is a serve section, a key that serve.keys lists\n"
		"  serve     serve.keys open, serve.app_secrets resolve, TLS files readable\n"
		"  nodes     each node of serve.nodes answers /healthz (TLS, admin_token) and\n"
		"            holds every key of serve.keys, with its fingerprint, as ok\n"
		"  rotation  no rotation is left unfinished before its switch\n"
		"A check that cannot apply (no graph or serve section) is skipped. Secrets\n"
		"are resolved as the other commands do: a \"prompt\" reference asks.\n"
		"\n"
		"With --json: {\"ok\", \"failed\", \"exit_code\", \"checks\": [{\"check\",\n"
		"\"subject\", \"status\": \"ok\"|\"fail\"|\"skip\"|\"warn\", \"message\", \"fix\",\n"
		"\"exit_code\"}]}.\n"
		"\n"
		"Exit codes: 0 when every check passes; otherwise the exit code of the first\n"
		"failed check: 2 configuration, plugin or secret; 3 key backend; 4 Graph API;\n"
		"5 a number without its key as VALID, or with a key serve does not hold;\n"
		"1 an unfinished rotation, or a node unreachable or lacking a key.\n",
	.run = run_doctor,
};
