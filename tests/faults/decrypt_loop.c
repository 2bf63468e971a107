/*
 * A long-lived decrypting process for fault-injection tests, through the
 * public API only: the key is opened once and then used again and again
 * while the test breaks and repairs its backend underneath.
 *
 *   fault-decrypt-loop CONFIG KEY CIPHERTEXT EXPECTED [PAUSE_MS COUNT]
 *
 * Without PAUSE_MS the pause between iterations is driven by the test: each
 * line read from stdin runs one iteration, so the test decides exactly when
 * the fault happens (no timing in assertions). The line "reopen" first
 * closes the key and the context and opens them again (what a restarted
 * service would do), then runs the iteration. With PAUSE_MS and COUNT it
 * runs COUNT iterations with that pause, for trying a fault by hand.
 *
 * One line per iteration on stdout, flushed at once:
 *   iteration N: ok
 *   iteration N: error STATUS: MESSAGE
 *   iteration N: wrong plain text
 *   reopen: ok | reopen: error STATUS: MESSAGE
 * It exits 0 at the end of its input however the iterations went; a crash
 * or a hang is what the test looks for besides the lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flowvault/flowvault.h>

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc(n ? (size_t)n : 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int open_key(fv_context **ctx, fv_key **key, const char *config,
                    const char *name)
{
	if (fv_context_open(ctx, config, 0) != FV_OK)
		return fv_error_last()->status;
	if (fv_key_open(key, *ctx, name) != FV_OK) {
		int status = fv_error_last()->status;

		fv_context_free(*ctx);
		*ctx = NULL;
		return status;
	}
	return FV_OK;
}

static void iteration(fv_key *key, int n, const unsigned char *in, size_t in_len,
                      const unsigned char *expected, size_t expected_len)
{
	unsigned char out[1024];
	size_t out_len = sizeof(out);
	int rc = fv_key_decrypt(out, &out_len, key, in, in_len);

	if (rc != FV_OK) {
		const fv_error *e = fv_error_last();

		printf("iteration %d: error %s: %s\n", n, fv_status_name(e->status),
		       e->message);
	} else if (out_len != expected_len || memcmp(out, expected, out_len) != 0) {
		printf("iteration %d: wrong plain text\n", n);
	} else {
		printf("iteration %d: ok\n", n);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	unsigned char *in, *expected;
	size_t in_len = 0, expected_len = 0;
	char line[64];
	int n = 0;

	if (argc != 5 && argc != 7) {
		fprintf(stderr, "usage: %s CONFIG KEY CIPHERTEXT EXPECTED [PAUSE_MS COUNT]\n",
		        argv[0]);
		return 2;
	}
	in = read_file(argv[3], &in_len);
	expected = read_file(argv[4], &expected_len);
	if (!in || !expected) {
		fprintf(stderr, "fault-decrypt-loop: cannot read %s or %s\n", argv[3], argv[4]);
		return 2;
	}
	if (open_key(&ctx, &key, argv[1], argv[2]) != FV_OK) {
		fprintf(stderr, "fault-decrypt-loop: %s\n", fv_error_last()->message);
		return 3;
	}
	printf("key open\n");
	fflush(stdout);

	if (argc == 7) {
		long pause_ms = atol(argv[5]);
		int count = atoi(argv[6]);
		struct timespec ts = { pause_ms / 1000, (pause_ms % 1000) * 1000000L };

		for (n = 1; n <= count; n++) {
			iteration(key, n, in, in_len, expected, expected_len);
			nanosleep(&ts, NULL);
		}
	} else {
		while (fgets(line, sizeof(line), stdin)) {
			if (strcmp(line, "reopen\n") == 0) {
				fv_key_free(key);
				fv_context_free(ctx);
				key = NULL;
				ctx = NULL;
				if (open_key(&ctx, &key, argv[1], argv[2]) != FV_OK) {
					printf("reopen: error %s: %s\n",
					       fv_status_name(fv_error_last()->status),
					       fv_error_last()->message);
				} else {
					printf("reopen: ok\n");
				}
			}
			if (key)
				iteration(key, ++n, in, in_len, expected, expected_len);
			else
				printf("iteration %d: no key\n", ++n);
			fflush(stdout);
		}
	}
	fv_key_free(key);
	fv_context_free(ctx);
	free(in);
	free(expected);
	return 0;
}
