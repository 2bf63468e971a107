/*
 * Decrypts per second through flowvault (fv_key_decrypt, pkcs11 plugin)
 * against a raw C_DecryptInit/C_Decrypt loop on the same token, key and
 * mechanism, measured in one run, and the ratio of the two.
 *
 *   p11-bench CONFIG KEY CIPHERTEXT MODULE INIT_ARGS TOKEN LABEL PINFILE
 *             MECH SECONDS THREADS
 *   p11-bench --compare DIRECT_CONFIG REMOTE_CONFIG KEY CIPHERTEXT SECONDS THREADS
 *
 * The second form compares flowvault with the same token reached two ways
 * (e.g. loaded directly, and through p11-kit-client.so and a p11-kit
 * server), phases alternating the same way.
 *
 * MECH is "token" (CKM_RSA_PKCS_OAEP, SHA-256) or "host" (CKM_RSA_X_509:
 * what flowvault sends when it removes the padding itself). INIT_ARGS may be
 * "". Phases alternate raw, flowvault, raw, flowvault; the best of each
 * counts, so a noisy neighbour hurts both sides alike.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <flowvault/flowvault.h>

#include <p11-kit/pkcs11.h>

struct bench {
	const char *config, *key_name, *module, *init_args, *token, *label, *pinfile;
	unsigned char cipher[1024];
	size_t cipher_len;
	int token_oaep;
	double seconds;
	int threads;
	/* raw */
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	/* flowvault */
	fv_key *fvkey;
};

struct worker {
	struct bench *b;
	long count;
	int failed;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, unsigned long rv)
{
	fprintf(stderr, "p11-bench: %s failed (0x%lx)\n", what, rv);
	exit(1);
}

static void *raw_worker(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	CK_RSA_PKCS_OAEP_PARAMS params = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM mech = { CKM_RSA_X_509, NULL, 0 };
	CK_SESSION_HANDLE s;
	unsigned char out[1024];
	CK_ULONG n;
	double end;

	if (b->token_oaep) {
		mech.mechanism = CKM_RSA_PKCS_OAEP;
		mech.pParameter = &params;
		mech.ulParameterLen = sizeof(params);
	}
	if (b->f->C_OpenSession(b->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
		w->failed = 1;
		return NULL;
	}
	end = now() + b->seconds;
	while (now() < end) {
		n = sizeof(out);
		if (b->f->C_DecryptInit(s, &mech, b->key) != CKR_OK ||
		    b->f->C_Decrypt(s, b->cipher, b->cipher_len, out, &n) != CKR_OK) {
			w->failed = 1;
			break;
		}
		w->count++;
	}
	b->f->C_CloseSession(s);
	return NULL;
}

static void *fv_worker(void *arg)
{
	struct worker *w = arg;
	struct bench *b = w->b;
	unsigned char out[1024];
	size_t n;
	double end = now() + b->seconds;

	while (now() < end) {
		n = sizeof(out);
		if (fv_key_decrypt(out, &n, b->fvkey, b->cipher, b->cipher_len) != FV_OK) {
			fprintf(stderr, "p11-bench: %s\n", fv_error_last()->message);
			w->failed = 1;
			break;
		}
		w->count++;
	}
	return NULL;
}

static double run_threads(struct bench *b, void *(*fn)(void *))
{
	pthread_t tid[16];
	struct worker w[16];
	long total = 0;
	double start = now();
	int i;

	for (i = 0; i < b->threads; i++) {
		w[i] = (struct worker){ b, 0, 0 };
		pthread_create(&tid[i], NULL, fn, &w[i]);
	}
	for (i = 0; i < b->threads; i++) {
		pthread_join(tid[i], NULL);
		if (w[i].failed)
			die("decrypt loop", 0);
		total += w[i].count;
	}
	return (double)total / (now() - start);
}

static double raw_phase(struct bench *b)
{
	CK_RV (*get)(CK_FUNCTION_LIST **);
	CK_C_INITIALIZE_ARGS args;
	CK_SLOT_ID slots[32];
	CK_ULONG nslots = 32, i, count;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE login;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[2];
	char pin[256] = "";
	FILE *pf;
	void *dl;
	double rate;
	int found = 0;

	dl = dlopen(b->module, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		die(dlerror(), 0);
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (!get || get(&b->f) != CKR_OK)
		die("C_GetFunctionList", 0);
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	args.pReserved = b->init_args[0] ? (void *)b->init_args : NULL;
	if (b->f->C_Initialize(&args) != CKR_OK)
		die("C_Initialize", 0);
	if (b->f->C_GetSlotList(CK_TRUE, slots, &nslots) != CKR_OK)
		die("C_GetSlotList", 0);
	for (i = 0; i < nslots && !found; i++) {
		char label[33];
		size_t n = 32;

		if (b->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		memcpy(label, ti.label, 32);
		while (n > 0 && label[n - 1] == ' ')
			n--;
		label[n] = '\0';
		if (strcmp(label, b->token) == 0) {
			b->slot = slots[i];
			found = 1;
		}
	}
	if (!found)
		die("token lookup", 0);
	if (b->f->C_OpenSession(b->slot, CKF_SERIAL_SESSION, NULL, NULL, &login) != CKR_OK)
		die("C_OpenSession", 0);
	pf = fopen(b->pinfile, "r");
	if (pf) {
		if (!fgets(pin, sizeof(pin), pf))
			pin[0] = '\0';
		(void)fclose(pf); /* read-only: nothing to lose on close */
	}
	pin[strcspn(pin, "\r\n")] = '\0';
	{
		CK_RV rv = b->f->C_Login(login, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));

		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
			die("C_Login", rv);
	}
	tmpl[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	tmpl[1] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)b->label, strlen(b->label) };
	if (b->f->C_FindObjectsInit(login, tmpl, 2) != CKR_OK ||
	    b->f->C_FindObjects(login, &b->key, 1, &count) != CKR_OK || count != 1)
		die("finding the key", 0);
	b->f->C_FindObjectsFinal(login);

	rate = run_threads(b, raw_worker);

	b->f->C_CloseSession(login);
	b->f->C_Finalize(NULL);
	dlclose(dl);
	return rate;
}

static double fv_phase(struct bench *b)
{
	fv_context *ctx;
	double rate;

	if (fv_context_open(&ctx, b->config, 0) != FV_OK ||
	    fv_key_open(&b->fvkey, ctx, b->key_name) != FV_OK) {
		fprintf(stderr, "p11-bench: %s\n", fv_error_last()->message);
		exit(1);
	}
	rate = run_threads(b, fv_worker);
	fv_key_free(b->fvkey);
	fv_context_free(ctx);
	return rate;
}

static int read_cipher(struct bench *b, const char *path)
{
	FILE *f = fopen(path, "rb");

	if (!f) {
		perror(path);
		return 1;
	}
	b->cipher_len = fread(b->cipher, 1, sizeof(b->cipher), f);
	if (ferror(f) || b->cipher_len == 0) {
		fprintf(stderr, "p11-bench: cannot read a ciphertext from %s\n", path);
		(void)fclose(f);
		return 1;
	}
	(void)fclose(f); /* read-only: nothing to lose on close */
	return 0;
}

/* SECONDS and THREADS arguments, as both forms take them. */
static int parse_run(struct bench *b, const char *seconds, const char *threads)
{
	char *end;
	long n;

	b->seconds = strtod(seconds, &end);
	if (end == seconds || *end || !(b->seconds > 0)) {
		fprintf(stderr, "p11-bench: SECONDS must be a positive number, not '%s'\n", seconds);
		return 2;
	}
	n = strtol(threads, &end, 10);
	if (end == threads || *end || n < 1 || n > 16) {
		fprintf(stderr, "p11-bench: THREADS must be 1..16, not '%s'\n", threads);
		return 2;
	}
	b->threads = (int)n;
	return 0;
}

static int compare(int argc, char **argv)
{
	struct bench b;
	double direct = 0, remote = 0, r;
	int round;

	if (argc != 8) {
		fprintf(stderr, "usage: %s --compare DIRECT_CONFIG REMOTE_CONFIG KEY CIPHERTEXT SECONDS THREADS\n",
		        argv[0]);
		return 2;
	}
	memset(&b, 0, sizeof(b));
	b.key_name = argv[4];
	if (parse_run(&b, argv[6], argv[7]) || read_cipher(&b, argv[5]))
		return 2;
	for (round = 0; round < 2; round++) {
		b.config = argv[2];
		r = fv_phase(&b);
		direct = r > direct ? r : direct;
		b.config = argv[3];
		r = fv_phase(&b);
		remote = r > remote ? r : remote;
	}
	printf("threads=%d  direct %8.1f/s  remote %8.1f/s  ratio remote/direct %.3f\n",
	       b.threads, direct, remote, remote / direct);
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b;
	double raw = 0, fv = 0, r;
	int round;

	if (argc > 1 && strcmp(argv[1], "--compare") == 0)
		return compare(argc, argv);
	if (argc != 12) {
		fprintf(stderr, "usage: %s CONFIG KEY CIPHERTEXT MODULE INIT_ARGS TOKEN LABEL PINFILE token|host SECONDS THREADS\n", argv[0]);
		return 2;
	}
	memset(&b, 0, sizeof(b));
	b.config = argv[1];
	b.key_name = argv[2];
	b.module = argv[4];
	b.init_args = argv[5];
	b.token = argv[6];
	b.label = argv[7];
	b.pinfile = argv[8];
	b.token_oaep = strcmp(argv[9], "token") == 0;
	if (parse_run(&b, argv[10], argv[11]))
		return 2;
	if (read_cipher(&b, argv[3]))
		return 1;

	for (round = 0; round < 2; round++) {
		r = raw_phase(&b);
		raw = r > raw ? r : raw;
		r = fv_phase(&b);
		fv = r > fv ? r : fv;
	}
	printf("%-8s oaep=%-5s threads=%d  raw C_Decrypt %8.1f/s  flowvault %8.1f/s  ratio %.3f\n",
	       b.token, argv[9], b.threads, raw, fv, fv / raw);
	return 0;
}
