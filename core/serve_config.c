/*
 * The "serve" section of the configuration: every field checked, unknown
 * fields refused, errors naming the JSON path.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "serve_internal.h"
#include "serve/media.h"

static const char *const serve_fields[] = {
	"listen", "admin_listen", "cert", "key", "path", "keys", "app_secrets",
	"allow_unsigned", "upstream", "upstream_timeout_ms", "max_body_bytes",
	"max_connections", "request_timeout_s", "threads", "isolation", "workers",
	"user", "pid_file", "log_format", "admin_token", "admin_cert", "admin_key",
	"admin_insecure", "nodes", "nodes_ca", "media", NULL
};

/* serve.nodes entries at most: rotate and doctor ask each one in turn. */
#define MAX_NODES 64

#define MAX_APP_SECRETS 2

/* "listen, admin_listen, ...": for the unknown-field message. */
static const char *known_fields(void)
{
	static char list[640];
	size_t i, used = 0;

	if (list[0])
		return list;
	for (i = 0; serve_fields[i] && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
		                         serve_fields[i]);
	return list;
}

static void free_list(char **list, size_t count)
{
	size_t i;

	for (i = 0; list && i < count; i++)
		free(list[i]);
	free(list);
}

void fv__serve_config_clear(struct serve_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->listen);
	free(cfg->host);
	free(cfg->admin_listen);
	free(cfg->admin_host);
	free(cfg->cert_path);
	free(cfg->key_path);
	free(cfg->path);
	free_list(cfg->keys, cfg->key_count);
	free_list(cfg->app_secrets, cfg->app_secret_count);
	free(cfg->upstream);
	free(cfg->user);
	free(cfg->pid_file);
	free(cfg->admin_token);
	free(cfg->admin_cert_path);
	free(cfg->admin_key_path);
	free_list(cfg->nodes, cfg->node_count);
	free(cfg->nodes_ca);
	fv__media_config_free(cfg->media);
	memset(cfg, 0, sizeof(*cfg));
}

static int want_string(json_object *v, const char *where, const char *field)
{
	if (!json_object_is_type(v, json_type_string))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: expected a string", where, field);
	if (!json_object_get_string_len(v))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: must not be empty", where, field);
	return FV_OK;
}

int fv__serve_want_int(long long *out, json_object *v, const char *where, const char *field,
                       long long min, long long max)
{
	long long n;

	if (!json_object_is_type(v, json_type_int))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: expected an integer", where, field);
	n = json_object_get_int64(v);
	if (n < min || n > max)
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: %lld is out of range (%lld to %lld)",
		                     where, field, n, min, max);
	*out = n;
	return FV_OK;
}

/* "host:port", "[v6]:port". */
static int parse_listen(char **host, unsigned int *port, const char *s,
                        const char *where, const char *field)
{
	const char *colon, *h = s;
	size_t hlen;
	char *end;
	long p;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			goto bad;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			goto bad;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || !colon[1])
		goto bad;
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || colon[1] == '-' || colon[1] == '+')
		goto bad;
	if (p > 65535)
		return fv__error_set(FV_ERR_CONFIG,
			"%s.%s: '%s': port %.*s is out of range (0 to 65535)", where, field, s,
			(int)strlen(colon + 1), colon + 1);
	if (host && !(*host = strndup(h, hlen)))
		return fv__error_nomem();
	if (port)
		*port = (unsigned int)p;
	return FV_OK;
bad:
	return fv__error_set(FV_ERR_CONFIG,
		"%s.%s: '%s' is not HOST:PORT (for example \"127.0.0.1:8080\" or \"[::1]:8080\")",
		where, field, s);
}

static int string_list(char ***out, size_t *count, json_object *v, const char *where,
                       const char *field, size_t max_items, int secrets)
{
	char item_where[256];
	size_t i, j, n;
	char **list = NULL;
	int rc = FV_OK;

	if (!json_object_is_type(v, json_type_array))
		return fv__error_set(FV_ERR_CONFIG, "%s.%s: expected an array of strings",
		                     where, field);
	n = json_object_array_length(v);
	if (max_items && n > max_items)
		return fv__error_set(FV_ERR_CONFIG,
			"%s.%s: at most %zu entries (the current one and the one being rotated out)",
			where, field, max_items);
	if (out && !(list = calloc(n + 1, sizeof(*list))))
		return fv__error_nomem();
	for (i = 0; i < n && rc == FV_OK; i++) {
		json_object *item = json_object_array_get_idx(v, i);
		const char *s;

		snprintf(item_where, sizeof(item_where), "%s.%s[%zu]", where, field, i);
		if (!json_object_is_type(item, json_type_string) ||
		    !json_object_get_string_len(item)) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s: expected a non-empty string",
			                   item_where);
			break;
		}
		s = json_object_get_string(item);
		if (secrets) {
			if ((rc = fv__secret_check_field(s, item_where)) != FV_OK)
				break;
		} else {
			for (j = 0; j < i; j++)
				if (strcmp(json_object_get_string(json_object_array_get_idx(v, j)),
				           s) == 0) {
					rc = fv__error_set(FV_ERR_CONFIG, "%s: '%s' is listed twice",
					                   item_where, s);
					break;
				}
		}
		if (rc == FV_OK && list && !(list[i] = strdup(s)))
			rc = fv__error_nomem();
	}
	if (rc != FV_OK) {
		free_list(list, n);
		return rc;
	}
	if (out) {
		*out = list;
		*count = n;
	}
	return FV_OK;
}

static int check_keys_exist(const struct serve_config *cfg, json_object *keys,
                            const char *where, const fv_context *ctx)
{
	size_t i, n = json_object_array_length(keys), used = 0, k;
	char known[512] = "";

	for (k = 0; k < ctx->key_count && used < sizeof(known); k++)
		used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s",
		                         k ? ", " : "", ctx->keys[k].name);
	(void)cfg;
	for (i = 0; i < n; i++) {
		const char *name = json_object_get_string(json_object_array_get_idx(keys, i));

		if (!fv__config_key(ctx, name))
			return fv__error_set(FV_ERR_CONFIG,
				"%s.keys[%zu]: no key '%s' under \"keys\" (configured: %s)", where, i,
				name, used ? known : "none");
	}
	return FV_OK;
}

int fv__host_is_loopback(const char *host)
{
	unsigned char a[16];
	static const unsigned char v6_loopback[16] = { [15] = 1 };
	static const unsigned char v4_mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (!host)
		return 0;
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, host, a) == 1)
		return memcmp(a, v6_loopback, 16) == 0 ||
		       (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
	return 0;
}

/* The host of an http(s) URL without brackets, or NULL. */
static char *url_host(CURLU *u)
{
	char *host = NULL, *copy;
	size_t len;

	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		return NULL;
	len = strlen(host);
	copy = host[0] == '[' && len >= 2 ? strndup(host + 1, len - 2) : strdup(host);
	curl_free(host);
	return copy;
}

int fv__node_url_check(const char *url, const char *where)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *part = NULL;
	int rc = FV_OK, https;

	if (!u)
		return fv__error_nomem();
	/* libcurl also takes "https:/host" and "HTTPS://": only the plain form. */
	if ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
	    curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) ||
	    !(host = url_host(u))) {
		rc = fv__error_set(FV_ERR_CONFIG, "%s: '%s' is not an https:// URL (for example "
		                   "\"https://10.0.0.5:9464\", a node's serve.admin_listen)", where, url);
		goto out;
	}
	https = strcmp(scheme, "https") == 0;
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK ||
	    (curl_url_get(u, CURLUPART_PATH, &part, 0) == CURLUE_OK && strcmp(part, "/") != 0)) {
		rc = fv__error_set(FV_ERR_CONFIG, "%s: '%s': give only %s://HOST:PORT, the node's "
		                   "admin listener (/healthz is added)", where, url, scheme);
		goto out;
	}
	if (!https && !fv__host_is_loopback(host))
		rc = fv__error_set(FV_ERR_CONFIG, "%s: '%s' is plain HTTP to another machine: its "
		                   "answer and serve.admin_token would cross the network unprotected; "
		                   "use https:// (serve.admin_cert and serve.admin_key on that node)",
		                   where, url);
out:
	curl_free(part);
	curl_free(scheme);
	free(host);
	curl_url_cleanup(u);
	return rc;
}

/* A path field, absolute against the configuration's directory. */
static int path_field(char **out, json_object *section, const char *where, const char *field,
                      const fv_context *ctx)
{
	json_object *v;
	int rc;

	if (!json_object_object_get_ex(section, field, &v))
		return FV_OK;
	if ((rc = want_string(v, where, field)) != FV_OK)
		return rc;
	*out = ctx ? fv__config_resolve_path(ctx, json_object_get_string(v))
	           : strdup(json_object_get_string(v));
	return *out ? FV_OK : fv__error_nomem();
}

/* admin_token, admin_cert/admin_key, admin_insecure, nodes, nodes_ca. */
static int parse_admin(struct serve_config *cfg, json_object *section, const char *where,
                       const fv_context *ctx)
{
	char item_where[128];
	json_object *v;
	size_t i;
	int rc;

	if (json_object_object_get_ex(section, "admin_token", &v)) {
		const char *ref;

		snprintf(item_where, sizeof(item_where), "%s.admin_token", where);
		if ((rc = want_string(v, where, "admin_token")) != FV_OK ||
		    (rc = fv__secret_check_field(json_object_get_string(v), item_where)) != FV_OK)
			return rc;
		ref = json_object_get_string(v);
		if (strcmp(ref, "prompt") == 0)
			return fv__error_set(FV_ERR_CONFIG, "%s: 'prompt' cannot be used: serve reads "
			                     "the token again at each reload; use env:NAME or file:PATH",
			                     item_where);
		cfg->admin_token = ctx ? fv__config_secret_reference(ctx, ref) : strdup(ref);
		if (!cfg->admin_token)
			return fv__error_nomem();
	}
	if ((rc = path_field(&cfg->admin_cert_path, section, where, "admin_cert", ctx)) != FV_OK ||
	    (rc = path_field(&cfg->admin_key_path, section, where, "admin_key", ctx)) != FV_OK)
		return rc;
	if (!cfg->admin_cert_path != !cfg->admin_key_path)
		return fv__error_set(FV_ERR_CONFIG,
			"%s.%s: TLS on the admin listener needs both admin_cert and admin_key",
			where, cfg->admin_cert_path ? "admin_key" : "admin_cert");
	if (json_object_object_get_ex(section, "admin_insecure", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return fv__error_set(FV_ERR_CONFIG, "%s.admin_insecure: expected true or false",
			                     where);
		cfg->admin_insecure = json_object_get_boolean(v);
	}
	if (cfg->admin_listen && !fv__host_is_loopback(cfg->admin_host) &&
	    !(cfg->admin_cert_path && cfg->admin_token) && !cfg->admin_insecure)
		return fv__error_set(FV_ERR_CONFIG,
			"%s.admin_listen: '%s' is reachable from other machines, and /healthz and "
			"/metrics there would be %s; set serve.admin_cert, serve.admin_key and "
			"serve.admin_token (e.g. \"file:/etc/flowvault/admin.token\"), or listen on "
			"127.0.0.1 (\"admin_insecure\": true accepts the risk)", where,
			cfg->admin_listen, cfg->admin_cert_path ? "open to anyone (no admin_token)"
			: cfg->admin_token ? "plain HTTP, the token readable on the way (no admin_cert)"
			: "plain HTTP and open to anyone");
	if (json_object_object_get_ex(section, "nodes", &v)) {
		if (json_object_is_type(v, json_type_array) && json_object_array_length(v) > MAX_NODES)
			return fv__error_set(FV_ERR_CONFIG, "%s.nodes: %zu entries; at most %d", where,
			                     json_object_array_length(v), MAX_NODES);
		if ((rc = string_list(&cfg->nodes, &cfg->node_count, v, where, "nodes", 0, 0)) != FV_OK)
			return rc;
		for (i = 0; i < cfg->node_count; i++) {
			snprintf(item_where, sizeof(item_where), "%s.nodes[%zu]", where, i);
			if ((rc = fv__node_url_check(cfg->nodes[i], item_where)) != FV_OK)
				return rc;
		}
	}
	return path_field(&cfg->nodes_ca, section, where, "nodes_ca", ctx);
}

int fv__serve_config_parse(struct serve_config *out, json_object *section,
                           const char *where, const fv_context *ctx)
{
	struct serve_config cfg = { 0 };
	json_object *v, *cert = NULL, *key = NULL;
	long long n;
	int rc = FV_OK;

	if (!json_object_is_type(section, json_type_object))
		return fv__error_set(FV_ERR_CONFIG, "%s: expected an object", where);
	json_object_object_foreach(section, name, value) {
		size_t i;
		int known = 0;

		(void)value;
		for (i = 0; serve_fields[i]; i++)
			known |= strcmp(serve_fields[i], name) == 0;
		if (!known)
			return fv__error_set(FV_ERR_CONFIG,
				"%s.%s: unknown field (known fields: %s)", where, name, known_fields());
	}

	cfg.upstream_timeout_ms = SERVE_DEFAULT_UPSTREAM_TIMEOUT_MS;
	cfg.max_body_bytes = SERVE_DEFAULT_MAX_BODY_BYTES;
	cfg.max_connections = SERVE_DEFAULT_MAX_CONNECTIONS;
	cfg.request_timeout_s = SERVE_DEFAULT_REQUEST_TIMEOUT_S;
	cfg.threads = SERVE_DEFAULT_THREADS;
	cfg.workers = SERVE_DEFAULT_WORKERS;

	{
		const char *listen = SERVE_DEFAULT_LISTEN;

		if (json_object_object_get_ex(section, "listen", &v)) {
			if ((rc = want_string(v, where, "listen")) != FV_OK)
				goto out;
			listen = json_object_get_string(v);
		}
		if ((rc = parse_listen(&cfg.host, &cfg.port, listen, where, "listen")) != FV_OK)
			goto out;
		if (!(cfg.listen = strdup(listen))) {
			rc = fv__error_nomem();
			goto out;
		}
	}

	{
		const char *admin = SERVE_DEFAULT_ADMIN_LISTEN;

		if (json_object_object_get_ex(section, "admin_listen", &v)) {
			if ((rc = want_string(v, where, "admin_listen")) != FV_OK)
				goto out;
			admin = json_object_get_string(v);
		}
		if (strcmp(admin, "off") != 0) {
			if ((rc = parse_listen(&cfg.admin_host, &cfg.admin_port, admin, where,
			                       "admin_listen")) != FV_OK)
				goto out;
			if (!(cfg.admin_listen = strdup(admin))) {
				rc = fv__error_nomem();
				goto out;
			}
		}
	}

	if (cfg.admin_listen && cfg.admin_port && cfg.admin_port == cfg.port &&
	    strcmp(cfg.admin_host, cfg.host) == 0) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"%s.admin_listen: '%s' is the Flows address too; give /healthz and /metrics "
			"their own port (default %s) or \"off\"", where, cfg.admin_listen,
			SERVE_DEFAULT_ADMIN_LISTEN);
		goto out;
	}

	if ((rc = parse_admin(&cfg, section, where, ctx)) != FV_OK)
		goto out;

	json_object_object_get_ex(section, "cert", &cert);
	json_object_object_get_ex(section, "key", &key);
	if (cert && (rc = want_string(cert, where, "cert")) != FV_OK)
		goto out;
	if (key && (rc = want_string(key, where, "key")) != FV_OK)
		goto out;
	if (!cert != !key) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"%s.%s: TLS needs both cert and key (or neither, for plain HTTP behind a TLS proxy)",
			where, cert ? "key" : "cert");
		goto out;
	}
	if (cert) {
		cfg.cert_path = ctx ? fv__config_resolve_path(ctx, json_object_get_string(cert))
		                    : strdup(json_object_get_string(cert));
		cfg.key_path = ctx ? fv__config_resolve_path(ctx, json_object_get_string(key))
		                   : strdup(json_object_get_string(key));
		if (!cfg.cert_path || !cfg.key_path) {
			rc = fv__error_nomem();
			goto out;
		}
	}

	{
		const char *path = SERVE_DEFAULT_PATH;

		if (json_object_object_get_ex(section, "path", &v)) {
			if ((rc = want_string(v, where, "path")) != FV_OK)
				goto out;
			path = json_object_get_string(v);
		}
		if (path[0] != '/' || strpbrk(path, " \t\r\n?#%") ||
		    strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
			rc = fv__error_set(FV_ERR_CONFIG,
				"%s.path: '%s' must start with '/', hold no spaces, '?', '#' or '%%', "
				"and not be /healthz or /metrics", where, path);
			goto out;
		}
		if (!(cfg.path = strdup(path))) {
			rc = fv__error_nomem();
			goto out;
		}
	}

	if (!json_object_object_get_ex(section, "keys", &v)) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"%s.keys: missing; list the key names to decrypt with, current key first "
			"(e.g. \"keys\": [\"flows\"])", where);
		goto out;
	}
	if ((rc = string_list(&cfg.keys, &cfg.key_count, v, where, "keys", 0, 0)) != FV_OK)
		goto out;
	if (cfg.key_count > SERVE_MAX_KEYS) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"%s.keys: %zu keys; at most %d (the current key and those kept while rotating)",
			where, cfg.key_count, SERVE_MAX_KEYS);
		goto out;
	}
	if (cfg.key_count == 0) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"%s.keys: empty; name at least one key from \"keys\"", where);
		goto out;
	}
	if (ctx && (rc = check_keys_exist(&cfg, v, where, ctx)) != FV_OK)
		goto out;

	if (json_object_object_get_ex(section, "app_secrets", &v) &&
	    (rc = string_list(&cfg.app_secrets, &cfg.app_secret_count, v, where,
	                      "app_secrets", MAX_APP_SECRETS, 1)) != FV_OK)
		goto out;

	if (json_object_object_get_ex(section, "allow_unsigned", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.allow_unsigned: expected true or false",
			                   where);
			goto out;
		}
		cfg.allow_unsigned = json_object_get_boolean(v);
	}

	if (json_object_object_get_ex(section, "upstream", &v)) {
		const char *url;

		if ((rc = want_string(v, where, "upstream")) != FV_OK)
			goto out;
		url = json_object_get_string(v);
		if ((strncmp(url, "http://", 7) != 0 || !url[7]) &&
		    (strncmp(url, "https://", 8) != 0 || !url[8])) {
			rc = fv__error_set(FV_ERR_CONFIG,
				"%s.upstream: '%s' is not an http:// or https:// URL", where, url);
			goto out;
		}
		if (!(cfg.upstream = strdup(url))) {
			rc = fv__error_nomem();
			goto out;
		}
	}

	if (json_object_object_get_ex(section, "upstream_timeout_ms", &v)) {
		if ((rc = fv__serve_want_int(&n, v, where, "upstream_timeout_ms", 100,
		                   SERVE_MAX_UPSTREAM_TIMEOUT_MS)) != FV_OK)
			goto out;
		cfg.upstream_timeout_ms = (long)n;
	}
	if (json_object_object_get_ex(section, "max_body_bytes", &v)) {
		if ((rc = fv__serve_want_int(&n, v, where, "max_body_bytes", 1024, 64LL * 1024 * 1024)) != FV_OK)
			goto out;
		cfg.max_body_bytes = (size_t)n;
	}
	if (json_object_object_get_ex(section, "max_connections", &v)) {
		if ((rc = fv__serve_want_int(&n, v, where, "max_connections", 1, 100000)) != FV_OK)
			goto out;
		cfg.max_connections = (unsigned int)n;
	}
	if (json_object_object_get_ex(section, "request_timeout_s", &v)) {
		if ((rc = fv__serve_want_int(&n, v, where, "request_timeout_s", 1, 3600)) != FV_OK)
			goto out;
		cfg.request_timeout_s = (unsigned int)n;
	}
	if (json_object_object_get_ex(section, "threads", &v)) {
		if ((rc = fv__serve_want_int(&n, v, where, "threads", 1, 1024)) != FV_OK)
			goto out;
		cfg.threads = (unsigned int)n;
	}
	if (json_object_object_get_ex(section, "workers", &v)) {
		if ((rc = fv__serve_want_int(&n, v, where, "workers", 1, 64)) != FV_OK)
			goto out;
		cfg.workers = (unsigned int)n;
	}
	if (json_object_object_get_ex(section, "isolation", &v)) {
		const char *iso;

		if ((rc = want_string(v, where, "isolation")) != FV_OK)
			goto out;
		iso = json_object_get_string(v);
		if (strcmp(iso, "separated") == 0) {
			cfg.isolation = SERVE_SEPARATED;
		} else if (strcmp(iso, "none") == 0) {
			cfg.isolation = SERVE_SINGLE_PROCESS;
		} else {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.isolation: '%s' is not \"separated\" "
			                   "(the default) or \"none\"", where, iso);
			goto out;
		}
	}
	if (json_object_object_get_ex(section, "log_format", &v)) {
		const char *fmt;

		if ((rc = want_string(v, where, "log_format")) != FV_OK)
			goto out;
		fmt = json_object_get_string(v);
		if (strcmp(fmt, "text") == 0) {
			cfg.log_format = SERVE_LOG_TEXT;
		} else if (strcmp(fmt, "json") == 0) {
			cfg.log_format = SERVE_LOG_JSON;
		} else {
			rc = fv__error_set(FV_ERR_CONFIG, "%s.log_format: '%s' is not \"text\" (the "
			                   "default) or \"json\"", where, fmt);
			goto out;
		}
	}
	if (json_object_object_get_ex(section, "user", &v)) {
		if ((rc = want_string(v, where, "user")) != FV_OK)
			goto out;
		if (!(cfg.user = strdup(json_object_get_string(v)))) {
			rc = fv__error_nomem();
			goto out;
		}
	}
	if (json_object_object_get_ex(section, "pid_file", &v)) {
		if ((rc = want_string(v, where, "pid_file")) != FV_OK)
			goto out;
		cfg.pid_file = ctx ? fv__config_resolve_path(ctx, json_object_get_string(v))
		                   : strdup(json_object_get_string(v));
		if (!cfg.pid_file) {
			rc = fv__error_nomem();
			goto out;
		}
	}
	/* After upstream_timeout_ms: the two share WhatsApp's 10 s. */
	if (json_object_object_get_ex(section, "media", &v) &&
	    (rc = fv__media_config_parse(&cfg.media, v, where, ctx, cfg.upstream_timeout_ms)) != FV_OK)
		goto out;
out:
	if (rc != FV_OK || !out)
		fv__serve_config_clear(&cfg);
	else
		*out = cfg;
	return rc;
}

int fv__serve_config_check(const fv_context *ctx, json_object *section, const char *where)
{
	return fv__serve_config_parse(NULL, section, where, ctx);
}

int fv__serve_config_signing(const struct serve_config *cfg, const char *where)
{
	if (cfg->app_secret_count || cfg->allow_unsigned)
		return FV_OK;
	return fv__error_set(FV_ERR_CONFIG,
		"%s.app_secrets: missing; add the Meta app's secret, e.g. \"app_secrets\": "
		"[\"env:WHATSAPP_APP_SECRET\"], so that only WhatsApp can reach the key (or "
		"\"allow_unsigned\": true to serve unsigned requests, for tests only)", where);
}
