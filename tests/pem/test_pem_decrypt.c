/*
 * RSA-OAEP decryption through the PEM provider, by the public API
 * (fv_key_decrypt): cipher texts made by OpenSSL's API and by the `openssl
 * pkeyutl` tool, a known-answer vector from an independent implementation,
 * every kind of wrong input, and concurrent use of one key handle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <flowvault/flowvault.h>

/* The pywa vector: its encrypted_aes_key decrypts to this AES key. */
static const char pywa_aes_key_hex[] = "712727b6b509f2e1ba62d9b91989ecc3";

struct fixture {
	char dir[256];
	char config[320];
	char key_path[320];
	EVP_PKEY *pkey;       /* the test's own copy, to encrypt with */
	fv_context *ctx;
	fv_key *key;
};

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static const char *source_dir(void)
{
	const char *s = getenv("FV_SOURCE_DIR");

	return s ? s : FV_TEST_SOURCE_DIR;
}

/* OAEP encryption by the test itself (md for OAEP and MGF1, or PKCS#1 v1.5
 * when md is NULL). */
static size_t encrypt_with(EVP_PKEY *pkey, const char *md, const unsigned char *msg,
                           size_t msg_len, unsigned char *out, size_t cap)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	size_t len = cap;

	assert_non_null(ctx);
	assert_true(EVP_PKEY_encrypt_init(ctx) > 0);
	if (md) {
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, md, NULL) > 0);
		assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, md, NULL) > 0);
	} else {
		assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
	}
	assert_true(EVP_PKEY_encrypt(ctx, out, &len, msg, msg_len) > 0);
	EVP_PKEY_CTX_free(ctx);
	return len;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	EVP_PKEY_CTX *kctx;
	char config_text[2048], *vector;
	char vector_path[512], pywa_path[512];
	size_t vector_len;
	BIO *bio;
	FILE *fp;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "%s/fvpemdec.XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(f->dir));

	kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	assert_non_null(kctx);
	assert_true(EVP_PKEY_keygen_init(kctx) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_keygen_bits(kctx, 2048) > 0);
	assert_true(EVP_PKEY_generate(kctx, &f->pkey) > 0);
	EVP_PKEY_CTX_free(kctx);

	snprintf(f->key_path, sizeof(f->key_path), "%s/flows.pem", f->dir);
	fp = fopen(f->key_path, "w");
	assert_non_null(fp);
	assert_int_equal(fchmod(fileno(fp), 0600), 0);
	bio = BIO_new_fp(fp, BIO_NOCLOSE);
	assert_true(PEM_write_bio_PrivateKey(bio, f->pkey, NULL, NULL, 0, NULL, NULL));
	BIO_free(bio);
	fclose(fp);

	/* The vector's key file is read-only for all; the provider wants 0600. */
	snprintf(vector_path, sizeof(vector_path), "%s/tests/vectors/pywa-flows/private_key.pem",
	         source_dir());
	snprintf(pywa_path, sizeof(pywa_path), "%s/pywa.pem", f->dir);
	vector = read_all(vector_path, &vector_len);
	write_file(pywa_path, vector, vector_len, 0600);
	free(vector);
	setenv("FV_TEST_PYWA_PASSPHRASE", "pywa", 1);

	snprintf(config_text, sizeof(config_text),
	         "{\"keys\": {\"flows\": {\"provider\": \"pem\", \"path\": \"flows.pem\"},\n"
	         " \"pywa\": {\"provider\": \"pem\", \"path\": \"pywa.pem\","
	         " \"passphrase\": \"env:FV_TEST_PYWA_PASSPHRASE\"}}}\n");
	snprintf(f->config, sizeof(f->config), "%s/config.json", f->dir);
	write_file(f->config, config_text, strlen(config_text), 0600);

	if (fv_context_open(&f->ctx, f->config, 0) != FV_OK)
		fail_msg("context: %s", fv_error_last()->message);
	if (fv_key_open(&f->key, f->ctx, "flows") != FV_OK)
		fail_msg("key: %s", fv_error_last()->message);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[600];

	fv_key_free(f->key);
	fv_context_free(f->ctx);
	EVP_PKEY_free(f->pkey);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f);
	return 0;
}

static void test_public_key_matches(void **state)
{
	struct fixture *f = *state;
	unsigned char *der = NULL, *expected = NULL;
	size_t der_len = 0;
	int expected_len;

	assert_int_equal(fv_key_public_der(&der, &der_len, f->key), FV_OK);
	expected_len = i2d_PUBKEY(f->pkey, &expected);
	assert_true(expected_len > 0);
	assert_int_equal(der_len, (size_t)expected_len);
	assert_memory_equal(der, expected, der_len);
	fv_free(der);
	OPENSSL_free(expected);
}

static void test_round_trip_api(void **state)
{
	struct fixture *f = *state;
	/* 16 bytes is the Flows AES key; 190 is the most OAEP-SHA256 fits in 256. */
	static const size_t lengths[] = { 0, 1, 16, 32, 190 };
	unsigned char msg[190], ct[256], out[256];
	size_t i, ct_len, out_len;

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (unsigned char)(i * 7 + 3);
	for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		ct_len = encrypt_with(f->pkey, "SHA256", msg, lengths[i], ct, sizeof(ct));
		assert_int_equal(ct_len, 256);
		out_len = sizeof(out);
		if (fv_key_decrypt(out, &out_len, f->key, ct, ct_len) != FV_OK)
			fail_msg("decrypt of %zu bytes: %s", lengths[i], fv_error_last()->message);
		assert_int_equal(out_len, lengths[i]);
		assert_memory_equal(out, msg, lengths[i]);
	}
}

/* The same through the openssl command-line tool, as an operator would. */
static void test_round_trip_openssl_pkeyutl(void **state)
{
	struct fixture *f = *state;
	static const char msg[] = "0123456789abcdef"; /* an AES-128 key's worth */
	char cmd[4096], pub[400], in[400], ct_path[400];
	unsigned char out[256];
	size_t ct_len, out_len = sizeof(out);
	char *ct;

	snprintf(pub, sizeof(pub), "%s/pub.pem", f->dir);
	snprintf(in, sizeof(in), "%s/msg.bin", f->dir);
	snprintf(ct_path, sizeof(ct_path), "%s/msg.enc", f->dir);
	write_file(in, msg, 16, 0600);
	snprintf(cmd, sizeof(cmd),
	         "openssl pkey -in '%s' -pubout -out '%s' && "
	         "openssl pkeyutl -encrypt -pubin -inkey '%s' -in '%s' -out '%s' "
	         "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 "
	         "-pkeyopt rsa_mgf1_md:sha256",
	         f->key_path, pub, pub, in, ct_path);
	assert_int_equal(system(cmd), 0);
	ct = read_all(ct_path, &ct_len);
	assert_int_equal(ct_len, 256);
	if (fv_key_decrypt(out, &out_len, f->key, (unsigned char *)ct, ct_len) != FV_OK)
		fail_msg("decrypt: %s", fv_error_last()->message);
	assert_int_equal(out_len, 16);
	assert_memory_equal(out, msg, 16);
	free(ct);
}

/* Known answer from an independent implementation (pywa's test suite):
 * the base64 encrypted_aes_key of request.json. */
static void test_known_answer_pywa(void **state)
{
	struct fixture *f = *state;
	char path[512], *json, *start, *end, hex[33];
	unsigned char ct[512], out[256];
	size_t json_len, out_len = sizeof(out), i;
	fv_key *key = NULL;
	int ct_len;

	snprintf(path, sizeof(path), "%s/tests/vectors/pywa-flows/request.json", source_dir());
	json = read_all(path, &json_len);
	start = strstr(json, "\"encrypted_aes_key\"");
	assert_non_null(start);
	start = strchr(start + 19, '"');
	assert_non_null(start);
	start++;
	end = strchr(start, '"');
	assert_non_null(end);
	ct_len = EVP_DecodeBlock(ct, (unsigned char *)start, (int)(end - start));
	assert_true(ct_len >= 256);
	ct_len = 256; /* EVP_DecodeBlock counts the '=' padding as zero bytes */
	free(json);

	if (fv_key_open(&key, f->ctx, "pywa") != FV_OK)
		fail_msg("pywa key: %s", fv_error_last()->message);
	if (fv_key_decrypt(out, &out_len, key, ct, (size_t)ct_len) != FV_OK)
		fail_msg("decrypt: %s", fv_error_last()->message);
	assert_int_equal(out_len, 16);
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", out[i]);
	assert_string_equal(hex, pywa_aes_key_hex);
	fv_key_free(key);
}

static void test_wrong_length(void **state)
{
	struct fixture *f = *state;
	static const size_t lengths[] = { 0, 1, 128, 255, 257, 512 };
	unsigned char ct[512] = { 1 }, out[256];
	size_t i, out_len;

	for (i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		out_len = sizeof(out);
		assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, lengths[i]),
		                 FV_ERR_DECRYPT);
		assert_non_null(strstr(fv_error_last()->message, "256"));
		assert_non_null(strstr(fv_error_last()->message, "flows"));
	}
}

static void test_tampered_and_foreign(void **state)
{
	struct fixture *f = *state;
	static const unsigned char msg[16] = "sixteen byte key";
	unsigned char ct[256], out[256];
	size_t ct_len, out_len;
	EVP_PKEY *other = NULL;
	EVP_PKEY_CTX *kctx;

	/* One flipped bit. */
	ct_len = encrypt_with(f->pkey, "SHA256", msg, sizeof(msg), ct, sizeof(ct));
	ct[100] ^= 0x01;
	out_len = sizeof(out);
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len), FV_ERR_DECRYPT);
	assert_non_null(strstr(fv_error_last()->message, "OAEP"));

	/* OAEP with SHA-1 (OpenSSL's default) is not what Flows uses. */
	ct_len = encrypt_with(f->pkey, "SHA1", msg, sizeof(msg), ct, sizeof(ct));
	out_len = sizeof(out);
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len), FV_ERR_DECRYPT);

	/* PKCS#1 v1.5 padding must not be accepted. */
	ct_len = encrypt_with(f->pkey, NULL, msg, sizeof(msg), ct, sizeof(ct));
	out_len = sizeof(out);
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len), FV_ERR_DECRYPT);

	/* Encrypted to another key. */
	kctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	assert_true(EVP_PKEY_keygen_init(kctx) > 0);
	assert_true(EVP_PKEY_CTX_set_rsa_keygen_bits(kctx, 2048) > 0);
	assert_true(EVP_PKEY_generate(kctx, &other) > 0);
	EVP_PKEY_CTX_free(kctx);
	ct_len = encrypt_with(other, "SHA256", msg, sizeof(msg), ct, sizeof(ct));
	out_len = sizeof(out);
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len), FV_ERR_DECRYPT);
	EVP_PKEY_free(other);

	/* And the handle still works afterwards. */
	ct_len = encrypt_with(f->pkey, "SHA256", msg, sizeof(msg), ct, sizeof(ct));
	out_len = sizeof(out);
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len), FV_OK);
	assert_memory_equal(out, msg, sizeof(msg));
}

static void test_output_buffer_too_small(void **state)
{
	struct fixture *f = *state;
	static const unsigned char msg[32] = "thirty-two bytes of plain text!";
	unsigned char ct[256], out[256];
	size_t ct_len, out_len = 31;

	ct_len = encrypt_with(f->pkey, "SHA256", msg, sizeof(msg), ct, sizeof(ct));
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len),
	                 FV_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(out_len, 32);
	out_len = 32;
	assert_int_equal(fv_key_decrypt(out, &out_len, f->key, ct, ct_len), FV_OK);
	assert_int_equal(out_len, 32);
	assert_memory_equal(out, msg, 32);
}

struct worker {
	fv_key *key;
	const unsigned char *ct;   /* THREAD_ROUNDS cipher texts of 256 bytes */
	const unsigned char *msgs; /* the matching 16-byte plain texts */
	int failures;
};

#define THREADS 4
#define THREAD_ROUNDS 40

static void *decrypt_worker(void *arg)
{
	struct worker *w = arg;
	unsigned char out[256];
	size_t out_len;
	int i;

	for (i = 0; i < THREAD_ROUNDS; i++) {
		out_len = sizeof(out);
		if (fv_key_decrypt(out, &out_len, w->key, w->ct + 256 * i, 256) != FV_OK ||
		    out_len != 16 || memcmp(out, w->msgs + 16 * i, 16) != 0)
			w->failures++;
	}
	return NULL;
}

/* fv_key_decrypt may run concurrently on one handle, and on separate ones. */
static void test_concurrent_decrypt(void **state)
{
	struct fixture *f = *state;
	static unsigned char ct[THREAD_ROUNDS * 256], msgs[THREAD_ROUNDS * 16];
	struct worker workers[THREADS * 2];
	pthread_t threads[THREADS * 2];
	fv_key *own[THREADS] = { 0 };
	int i;

	for (i = 0; i < THREAD_ROUNDS * 16; i++)
		msgs[i] = (unsigned char)(i * 31 + 1);
	for (i = 0; i < THREAD_ROUNDS; i++)
		assert_int_equal(encrypt_with(f->pkey, "SHA256", msgs + 16 * i, 16,
		                              ct + 256 * i, 256), 256);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(fv_key_open(&own[i], f->ctx, "flows"), FV_OK);
	for (i = 0; i < THREADS * 2; i++) {
		workers[i].key = i < THREADS ? f->key : own[i - THREADS];
		workers[i].ct = ct;
		workers[i].msgs = msgs;
		workers[i].failures = 0;
		assert_int_equal(pthread_create(&threads[i], NULL, decrypt_worker, &workers[i]), 0);
	}
	for (i = 0; i < THREADS * 2; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_int_equal(workers[i].failures, 0);
	}
	for (i = 0; i < THREADS; i++)
		fv_key_free(own[i]);
}

static void test_key_info(void **state)
{
	struct fixture *f = *state;
	char info[512];

	assert_int_equal(fv_key_info(info, sizeof(info), f->key), FV_OK);
	assert_non_null(strstr(info, f->key_path));
	assert_non_null(strstr(info, "oaep: host (OpenSSL)"));
	assert_string_equal(fv_key_provider(f->key), "pem");
	assert_string_equal(fv_key_name(f->key), "flows");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public_key_matches),
		cmocka_unit_test(test_round_trip_api),
		cmocka_unit_test(test_round_trip_openssl_pkeyutl),
		cmocka_unit_test(test_known_answer_pywa),
		cmocka_unit_test(test_wrong_length),
		cmocka_unit_test(test_tampered_and_foreign),
		cmocka_unit_test(test_output_buffer_too_small),
		cmocka_unit_test(test_concurrent_decrypt),
		cmocka_unit_test(test_key_info),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
