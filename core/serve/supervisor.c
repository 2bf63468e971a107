/*
 * The supervisor: the process `flowvault serve` (or systemd) starts. It
 * reads the configuration, binds the listening sockets, reads the TLS key,
 * resolves the app secrets and the upstream's address, then forks one key
 * process and serve.workers network workers, and keeps them running:
 *   - a worker that dies is replaced; the others keep answering;
 *   - a key process that dies is replaced, and every worker gets channels
 *     to the new one (workers answer 503 meanwhile);
 *   - SIGHUP loads the configuration again: a new key process and new
 *     workers start on the same sockets, then the old workers stop
 *     accepting, finish their requests and exit with their key process;
 *     a configuration that does not load changes nothing;
 *   - SIGTERM/SIGINT: workers finish their requests, everything exits.
 * It never opens a key or loads a plugin. systemd hears about all of it
 * through sd_notify.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <systemd/sd-daemon.h>

#include "media.h"

#define TLS_FILE_MAX (1024 * 1024)
#define CA_BUNDLE_MAX (16 * 1024 * 1024)
/* Opening keys may need a token, a TPM or a cloud service: be patient. */
#define KEYPROC_READY_SECONDS 120
#define WORKER_READY_SECONDS 30
#define KEYPROC_RETRY_SECONDS 1.0

struct serve_supervisor {
	struct serve_gen *gen;       /* serving */
	struct serve_gen *retiring;  /* draining after a reload */
	struct serve_child_env env;
	unsigned int next_id;
	unsigned int port;
	uint64_t watchdog_usec;
	double watchdog_at;
	/* serve.media: the resolver process, started when a generation needs it */
	pid_t resolver;
	int resolver_ctl;
};

/* ---- One configuration generation ---- */

static int read_tls_file(char **out, size_t *len, const char *path, const char *where,
                         int private)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return fv__error_set(FV_ERR_CONFIG, "%s: cannot read '%s': %s", where, path,
		                     strerror(errno));
	if (private && (st.st_mode & S_IROTH))
		return fv__error_set(FV_ERR_PERMISSION,
			"%s: '%s' is readable by others; fix with chmod o-rwx '%s'", where, path, path);
	if (fv__file_read(out, len, path, TLS_FILE_MAX) != FV_OK)
		return fv__error_prefix("%s", where);
	return FV_OK;
}

static void wipe_free(char *p, size_t len)
{
	if (p) {
		OPENSSL_cleanse(p, len);
		free(p);
	}
}

void fv__gen_forget_secrets(struct serve_gen *gen, int keep_app_secrets)
{
	size_t i;

	wipe_free(gen->tls_key, gen->tls_key_len);
	gen->tls_key = NULL;
	gen->tls_key_len = 0;
	wipe_free(gen->admin_tls_key, gen->admin_tls_key_len);
	gen->admin_tls_key = NULL;
	gen->admin_tls_key_len = 0;
	OPENSSL_cleanse(gen->admin_token_digest, sizeof(gen->admin_token_digest));
	gen->admin_token_set = 0;
	if (keep_app_secrets || !gen->secrets)
		return;
	for (i = 0; i < gen->cfg.app_secret_count; i++)
		fv_secret_free(gen->secrets[i], gen->secret_lens[i]);
	free(gen->secrets);
	free(gen->secret_lens);
	gen->secrets = NULL;
	gen->secret_lens = NULL;
}

void fv__gen_free(struct serve_gen *gen)
{
	if (!gen)
		return;
	fv__gen_forget_secrets(gen, 0);
	free(gen->tls_cert);
	free(gen->admin_tls_cert);
	free(gen->upstream_resolve);
	free(gen->ca);
	free(gen->media_ca);
	free(gen->workers);
	fv__serve_config_clear(&gen->cfg);
	if (gen->owns_ctx)
		fv_context_free(gen->ctx);
	free(gen);
}

/* The app secrets; a reference unchanged since `previous` keeps its value
 * (an env: variable is gone from the environment once read). */
static int resolve_secrets(struct serve_gen *gen, const struct serve_gen *previous)
{
	size_t i, j, n = gen->cfg.app_secret_count;

	gen->secrets = calloc(n + 1, sizeof(*gen->secrets));
	gen->secret_lens = calloc(n + 1, sizeof(*gen->secret_lens));
	if (!gen->secrets || !gen->secret_lens)
		return fv__error_nomem();
	for (i = 0; i < n; i++) {
		char purpose[64];
		int rc;

		for (j = 0; previous && previous->secrets && j < previous->cfg.app_secret_count; j++)
			if (strcmp(previous->cfg.app_secrets[j], gen->cfg.app_secrets[i]) == 0)
				break;
		if (previous && previous->secrets && j < previous->cfg.app_secret_count) {
			if (!(gen->secrets[i] = malloc(previous->secret_lens[j] + 1)))
				return fv__error_nomem();
			memcpy(gen->secrets[i], previous->secrets[j], previous->secret_lens[j] + 1);
			gen->secret_lens[i] = previous->secret_lens[j];
			continue;
		}
		snprintf(purpose, sizeof(purpose), "serve.app_secrets[%zu]", i);
		if ((rc = fv_secret_resolve(&gen->secrets[i], &gen->secret_lens[i],
		                            gen->cfg.app_secrets[i], purpose)) != FV_OK)
			return rc;
		if (gen->secret_lens[i] == 0)
			return fv__error_set(FV_ERR_SECRET, "%s: the app secret is empty", purpose);
	}
	return FV_OK;
}

/* What a sandboxed worker cannot do for itself: resolve the upstream's
 * host name and read the CA bundle. */
static int pin_upstream(struct serve_gen *gen)
{
	const curl_version_info_data *v;
	const char *bundle;
	int rc;

	if (!gen->cfg.upstream || gen->cfg.isolation != SERVE_SEPARATED)
		return FV_OK;
	if ((rc = fv__upstream_resolve(&gen->upstream_resolve, gen->cfg.upstream)) != FV_OK)
		return rc;
	if (strncmp(gen->cfg.upstream, "https://", 8) != 0)
		return FV_OK;
	v = curl_version_info(CURLVERSION_NOW);
	bundle = v && v->cainfo ? v->cainfo : "/etc/ssl/certs/ca-certificates.crt";
	if (fv__file_read(&gen->ca, &gen->ca_len, bundle, CA_BUNDLE_MAX) != FV_OK)
		return fv__error_prefix("serve.upstream: the CA bundle for https");
	return FV_OK;
}

/* serve.media's CA bundle, read now: a worker opens no file. */
static int pin_media(struct serve_gen *gen)
{
	const curl_version_info_data *v;
	const char *bundle;

	if (!gen->cfg.media || gen->cfg.isolation != SERVE_SEPARATED)
		return FV_OK;
	v = curl_version_info(CURLVERSION_NOW);
	bundle = gen->cfg.media->ca_file ? gen->cfg.media->ca_file
	         : v && v->cainfo ? v->cainfo : "/etc/ssl/certs/ca-certificates.crt";
	if (fv__file_read(&gen->media_ca, &gen->media_ca_len, bundle, CA_BUNDLE_MAX) != FV_OK)
		return fv__error_prefix("serve.media.ca_file");
	return FV_OK;
}

int fv__gen_new(struct serve_gen **out, fv_context *ctx, int owns_ctx,
                const struct serve_gen *previous)
{
	struct serve_gen *gen;
	size_t len;
	int rc;

	*out = NULL;
	if (!ctx->serve) {
		rc = fv__error_set(FV_ERR_CONFIG,
			"%s: no \"serve\" section; add one with at least \"keys\" (see docs/flows.md)",
			ctx->config_path ? ctx->config_path : "the configuration");
		if (owns_ctx)
			fv_context_free(ctx);
		return rc;
	}
	/* The key process and workers resolve the secrets; this process must
	 * not keep them in its environment either. */
	fv__process_harden();
	fv__secret_env_take_all(ctx->root);
	if (!(gen = calloc(1, sizeof(*gen)))) {
		if (owns_ctx)
			fv_context_free(ctx);
		return fv__error_nomem();
	}
	gen->ctx = ctx;
	gen->owns_ctx = owns_ctx;
	gen->id = 1;
	gen->keyproc_ctl = -1;
	if ((rc = fv__serve_config_parse(&gen->cfg, ctx->serve, "serve", ctx)) != FV_OK ||
	    (rc = fv__serve_config_signing(&gen->cfg, "serve")) != FV_OK)
		goto fail;
	if (gen->cfg.cert_path) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			rc = fv__error_set(FV_ERR_UNSUPPORTED,
				"serve.cert: this libmicrohttpd was built without TLS; remove cert and key "
				"and put flowvault behind a TLS proxy");
			goto fail;
		}
		if ((rc = read_tls_file(&gen->tls_cert, &len, gen->cfg.cert_path, "serve.cert", 0)) != FV_OK ||
		    (rc = read_tls_file(&gen->tls_key, &gen->tls_key_len, gen->cfg.key_path,
		                        "serve.key", 1)) != FV_OK)
			goto fail;
	}
	if (gen->cfg.admin_cert_path && gen->cfg.admin_listen &&
	    ((rc = read_tls_file(&gen->admin_tls_cert, &len, gen->cfg.admin_cert_path,
	                         "serve.admin_cert", 0)) != FV_OK ||
	     (rc = read_tls_file(&gen->admin_tls_key, &gen->admin_tls_key_len,
	                         gen->cfg.admin_key_path, "serve.admin_key", 1)) != FV_OK))
		goto fail;
	if ((rc = resolve_secrets(gen, previous)) != FV_OK ||
	    (rc = fv__admin_token_load(gen)) != FV_OK || (rc = pin_upstream(gen)) != FV_OK ||
	    (rc = pin_media(gen)) != FV_OK)
		goto fail;
	fv__admin_warn(&gen->cfg);
	if (!(gen->workers = calloc(gen->cfg.workers, sizeof(*gen->workers)))) {
		rc = fv__error_nomem();
		goto fail;
	}
	*out = gen;
	return FV_OK;
fail:
	fv__gen_free(gen);
	return rc;
}

/* ---- Children ---- */

static void close_pairs(int (*pairs)[2], size_t n, int side)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (pairs[i][side] >= 0) {
			close(pairs[i][side]);
			pairs[i][side] = -1;
		}
}

/* n channels: [0] the worker's end, [1] the key process's. */
static int (*make_pairs(size_t n))[2]
{
	int (*pairs)[2] = calloc(n ? n : 1, sizeof(*pairs));
	size_t i;

	if (!pairs) {
		fv__error_nomem();
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pairs[i]) != 0) {
			fv__error_set(FV_ERR_GENERIC, "serve: socketpair: %s", strerror(errno));
			close_pairs(pairs, i, 0);
			close_pairs(pairs, i, 1);
			free(pairs);
			return NULL;
		}
	return pairs;
}

/* Send one side of channels over a control socket, in batches. */
static int send_channels(int ctl, int (*pairs)[2], size_t n, int side)
{
	int fds[CTL_MAX_FDS];
	struct ctl_msg msg;
	size_t first, k;

	for (first = 0; first < n; first += k) {
		k = n - first < CTL_MAX_FDS ? n - first : CTL_MAX_FDS;
		memset(&msg, 0, sizeof(msg));
		msg.type = CTL_CHANNELS;
		msg.first = (uint32_t)first;
		msg.count = (uint32_t)k;
		for (size_t i = 0; i < k; i++)
			fds[i] = pairs[first + i][side];
		if (fv__ctl_send(ctl, &msg, fds, k) != FV_OK)
			return FV_ERR_GENERIC;
	}
	return FV_OK;
}

/* 1 READY, 0 FAILED/closed/timeout (msg->text says why when it can). */
static int wait_ready(int ctl, double seconds, struct ctl_msg *msg)
{
	double deadline = fv__now_seconds() + seconds;
	int fds[CTL_MAX_FDS];
	size_t nfds, i;

	memset(msg, 0, sizeof(*msg));
	for (;;) {
		struct pollfd p = { ctl, POLLIN, 0 };
		double left = deadline - fv__now_seconds();
		int got;

		if (left <= 0) {
			snprintf(msg->text, sizeof(msg->text), "not ready after %.0f s", seconds);
			return 0;
		}
		if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
			continue;
		got = fv__ctl_recv(ctl, msg, fds, &nfds);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		if (got <= 0) {
			if (!msg->text[0])
				snprintf(msg->text, sizeof(msg->text), "exited before it was ready");
			return 0;
		}
		if (msg->type == CTL_READY)
			return 1;
		if (msg->type == CTL_FAILED)
			return 0;
	}
}

static void reap_pid(pid_t pid, double seconds)
{
	double deadline = fv__now_seconds() + seconds;

	while (waitpid(pid, NULL, WNOHANG) == 0) {
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		if (fv__now_seconds() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return;
		}
		nanosleep(&pause, NULL);
	}
}

/* Fork the key process of `gen` with the key ends of `pairs`; wait until
 * its keys are open. */
static int spawn_keyproc(struct serve_supervisor *sup, struct serve_gen *gen,
                         int (*pairs)[2], size_t n)
{
	int ctl[2], *ends;
	struct ctl_msg msg;
	pid_t pid;
	size_t i;

	(void)sup;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) != 0)
		return fv__error_set(FV_ERR_GENERIC, "serve: socketpair: %s", strerror(errno));
	if (!(ends = calloc(n ? n : 1, sizeof(*ends)))) {
		close(ctl[0]);
		close(ctl[1]);
		return fv__error_nomem();
	}
	for (i = 0; i < n; i++)
		ends[i] = pairs[i][1];
	pid = fork();
	if (pid == 0) {
		close(ctl[0]);
		fv__keyproc_main(gen, ctl[1], ends, n);
	}
	free(ends);
	close(ctl[1]);
	if (pid < 0) {
		close(ctl[0]);
		return fv__error_set(FV_ERR_GENERIC, "serve: fork: %s", strerror(errno));
	}
	gen->keyproc = pid;
	gen->keyproc_ctl = ctl[0];
	if (!wait_ready(ctl[0], KEYPROC_READY_SECONDS, &msg)) {
		close(ctl[0]);
		gen->keyproc_ctl = -1;
		kill(pid, SIGKILL);
		reap_pid(pid, 1);
		gen->keyproc = 0;
		return fv__error_set(FV_ERR_BACKEND, "the key process cannot open serve.keys: %s",
		                     msg.text);
	}
	gen->keyproc_up = 1;
	fv__log(FV_LOG_INFO, "serve: key process %d holds %zu key%s (generation %u)", (int)pid,
	        gen->cfg.key_count, gen->cfg.key_count == 1 ? "" : "s", gen->id);
	return FV_OK;
}

/* The resolver process: forked from here, it keeps nothing secret (app
 * secrets, TLS key, env: values are wiped), listens on nothing, runs as
 * serve.user. */
static int spawn_resolver(struct serve_supervisor *sup, struct serve_gen *starting)
{
	struct serve_gen *gen;
	int ctl[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) != 0)
		return fv__error_set(FV_ERR_GENERIC, "serve: socketpair: %s", strerror(errno));
	pid = fork();
	if (pid == 0) {
		sigset_t none;

		close(ctl[0]);
		fv__sandbox_close_fds(&ctl[1], 1);
		for (gen = sup->gen; gen; gen = gen->next)
			fv__gen_forget_secrets(gen, 0);
		for (gen = sup->retiring; gen; gen = gen->next)
			fv__gen_forget_secrets(gen, 0);
		fv__gen_forget_secrets(starting, 0);
		fv__secret_env_forget_all();
		if (sup->env.drop_user && fv__sandbox_drop(sup->env.uid, sup->env.gid) != FV_OK) {
			fv__log(FV_LOG_ERROR, "serve: resolver: %s", fv_error_last()->message);
			_exit(1);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fv__resolver_main(ctl[1]);
	}
	close(ctl[1]);
	if (pid < 0) {
		close(ctl[0]);
		return fv__error_set(FV_ERR_GENERIC, "serve: fork: %s", strerror(errno));
	}
	sup->resolver = pid;
	sup->resolver_ctl = ctl[0];
	fv__log(FV_LOG_INFO, "serve: resolver process %d looks up serve.media hosts", (int)pid);
	return FV_OK;
}

/* A worker's connection to the resolver (*fd -1 without serve.media). */
static int resolver_connect(struct serve_supervisor *sup, struct serve_gen *gen, int *fd)
{
	struct ctl_msg msg;
	int pair[2], rc;

	*fd = -1;
	if (!gen->cfg.media || !gen->cfg.upstream)
		return FV_OK;
	if (sup->resolver <= 0 && (rc = spawn_resolver(sup, gen)) != FV_OK)
		return rc;
	memset(&msg, 0, sizeof(msg));
	msg.type = CTL_RESOLVER;
	if ((rc = fv__media_hosts_text(msg.text, sizeof(msg.text), gen->cfg.media)) != FV_OK)
		return rc;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
		return fv__error_set(FV_ERR_GENERIC, "serve: socketpair: %s", strerror(errno));
	msg.count = 1;
	rc = fv__ctl_send(sup->resolver_ctl, &msg, &pair[1], 1);
	close(pair[1]);
	if (rc != FV_OK) {
		close(pair[0]);
		return fv__error_set(FV_ERR_GENERIC, "serve: the resolver process does not take a "
		                     "connection");
	}
	*fd = pair[0];
	return FV_OK;
}

/* The resolver was restarted: every worker that uses it gets a connection. */
static void resolver_reconnect(struct serve_supervisor *sup, struct serve_gen *gen)
{
	struct ctl_msg msg;
	unsigned int i;
	int fd;

	for (; gen; gen = gen->next)
		for (i = 0; i < gen->cfg.workers; i++) {
			if (gen->workers[i].pid <= 0 || resolver_connect(sup, gen, &fd) != FV_OK || fd < 0)
				continue;
			memset(&msg, 0, sizeof(msg));
			msg.type = CTL_RESOLVER;
			msg.count = 1;
			if (fv__ctl_send(gen->workers[i].ctl, &msg, &fd, 1) != FV_OK)
				fv__log(FV_LOG_WARNING, "serve: cannot reconnect worker %u to the resolver", i + 1);
			close(fd);
		}
}

static int spawn_worker(struct serve_supervisor *sup, struct serve_gen *gen, unsigned int i,
                        int (*pairs)[2], size_t n)
{
	struct serve_worker *w = &gen->workers[i];
	int ctl[2], *ends, resolver;
	pid_t pid;
	size_t k;

	if (resolver_connect(sup, gen, &resolver) != FV_OK)
		return fv_error_last()->status;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) != 0) {
		if (resolver >= 0)
			close(resolver);
		return fv__error_set(FV_ERR_GENERIC, "serve: socketpair: %s", strerror(errno));
	}
	if (!(ends = calloc(n ? n : 1, sizeof(*ends)))) {
		close(ctl[0]);
		close(ctl[1]);
		if (resolver >= 0)
			close(resolver);
		return fv__error_nomem();
	}
	for (k = 0; k < n; k++)
		ends[k] = pairs[k][0];
	pid = fork();
	if (pid == 0) {
		close(ctl[0]);
		if (sup->resolver_ctl >= 0)
			close(sup->resolver_ctl);
		/* PINs and passphrases are for the key process: a worker answering
		 * the internet keeps none of them. */
		fv__secret_env_forget_all();
		fv__worker_main(gen, i, &sup->env, ctl[1], ends, n, resolver);
	}
	free(ends);
	close(ctl[1]);
	if (resolver >= 0)
		close(resolver);
	if (pid < 0) {
		close(ctl[0]);
		return fv__error_set(FV_ERR_GENERIC, "serve: fork: %s", strerror(errno));
	}
	w->pid = pid;
	w->ctl = ctl[0];
	w->ready = 0;
	return FV_OK;
}

/* A worker slot of the serving generation gets a new worker, with fresh
 * channels whose other ends go to the key process (if it is up). */
static int restart_worker(struct serve_supervisor *sup, struct serve_gen *gen, unsigned int i)
{
	size_t n = SERVE_CHANNELS(&gen->cfg);
	int (*pairs)[2] = make_pairs(n);
	int rc;

	if (!pairs)
		return fv_error_last()->status;
	if (gen->keyproc_up && send_channels(gen->keyproc_ctl, pairs, n, 1) != FV_OK)
		fv__log(FV_LOG_WARNING, "serve: cannot hand channels to the key process; worker %u "
		        "answers 503 until it is restarted", i + 1);
	close_pairs(pairs, n, 1);
	rc = spawn_worker(sup, gen, i, pairs, n);
	close_pairs(pairs, n, 0);
	free(pairs);
	return rc;
}

/* A new key process for the serving generation; every worker gets
 * channels to it. */
static int restart_keyproc(struct serve_supervisor *sup, struct serve_gen *gen)
{
	size_t n = SERVE_CHANNELS(&gen->cfg), w, live = gen->cfg.workers;
	int (*pairs)[2] = make_pairs(n * live);
	int rc;

	if (!pairs)
		return fv_error_last()->status;
	rc = spawn_keyproc(sup, gen, pairs, n * live);
	close_pairs(pairs, n * live, 1);
	if (rc == FV_OK)
		for (w = 0; w < live; w++)
			if (gen->workers[w].pid > 0 &&
			    send_channels(gen->workers[w].ctl, pairs + w * n, n, 0) != FV_OK)
				fv__log(FV_LOG_WARNING, "serve: cannot hand channels to worker %zu", w + 1);
	close_pairs(pairs, n * live, 0);
	free(pairs);
	return rc;
}

static void stop_gen_now(struct serve_gen *gen)
{
	unsigned int i;

	for (i = 0; i < gen->cfg.workers; i++)
		if (gen->workers[i].pid > 0) {
			kill(gen->workers[i].pid, SIGKILL);
			reap_pid(gen->workers[i].pid, 1);
			close(gen->workers[i].ctl);
			gen->workers[i].pid = 0;
		}
	if (gen->keyproc_ctl >= 0) {
		close(gen->keyproc_ctl); /* the key process exits when this closes */
		gen->keyproc_ctl = -1;
	}
	if (gen->keyproc > 0) {
		reap_pid(gen->keyproc, 2);
		gen->keyproc = 0;
	}
}

/* The key process and the workers of a new generation, all ready. */
static int start_gen(struct serve_supervisor *sup, struct serve_gen *gen)
{
	size_t n = SERVE_CHANNELS(&gen->cfg), i;
	int (*pairs)[2] = make_pairs(n * gen->cfg.workers);
	struct ctl_msg msg;
	int rc;

	if (!pairs)
		return fv_error_last()->status;
	for (i = 0; i < gen->cfg.key_count; i++)
		gen->key_slots[i] = fv__metrics_key_slot(sup->env.metrics, gen->cfg.keys[i]);
	rc = spawn_keyproc(sup, gen, pairs, n * gen->cfg.workers);
	close_pairs(pairs, n * gen->cfg.workers, 1);
	for (i = 0; rc == FV_OK && i < gen->cfg.workers; i++) {
		rc = spawn_worker(sup, gen, (unsigned int)i, pairs + i * n, n);
		close_pairs(pairs + i * n, n, 0);
	}
	close_pairs(pairs, n * gen->cfg.workers, 0);
	free(pairs);
	for (i = 0; rc == FV_OK && i < gen->cfg.workers; i++) {
		if (!wait_ready(gen->workers[i].ctl, WORKER_READY_SECONDS, &msg))
			rc = fv__error_set(FV_ERR_GENERIC, "serve: worker %zu did not start (%s); see "
			                   "the lines above", i + 1, msg.text);
		gen->workers[i].ready = 1;
	}
	if (rc != FV_OK)
		stop_gen_now(gen);
	return rc;
}

/* ---- Start, supervise, reload, stop ---- */

static int take_listeners(struct serve_supervisor *sup, const struct serve_config *cfg)
{
	int n = sd_listen_fds(1), i;

	sup->env.flows_fd = sup->env.admin_fd = -1;
	if (n <= 0)
		return fv__serve_bind(cfg, &sup->env.flows_fd, &sup->env.admin_fd);
	/* Socket activation: systemd bound them; tell them apart by port. */
	for (i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		unsigned int port = fv__serve_bound_port(fd);

		if (port == cfg->port && sup->env.flows_fd < 0)
			sup->env.flows_fd = fd;
		else if (cfg->admin_listen && port == cfg->admin_port && sup->env.admin_fd < 0)
			sup->env.admin_fd = fd;
		else
			close(fd);
	}
	if (sup->env.flows_fd < 0)
		return fv__error_set(FV_ERR_CONFIG, "serve.listen: systemd passed %d socket%s, none on "
		                     "port %u; make ListenStream= in the .socket unit match serve.listen",
		                     n, n == 1 ? "" : "s", cfg->port);
	if (cfg->admin_listen && sup->env.admin_fd < 0 &&
	    fv__serve_listen(&sup->env.admin_fd, cfg->admin_host, cfg->admin_port, "admin_listen",
	                     cfg->admin_listen) != FV_OK)
		return fv_error_last()->status;
	fcntl(sup->env.flows_fd, F_SETFL, fcntl(sup->env.flows_fd, F_GETFL) | O_NONBLOCK);
	if (sup->env.admin_fd >= 0)
		fcntl(sup->env.admin_fd, F_SETFL, fcntl(sup->env.admin_fd, F_GETFL) | O_NONBLOCK);
	fv__log(FV_LOG_INFO, "serve: using the socket%s systemd passed", n == 1 ? "" : "s");
	return FV_OK;
}

static int write_pid_file(const char *path)
{
	char text[32];
	int fd, n;

	if (!path)
		return FV_OK;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return fv__error_set(FV_ERR_CONFIG, "serve.pid_file: cannot write '%s': %s", path,
		                     strerror(errno));
	n = snprintf(text, sizeof(text), "%d\n", (int)getpid());
	if (fv__write_all(fd, text, (size_t)n) != FV_OK) {
		close(fd);
		return fv__error_prefix("serve.pid_file");
	}
	close(fd);
	return FV_OK;
}

int fv__supervisor_start(struct serve_supervisor **out, struct serve_gen *gen)
{
	struct serve_supervisor *sup;
	sigset_t chld;
	char *user = NULL;
	int rc;

	*out = NULL;
	if (!(sup = calloc(1, sizeof(*sup))))
		return fv__error_nomem();
	sup->env.flows_fd = sup->env.admin_fd = -1;
	sup->resolver_ctl = -1;
	sup->env.sandbox_debug = secure_getenv("FLOWVAULT_SANDBOX_DEBUG") != NULL;
	/* Children are reaped by the loop below (sigtimedwait), not a handler. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	if (geteuid() == 0) {
		if ((rc = fv__sandbox_user(gen->cfg.user, &sup->env.uid, &sup->env.gid, &user)) != FV_OK)
			goto fail;
		sup->env.drop_user = 1;
	}
	if ((rc = take_listeners(sup, &gen->cfg)) != FV_OK)
		goto fail;
	sup->port = fv__serve_bound_port(sup->env.flows_fd);
	if (!(sup->env.metrics = fv__metrics_map(1))) {
		rc = fv_error_last()->status;
		goto fail;
	}
	if ((rc = write_pid_file(gen->cfg.pid_file)) != FV_OK)
		goto fail;
	sup->gen = gen;
	sup->next_id = gen->id + 1;
	atomic_store(&sup->env.metrics->generation, gen->id);
	if ((rc = start_gen(sup, gen)) != FV_OK) {
		sup->gen = NULL;
		goto fail;
	}
	{
		char how[160];

		snprintf(how, sizeof(how), "%u sandboxed worker%s%s%s with %u threads each, keys in "
		         "process %d", gen->cfg.workers, gen->cfg.workers == 1 ? "" : "s",
		         user ? " as user " : "", user ? user : "", gen->cfg.threads,
		         (int)gen->keyproc);
		fv__serve_log_started(gen, sup->port, how);
	}
	free(user);
	if (sd_watchdog_enabled(0, &sup->watchdog_usec) <= 0)
		sup->watchdog_usec = 0;
	*out = sup;
	return FV_OK;
fail:
	free(user);
	if (sup->env.flows_fd >= 0)
		close(sup->env.flows_fd);
	if (sup->env.admin_fd >= 0)
		close(sup->env.admin_fd);
	fv__metrics_unmap(sup->env.metrics);
	free(sup);
	return rc;
}

static const char *death(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		snprintf(buf, len, "was killed by its seccomp filter (a forbidden system call)");
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "stopped");
	return buf;
}

static int gen_is_empty(const struct serve_gen *gen)
{
	unsigned int i;

	for (i = 0; i < gen->cfg.workers; i++)
		if (gen->workers[i].pid > 0)
			return 0;
	return gen->keyproc <= 0;
}

/* A child of a generation being drained ended. */
static int reap_retiring(struct serve_supervisor *sup, pid_t pid)
{
	struct serve_gen **link, *gen;
	unsigned int i;

	for (link = &sup->retiring; (gen = *link) != NULL; link = &gen->next) {
		int mine = 0, workers_left = 0;

		for (i = 0; i < gen->cfg.workers; i++) {
			if (gen->workers[i].pid == pid) {
				gen->workers[i].pid = 0;
				close(gen->workers[i].ctl);
				mine = 1;
			}
			workers_left += gen->workers[i].pid > 0;
		}
		if (gen->keyproc == pid) {
			gen->keyproc = 0;
			mine = 1;
		}
		if (!mine)
			continue;
		/* The last old worker is done: its key process may go. */
		if (!workers_left && gen->keyproc_ctl >= 0) {
			close(gen->keyproc_ctl);
			gen->keyproc_ctl = -1;
		}
		if (gen_is_empty(gen)) {
			fv__log(FV_LOG_INFO, "serve: generation %u has finished its requests and exited",
			        gen->id);
			*link = gen->next;
			fv__gen_free(gen);
		}
		return 1;
	}
	return 0;
}

static void reap(struct serve_supervisor *sup)
{
	struct serve_gen *gen = sup->gen;
	char why[128];
	int status;
	pid_t pid;
	unsigned int i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == sup->resolver) {
			fv__log(FV_LOG_ERROR, "serve: the resolver process (%d) %s; starting a new one",
			        (int)pid, death(status, why, sizeof(why)));
			close(sup->resolver_ctl);
			sup->resolver_ctl = -1;
			sup->resolver = 0;
			resolver_reconnect(sup, sup->gen);
			resolver_reconnect(sup, sup->retiring);
			continue;
		}
		if (reap_retiring(sup, pid))
			continue;
		if (pid == gen->keyproc) {
			fv__log(FV_LOG_ERROR, "serve: the key process (%d) %s; workers answer 503 until "
			        "a new one has opened the keys", (int)pid, death(status, why, sizeof(why)));
			close(gen->keyproc_ctl);
			gen->keyproc_ctl = -1;
			gen->keyproc = 0;
			gen->keyproc_up = 0;
			gen->keyproc_retry_at = fv__now_seconds();
			atomic_fetch_add(&sup->env.metrics->keyproc_restarts, 1);
			continue;
		}
		for (i = 0; i < gen->cfg.workers; i++)
			if (gen->workers[i].pid == pid)
				break;
		if (i == gen->cfg.workers)
			continue;
		fv__log(FV_LOG_ERROR, "serve: worker %u (%d) %s; starting a new one", i + 1, (int)pid,
		        death(status, why, sizeof(why)));
		close(gen->workers[i].ctl);
		gen->workers[i].pid = 0;
		atomic_fetch_add(&sup->env.metrics->worker_restarts, 1);
		if (restart_worker(sup, gen, i) != FV_OK)
			fv__log(FV_LOG_ERROR, "serve: cannot start worker %u: %s", i + 1,
			        fv_error_last()->message);
	}
}

static void quiesce_workers(struct serve_gen *gen)
{
	struct ctl_msg msg;
	unsigned int i;

	memset(&msg, 0, sizeof(msg));
	msg.type = CTL_QUIESCE;
	for (i = 0; i < gen->cfg.workers; i++)
		if (gen->workers[i].pid > 0 && fv__ctl_send(gen->workers[i].ctl, &msg, NULL, 0) != FV_OK)
			kill(gen->workers[i].pid, SIGKILL);
}

/* Settings a reload cannot change: the sockets and processes they shape. */
static int reload_compatible(const struct serve_config *a, const struct serve_config *b)
{
	const char *field = NULL;

	if (strcmp(a->listen, b->listen) != 0)
		field = "listen";
	else if ((a->admin_listen == NULL) != (b->admin_listen == NULL) ||
	         (a->admin_listen && strcmp(a->admin_listen, b->admin_listen) != 0))
		field = "admin_listen";
	else if (a->isolation != b->isolation)
		field = "isolation";
	else if ((a->user == NULL) != (b->user == NULL) || (a->user && strcmp(a->user, b->user) != 0))
		field = "user";
	if (!field)
		return FV_OK;
	return fv__error_set(FV_ERR_CONFIG, "serve.%s changed: a reload cannot apply that; restart "
	                     "flowvault serve", field);
}

static void reload(struct serve_supervisor *sup)
{
	struct serve_gen *old = sup->gen, *gen = NULL;
	const char *path = fv_context_config_path(old->ctx);
	fv_context *ctx = NULL;

	sd_notify(0, "RELOADING=1");
	fv__log(FV_LOG_INFO, "serve: SIGHUP: loading %s", path ? path : "the configuration");
	if (fv_context_open(&ctx, path, 0) != FV_OK || fv__gen_new(&gen, ctx, 1, old) != FV_OK ||
	    reload_compatible(&old->cfg, &gen->cfg) != FV_OK) {
		fv__log(FV_LOG_ERROR, "serve: reload failed, still serving generation %u: %s", old->id,
		        fv_error_last()->message);
		fv__gen_free(gen);
		atomic_fetch_add(&sup->env.metrics->reload_failures, 1);
		sd_notify(0, "READY=1");
		return;
	}
	gen->id = sup->next_id++;
	if (start_gen(sup, gen) != FV_OK) {
		fv__log(FV_LOG_ERROR, "serve: reload failed, still serving generation %u: %s", old->id,
		        fv_error_last()->message);
		fv__gen_free(gen);
		atomic_fetch_add(&sup->env.metrics->reload_failures, 1);
		sd_notify(0, "READY=1");
		return;
	}
	/* Both generations accept now; the old one stops accepting and drains. */
	sup->gen = gen;
	atomic_store(&sup->env.metrics->generation, gen->id);
	old->retiring = 1;
	old->next = sup->retiring;
	sup->retiring = old;
	quiesce_workers(old);
	atomic_fetch_add(&sup->env.metrics->reloads, 1);
	fv__log(FV_LOG_INFO, "serve: reloaded: generation %u serves keys %s%s%s (key process %d); "
	        "generation %u finishes its requests", gen->id, gen->cfg.keys[0],
	        gen->cfg.key_count > 1 ? ", " : "", gen->cfg.key_count > 1 ? gen->cfg.keys[1] : "",
	        (int)gen->keyproc, old->id);
	sd_notify(0, "READY=1");
}

int fv__supervisor_run(struct serve_supervisor *sup)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sd_notifyf(0, "READY=1\nSTATUS=serving generation %u\nMAINPID=%d", sup->gen->id,
	           (int)getpid());
	for (;;) {
		struct timespec wait = { 0, 250 * 1000 * 1000 };
		siginfo_t info;
		double now;

		sig = sigtimedwait(&set, &info, &wait);
		now = fv__now_seconds();
		if (sup->watchdog_usec && now >= sup->watchdog_at) {
			sd_notify(0, "WATCHDOG=1");
			sup->watchdog_at = now + (double)sup->watchdog_usec / 2e6;
		}
		if (sig == SIGTERM || sig == SIGINT)
			break;
		reap(sup);
		if (sig == SIGHUP)
			reload(sup);
		if (!sup->gen->keyproc_up && now >= sup->gen->keyproc_retry_at) {
			if (restart_keyproc(sup, sup->gen) == FV_OK) {
				fv__log(FV_LOG_INFO, "serve: key process restarted; workers answer again");
			} else {
				fv__log(FV_LOG_ERROR, "serve: %s; trying again in %.0f s",
				        fv_error_last()->message, KEYPROC_RETRY_SECONDS);
				sup->gen->keyproc_retry_at = fv__now_seconds() + KEYPROC_RETRY_SECONDS;
			}
		}
	}
	fv__log(FV_LOG_INFO, "serve: %s: finishing requests in flight",
	        sig == SIGINT ? "SIGINT" : "SIGTERM");
	sd_notify(0, "STOPPING=1");
	return FV_OK;
}

unsigned int fv__supervisor_port(const struct serve_supervisor *sup)
{
	return sup ? sup->port : 0;
}

/* Workers drain (each at most the upstream timeout plus a margin), then
 * the key processes go. */
void fv__supervisor_stop(struct serve_supervisor *sup)
{
	struct serve_gen *gen, *next;
	double deadline;

	if (!sup)
		return;
	quiesce_workers(sup->gen);
	for (gen = sup->retiring; gen; gen = gen->next)
		quiesce_workers(gen);
	/* Once the workers stop accepting, our copies are what keeps the sockets
	 * listening: the kernel would queue connections nobody accepts, and a
	 * load balancer's check would time out instead of being refused. */
	close(sup->env.flows_fd);
	sup->env.flows_fd = -1;
	if (sup->env.admin_fd >= 0)
		close(sup->env.admin_fd);
	sup->env.admin_fd = -1;
	deadline = fv__now_seconds() + (double)(sup->gen->cfg.upstream_timeout_ms +
	                                    (sup->gen->cfg.media ? sup->gen->cfg.media->timeout_ms
	                                                         : 0)) / 1e3 + 3.0;
	for (;;) {
		int left = 0;
		pid_t pid;
		unsigned int i;

		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
			for (i = 0; i < sup->gen->cfg.workers; i++)
				if (sup->gen->workers[i].pid == pid)
					sup->gen->workers[i].pid = 0;
			if (pid == sup->gen->keyproc)
				sup->gen->keyproc = 0;
			reap_retiring(sup, pid);
		}
		for (i = 0; i < sup->gen->cfg.workers; i++)
			left += sup->gen->workers[i].pid > 0;
		for (gen = sup->retiring; gen; gen = gen->next)
			for (i = 0; i < gen->cfg.workers; i++)
				left += gen->workers[i].pid > 0;
		if (!left || fv__now_seconds() > deadline)
			break;
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	}
	for (gen = sup->retiring; gen; gen = next) {
		next = gen->next;
		stop_gen_now(gen);
		fv__gen_free(gen);
	}
	sup->retiring = NULL;
	stop_gen_now(sup->gen);
	if (sup->resolver > 0) {
		close(sup->resolver_ctl); /* the resolver exits when this closes */
		reap_pid(sup->resolver, 2);
	}
	if (sup->gen->cfg.pid_file)
		unlink(sup->gen->cfg.pid_file);
	fv__gen_free(sup->gen);
	fv__metrics_unmap(sup->env.metrics);
	fv__log(FV_LOG_INFO, "serve: stopped");
	free(sup);
}
