/*
 * Drives fv_key_decrypt through the public API for the PKCS#11 tests:
 *
 *   p11-decrypt-tool decrypt CONFIG KEY CIPHERTEXT OUT
 *   p11-decrypt-tool threads CONFIG KEY CIPHERTEXT EXPECTED THREADS COUNT
 *   p11-decrypt-tool fork    CONFIG KEY CIPHERTEXT EXPECTED
 *   p11-decrypt-tool recover CONFIG KEY CIPHERTEXT EXPECTED MODULE
 *   p11-decrypt-tool describe CONFIG KEY
 *   p11-decrypt-tool steps   CONFIG KEY CIPHERTEXT EXPECTED DIR
 *
 * `decrypt` writes the plain text; `threads` decrypts COUNT times in each of
 * THREADS threads with one key handle and checks every result; `fork`
 * decrypts in the parent, in a forked child (which must re-initialize the
 * module and log in again), and in the parent again; `recover` decrypts,
 * then closes every session of this process on the module's tokens behind
 * the plugin's back (C_CloseAllSessions, which also logs out), and decrypts
 * again: the plugin must re-open and log in once; `describe` opens the key
 * for inspection and prints fv_key_details_get's fields, one per line, then
 * what fv_key_policy_check says; `steps` keeps one key open for a test
 * that changes the world between decryptions: for N = 1, 2, ... it waits
 * for DIR/go.N, decrypts and writes DIR/result.N ("ok", or "error STATUS:
 * MESSAGE"), and ends when DIR/stop appears. Errors go to stderr
 * with the library's message; the exit code follows `flowvault`'s
 * (2 configuration, 3 key backend).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <flowvault/flowvault.h>

#include <p11-kit/pkcs11.h>

static void log_line(void *arg, int level, const char *message)
{
	(void)arg;
	fprintf(stderr, "log[%d]: %s\n", level, message);
}

/* Close every session this process has on the module's tokens. */
static int close_all_sessions(const char *module)
{
	CK_RV (*get)(CK_FUNCTION_LIST **);
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	void *dl = dlopen(module, RTLD_NOW | RTLD_NOLOAD);

	if (!dl) {
		fprintf(stderr, "p11-decrypt-tool: %s is not loaded in this process\n", module);
		return 1;
	}
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (!get || get(&f) != CKR_OK || f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return 1;
	for (i = 0; i < n; i++)
		f->C_CloseAllSessions(slots[i]);
	dlclose(dl);
	return 0;
}

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
	case FV_ERR_NOT_FOUND:
	case FV_ERR_EXISTS:
	case FV_ERR_AUTH:
	case FV_ERR_BACKEND:
	case FV_ERR_UNSUPPORTED:
	case FV_ERR_DECRYPT:
	case FV_ERR_PERMISSION:
		return 3;
	default:
		return 1;
	}
}

static int fail(const char *what)
{
	const fv_error *e = fv_error_last();

	fprintf(stderr, "p11-decrypt-tool: %s: %s\n", what, e->message);
	return exit_for(e->status ? e->status : FV_ERR_GENERIC);
}

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

struct job {
	fv_key *key;
	const unsigned char *in, *expected;
	size_t in_len, expected_len;
	int count;
	int ok, failed;
	char message[512];
};

static void *worker(void *arg)
{
	struct job *job = arg;
	unsigned char out[512];
	size_t out_len;
	int i, rc;

	for (i = 0; i < job->count; i++) {
		out_len = sizeof(out);
		rc = fv_key_decrypt(out, &out_len, job->key, job->in, job->in_len);
		if (rc == FV_OK && out_len == job->expected_len &&
		    memcmp(out, job->expected, out_len) == 0) {
			job->ok++;
		} else {
			if (!job->failed)
				snprintf(job->message, sizeof(job->message), "%s",
				         rc ? fv_error_last()->message : "wrong plain text");
			job->failed++;
		}
	}
	return NULL;
}

static int decrypt_matches(fv_key *key, const unsigned char *in, size_t in_len,
                           const unsigned char *expected, size_t expected_len,
                           const char *who)
{
	unsigned char out[512];
	size_t out_len = sizeof(out);
	int rc = fv_key_decrypt(out, &out_len, key, in, in_len);

	if (rc != FV_OK)
		return fail(who);
	if (out_len != expected_len || memcmp(out, expected, out_len) != 0) {
		fprintf(stderr, "p11-decrypt-tool: %s: wrong plain text\n", who);
		return 1;
	}
	return 0;
}

/* Freed at exit whichever way main returns, so leak checkers see no leak
 * (inputs read before the key opens are freed at exit too). */
static fv_context *ctx;
static fv_key *key;
static unsigned char *in, *expected;

static void release(void)
{
	fv_key_free(key);
	fv_context_free(ctx);
	free(in);
	free(expected);
}

static int file_exists(const char *dir, const char *name, int n)
{
	char path[4096];

	snprintf(path, sizeof(path), n ? "%s/%s.%d" : "%s/%s", dir, name, n);
	return access(path, F_OK) == 0;
}

static int steps(const char *dir, size_t in_len, size_t expected_len)
{
	unsigned char out[512];
	char path[4096];
	size_t out_len;
	int n, rc;
	FILE *f;

	for (n = 1; ; n++) {
		while (!file_exists(dir, "go", n)) {
			if (file_exists(dir, "stop", 0))
				return 0;
			usleep(20000);
		}
		out_len = sizeof(out);
		rc = fv_key_decrypt(out, &out_len, key, in, in_len);
		snprintf(path, sizeof(path), "%s/result.%d.tmp", dir, n);
		if (!(f = fopen(path, "w")))
			return 1;
		if (rc != FV_OK)
			fprintf(f, "error %d: %s\n", rc, fv_error_last()->message);
		else if (out_len != expected_len || memcmp(out, expected, out_len) != 0)
			fprintf(f, "wrong plain text\n");
		else
			fprintf(f, "ok\n");
		if (fclose(f) != 0)
			return 1;
		{
			char final[4096];

			snprintf(final, sizeof(final), "%s/result.%d", dir, n);
			if (rename(path, final) != 0)
				return 1;
		}
	}
}

static const struct {
	uint32_t bit;
	const char *name;
} property_names[] = {
	{ FV_KEY_PROP_EXTRACTABLE, "extractable" },
	{ FV_KEY_PROP_SENSITIVE, "sensitive" },
	{ FV_KEY_PROP_ALWAYS_SENSITIVE, "always-sensitive" },
	{ FV_KEY_PROP_NEVER_EXTRACTABLE, "never-extractable" },
	{ FV_KEY_PROP_GENERATED_INSIDE, "generated-inside" },
	{ FV_KEY_PROP_CAN_SIGN, "can-sign" },
	{ FV_KEY_PROP_CAN_UNWRAP, "can-unwrap" },
	{ FV_KEY_PROP_FIXED_TPM, "fixed-tpm" },
	{ FV_KEY_PROP_FIXED_PARENT, "fixed-parent" },
	{ FV_KEY_PROP_IN_HOST_MEMORY, "in-host-memory" },
};

static int describe(const char *config, const char *name)
{
	const fv_key_details *d;
	size_t i;
	int rc;

	if (fv_context_open(&ctx, config, 0) != FV_OK)
		return fail("open configuration");
	rc = fv_key_open_ex(&key, ctx, name, FV_KEY_OPEN_INSPECT);
	atexit(release); /* after the module's own exit handler, as in main */
	if (rc != FV_OK)
		return fail("open key");
	if (fv_key_details_get(&d, key) != FV_OK)
		return fail("details");
	printf("oaep=%s\nbackend=%s\nlocation=%s\nremote_id=%s\nbits=%u\n",
	       d->oaep ? d->oaep : "(unknown)", d->backend ? d->backend : "(unknown)",
	       d->location ? d->location : "(unknown)",
	       d->remote_id ? d->remote_id : "(none)", d->bits);
	for (i = 0; i < sizeof(property_names) / sizeof(property_names[0]); i++)
		if (d->properties_known & property_names[i].bit)
			printf("property %s=%d\n", property_names[i].name,
			       (d->properties & property_names[i].bit) != 0);
	for (i = 0; i < d->warning_count; i++)
		printf("warning %s%s: %s\n", d->warnings[i].property,
		       d->warnings[i].refused ? " (refused)" : "", d->warnings[i].message);
	if (fv_key_policy_check(key) == FV_OK)
		printf("policy: ok\n");
	else
		printf("policy: refused: %s\n", fv_error_last()->message);
	return 0;
}

int main(int argc, char **argv)
{
	size_t in_len, expected_len = 0;
	int rc;

	/* As `flowvault serve` does: a p11-kit server that goes away must give
	 * an error on the socket, not end the process. */
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4 && strcmp(argv[1], "describe") == 0)
		return describe(argv[2], argv[3]);

	if (argc < 5) {
		fprintf(stderr, "usage: %s decrypt|threads|fork CONFIG KEY CIPHERTEXT ...\n", argv[0]);
		return 2;
	}
	in = read_file(argv[4], &in_len);
	if (!in) {
		fprintf(stderr, "p11-decrypt-tool: cannot read %s\n", argv[4]);
		return 1;
	}
	if (strcmp(argv[1], "decrypt") != 0) {
		if (argc < 6 || !(expected = read_file(argv[5], &expected_len))) {
			fprintf(stderr, "p11-decrypt-tool: need a readable EXPECTED file\n");
			return 2;
		}
	}
	if (getenv("P11_TOOL_DEBUG"))
		fv_log_set(log_line, NULL, FV_LOG_DEBUG);
	if (fv_context_open(&ctx, argv[2], 0) != FV_OK)
		return fail("open configuration");
	rc = fv_key_open(&key, ctx, argv[3]);
	/* After the module's C_Initialize registered its own exit handler, so
	 * that ours (which closes sessions) runs before the module tears down. */
	atexit(release);
	if (rc != FV_OK)
		return fail("open key");

	if (strcmp(argv[1], "decrypt") == 0) {
		unsigned char out[512];
		size_t out_len = sizeof(out);
		FILE *f;

		if (argc < 6)
			return 2;
		if (fv_key_decrypt(out, &out_len, key, in, in_len) != FV_OK)
			return fail("decrypt");
		f = fopen(argv[5], "wb");
		if (!f || fwrite(out, 1, out_len, f) != out_len || fclose(f) != 0)
			return 1;
		rc = 0;
	} else if (strcmp(argv[1], "threads") == 0 && argc == 8) {
		int threads = atoi(argv[6]), count = atoi(argv[7]), i, ok = 0, bad = 0;
		pthread_t tid[16];
		struct job jobs[16];

		if (threads < 1 || threads > 16 || count < 1)
			return 2;
		for (i = 0; i < threads; i++) {
			jobs[i] = (struct job){ key, in, expected, in_len, expected_len, count, 0, 0, "" };
			pthread_create(&tid[i], NULL, worker, &jobs[i]);
		}
		for (i = 0; i < threads; i++) {
			pthread_join(tid[i], NULL);
			ok += jobs[i].ok;
			bad += jobs[i].failed;
			if (jobs[i].failed)
				fprintf(stderr, "thread %d: %d failures, first: %s\n", i,
				        jobs[i].failed, jobs[i].message);
		}
		printf("decrypts ok: %d, failed: %d\n", ok, bad);
		rc = bad == 0 && ok == threads * count ? 0 : 1;
	} else if (strcmp(argv[1], "fork") == 0) {
		pid_t pid;
		int status;

		rc = decrypt_matches(key, in, in_len, expected, expected_len, "parent before fork");
		if (rc)
			return rc;
		pid = fork();
		if (pid == 0)
			_exit(decrypt_matches(key, in, in_len, expected, expected_len, "child"));
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			return 1;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "p11-decrypt-tool: child failed (status %d)\n", status);
			return 1;
		}
		rc = decrypt_matches(key, in, in_len, expected, expected_len, "parent after fork");
		if (rc == 0)
			printf("parent and child decrypted\n");
	} else if (strcmp(argv[1], "steps") == 0 && argc == 7) {
		rc = steps(argv[6], in_len, expected_len);
	} else if (strcmp(argv[1], "recover") == 0 && argc == 7) {
		rc = decrypt_matches(key, in, in_len, expected, expected_len, "before");
		if (rc)
			return rc;
		if (close_all_sessions(argv[6]))
			return 1;
		rc = decrypt_matches(key, in, in_len, expected, expected_len, "after C_CloseAllSessions");
		if (rc == 0)
			printf("decrypted again after the sessions were closed\n");
	} else {
		fprintf(stderr, "p11-decrypt-tool: unknown mode or arguments\n");
		rc = 2;
	}
	return rc;
}
