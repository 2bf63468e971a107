/*
 * Decrypts per second through a cloud plugin, and the same requests posted
 * by a bare libcurl loop, against the same simulator: the ratio says what
 * the plugin adds (a token fetch or key lookup per decrypt would halve it).
 *
 *   cloud-bench plugin CONFIG KEY PUB.pem THREADS COUNT [PAUSE_MS]
 *       fv_key_decrypt COUNT times per thread on one ciphertext made for
 *       PUB.pem (RSA-OAEP-SHA256), checking the plaintext each time;
 *       PAUSE_MS between decrypts (tests use it to cross a credential refresh).
 *   cloud-bench raw URL CA THREADS COUNT BODY_FILE [HEADER...]
 *       POST BODY_FILE to URL COUNT times per thread, one keep-alive curl
 *       handle per thread, expecting HTTP 200. $RAW_SIGV4 and $RAW_USERPWD
 *       sign with CURLOPT_AWS_SIGV4; $RAW_SECRET_HEADER is one more header
 *       (a token), from the environment so it is not in argv.
 *   cloud-bench encrypt PUB.pem   prints one base64 ciphertext of 16 bytes
 *
 * Prints "<mode>: N decrypts in S s: R/s".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <flowvault/flowvault.h>

struct job {
	/* plugin mode */
	fv_key *key;
	const unsigned char *ct;
	size_t ct_len;
	const unsigned char *expect;
	long pause_ms;
	/* raw mode */
	const char *url, *ca, *body;
	size_t body_len;
	struct curl_slist *headers;
	/* both */
	long count;
	long failed;
};

/* A positive count from the command line; 0 when it is not one. */
static long count_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v > 0 ? v : 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int encrypt_to(const char *pub_path, const unsigned char *msg, size_t msg_len,
                      unsigned char *ct, size_t *ct_len)
{
	FILE *f = fopen(pub_path, "r");
	EVP_PKEY *pub = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
	EVP_PKEY_CTX *ctx = pub ? EVP_PKEY_CTX_new(pub, NULL) : NULL;
	int ok = ctx && EVP_PKEY_encrypt_init(ctx) > 0 &&
	         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
	         EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", NULL) > 0 &&
	         EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA256", NULL) > 0 &&
	         EVP_PKEY_encrypt(ctx, ct, ct_len, msg, msg_len) > 0;

	if (f)
		(void)fclose(f);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pub);
	return ok;
}

static void *plugin_worker(void *arg)
{
	struct job *j = arg;
	long i;

	for (i = 0; i < j->count; i++) {
		unsigned char out[512];
		size_t out_len = sizeof(out);

		if (fv_key_decrypt(out, &out_len, j->key, j->ct, j->ct_len) != FV_OK ||
		    out_len != 16 || memcmp(out, j->expect, 16) != 0) {
			fprintf(stderr, "decrypt: %s\n", fv_error_last()->message);
			j->failed++;
		}
		if (j->pause_ms) {
			struct timespec ts = { j->pause_ms / 1000, (j->pause_ms % 1000) * 1000000L };

			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

static void *raw_worker(void *arg)
{
	struct job *j = arg;
	const char *sigv4 = getenv("RAW_SIGV4"), *userpwd = getenv("RAW_USERPWD");
	CURL *h = curl_easy_init();
	long i, status;

	for (i = 0; h && i < j->count; i++) {
		curl_easy_setopt(h, CURLOPT_URL, j->url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_CAINFO, j->ca);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, j->headers);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
		if (sigv4 && userpwd) {
			curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4);
			curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
		}
		status = 0;
		if (curl_easy_perform(h) != CURLE_OK ||
		    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
			j->failed++;
	}
	if (!h)
		j->failed = j->count;
	curl_easy_cleanup(h);
	return NULL;
}

static int run(const char *mode, struct job *proto, long threads)
{
	pthread_t *tids;
	struct job *jobs;
	long t, failed = 0;
	double start, secs;

	if (threads <= 0 || proto->count <= 0) {
		fprintf(stderr, "%s: THREADS and COUNT must be positive numbers\n", mode);
		return 2;
	}
	tids = calloc((size_t)threads, sizeof(*tids));
	jobs = calloc((size_t)threads, sizeof(*jobs));

	if (!tids || !jobs) {
		free(tids);
		free(jobs);
		return 1;
	}
	start = now_s();
	for (t = 0; t < threads; t++) {
		jobs[t] = *proto;
		pthread_create(&tids[t], NULL, strcmp(mode, "plugin") == 0 ? plugin_worker : raw_worker,
		               &jobs[t]);
	}
	for (t = 0; t < threads; t++) {
		pthread_join(tids[t], NULL);
		failed += jobs[t].failed;
	}
	secs = now_s() - start;
	printf("%s: %ld decrypts in %.3f s: %.1f/s\n", mode, threads * proto->count, secs,
	       (double)(threads * proto->count) / secs);
	free(tids);
	free(jobs);
	if (failed)
		fprintf(stderr, "%s: %ld of %ld failed\n", mode, failed, threads * proto->count);
	return failed ? 1 : 0;
}

static int plugin_mode(int argc, char **argv)
{
	unsigned char msg[16], ct[512];
	size_t ct_len = sizeof(ct);
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	struct job j;
	int rc;

	if (argc < 7)
		return 2;
	memset(&j, 0, sizeof(j));
	if (RAND_bytes(msg, sizeof(msg)) != 1 || !encrypt_to(argv[4], msg, sizeof(msg), ct, &ct_len)) {
		fprintf(stderr, "cannot encrypt to %s\n", argv[4]);
		return 1;
	}
	if (fv_context_open(&ctx, argv[2], 0) != FV_OK || fv_key_open(&key, ctx, argv[3]) != FV_OK) {
		fprintf(stderr, "%s\n", fv_error_last()->message);
		fv_context_free(ctx);
		return 1;
	}
	j.key = key;
	j.ct = ct;
	j.ct_len = ct_len;
	j.expect = msg;
	j.count = count_arg(argv[6]);
	j.pause_ms = argc > 7 ? count_arg(argv[7]) : 0;
	rc = run("plugin", &j, count_arg(argv[5]));
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}

static int raw_mode(int argc, char **argv)
{
	static char body[65536];
	const char *secret_header = getenv("RAW_SECRET_HEADER");
	struct curl_slist *headers = NULL;
	struct job j;
	size_t n;
	FILE *f;
	int i, rc;

	if (argc < 7 || !(f = fopen(argv[6], "r")))
		return 2;
	n = fread(body, 1, sizeof(body) - 1, f);
	(void)fclose(f);
	while (n && (body[n - 1] == '\n'))
		n--;
	body[n] = '\0';
	for (i = 7; i < argc; i++)
		headers = curl_slist_append(headers, argv[i]);
	if (secret_header)
		headers = curl_slist_append(headers, secret_header);
	memset(&j, 0, sizeof(j));
	j.url = argv[2];
	j.ca = argv[3];
	j.body = body;
	j.body_len = n;
	j.headers = headers;
	j.count = count_arg(argv[5]);
	rc = run("raw", &j, count_arg(argv[4]));
	curl_slist_free_all(headers);
	return rc;
}

static int encrypt_mode(int argc, char **argv)
{
	unsigned char msg[16], ct[512], b64[1024];
	size_t ct_len = sizeof(ct);

	if (argc < 3 || RAND_bytes(msg, sizeof(msg)) != 1 ||
	    !encrypt_to(argv[2], msg, sizeof(msg), ct, &ct_len))
		return 1;
	EVP_EncodeBlock(b64, ct, (int)ct_len);
	printf("%s\n", b64);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (argc > 1 && strcmp(argv[1], "plugin") == 0)
		rc = plugin_mode(argc, argv);
	else if (argc > 1 && strcmp(argv[1], "raw") == 0)
		rc = raw_mode(argc, argv);
	else if (argc > 1 && strcmp(argv[1], "encrypt") == 0)
		rc = encrypt_mode(argc, argv);
	if (rc == 2)
		fprintf(stderr, "usage: cloud-bench plugin CONFIG KEY PUB THREADS COUNT [PAUSE_MS]\n"
		                "       cloud-bench raw URL CA THREADS COUNT BODY_FILE [HEADER...]\n"
		                "       cloud-bench encrypt PUB\n");
	curl_global_cleanup();
	return rc;
}
