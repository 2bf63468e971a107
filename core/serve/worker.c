/*
 * A network worker: libmicrohttpd, the signature check, JSON, AES-GCM, the
 * upstream, logging and metrics; everything that reads bytes from the
 * internet. It holds no key and links no plugin: the RSA step is a request
 * to the key process over the worker's channels.
 *
 * Before it touches the network it loads all it will need, keeps only its
 * own descriptors, becomes serve.user (when started as root), sets
 * PR_SET_NO_NEW_PRIVS and enters its seccomp allowlist (sandbox.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "media.h"

/* How often /healthz asks the key process (which caches its own probes). */
#define HEALTH_CACHE_SECONDS 1.0

struct worker {
	struct serve_gen *gen;
	struct keyproc_link *link;
	struct serve_upstream *upstream;
	struct serve_media *media;    /* serve.media, or NULL */
	fv_flow_handler *handler;
	struct serve_http http;
	pthread_mutex_t health_lock;
	double health_at;
	int health_status;
	char *health_body;
};

static int worker_health(void *arg, char **body)
{
	struct worker *w = arg;
	const struct serve_config *cfg = &w->gen->cfg;
	double now = fv__now_seconds();

	pthread_mutex_lock(&w->health_lock);
	if (!w->health_body || now - w->health_at >= HEALTH_CACHE_SECONDS) {
		struct ipc_probe_reply rep;

		memset(&rep, 0, sizeof(rep));
		if (fv__link_probe(w->link, &rep) != FV_OK || rep.key_count != cfg->key_count)
			rep.ok_mask = 0; /* the key process is down: every key unavailable */
		free(w->health_body);
		w->health_body = fv__health_body(&w->health_status,
		                                 (const char *const *)cfg->keys, cfg->key_count,
		                                 rep.ok_mask, rep.fingerprints, w->gen->id);
		w->health_at = now;
	}
	*body = w->health_body ? strdup(w->health_body) : NULL;
	pthread_mutex_unlock(&w->health_lock);
	return w->health_status;
}

/*
 * Everything that would otherwise open a file or load code on first use,
 * done while that is still allowed: OpenSSL's configuration and the
 * algorithms a request needs, the random generator, json-c's hash seed.
 */
static void preload(void)
{
	static const unsigned char zero[16];
	unsigned char out[32], tag[16];
	EVP_CIPHER_CTX *c;
	json_object *o;
	int n = 0;

	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG | OPENSSL_INIT_ADD_ALL_CIPHERS |
	                    OPENSSL_INIT_ADD_ALL_DIGESTS, NULL);
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, NULL);
	if ((c = EVP_CIPHER_CTX_new()) != NULL) {
		if (EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) == 1 &&
		    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) == 1 &&
		    EVP_EncryptInit_ex(c, NULL, NULL, zero, zero) == 1 &&
		    EVP_EncryptUpdate(c, out, &n, zero, sizeof(zero)) == 1 &&
		    EVP_EncryptFinal_ex(c, out + n, &n) == 1)
			EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag);
		EVP_CIPHER_CTX_free(c);
	}
	fv_flow_signature_check("sha256=0000000000000000000000000000000000000000000000000000000000000000",
	                        "x", 1, "k", 1);
	fv_error_clear();
	RAND_bytes(out, sizeof(out));
	/* The first gmtime_r (libmicrohttpd's Date header) reads the time zone. */
	tzset();
	if ((o = json_tokener_parse("{\"a\":1}")) != NULL)
		json_object_put(o);
	/* glibc's malloc reads /proc/sys/vm/overcommit_memory the first time it
	 * shrinks a thread's heap, and /sys/devices/system/cpu/online when the
	 * threads need more arenas: keep it from shrinking heaps, and give it
	 * its arena limit (its default: 8 per CPU). */
	mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
	mallopt(M_ARENA_MAX, 8 * (int)(sysconf(_SC_NPROCESSORS_ONLN) > 0
	                               ? sysconf(_SC_NPROCESSORS_ONLN) : 1));
}

static void fail(const char *what)
{
	fv__log(FV_LOG_ERROR, "serve: worker cannot start: %s: %s", what,
	        fv_error_last()->message);
	_exit(1);
}

void fv__worker_main(struct serve_gen *gen, unsigned int index,
                     const struct serve_child_env *env, int ctl, const int *channels,
                     size_t count, int resolver)
{
	static struct worker w;
	fv_flow_handler_config hc;
	struct ctl_msg msg;
	char role[32];
	int fds[CTL_MAX_FDS], *keep, null_fd;
	size_t i, nfds, nkeep = 0;

	snprintf(role, sizeof(role), "worker %u", index + 1);
	fv__serve_log_role(role);
	prctl(PR_SET_NAME, "fv-worker");
	memset(&w, 0, sizeof(w));
	w.gen = gen;
	pthread_mutex_init(&w.health_lock, NULL);

	/* Only our own descriptors: listeners, channels, control, and 0-2. */
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd >= 0) {
		dup2(null_fd, 0);
		dup2(null_fd, 1);
		close(null_fd);
	}
	keep = calloc(count + 4, sizeof(*keep));
	if (!keep)
		_exit(1);
	keep[nkeep++] = ctl;
	if (resolver >= 0)
		keep[nkeep++] = resolver;
	keep[nkeep++] = env->flows_fd;
	if (env->admin_fd >= 0)
		keep[nkeep++] = env->admin_fd;
	memcpy(keep + nkeep, channels, count * sizeof(*keep));
	fv__sandbox_close_fds(keep, nkeep + count);
	free(keep);

	if (fv__link_new(&w.link, count, gen->cfg.key_count) != FV_OK)
		fail("channels");
	fv__link_set(w.link, 0, channels, count);
	if (gen->cfg.upstream &&
	    (fv__upstream_new(&w.upstream, gen->cfg.upstream, gen->cfg.upstream_timeout_ms,
	                      gen->cfg.max_body_bytes) != FV_OK ||
	     fv__upstream_pin(w.upstream, gen->upstream_resolve, gen->ca, gen->ca_len) != FV_OK))
		fail("serve.upstream");
	if (w.upstream && gen->cfg.media) {
		if (fv__media_new(&w.media, gen->cfg.media, w.upstream, resolver, gen->media_ca,
		                  gen->media_ca_len, env->metrics) != FV_OK)
			fail("serve.media");
	} else if (resolver >= 0) {
		close(resolver);
	}
	memset(&hc, 0, sizeof(hc));
	hc.app_secrets = (const char *const *)gen->secrets;
	hc.app_secret_lens = gen->secret_lens;
	hc.app_secret_count = gen->cfg.app_secret_count;
	hc.upstream = w.media ? fv__media_upstream_call : w.upstream ? fv__upstream_call : NULL;
	hc.upstream_arg = w.media ? (void *)w.media : (void *)w.upstream;
	if (fv__flow_handler_new_unwrap(&w.handler, &hc, (const char *const *)gen->cfg.keys,
	                                gen->cfg.key_count, fv__link_unwrap, w.link) != FV_OK)
		fail("request handler");
	w.http.cfg = &gen->cfg;
	w.http.handler = w.handler;
	w.http.key_names = (const char *const *)gen->cfg.keys;
	w.http.metrics = env->metrics;
	memcpy(w.http.key_slots, gen->key_slots, sizeof(w.http.key_slots));
	w.http.health = worker_health;
	w.http.health_arg = &w;
	w.http.tls_cert = gen->tls_cert;
	w.http.tls_key = gen->tls_key;
	fv__admin_http_setup(&w.http, gen);
	preload();

	if (env->drop_user && fv__sandbox_drop(env->uid, env->gid) != FV_OK)
		fail("serve.user");
	/* Set after the user switch, which clears it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (fv__sandbox_enter(env->sandbox_debug) != FV_OK)
		fail("sandbox");
	if (fv__http_start(&w.http, env->flows_fd, env->admin_fd) != FV_OK)
		fail("libmicrohttpd");
	/* The handler and GnuTLS hold their own copies now. */
	fv__gen_forget_secrets(gen, 0);

	memset(&msg, 0, sizeof(msg));
	msg.type = CTL_READY;
	if (fv__ctl_send(ctl, &msg, NULL, 0) != FV_OK)
		_exit(1);
	for (;;) {
		int got = fv__ctl_recv(ctl, &msg, fds, &nfds);

		if (got <= 0 || msg.type == CTL_QUIESCE)
			break;
		if (msg.type == CTL_CHANNELS) {
			fv__link_set(w.link, msg.first, fds, nfds);
		} else if (msg.type == CTL_RESOLVER && nfds == 1 && w.media) {
			fv__media_set_resolver(w.media, fds[0]);
		} else
			for (i = 0; i < nfds; i++)
				close(fds[i]);
	}
	/* Reload or stop: no new connections; requests in flight finish, and
	 * each answer from now on closes its connection. */
	fv__http_quiesce(&w.http);
	fv__http_drain(&w.http, (double)(gen->cfg.upstream_timeout_ms +
	                                 (gen->cfg.media ? gen->cfg.media->timeout_ms : 0)) / 1e3 + 2.0,
	               1);
	fv__http_stop(&w.http);
	_exit(0);
}
