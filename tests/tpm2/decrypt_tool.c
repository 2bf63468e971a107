/*
 * fv-tpm2-decrypt: decrypt a ciphertext file with a configured key through
 * the public API (fv_context_open, fv_key_open, fv_key_decrypt) and write
 * the plain text to stdout.
 *
 *   fv-tpm2-decrypt CONFIG KEY CIPHER [--pause READY GO | --threads N]
 *   fv-tpm2-decrypt CONFIG KEY --describe
 *
 * With --pause, after the first decryption it creates the file READY, waits
 * for the file GO to appear (the test restarts the TPM meanwhile) and then
 * decrypts again with the same key handle, in the same process.
 * With --threads, N threads decrypt the ciphertext 10 times each on the
 * same key handle at once; every result must equal the first decryption.
 * With --describe, it opens the key (the require_non_extractable policy
 * applies) and prints its fv_key_details: "oaep: ...", "backend: ...",
 * "location: ...", "bits: ...", then "warning: PROPERTY refused|warned:
 * MESSAGE" per warning.
 * Exit status: 0 ok, 2 usage/config, 3 key backend, 6 ciphertext rejected,
 * 1 anything else; the error message goes to stderr.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <flowvault/flowvault.h>

static int exit_for(int status)
{
	switch (status) {
	case FV_OK:
		return 0;
	case FV_ERR_USAGE:
	case FV_ERR_CONFIG:
	case FV_ERR_SECRET:
	case FV_ERR_PLUGIN:
		return 2;
	case FV_ERR_DECRYPT:
		return 6;
	case FV_ERR_NOT_FOUND:
	case FV_ERR_EXISTS:
	case FV_ERR_AUTH:
	case FV_ERR_BACKEND:
	case FV_ERR_UNSUPPORTED:
	case FV_ERR_PERMISSION:
		return 3;
	default:
		return 1;
	}
}

static int fail(const char *what)
{
	const fv_error *e = fv_error_last();

	fprintf(stderr, "fv-tpm2-decrypt: %s: %s: %s\n", what, fv_status_name(e->status),
	        e->message);
	return exit_for(e->status);
}

static int read_file(const char *path, unsigned char *buf, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "rb");

	if (!f) {
		fprintf(stderr, "fv-tpm2-decrypt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	*len = fread(buf, 1, cap, f);
	(void)fclose(f);
	return 0;
}

static int decrypt_once(fv_key *key, const unsigned char *in, size_t in_len)
{
	unsigned char out[512];
	size_t out_len = sizeof(out);

	if (fv_key_decrypt(out, &out_len, key, in, in_len) != FV_OK)
		return fail("decrypt");
	if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
		fprintf(stderr, "fv-tpm2-decrypt: cannot write the plain text\n");
		return 1;
	}
	return 0;
}

static int wait_for(const char *path)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int i;

	for (i = 0; i < 1200; i++) {
		if (access(path, F_OK) == 0)
			return 0;
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "fv-tpm2-decrypt: %s did not appear within 60 s\n", path);
	return -1;
}

struct worker {
	pthread_t thread;
	fv_key *key;
	const unsigned char *in, *expect;
	size_t in_len, expect_len;
	int status;        /* fv_status of the first failure, or FV_OK */
	int mismatch;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	unsigned char out[512];
	size_t out_len;
	int i;

	for (i = 0; i < 10; i++) {
		out_len = sizeof(out);
		w->status = fv_key_decrypt(out, &out_len, w->key, w->in, w->in_len);
		if (w->status != FV_OK)
			break;
		if (out_len != w->expect_len || memcmp(out, w->expect, out_len) != 0)
			w->mismatch = 1;
	}
	return NULL;
}

/* Decrypt from `n` threads at once; 0 when every result is right. */
static int threads(fv_key *key, const unsigned char *in, size_t in_len, int n)
{
	unsigned char expect[512];
	size_t expect_len = sizeof(expect);
	struct worker w[16];
	int i, rc = 0;

	if (n < 1 || n > 16) {
		fprintf(stderr, "fv-tpm2-decrypt: --threads takes 1 to 16\n");
		return 2;
	}
	if (fv_key_decrypt(expect, &expect_len, key, in, in_len) != FV_OK)
		return fail("decrypt");
	for (i = 0; i < n; i++) {
		w[i] = (struct worker){ .key = key, .in = in, .in_len = in_len,
		                        .expect = expect, .expect_len = expect_len };
		if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0) {
			fprintf(stderr, "fv-tpm2-decrypt: cannot start a thread\n");
			n = i;
			rc = 1;
			break;
		}
	}
	for (i = 0; i < n; i++) {
		pthread_join(w[i].thread, NULL);
		if (w[i].status != FV_OK) {
			fprintf(stderr, "fv-tpm2-decrypt: thread %d: %s\n", i,
			        fv_status_name(w[i].status));
			rc = 1;
		} else if (w[i].mismatch) {
			fprintf(stderr, "fv-tpm2-decrypt: thread %d: wrong plain text\n", i);
			rc = 1;
		}
	}
	if (rc == 0)
		printf("%d threads x 10 decryptions: all equal\n", n);
	return rc;
}

static int describe(fv_key *key)
{
	const fv_key_details *d;
	size_t i;

	if (fv_key_details_get(&d, key) != FV_OK)
		return fail("details");
	printf("oaep: %s\nbackend: %s\nlocation: %s\nbits: %u\n", d->oaep ? d->oaep : "-",
	       d->backend ? d->backend : "-", d->location ? d->location : "-", d->bits);
	for (i = 0; i < d->warning_count; i++)
		printf("warning: %s %s: %s\n", d->warnings[i].property,
		       d->warnings[i].refused ? "refused" : "warned", d->warnings[i].message);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned char in[1024];
	size_t in_len = 0;
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	int rc, fd;

	int describing = argc == 4 && strcmp(argv[3], "--describe") == 0;

	if (!(argc == 4 || (argc == 7 && strcmp(argv[4], "--pause") == 0) ||
	      (argc == 6 && strcmp(argv[4], "--threads") == 0))) {
		fprintf(stderr,
		        "usage: %s CONFIG KEY CIPHER [--pause READY GO | --threads N]\n"
		        "       %s CONFIG KEY --describe\n", argv[0], argv[0]);
		return 2;
	}
	if (!describing && read_file(argv[3], in, sizeof(in), &in_len) != 0)
		return 1;
	if (fv_context_open(&ctx, argv[1], 0) != FV_OK)
		return fail("configuration");
	if (fv_key_open(&key, ctx, argv[2]) != FV_OK) {
		rc = fail("open key");
		goto out;
	}
	if (describing) {
		rc = describe(key);
		goto out;
	}
	if (argc == 6) {
		rc = threads(key, in, in_len, (int)strtol(argv[5], NULL, 10));
		goto out;
	}
	rc = decrypt_once(key, in, in_len);
	if (rc == 0 && argc == 7) {
		fd = open(argv[5], O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd >= 0)
			close(fd);
		rc = wait_for(argv[6]) == 0 ? decrypt_once(key, in, in_len) : 1;
	}
out:
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}
