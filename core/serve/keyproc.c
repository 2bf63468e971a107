/*
 * The key process: the only process of a separated server that opens the
 * configuration's keys (and so loads plugins, PKCS#11 modules, the TSS
 * libraries, and resolves PINs and passphrases). It has no listener and
 * answers exactly two requests from the workers, over their channels:
 * "decrypt this RSA-OAEP ciphertext with serve.keys, in order" and "are
 * the keys healthy" (for /healthz). There is no way to ask it for a key, a
 * secret, a file or any other plugin call.
 *
 * One thread per channel: a worker thread waits on its own channel, so a
 * slow backend operation for one request never queues another's.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "../serve_internal.h"

#define PROBE_CACHE_SECONDS 2.0
#define PLAIN_MAX 512

/* How long the exit waits for decrypts in progress before closing the keys. */
#define KEYPROC_CLOSE_SECONDS 5

struct keyproc {
	fv_key **keys;
	size_t key_count;
	char fingerprints[SERVE_MAX_KEYS][FV_FINGERPRINT_HEX_SIZE];
	pthread_mutex_t probe_lock;
	double probed_at;
	uint32_t ok_mask;
	/* Channel threads hold it for reading while they use the keys; the
	 * exit takes it for writing, so keys are closed only when unused. */
	pthread_rwlock_t use_lock;
	int closing;
};

int fv__key_probe(fv_key *key)
{
	unsigned char secret[16], wrapped[1024], plain[1024];
	size_t wrapped_len = sizeof(wrapped), plain_len = sizeof(plain);
	unsigned char *der = NULL;
	size_t der_len = 0;
	const unsigned char *p;
	EVP_PKEY *pub = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int rc = FV_ERR_GENERIC;

	if (fv_key_public_der(&der, &der_len, key) != FV_OK)
		return fv_error_last()->status;
	p = der;
	pub = d2i_PUBKEY(NULL, &p, (long)der_len);
	if (!pub || RAND_bytes(secret, sizeof(secret)) != 1 ||
	    !(pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) ||
	    EVP_PKEY_encrypt_init(pctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md_name(pctx, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_encrypt(pctx, wrapped, &wrapped_len, secret, sizeof(secret)) <= 0) {
		fv__error_set(FV_ERR_GENERIC, "key '%s': cannot encrypt a probe to its public key",
		              fv_key_name(key));
		goto out;
	}
	rc = fv_key_decrypt(plain, &plain_len, key, wrapped, wrapped_len);
	if (rc == FV_OK && (plain_len != sizeof(secret) ||
	                    CRYPTO_memcmp(plain, secret, sizeof(secret)) != 0))
		rc = fv__error_set(FV_ERR_BACKEND,
			"key '%s': the backend decrypted a probe to the wrong value", fv_key_name(key));
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(plain, sizeof(plain));
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pub);
	fv_free(der);
	return rc;
}

/* The keys in order: the first that yields a 16-byte AES key wins. */
static void decrypt(struct keyproc *kp, const struct ipc_request *req, struct ipc_reply *rep)
{
	unsigned char plain[PLAIN_MAX];
	int backend_failed = 0;
	size_t i;

	rep->status = IPC_UNDECRYPTABLE;
	for (i = 0; i < kp->key_count; i++) {
		size_t plain_len = sizeof(plain);
		int rc = fv_key_decrypt(plain, &plain_len, kp->keys[i], req->ciphertext, req->len);

		if (rc == FV_OK && plain_len == FV_FLOW_AES_KEY_BYTES) {
			memcpy(rep->aes_key, plain, FV_FLOW_AES_KEY_BYTES);
			rep->key_index = (uint32_t)i;
			rep->status = IPC_OK;
			break;
		}
		if (rc != FV_OK && rc != FV_ERR_DECRYPT && rc != FV_ERR_BUFFER_TOO_SMALL) {
			backend_failed = 1;
			fv__log(FV_LOG_ERROR, "serve: key backend failed: %s", fv_error_last()->message);
		}
	}
	if (rep->status != IPC_OK && backend_failed)
		rep->status = IPC_BACKEND_FAILURE;
	OPENSSL_cleanse(plain, sizeof(plain));
}

static void probe(struct keyproc *kp, struct ipc_probe_reply *rep)
{
	size_t i;

	pthread_mutex_lock(&kp->probe_lock);
	if (fv__now_seconds() - kp->probed_at >= PROBE_CACHE_SECONDS) {
		kp->ok_mask = 0;
		for (i = 0; i < kp->key_count; i++) {
			if (fv__key_probe(kp->keys[i]) == FV_OK)
				kp->ok_mask |= 1u << i;
			else
				fv__log(FV_LOG_ERROR, "serve: /healthz: %s", fv_error_last()->message);
		}
		kp->probed_at = fv__now_seconds();
	}
	rep->ok_mask = kp->ok_mask;
	pthread_mutex_unlock(&kp->probe_lock);
	rep->key_count = (uint32_t)kp->key_count;
	memcpy(rep->fingerprints, kp->fingerprints, sizeof(rep->fingerprints));
}

struct channel_arg {
	struct keyproc *kp;
	int fd;
};

/* One worker thread's channel: requests in, replies out, until it closes. */
static void *serve_channel(void *arg)
{
	struct channel_arg *ca = arg;
	struct keyproc *kp = ca->kp;
	int fd = ca->fd;
	struct ipc_request req;

	free(ca);
	for (;;) {
		/* MSG_TRUNC: the real length, so a message of any other size is seen. */
		ssize_t n = recv(fd, &req, sizeof(req), MSG_TRUNC);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the worker is gone */
		if ((size_t)n != sizeof(req) ||
		    (req.op == IPC_DECRYPT && (req.len == 0 || req.len > IPC_CIPHERTEXT_MAX)) ||
		    (req.op != IPC_DECRYPT && req.op != IPC_PROBE)) {
			fv__log(FV_LOG_ERROR, "serve: a worker sent a malformed request to the key "
			        "process (%zd bytes, op %u); closing its channel", n, req.op);
			break;
		}
		pthread_rwlock_rdlock(&kp->use_lock);
		if (kp->closing) {
			pthread_rwlock_unlock(&kp->use_lock);
			break;
		}
		if (req.op == IPC_DECRYPT) {
			struct ipc_reply rep;

			memset(&rep, 0, sizeof(rep));
			rep.op = IPC_DECRYPT;
			rep.id = req.id;
			decrypt(kp, &req, &rep);
			n = send(fd, &rep, sizeof(rep), MSG_NOSIGNAL);
			OPENSSL_cleanse(&rep, sizeof(rep));
		} else {
			struct ipc_probe_reply rep;

			memset(&rep, 0, sizeof(rep));
			rep.op = IPC_PROBE;
			rep.id = req.id;
			probe(kp, &rep);
			n = send(fd, &rep, sizeof(rep), MSG_NOSIGNAL);
		}
		pthread_rwlock_unlock(&kp->use_lock);
		OPENSSL_cleanse(&req, sizeof(req));
		if (n < 0)
			break;
	}
	close(fd);
	return NULL;
}

/* Close the keys before exiting, so a store without a resource manager (a
 * TPM reached directly) is left without our objects and sessions; if a
 * backend call does not end in time, exit anyway. */
static void close_keys(struct keyproc *kp)
{
	struct timespec until;
	size_t i;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += KEYPROC_CLOSE_SECONDS;
	if (pthread_rwlock_timedwrlock(&kp->use_lock, &until) != 0)
		return;
	kp->closing = 1;
	for (i = 0; i < kp->key_count; i++)
		fv_key_free(kp->keys[i]);
	kp->key_count = 0;
	pthread_rwlock_unlock(&kp->use_lock);
}

static void adopt_channels(struct keyproc *kp, const int *fds, size_t count)
{
	pthread_attr_t attr;
	size_t i;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (i = 0; i < count; i++) {
		struct channel_arg *ca = malloc(sizeof(*ca));
		pthread_t t;

		if (ca) {
			ca->kp = kp;
			ca->fd = fds[i];
		}
		if (!ca || pthread_create(&t, &attr, serve_channel, ca) != 0) {
			fv__log(FV_LOG_ERROR, "serve: key process: cannot start a channel thread");
			free(ca);
			close(fds[i]);
		}
	}
	pthread_attr_destroy(&attr);
}

void fv__keyproc_main(struct serve_gen *gen, int ctl, const int *channels, size_t count)
{
	struct keyproc kp;
	struct ctl_msg msg;
	struct rlimit no_core = { 0, 0 };
	int *keep, fds[CTL_MAX_FDS];
	size_t i, nfds;

	fv__serve_log_role("key");
	prctl(PR_SET_NAME, "fv-keyproc"); /* for ps and the tests */
	/* No core dump and no ptrace by the same user: this process holds keys. */
	prctl(PR_SET_DUMPABLE, 0);
	setrlimit(RLIMIT_CORE, &no_core);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fv__gen_forget_secrets(gen, 0);
	keep = calloc(count + 1, sizeof(*keep));
	if (!keep)
		_exit(1);
	keep[0] = ctl;
	memcpy(keep + 1, channels, count * sizeof(*keep));
	fv__sandbox_close_fds(keep, count + 1);
	free(keep);

	memset(&kp, 0, sizeof(kp));
	pthread_mutex_init(&kp.probe_lock, NULL);
	pthread_rwlock_init(&kp.use_lock, NULL);
	kp.probed_at = -1e9;
	memset(&msg, 0, sizeof(msg));
	if (fv__serve_open_keys(&kp.keys, gen->ctx, &gen->cfg) != FV_OK) {
		msg.type = CTL_FAILED;
		snprintf(msg.text, sizeof(msg.text), "%s", fv_error_last()->message);
		fv__ctl_send(ctl, &msg, NULL, 0);
		_exit(1);
	}
	kp.key_count = gen->cfg.key_count;
	for (i = 0; i < kp.key_count; i++)
		if (fv_key_fingerprint(kp.fingerprints[i], kp.keys[i]) != FV_OK)
			kp.fingerprints[i][0] = '\0';
	adopt_channels(&kp, channels, count);
	msg.type = CTL_READY;
	if (fv__ctl_send(ctl, &msg, NULL, 0) != FV_OK)
		_exit(1);
	for (;;) {
		int got = fv__ctl_recv(ctl, &msg, fds, &nfds);

		if (got <= 0)
			break; /* the supervisor closed our control socket: done */
		if (msg.type == CTL_CHANNELS)
			adopt_channels(&kp, fds, nfds);
		else
			for (i = 0; i < nfds; i++)
				close(fds[i]);
	}
	/* Workers' threads may be mid-request: exit without unwinding them,
	 * once the keys are closed. */
	close_keys(&kp);
	_exit(0);
}
