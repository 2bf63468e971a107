/*
 * In-process Flows round trips with a vault key: decrypt a request
 * (RSA-OAEP in the key's backend, AES-128-GCM) and encrypt its response,
 * as fast as one thread can, for SECONDS.
 *
 *   fv-flow-bench CONFIG KEY REQUESTS_FILE SECONDS
 *
 * REQUESTS_FILE holds request bodies, one per line (made by an independent
 * client, see run.sh). Prints "roundtrips_per_second <wall> <cpu>": per
 * second of wall-clock time and per second of this process's CPU time (what
 * `openssl speed` reports by default, and steady on a busy machine).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flowvault/flowvault.h>

static double clock_seconds(clockid_t which)
{
	struct timespec ts;

	clock_gettime(which, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static const char answer[] = "{\"version\":\"3.0\",\"screen\":\"SUCCESS\",\"data\":{\"ok\":true}}";
	char *lines[256], buf[16384], *end;
	size_t count = 0, i, done = 0;
	double seconds, start, cpu_start, elapsed;
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	int rc = 1;
	FILE *f;

	if (argc != 5) {
		fprintf(stderr, "usage: fv-flow-bench CONFIG KEY REQUESTS_FILE SECONDS\n");
		return 2;
	}
	seconds = strtod(argv[4], &end);
	if (end == argv[4] || *end || !(seconds > 0)) {
		fprintf(stderr, "fv-flow-bench: SECONDS must be a positive number, not '%s'\n", argv[4]);
		return 2;
	}
	if (fv_context_open(&ctx, argv[1], 0) != FV_OK || fv_key_open(&key, ctx, argv[2]) != FV_OK) {
		fprintf(stderr, "fv-flow-bench: %s\n", fv_error_last()->message);
		goto out;
	}
	f = fopen(argv[3], "r");
	if (!f) {
		perror(argv[3]);
		goto out;
	}
	while (count < 256 && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = '\0';
		if (!buf[0])
			continue;
		if (!(lines[count] = strdup(buf))) {
			(void)fclose(f);
			goto out;
		}
		count++;
	}
	/* Read-only stream: a read error shows in ferror(), not in fclose(). */
	if (ferror(f)) {
		perror(argv[3]);
		(void)fclose(f);
		goto out;
	}
	(void)fclose(f);
	if (!count) {
		fprintf(stderr, "fv-flow-bench: no requests in %s\n", argv[3]);
		goto out;
	}
	start = clock_seconds(CLOCK_MONOTONIC);
	cpu_start = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
	do {
		/* Check the clock every few round trips only. */
		for (i = 0; i < 16; i++, done++) {
			const char *body = lines[done % count];
			fv_flow_session *session = NULL;
			char *clear = NULL, *sealed = NULL;
			size_t clear_len = 0, sealed_len = 0;
			int ok;

			ok = fv_flow_decrypt_request(&clear, &clear_len, &session, key, body,
			                             strlen(body)) == FV_OK &&
			     fv_flow_encrypt_response(&sealed, &sealed_len, session, answer,
			                              sizeof(answer) - 1) == FV_OK;
			if (!ok)
				fprintf(stderr, "fv-flow-bench: %s\n", fv_error_last()->message);
			fv_free(sealed);
			fv_flow_session_free(session);
			fv_flow_clear_free(clear, clear_len);
			if (!ok)
				goto out;
		}
		elapsed = clock_seconds(CLOCK_MONOTONIC) - start;
	} while (elapsed < seconds);
	if (printf("roundtrips_per_second %.1f %.1f\n", (double)done / elapsed,
	           (double)done / (clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start)) < 0 ||
	    fflush(stdout) != 0) {
		perror("fv-flow-bench: stdout");
		goto out;
	}
	rc = 0;
out:
	for (i = 0; i < count; i++)
		free(lines[i]);
	fv_key_free(key);
	fv_context_free(ctx);
	return rc;
}
