/*
 * The other nodes of an installation (serve.nodes): each one's admin
 * listener is asked for /healthz, over verified HTTPS (plain HTTP only to a
 * loopback address), with serve.admin_token as a Bearer token, no redirect
 * followed, short timeouts and a bounded answer. rotate moves no phone
 * number until every node holds the key; doctor reports them.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "serve_internal.h"

#define NODE_CONNECT_TIMEOUT_MS 2000L
#define NODE_TIMEOUT_MS 5000L

/* ---- The /healthz answer (outside input) ---- */

static int key_name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > NODE_KEY_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_-.", s[i]))
			return 0;
	return 1;
}

static int fingerprint_ok(const char *s, size_t len)
{
	size_t i;

	if (len != FV_FINGERPRINT_HEX_SIZE - 1)
		return 0;
	for (i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return 0;
	return 1;
}

static int bad(const char *what)
{
	return fv__error_set(FV_ERR_GENERIC, "/healthz answer: %s", what);
}

int fv__node_health_parse(struct node_health *out, const char *body, size_t len)
{
	json_tokener *tok;
	json_object *doc, *v, *keys, *fps = NULL;
	enum json_tokener_error jerr;
	int64_t gen;
	int rc = FV_OK;

	memset(out, 0, sizeof(*out));
	if (!body || len == 0 || len > NODE_HEALTH_MAX_BYTES)
		return bad(len ? "too large" : "empty");
	if (memchr(body, '\0', len))
		return bad("not JSON text");
	/* {"keys": {NAME: "ok"}, "fingerprints": {...}}: nothing deeper. */
	if (!(tok = json_tokener_new_ex(4)))
		return fv__error_nomem();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	doc = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	if (doc && (size_t)json_tokener_get_parse_end(tok) != len) {
		/* Only white space may follow the document. */
		size_t i;

		for (i = json_tokener_get_parse_end(tok); i < len; i++)
			if (!isspace((unsigned char)body[i]))
				jerr = json_tokener_error_parse_unexpected;
	}
	json_tokener_free(tok);
	if (!doc || jerr != json_tokener_success) {
		json_object_put(doc);
		return bad("not JSON");
	}
	if (!json_object_is_type(doc, json_type_object)) {
		rc = bad("not an object");
		goto out;
	}
	if (!json_object_object_get_ex(doc, "status", &v) || !json_object_is_type(v, json_type_string) ||
	    (strcmp(json_object_get_string(v), "ok") != 0 &&
	     strcmp(json_object_get_string(v), "unavailable") != 0)) {
		rc = bad("\"status\" is not \"ok\" or \"unavailable\"");
		goto out;
	}
	out->all_ok = strcmp(json_object_get_string(v), "ok") == 0;
	if (!json_object_object_get_ex(doc, "generation", &v) || !json_object_is_type(v, json_type_int) ||
	    (gen = json_object_get_int64(v)) < 0 || gen > UINT_MAX) {
		rc = bad("\"generation\" is not a number of reloads");
		goto out;
	}
	out->generation = (unsigned int)gen;
	if (!json_object_object_get_ex(doc, "keys", &keys) || !json_object_is_type(keys, json_type_object) ||
	    json_object_object_length(keys) > SERVE_MAX_KEYS) {
		rc = bad("\"keys\" is not an object of at most 8 keys");
		goto out;
	}
	if (json_object_object_get_ex(doc, "fingerprints", &fps) &&
	    !json_object_is_type(fps, json_type_object)) {
		rc = bad("\"fingerprints\" is not an object");
		goto out;
	}
	json_object_object_foreach(keys, name, state) {
		struct node_health_key *k = &out->keys[out->key_count];
		const char *s;

		if (!key_name_ok(name, strlen(name)) || !json_object_is_type(state, json_type_string) ||
		    (strcmp(json_object_get_string(state), "ok") != 0 &&
		     strcmp(json_object_get_string(state), "unavailable") != 0)) {
			rc = bad("an entry of \"keys\" is not NAME: \"ok\" or \"unavailable\"");
			goto out;
		}
		memcpy(k->name, name, strlen(name) + 1);
		k->ok = strcmp(json_object_get_string(state), "ok") == 0;
		if (fps && json_object_object_get_ex(fps, name, &v)) {
			if (!json_object_is_type(v, json_type_string) ||
			    !fingerprint_ok(s = json_object_get_string(v),
			                    (size_t)json_object_get_string_len(v))) {
				rc = bad("a fingerprint is not 64 lowercase hex digits");
				goto out;
			}
			memcpy(k->fingerprint, s, FV_FINGERPRINT_HEX_SIZE);
		}
		out->key_count++;
	}
	if (fps) {
		json_object_object_foreach(fps, fname, fv) {
			(void)fv;
			if (!json_object_object_get_ex(keys, fname, NULL)) {
				rc = bad("\"fingerprints\" names a key \"keys\" does not list");
				goto out;
			}
		}
	}
out:
	json_object_put(doc);
	if (rc != FV_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- HTTP ---- */

struct answer_buf {
	char *data;
	size_t len;
	int too_large;
};

static size_t answer_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct answer_buf *b = arg;
	size_t n = size * nmemb;
	char *grown;

	if (n > NODE_HEALTH_MAX_BYTES - b->len) {
		b->too_large = 1;
		return 0;
	}
	if (!(grown = realloc(b->data, b->len + n + 1)))
		return 0;
	b->data = grown;
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

void fv__node_answer_clear(struct node_answer *a)
{
	free(a->body);
	memset(a, 0, sizeof(*a));
}

int fv__node_get(struct node_answer *a, const char *url, const char *ca_file,
                 const char *token)
{
	struct answer_buf buf = { NULL, 0, 0 };
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *curl;
	CURLcode cc;

	memset(a, 0, sizeof(*a));
	if (!(curl = curl_easy_init()))
		return fv__error_nomem();
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, NODE_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, NODE_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, answer_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
	if (ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file);
	if (token) {
		/* libcurl sends it to this host only, never along a redirect. */
		curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(curl, CURLOPT_XOAUTH2_BEARER, token);
	}
	cc = curl_easy_perform(curl);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->http_status);
		a->result = NODE_ANSWERED;
		a->body = buf.data;
		a->len = buf.len;
		buf.data = NULL;
	} else {
		a->result = cc == CURLE_COULDNT_CONNECT ? NODE_REFUSED : NODE_FAILED;
		snprintf(a->why, sizeof(a->why), "%s", buf.too_large
		         ? "its answer is larger than 64 KiB"
		         : errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	curl_easy_cleanup(curl);
	free(buf.data);
	return FV_OK;
}

/* ---- The nodes of a configuration ---- */

struct node_store {
	char *url, *error;
	fv_node_key keys[SERVE_MAX_KEYS];
	struct node_health health;
};

static int node_query(fv_node_status *st, struct node_store *store, const char *url,
                      const char *ca_file, const char *token)
{
	struct node_answer a;
	char full[1024], why[512] = "";
	size_t n = strlen(url), i;
	int rc;

	st->url = store->url = strdup(url);
	if (!store->url)
		return fv__error_nomem();
	st->generation = -1;
	while (n && url[n - 1] == '/')
		n--;
	snprintf(full, sizeof(full), "%.*s/healthz", (int)n, url);
	if (fv__node_url_check(url, "serve.nodes") != FV_OK) {
		snprintf(why, sizeof(why), "%s", fv_error_last()->message);
		fv_error_clear();
		goto done;
	}
	if ((rc = fv__node_get(&a, full, ca_file, token)) != FV_OK)
		return rc;
	st->http_status = a.http_status;
	if (a.result != NODE_ANSWERED) {
		snprintf(why, sizeof(why), "unreachable: %s", a.why);
	} else if (a.http_status == 401 || a.http_status == 403) {
		st->reachable = 1;
		snprintf(why, sizeof(why), "refused %s (HTTP %ld): give every node the same "
		         "serve.admin_token", token ? "serve.admin_token" : "a request without a token "
		         "(serve.admin_token is not set here)", a.http_status);
	} else if (a.http_status >= 300 && a.http_status < 400) {
		st->reachable = 1;
		snprintf(why, sizeof(why), "answered with a redirect (HTTP %ld), which is not "
		         "followed: list the node's own admin address", a.http_status);
	} else if (a.http_status != 200 && a.http_status != 503) {
		st->reachable = 1;
		snprintf(why, sizeof(why), "answered HTTP %ld to /healthz: is this a flowvault "
		         "serve admin listener?", a.http_status);
	} else {
		st->reachable = st->authenticated = 1;
		if (fv__node_health_parse(&store->health, a.body, a.len) != FV_OK) {
			snprintf(why, sizeof(why), "%s", fv_error_last()->message);
			fv_error_clear();
		} else {
			st->generation = (long)store->health.generation;
			for (i = 0; i < store->health.key_count; i++) {
				store->keys[i].name = store->health.keys[i].name;
				store->keys[i].fingerprint = store->health.keys[i].fingerprint;
				store->keys[i].ok = store->health.keys[i].ok;
			}
			st->keys = store->keys;
			st->key_count = store->health.key_count;
		}
	}
	fv__node_answer_clear(&a);
done:
	if (why[0] && !(st->error = store->error = strdup(why)))
		return fv__error_nomem();
	return FV_OK;
}

int fv_nodes_query(fv_node_status **out, size_t *count, fv_context *ctx)
{
	struct serve_config cfg;
	struct node_store *stores = NULL;
	fv_node_status *nodes = NULL;
	char *token = NULL;
	size_t token_len = 0, i;
	int rc;

	if (!out || !count || !ctx)
		return fv__error_set(FV_ERR_USAGE, "fv_nodes_query: missing argument");
	*out = NULL;
	*count = 0;
	memset(&cfg, 0, sizeof(cfg));
	if (!ctx->serve)
		return FV_OK;
	if ((rc = fv__serve_config_parse(&cfg, ctx->serve, "serve", ctx)) != FV_OK)
		return rc;
	if (!cfg.node_count)
		goto out;
	if (cfg.admin_token &&
	    (rc = fv_secret_resolve(&token, &token_len, cfg.admin_token, "serve.admin_token")) != FV_OK)
		goto out;
	/* One block: the public array first, each node's storage after it. */
	nodes = calloc(1, cfg.node_count * (sizeof(*nodes) + sizeof(*stores)));
	if (!nodes) {
		rc = fv__error_nomem();
		goto out;
	}
	stores = (struct node_store *)(void *)(nodes + cfg.node_count);
	for (i = 0; i < cfg.node_count; i++) {
		if ((rc = node_query(&nodes[i], &stores[i], cfg.nodes[i], cfg.nodes_ca, token)) != FV_OK) {
			size_t j;

			for (j = 0; j <= i; j++) {
				free(stores[j].url);
				free(stores[j].error);
			}
			free(nodes);
			goto out;
		}
	}
	*out = nodes;
	*count = cfg.node_count;
out:
	fv_secret_free(token, token_len);
	fv__serve_config_clear(&cfg);
	return rc;
}

void fv_nodes_free(fv_node_status *nodes, size_t count)
{
	struct node_store *stores;
	size_t i;

	if (!nodes)
		return;
	stores = (struct node_store *)(void *)(nodes + count);
	for (i = 0; i < count; i++) {
		free(stores[i].url);
		free(stores[i].error);
	}
	free(nodes);
}

const fv_node_key *fv_node_find_key(const fv_node_status *node, const char *name)
{
	size_t i;

	for (i = 0; node && name && i < node->key_count; i++)
		if (strcmp(node->keys[i].name, name) == 0)
			return &node->keys[i];
	return NULL;
}
