/*
 * Graph API client: the "graph" configuration section, the client, WABA
 * phone-number listing, and registering/checking a key on phone numbers.
 * The request runner with retries is in graph_http.c.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "graph_internal.h"

#ifndef FLOWVAULT_VERSION_STRING
#define FLOWVAULT_VERSION_STRING FLOWVAULT_VERSION
#endif

/* ---- The "graph" section ---- */

static const char *const graph_fields[] = {
	"base_url", "api_version", "access_token", "ca_file", "timeout_seconds",
	"connect_timeout_seconds", "max_retries", "max_in_flight", "max_wait_seconds",
	"retry_base_ms", NULL
};

static void settings_free(struct graph_settings *s)
{
	free(s->base_url);
	free(s->api_version);
	free(s->token_reference);
	free(s->ca_file);
	memset(s, 0, sizeof(*s));
}

static int field_string(const char **out, json_object *v, const char *where,
                        const char *name)
{
	if (!json_object_is_type(v, json_type_string) || !*json_object_get_string(v))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: expected a non-empty string",
		                     where, name);
	*out = json_object_get_string(v);
	return FV_OK;
}

/* A number of seconds (integer or decimal) in (min, max]. */
static int field_seconds(double *out, json_object *v, const char *where,
                         const char *name, double min, int min_inclusive, double max)
{
	double d;

	if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: expected a number of seconds",
		                     where, name);
	d = json_object_get_double(v);
	if ((min_inclusive ? d < min : d <= min) || d > max)
		return fv__error_set(FV_ERR_CONFIG,
			"%s.%s: %g is out of range (%s %g and at most %g seconds)", where, name,
			d, min_inclusive ? "at least" : "more than", min, max);
	*out = d;
	return FV_OK;
}

static int field_int(long *out, json_object *v, const char *where, const char *name,
                     long min, long max)
{
	int64_t i;

	if (!json_object_is_type(v, json_type_int))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: expected an integer", where, name);
	i = json_object_get_int64(v);
	if (i < min || i > max)
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: %lld is out of range (%ld to %ld)",
		                     where, name, (long long)i, min, max);
	*out = (long)i;
	return FV_OK;
}

static int valid_api_version(const char *v)
{
	/* "v25.0": a 'v', digits, a dot, digits. */
	if (*v++ != 'v' || !isdigit((unsigned char)*v))
		return 0;
	while (isdigit((unsigned char)*v))
		v++;
	if (*v++ != '.' || !isdigit((unsigned char)*v))
		return 0;
	while (isdigit((unsigned char)*v))
		v++;
	return *v == '\0';
}

static int valid_base_url(const char *url)
{
	const char *host = url + 8;
	size_t i;

	if (strncmp(url, "https://", 8) != 0 || !*host || *host == '/')
		return 0;
	for (i = 0; url[i]; i++)
		if ((unsigned char)url[i] <= ' ' || url[i] == '?' || url[i] == '#' ||
		    url[i] == '\\' || (unsigned char)url[i] >= 0x7f)
			return 0;
	return 1;
}

/*
 * Check `section` and, when `s` is not NULL, fill it (defaults for absent
 * fields; ca_file made absolute against the configuration's directory).
 */
static int settings_parse(struct graph_settings *s, json_object *section,
                          const char *where, const fv_context *ctx)
{
	const char *base_url = GRAPH_DEFAULT_BASE_URL, *api_version = GRAPH_DEFAULT_API_VERSION;
	const char *token = NULL, *ca_file = NULL;
	double timeout = 30, connect_timeout = 10, max_wait = 300;
	long max_retries = 5, max_in_flight = 8, retry_base_ms = 1000;
	int rc = FV_OK;

	if (section && !json_object_is_type(section, json_type_object))
		return fv__error_set(FV_ERR_CONFIG, "%s: expected an object", where);
	if (section) {
		json_object_object_foreach(section, name, v) {
			size_t i;

			for (i = 0; graph_fields[i] && strcmp(graph_fields[i], name) != 0; i++)
				;
			if (!graph_fields[i])
				return fv__error_set(FV_ERR_CONFIG,
					"%s.%s: unknown field (known fields: base_url, api_version, "
					"access_token, ca_file, timeout_seconds, connect_timeout_seconds, "
					"max_retries, max_in_flight, max_wait_seconds, retry_base_ms)",
					where, name);
			if (strcmp(name, "base_url") == 0) {
				if ((rc = field_string(&base_url, v, where, name)) == FV_OK &&
				    !valid_base_url(base_url))
					rc = fv__error_set(FV_ERR_CONFIG,
						"%s.base_url: '%s' is not an https:// URL (TLS is required; "
						"the default is " GRAPH_DEFAULT_BASE_URL ")", where, base_url);
			} else if (strcmp(name, "api_version") == 0) {
				if ((rc = field_string(&api_version, v, where, name)) == FV_OK &&
				    !valid_api_version(api_version))
					rc = fv__error_set(FV_ERR_CONFIG,
						"%s.api_version: '%s' is not a Graph API version such as "
						GRAPH_DEFAULT_API_VERSION, where, api_version);
			} else if (strcmp(name, "access_token") == 0) {
				char path[128];

				snprintf(path, sizeof(path), "%s.access_token", where);
				if (!json_object_is_type(v, json_type_string))
					rc = fv__error_set(FV_ERR_CONFIG,
						"%s: expected a secret reference string (e.g. "
						"\"env:WHATSAPP_ACCESS_TOKEN\")", path);
				else
					rc = fv__secret_check_field(json_object_get_string(v), path);
				if (rc == FV_OK)
					token = json_object_get_string(v);
			} else if (strcmp(name, "ca_file") == 0) {
				rc = field_string(&ca_file, v, where, name);
			} else if (strcmp(name, "timeout_seconds") == 0) {
				rc = field_seconds(&timeout, v, where, name, 0, 0, 3600);
			} else if (strcmp(name, "connect_timeout_seconds") == 0) {
				rc = field_seconds(&connect_timeout, v, where, name, 0, 0, 3600);
			} else if (strcmp(name, "max_wait_seconds") == 0) {
				rc = field_seconds(&max_wait, v, where, name, 0, 1, 86400);
			} else if (strcmp(name, "max_retries") == 0) {
				rc = field_int(&max_retries, v, where, name, 0, 20);
			} else if (strcmp(name, "max_in_flight") == 0) {
				rc = field_int(&max_in_flight, v, where, name, 1, 256);
			} else if (strcmp(name, "retry_base_ms") == 0) {
				rc = field_int(&retry_base_ms, v, where, name, 1, 60000);
			}
			if (rc != FV_OK)
				return rc;
		}
	}
	if (!s)
		return FV_OK;
	memset(s, 0, sizeof(*s));
	s->timeout_ms = (long)(timeout * 1000.0);
	s->connect_timeout_ms = (long)(connect_timeout * 1000.0);
	if (s->timeout_ms < 1)
		s->timeout_ms = 1;
	if (s->connect_timeout_ms < 1)
		s->connect_timeout_ms = 1;
	s->max_retries = (unsigned int)max_retries;
	s->max_in_flight = (unsigned int)max_in_flight;
	s->max_wait_seconds = max_wait;
	s->retry_base_ms = retry_base_ms;
	s->base_url = strdup(base_url);
	s->api_version = strdup(api_version);
	s->token_reference = token ? strdup(token) : NULL;
	s->ca_file = ca_file ? fv__config_resolve_path(ctx, ca_file) : NULL;
	if (!s->base_url || !s->api_version || (token && !s->token_reference) ||
	    (ca_file && !s->ca_file)) {
		settings_free(s);
		return fv__error_nomem();
	}
	/* "https://host/" and "https://host" name the same root. */
	while (strlen(s->base_url) > 8 && s->base_url[strlen(s->base_url) - 1] == '/')
		s->base_url[strlen(s->base_url) - 1] = '\0';
	return FV_OK;
}

int fv__graph_config_check(json_object *section, const char *where)
{
	return settings_parse(NULL, section, where, NULL);
}

/* ---- The client ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int load_ca_file(STACK_OF(X509) **out, const char *path)
{
	STACK_OF(X509) *certs;
	BIO *bio = BIO_new_file(path, "r");
	X509 *cert;

	if (!bio)
		return fv__error_set(FV_ERR_CONFIG,
			"graph.ca_file: cannot read '%s': %s; give the PEM file of the CA that "
			"signed the Graph API server's certificate", path,
			errno ? strerror(errno) : "unreadable");
	certs = sk_X509_new_null();
	while (certs && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
		if (!sk_X509_push(certs, cert)) {
			X509_free(cert);
			break;
		}
	ERR_clear_error(); /* the end of the file reads as an error */
	BIO_free(bio);
	if (!certs)
		return fv__error_nomem();
	if (sk_X509_num(certs) == 0) {
		sk_X509_free(certs);
		return fv__error_set(FV_ERR_CONFIG,
			"graph.ca_file: '%s' holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
			path);
	}
	*out = certs;
	return FV_OK;
}

/* "https://host[:port]/" of the base URL. */
/* A copy of `url` without the query parameter `name` (every occurrence). */
static char *url_without_param(const char *url, const char *name)
{
	const char *q = strchr(url, '?'), *p;
	size_t n = strlen(name), used;
	char *out = malloc(strlen(url) + 1);

	if (!out)
		return NULL;
	if (!q) {
		strcpy(out, url);
		return out;
	}
	used = (size_t)(q - url);
	memcpy(out, url, used);
	for (p = q + 1; *p;) {
		size_t len = strcspn(p, "&#");

		if (!(len >= n && strncmp(p, name, n) == 0 && (len == n || p[n] == '='))) {
			char sep = used == (size_t)(q - url) ? '?' : '&';

			out[used++] = sep;
			memcpy(out + used, p, len);
			used += len;
		}
		p += len;
		if (*p == '#') {
			strcpy(out + used, p);
			return out;
		}
		if (*p == '&')
			p++;
	}
	out[used] = '\0';
	return out;
}

static char *origin_of(const char *base_url)
{
	const char *slash = strchr(base_url + 8, '/');
	size_t len = slash ? (size_t)(slash - base_url) : strlen(base_url);
	char *origin = malloc(len + 2);

	if (origin)
		snprintf(origin, len + 2, "%.*s/", (int)len, base_url);
	return origin;
}

static int token_is_header_safe(const char *token, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)token[i] <= ' ' || (unsigned char)token[i] == 0x7f)
			return 0;
	return 1;
}

int fv_graph_open(fv_graph **out, fv_context *ctx)
{
	static const char bearer[] = "Authorization: Bearer ";
	fv_graph *g;
	char *token = NULL;
	size_t token_len = 0, len;
	int rc;

	if (!out || !ctx)
		return fv__error_set(FV_ERR_USAGE, "fv_graph_open: out and ctx are required");
	*out = NULL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return fv__error_set(FV_ERR_GENERIC, "libcurl cannot start: %s",
		                     curl_easy_strerror(curl_init_result));
	if (!(g = calloc(1, sizeof(*g))))
		return fv__error_nomem();
	if ((rc = settings_parse(&g->settings, ctx->graph, "graph", ctx)) != FV_OK) {
		free(g);
		return rc;
	}
	if (!g->settings.token_reference) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"graph.access_token is not set: add \"graph\": {\"access_token\": "
			"\"env:WHATSAPP_ACCESS_TOKEN\"} to %s and export a system-user token",
			ctx->config_path ? ctx->config_path : "the configuration");
		goto fail;
	}
	if (g->settings.ca_file && (rc = load_ca_file(&g->ca_certs, g->settings.ca_file)) != FV_OK)
		goto fail;
	len = strlen(g->settings.base_url) + strlen(g->settings.api_version) + 2;
	if (!(g->endpoint = malloc(len)) || !(g->origin = origin_of(g->settings.base_url)) ||
	    !(g->multi = curl_multi_init())) {
		rc = fv__error_nomem();
		goto fail;
	}
	snprintf(g->endpoint, len, "%s/%s", g->settings.base_url, g->settings.api_version);
	snprintf(g->user_agent, sizeof(g->user_agent), "flowvault/%s", FLOWVAULT_VERSION_STRING);

	if ((rc = fv_secret_resolve(&token, &token_len, g->settings.token_reference,
	                            "Graph API access token")) != FV_OK) {
		fv__error_prefix("graph.access_token");
		goto fail;
	}
	if (!token_is_header_safe(token, token_len)) {
		fv_secret_free(token, token_len);
		rc = fv__error_set(FV_ERR_SECRET,
			"graph.access_token: the token is empty or contains spaces or control "
			"characters; store only the token itself");
		goto fail;
	}
	len = sizeof(bearer) + token_len;
	if (!(g->auth_header = malloc(len))) {
		fv_secret_free(token, token_len);
		rc = fv__error_nomem();
		goto fail;
	}
	snprintf(g->auth_header, len, "%s%s", bearer, token);
	fv_secret_free(token, token_len);
	*out = g;
	return FV_OK;
fail:
	fv_graph_free(g);
	return rc;
}

void fv_graph_free(fv_graph *g)
{
	if (!g)
		return;
	if (g->auth_header) {
		OPENSSL_cleanse(g->auth_header, strlen(g->auth_header));
		free(g->auth_header);
	}
	if (g->multi)
		curl_multi_cleanup(g->multi);
	sk_X509_pop_free(g->ca_certs, X509_free);
	settings_free(&g->settings);
	free(g->endpoint);
	free(g->origin);
	free(g->stop_message);
	free(g);
}

const char *fv_graph_endpoint(const fv_graph *graph)
{
	return graph ? graph->endpoint : NULL;
}

/* Graph ids are decimal digits; anything else could change the URL path. */
static int valid_graph_id(const char *id)
{
	size_t i;

	if (!id || !*id || strlen(id) > 32)
		return 0;
	for (i = 0; id[i]; i++)
		if (!isdigit((unsigned char)id[i]))
			return 0;
	return 1;
}

/* ---- WABA phone numbers ---- */

struct listing {
	struct fv_graph *graph;
	const char *waba_id;
	char **ids;
	size_t count, capacity;
	unsigned int pages;
};

/* Enough for 1,000,000 numbers at 100 per page: a server that pages forever
 * must not keep us here forever. */
#define GRAPH_MAX_PAGES 10000u

static enum graph_step listing_page(struct graph_job *job, json_object *answer)
{
	struct listing *l = job->arg;
	json_object *data, *paging, *next;
	size_t i, n;

	l->pages++;
	if (!json_object_object_get_ex(answer, "data", &data) ||
	    !json_object_is_type(data, json_type_array))
		return graph_job_fail(job, FV_ERR_GRAPH,
			"WABA %s: the Graph API answer has no \"data\" list of phone numbers",
			l->waba_id);
	n = json_object_array_length(data);
	for (i = 0; i < n; i++) {
		const char *id = NULL;
		json_object *entry = json_object_array_get_idx(data, i), *v;

		if (json_object_is_type(entry, json_type_object) &&
		    json_object_object_get_ex(entry, "id", &v) &&
		    json_object_is_type(v, json_type_string))
			id = json_object_get_string(v);
		if (!id || !valid_graph_id(id))
			return graph_job_fail(job, FV_ERR_GRAPH,
				"WABA %s: page %u of the phone-number list has an entry without a "
				"numeric \"id\"", l->waba_id, l->pages);
		if (l->count + 1 >= l->capacity) {
			size_t cap = l->capacity ? l->capacity * 2 : 128;
			char **grown = realloc(l->ids, cap * sizeof(*grown));

			if (!grown)
				return graph_job_fail(job, FV_ERR_NOMEM, "out of memory");
			l->ids = grown;
			l->capacity = cap;
		}
		if (!(l->ids[l->count] = strdup(id)))
			return graph_job_fail(job, FV_ERR_NOMEM, "out of memory");
		l->ids[++l->count] = NULL;
	}
	/* Only a missing paging.next ends the list: a short page does not. */
	if (!json_object_object_get_ex(answer, "paging", &paging) ||
	    !json_object_object_get_ex(paging, "next", &next) ||
	    !json_object_is_type(next, json_type_string))
		return GRAPH_STEP_DONE;
	if (strncmp(json_object_get_string(next), l->graph->origin,
	            strlen(l->graph->origin)) != 0)
		return graph_job_fail(job, FV_ERR_GRAPH,
			"WABA %s: the Graph API sent a next-page link to another server; refusing "
			"to send the access token there", l->waba_id);
	if (l->pages >= GRAPH_MAX_PAGES)
		return graph_job_fail(job, FV_ERR_GRAPH,
			"WABA %s: more than %u pages of phone numbers; the server keeps paging",
			l->waba_id, GRAPH_MAX_PAGES);
	{
		/* The Graph API repeats access_token in paging.next; the token goes
		 * in the Authorization header only, never in a URL. */
		char *url = url_without_param(json_object_get_string(next), "access_token");
		int rc = url ? graph_job_request(job, "GET", url, NULL) : FV_ERR_NOMEM;

		free(url);
		if (rc != FV_OK)
			return graph_job_fail(job, FV_ERR_NOMEM, "out of memory");
	}
	return GRAPH_STEP_NEXT;
}

void fv_graph_ids_free(char **ids)
{
	size_t i;

	for (i = 0; ids && ids[i]; i++)
		free(ids[i]);
	free(ids);
}

int fv_graph_waba_phone_numbers(char ***ids, size_t *count, fv_graph *g,
                                const char *waba_id)
{
	struct listing l = { .graph = g, .waba_id = waba_id };
	struct graph_job job = { 0 }, *jobs[1] = { &job };
	char *url = NULL;
	int rc;

	if (!ids || !count || !g || !waba_id)
		return fv__error_set(FV_ERR_USAGE, "fv_graph_waba_phone_numbers: missing argument");
	*ids = NULL;
	*count = 0;
	if (!valid_graph_id(waba_id))
		return fv__error_set(FV_ERR_USAGE,
			"WABA id '%s' is not a Graph id (decimal digits)", waba_id);
	if (asprintf(&url, "%s/%s/phone_numbers?fields=id,display_phone_number,"
	             "verified_name,status&limit=100", g->endpoint, waba_id) < 0)
		return fv__error_nomem();
	rc = graph_job_request(&job, "GET", url, NULL);
	free(url);
	if (rc != FV_OK)
		return rc;
	job.on_answer = listing_page;
	job.arg = &l;
	rc = graph_run(g, jobs, 1);
	if (rc == FV_OK && job.status != FV_OK)
		rc = fv__error_set(job.status, "WABA %s: listing its phone numbers failed: %s",
		                   waba_id, job.message ? job.message : "out of memory");
	graph_job_clear(&job);
	if (rc != FV_OK) {
		fv_graph_ids_free(l.ids);
		return rc;
	}
	if (!l.ids && !(l.ids = calloc(1, sizeof(*l.ids))))
		return fv__error_nomem();
	fv__log(FV_LOG_INFO, "graph: WABA %s has %zu phone numbers (%u pages)", waba_id,
	        l.count, l.pages);
	*ids = l.ids;
	*count = l.count;
	return FV_OK;
}

/* ---- Register and check ---- */

struct number_job {
	struct graph_job job;
	fv_graph_result *result;
	const unsigned char *der;     /* our SPKI */
	size_t der_len;
	char *get_url;
};

const char *fv_graph_key_status_name(int key_status)
{
	switch (key_status) {
	case FV_GRAPH_KEY_VALID: return "VALID";
	case FV_GRAPH_KEY_MISMATCH: return "MISMATCH";
	case FV_GRAPH_KEY_UNKNOWN: return "UNKNOWN";
	default: return NULL;
	}
}

/* Compare a PEM from Graph with our DER SPKI: parse, re-encode, compare DER,
 * so line lengths or a missing final newline do not matter. */
static int spki_matches(fv_graph_result *r, const char *pem,
                        const unsigned char *der, size_t der_len)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
	unsigned char *remote = NULL;
	int remote_len = pkey ? i2d_PUBKEY(pkey, &remote) : -1;
	int same = 0;

	if (remote_len > 0) {
		if (fv_spki_fingerprint(r->remote_fingerprint, remote, (size_t)remote_len) != FV_OK)
			r->remote_fingerprint[0] = '\0';
		same = (size_t)remote_len == der_len && memcmp(remote, der, der_len) == 0;
	}
	OPENSSL_free(remote);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	ERR_clear_error();
	return remote_len > 0 ? same : -1;
}

static enum graph_step number_read(struct graph_job *job, json_object *answer)
{
	struct number_job *nj = (struct number_job *)job;
	fv_graph_result *r = nj->result;
	json_object *data, *entry = answer, *v;
	const char *pem, *status;
	int same;

	/* Documented: {"data": [{...}]}; one guide shows the bare object. */
	if (json_object_object_get_ex(answer, "data", &data)) {
		if (!json_object_is_type(data, json_type_array))
			return graph_job_fail(job, FV_ERR_GRAPH,
				"the Graph API answer's \"data\" is not a list");
		entry = json_object_array_length(data) ? json_object_array_get_idx(data, 0) : NULL;
	}
	pem = entry && json_object_object_get_ex(entry, "business_public_key", &v) &&
	      json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
	status = entry && json_object_object_get_ex(entry, "business_public_key_signature_status", &v) &&
	         json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
	if (!pem || !*pem) {
		r->registered = 0;
		return GRAPH_STEP_DONE;
	}
	r->registered = 1;
	if (status) {
		free((char *)r->status_text);
		r->status_text = strdup(status);
		r->key_status = strcmp(status, "VALID") == 0 ? FV_GRAPH_KEY_VALID
		              : strcmp(status, "MISMATCH") == 0 ? FV_GRAPH_KEY_MISMATCH
		              : FV_GRAPH_KEY_UNKNOWN;
	}
	same = spki_matches(r, pem, nj->der, nj->der_len);
	r->matches_local = same == 1;
	if (same < 0)
		fv__log(FV_LOG_WARNING, "graph: phone number %s: the stored key is not a PEM "
		        "public key", r->phone_number_id);
	return GRAPH_STEP_DONE;
}

static enum graph_step number_uploaded(struct graph_job *job, json_object *answer)
{
	struct number_job *nj = (struct number_job *)job;
	json_object *v;

	if (!json_object_object_get_ex(answer, "success", &v) || !json_object_get_boolean(v))
		return graph_job_fail(job, FV_ERR_GRAPH,
			"the Graph API did not confirm the upload (no \"success\": true); run "
			"register again");
	nj->result->registered = 1; /* until the read-back says otherwise */
	if (graph_job_request(job, "GET", nj->get_url, NULL) != FV_OK)
		return graph_job_fail(job, FV_ERR_NOMEM, "out of memory");
	job->on_answer = number_read;
	return GRAPH_STEP_NEXT;
}

void fv_graph_results_free(fv_graph_result *results, size_t count)
{
	size_t i;

	for (i = 0; results && i < count; i++) {
		free((char *)results[i].phone_number_id);
		free((char *)results[i].status_text);
		free((char *)results[i].message);
		free((char *)results[i].fbtrace_id);
	}
	free(results);
}

/* The per-number verdict and message once its requests are over. */
static void number_finish(fv_graph_result *r, struct graph_job *job, int mode)
{
	char *message = NULL;

	r->attempts = job->attempts;
	if (job->status != FV_OK) {
		r->status = job->status == FV_ERR_NOMEM ? FV_ERR_NOMEM : FV_ERR_GRAPH;
		r->error_code = job->error_code;
		r->error_subcode = job->error_subcode;
		r->http_status = job->http_status;
		r->fbtrace_id = job->fbtrace_id;
		job->fbtrace_id = NULL;
		message = job->message;
		job->message = NULL;
	} else if (!r->registered) {
		r->status = FV_ERR_MISMATCH;
		if (asprintf(&message, mode == FV_GRAPH_REGISTER
		             ? "the upload was accepted but reading it back shows no key; run "
		               "register again"
		             : "no business public key is registered; run flowvault register") < 0)
			message = NULL;
	} else if (!r->matches_local) {
		r->status = FV_ERR_MISMATCH;
		if (asprintf(&message, "the registered key (fingerprint %s) is not this key; "
		             "run flowvault register to replace it",
		             r->remote_fingerprint[0] ? r->remote_fingerprint : "unreadable") < 0)
			message = NULL;
	} else if (r->key_status != FV_GRAPH_KEY_VALID) {
		r->status = FV_ERR_MISMATCH;
		if (asprintf(&message, "the registered key has signature status %s, not VALID; "
		             "check the number's WABA and register again",
		             r->status_text ? r->status_text : "(none)") < 0)
			message = NULL;
	} else {
		r->status = FV_OK;
	}
	r->message = message ? message : strdup(r->status == FV_OK ? "" : "out of memory");
}

void fv_graph_set_progress(fv_graph *g, fv_graph_progress_fn fn, void *arg)
{
	if (!g)
		return;
	g->progress = fn;
	g->progress_arg = arg;
}

int fv_graph_check(fv_graph_result **results, fv_graph *g, fv_key *key,
                   const char *const *phone_ids, size_t count, int mode)
{
	struct number_job *jobs = NULL;
	struct graph_job **queue = NULL;
	fv_graph_result *r = NULL;
	unsigned char *der = NULL;
	char *pem = NULL, *escaped = NULL, *form = NULL;
	size_t der_len = 0, i, graph_failed = 0, mismatched = 0, first_bad = 0;
	int rc;

	if (!results || !g || !key || (!phone_ids && count))
		return fv__error_set(FV_ERR_USAGE, "fv_graph_check: missing argument");
	*results = NULL;
	if (mode != FV_GRAPH_STATUS && mode != FV_GRAPH_REGISTER)
		return fv__error_set(FV_ERR_USAGE, "fv_graph_check: unknown mode %d", mode);
	for (i = 0; i < count; i++)
		if (!valid_graph_id(phone_ids[i]))
			return fv__error_set(FV_ERR_USAGE,
				"phone-number id '%s' is not a Graph id (decimal digits, as in the "
				"WhatsApp Manager or `flowvault status --waba ID`)",
				phone_ids[i] ? phone_ids[i] : "(null)");
	if ((rc = fv_key_public_der(&der, &der_len, key)) != FV_OK)
		return rc;
	if (mode == FV_GRAPH_REGISTER) {
		if ((rc = fv_key_public_pem(&pem, key)) != FV_OK)
			goto out;
		/* Form encoding keeps the PEM's real newlines as %0A. */
		if (!(escaped = curl_easy_escape(NULL, pem, 0)) ||
		    asprintf(&form, "business_public_key=%s", escaped) < 0) {
			form = NULL;
			rc = fv__error_nomem();
			goto out;
		}
	}
	jobs = calloc(count ? count : 1, sizeof(*jobs));
	queue = calloc(count ? count : 1, sizeof(*queue)); // NOLINT(bugprone-sizeof-expression): an array of job pointers
	r = calloc(count ? count : 1, sizeof(*r));
	if (!jobs || !queue || !r) {
		rc = fv__error_nomem();
		goto out;
	}
	for (i = 0; i < count; i++) {
		struct number_job *nj = &jobs[i];
		char *url = NULL;

		queue[i] = &nj->job;
		nj->result = &r[i];
		nj->der = der;
		nj->der_len = der_len;
		nj->job.arg = nj;
		if (!(r[i].phone_number_id = strdup(phone_ids[i])) ||
		    asprintf(&url, "%s/%s/whatsapp_business_encryption", g->endpoint,
		             phone_ids[i]) < 0 ||
		    asprintf(&nj->get_url, "%s?fields=business_public_key,"
		             "business_public_key_signature_status", url) < 0) {
			nj->get_url = NULL;
			free(url);
			rc = fv__error_nomem();
			goto out;
		}
		if (mode == FV_GRAPH_REGISTER) {
			rc = graph_job_request(&nj->job, "POST", url, form);
			nj->job.on_answer = number_uploaded;
		} else {
			rc = graph_job_request(&nj->job, "GET", nj->get_url, NULL);
			nj->job.on_answer = number_read;
		}
		free(url);
		if (rc != FV_OK)
			goto out;
	}
	if ((rc = graph_run(g, queue, count)) != FV_OK)
		goto out;
	for (i = 0; i < count; i++) {
		number_finish(&r[i], &jobs[i].job, mode);
		if (r[i].status == FV_OK)
			continue;
		if (!graph_failed && !mismatched)
			first_bad = i;
		if (r[i].status == FV_ERR_MISMATCH)
			mismatched++;
		else
			graph_failed++;
	}
	*results = r;
	r = NULL;
	if (graph_failed || mismatched) {
		const fv_graph_result *bad = &(*results)[first_bad];
		char counts[160] = "";

		if (graph_failed)
			snprintf(counts, sizeof(counts), "%zu failed at the Graph API", graph_failed);
		if (mismatched)
			snprintf(counts + strlen(counts), sizeof(counts) - strlen(counts),
			         "%s%zu without this key registered as VALID",
			         graph_failed ? ", " : "", mismatched);
		rc = fv__error_set(graph_failed ? FV_ERR_GRAPH : FV_ERR_MISMATCH,
			"%zu of %zu phone numbers failed (%s); first: phone number %s: %s",
			graph_failed + mismatched, count, counts, bad->phone_number_id, bad->message);
	} else {
		rc = FV_OK;
	}
out:
	for (i = 0; jobs && i < count; i++) {
		graph_job_clear(&jobs[i].job);
		free(jobs[i].get_url);
	}
	if (r)
		fv_graph_results_free(r, count);
	free(jobs);
	free(queue);
	free(form);
	curl_free(escaped);
	fv_free(pem);
	fv_free(der);
	return rc;
}
