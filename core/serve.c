/*
 * `flowvault serve`: the public server API.
 *
 * With serve.isolation "separated" (the default) the calling process becomes
 * the supervisor (core/serve/supervisor.c): it never opens a key or loads a
 * plugin; a key process (core/serve/keyproc.c) holds the keys and answers
 * decrypt requests only, and sandboxed network workers
 * (core/serve/worker.c) speak HTTP. With "none" everything runs in this
 * process, as one libmicrohttpd server (core/serve/http.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <systemd/sd-daemon.h>

#include "serve_internal.h"
#include "serve/media.h"

/* /healthz runs one private-key operation per key; not more often than this. */
#define HEALTH_CACHE_SECONDS 2.0

struct fv_server {
	fv_context *ctx;
	struct serve_gen *gen;
	int curl_ready;
	/* isolation "none" */
	fv_key **keys;
	fv_flow_handler *handler;
	struct serve_upstream *upstream;
	struct serve_media *media;
	struct serve_metrics *metrics;
	struct serve_http http;
	int serving;
	pthread_mutex_t health_lock;
	double health_checked;
	int health_status;
	char *health_body;
	/* isolation "separated" */
	struct serve_supervisor *sup;
};

void fv__serve_key_warnings(fv_key *key)
{
	const fv_key_details *d;
	size_t i;

	if (fv_key_details_get(&d, key) != FV_OK)
		return;
	for (i = 0; i < d->warning_count; i++)
		fv__log(FV_LOG_WARNING, "serve: key '%s': %s (%s)", fv_key_name(key),
		        d->warnings[i].message, d->warnings[i].property);
}

int fv__serve_open_keys(fv_key ***out, fv_context *ctx, const struct serve_config *cfg)
{
	fv_key **keys;
	size_t i;
	int rc;

	keys = calloc(cfg->key_count, sizeof(*keys)); // NOLINT(bugprone-sizeof-expression): an array of fv_key pointers
	if (!keys)
		return fv__error_nomem();
	for (i = 0; i < cfg->key_count; i++) {
		if ((rc = fv_key_open(&keys[i], ctx, cfg->keys[i])) != FV_OK) {
			fv__error_prefix("serve.keys[%zu]", i);
			fv__serve_close_keys(keys, i);
			return rc;
		}
		fv__serve_key_warnings(keys[i]);
	}
	*out = keys;
	return FV_OK;
}

void fv__serve_close_keys(fv_key **keys, size_t count)
{
	size_t i;

	for (i = 0; keys && i < count; i++)
		fv_key_free(keys[i]);
	free(keys);
}

/* ---- isolation "none": /healthz from the keys in this process ---- */

static int single_health(void *arg, char **body)
{
	fv_server *srv = arg;
	const struct serve_config *cfg = &srv->gen->cfg;
	double now = fv__now_seconds();

	pthread_mutex_lock(&srv->health_lock);
	if (!srv->health_body || now - srv->health_checked >= HEALTH_CACHE_SECONDS) {
		char fps[SERVE_MAX_KEYS][FV_FINGERPRINT_HEX_SIZE];
		uint32_t ok_mask = 0;
		size_t i;

		for (i = 0; i < cfg->key_count; i++) {
			if (fv__key_probe(srv->keys[i]) == FV_OK)
				ok_mask |= 1u << i;
			else
				fv__log(FV_LOG_ERROR, "serve: /healthz: %s", fv_error_last()->message);
			if (fv_key_fingerprint(fps[i], srv->keys[i]) != FV_OK)
				fps[i][0] = '\0';
		}
		free(srv->health_body);
		srv->health_body = fv__health_body(&srv->health_status,
		                                   (const char *const *)cfg->keys, cfg->key_count,
		                                   ok_mask, fps, srv->gen->id);
		srv->health_checked = now;
	}
	*body = srv->health_body ? strdup(srv->health_body) : NULL;
	pthread_mutex_unlock(&srv->health_lock);
	return srv->health_status;
}

static int single_new(fv_server *srv)
{
	struct serve_gen *gen = srv->gen;
	fv_flow_handler_config hc;
	size_t i;
	int rc;

	if ((rc = fv__serve_open_keys(&srv->keys, srv->ctx, &gen->cfg)) != FV_OK)
		return rc;
	if (gen->cfg.upstream &&
	    (rc = fv__upstream_new(&srv->upstream, gen->cfg.upstream, gen->cfg.upstream_timeout_ms,
	                           gen->cfg.max_body_bytes)) != FV_OK)
		return rc;
	memset(&hc, 0, sizeof(hc));
	hc.keys = srv->keys;
	hc.key_count = gen->cfg.key_count;
	hc.app_secrets = (const char *const *)gen->secrets;
	hc.app_secret_lens = gen->secret_lens;
	hc.app_secret_count = gen->cfg.app_secret_count;
	if (!(srv->metrics = fv__metrics_map(0)))
		return fv_error_last()->status;
	atomic_store(&srv->metrics->generation, 1);
	/* serve.media in one process: libcurl resolves and reads the CA itself. */
	if (srv->upstream && gen->cfg.media &&
	    (rc = fv__media_new(&srv->media, gen->cfg.media, srv->upstream, -1, NULL, 0,
	                        srv->metrics)) != FV_OK)
		return rc;
	hc.upstream = srv->media ? fv__media_upstream_call : srv->upstream ? fv__upstream_call : NULL;
	hc.upstream_arg = srv->media ? (void *)srv->media : (void *)srv->upstream;
	if ((rc = fv_flow_handler_new(&srv->handler, &hc)) != FV_OK)
		return rc;
	for (i = 0; i < gen->cfg.key_count; i++)
		srv->http.key_slots[i] = fv__metrics_key_slot(srv->metrics, gen->cfg.keys[i]);
	srv->http.cfg = &gen->cfg;
	srv->http.handler = srv->handler;
	srv->http.key_names = (const char *const *)gen->cfg.keys;
	srv->http.metrics = srv->metrics;
	srv->http.health = single_health;
	srv->http.health_arg = srv;
	srv->http.tls_cert = gen->tls_cert;
	srv->http.tls_key = gen->tls_key;
	fv__admin_http_setup(&srv->http, gen);
	return FV_OK;
}

static int single_start(fv_server *srv)
{
	const struct serve_config *cfg = &srv->gen->cfg;
	int flows_fd, admin_fd, rc;

	if ((rc = fv__serve_bind(cfg, &flows_fd, &admin_fd)) != FV_OK)
		return rc;
	if ((rc = fv__http_start(&srv->http, flows_fd, admin_fd)) != FV_OK) {
		close(flows_fd);
		if (admin_fd >= 0)
			close(admin_fd);
		return rc;
	}
	srv->serving = 1;
	fv__gen_forget_secrets(srv->gen, 1); /* GnuTLS has its own copy of the TLS key */
	fv__serve_log_started(srv->gen, srv->http.port, "in one process (isolation \"none\")");
	return FV_OK;
}

/* ---- The public API ---- */

int fv_server_new(fv_server **out, fv_context *ctx)
{
	fv_server *srv;
	int rc;

	if (!out || !ctx)
		return fv__error_set(FV_ERR_USAGE, "fv_server_new: missing argument");
	*out = NULL;
	if (!ctx->serve)
		return fv__error_set(FV_ERR_CONFIG,
			"%s: no \"serve\" section; add one with at least \"keys\" (see docs/flows.md)",
			ctx->config_path ? ctx->config_path : "the configuration");
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return fv__error_nomem();
	srv->ctx = ctx;
	pthread_mutex_init(&srv->health_lock, NULL);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(srv);
		return fv__error_set(FV_ERR_GENERIC, "libcurl cannot be initialised");
	}
	srv->curl_ready = 1;
	if ((rc = fv__gen_new(&srv->gen, ctx, 0, NULL)) != FV_OK)
		goto fail;
	fv__serve_log_setup(srv->gen->cfg.log_format);
	if (srv->gen->cfg.isolation == SERVE_SINGLE_PROCESS && (rc = single_new(srv)) != FV_OK)
		goto fail;
	*out = srv;
	return FV_OK;
fail:
	fv_server_free(srv);
	return rc;
}

int fv_server_check(fv_server *srv)
{
	fv_key **keys;
	int flows_fd, admin_fd, rc;

	if (!srv)
		return fv__error_set(FV_ERR_USAGE, "fv_server_check: missing argument");
	if (!srv->gen)
		return fv__error_set(FV_ERR_USAGE, "fv_server_check: the server is running");
	/* Separated, the keys open in the key process: prove here that they can. */
	if (!srv->keys) {
		if ((rc = fv__serve_open_keys(&keys, srv->ctx, &srv->gen->cfg)) != FV_OK)
			return rc;
		fv__serve_close_keys(keys, srv->gen->cfg.key_count);
	}
	if (srv->gen->cfg.isolation == SERVE_SEPARATED && geteuid() == 0) {
		uid_t uid;
		gid_t gid;
		char *used = NULL;

		if ((rc = fv__sandbox_user(srv->gen->cfg.user, &uid, &gid, &used)) != FV_OK)
			return rc;
		free(used);
	}
	if ((rc = fv__serve_bind(&srv->gen->cfg, &flows_fd, &admin_fd)) != FV_OK)
		return rc;
	close(flows_fd);
	if (admin_fd >= 0)
		close(admin_fd);
	return FV_OK;
}

int fv_server_start(fv_server *srv)
{
	int rc;

	if (!srv || srv->serving || srv->sup)
		return fv__error_set(FV_ERR_USAGE, "fv_server_start: not a new server");
	if (srv->gen->cfg.isolation == SERVE_SINGLE_PROCESS)
		return single_start(srv);
	if ((rc = fv__supervisor_start(&srv->sup, srv->gen)) != FV_OK)
		return rc;
	srv->gen = NULL; /* the supervisor's now: reloads replace it */
	return FV_OK;
}

int fv_server_run(fv_server *srv)
{
	sigset_t set;
	int sig = 0, rc;

	if (!srv)
		return fv__error_set(FV_ERR_USAGE, "fv_server_run: missing argument");
	if (!srv->serving && !srv->sup && (rc = fv_server_start(srv)) != FV_OK)
		return rc;
	if (srv->sup) {
		fv__supervisor_run(srv->sup);
		return fv_server_shutdown(srv);
	}
	sd_notify(0, "READY=1");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	while (sigwait(&set, &sig) != 0 || sig == SIGHUP)
		if (sig == SIGHUP)
			fv__log(FV_LOG_WARNING, "serve: SIGHUP: reloading needs serve.isolation "
			        "\"separated\"; restart to apply a new configuration");
	fv__log(FV_LOG_INFO, "serve: %s: finishing requests in flight",
	        sig == SIGINT ? "SIGINT" : "SIGTERM");
	sd_notify(0, "STOPPING=1");
	return fv_server_shutdown(srv);
}

unsigned int fv_server_port(const fv_server *srv)
{
	if (!srv)
		return 0;
	return srv->sup ? fv__supervisor_port(srv->sup) : srv->http.port;
}

int fv_server_shutdown(fv_server *srv)
{
	if (!srv)
		return FV_OK;
	if (srv->sup) {
		fv__supervisor_stop(srv->sup);
		srv->sup = NULL;
		return FV_OK;
	}
	if (!srv->serving)
		return FV_OK;
	fv__http_quiesce(&srv->http);
	/* In-flight requests may be waiting for the upstream: give them its timeout. */
	fv__http_drain(&srv->http, (double)srv->gen->cfg.upstream_timeout_ms / 1e3 + 2.0, 0);
	fv__http_stop(&srv->http);
	srv->serving = 0;
	fv__log(FV_LOG_INFO, "serve: stopped");
	return FV_OK;
}

void fv_server_free(fv_server *srv)
{
	if (!srv)
		return;
	fv_server_shutdown(srv);
	fv_flow_handler_free(srv->handler);
	fv__media_free(srv->media);
	fv__upstream_free(srv->upstream);
	if (srv->gen)
		fv__serve_close_keys(srv->keys, srv->gen->cfg.key_count);
	fv__metrics_unmap(srv->metrics);
	free(srv->health_body);
	pthread_mutex_destroy(&srv->health_lock);
	fv__gen_free(srv->gen);
	if (srv->curl_ready)
		curl_global_cleanup();
	free(srv);
}
