/*
 * bench-tpm2: RSA-OAEP-SHA256 decryptions per second through flowvault
 * (fv_key_decrypt -> tpm2 plugin -> TPM) against a bare Esys_RSA_Decrypt
 * loop on the same TPM key, in one run.
 *
 *   bench-tpm2 CONFIG KEY TCTI HANDLE [SECONDS] [ROUNDS]
 *
 * KEY must be a tpm2 key at persistent HANDLE, so both sides make the TPM
 * do exactly the same work. The two sides alternate in ROUNDS rounds of
 * SECONDS / (2 * ROUNDS) each, in ABBA order, so drift in the TPM's speed
 * (or in the machine's load) hits both alike.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <flowvault/flowvault.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die_fv(const char *what)
{
	fprintf(stderr, "bench-tpm2: %s: %s\n", what, fv_error_last()->message);
	return 1;
}

static int die_tss(const char *what, TSS2_RC r)
{
	fprintf(stderr, "bench-tpm2: %s: %s\n", what, Tss2_RC_Decode(r));
	return 1;
}

/* OAEP-SHA256 encryption of `msg` to the SPKI `der`, as a Flows client does. */
static int encrypt_to(const unsigned char *der, size_t der_len, const unsigned char *msg,
                      size_t msg_len, unsigned char *out, size_t *out_len)
{
	const unsigned char *p = der;
	EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)der_len);
	EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new(pkey, NULL) : NULL;
	int ok = ctx && EVP_PKEY_encrypt_init(ctx) > 0 &&
	         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
	         EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 &&
	         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0 &&
	         EVP_PKEY_encrypt(ctx, out, out_len, msg, msg_len) > 0;

	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const unsigned char msg[32] = "flows AES-128 key + IV payload";
	unsigned char cipher[512], plain[512];
	size_t cipher_len = sizeof(cipher), plain_len;
	unsigned char *der = NULL;
	size_t der_len = 0;
	double seconds = argc > 5 ? strtod(argv[5], NULL) : 20.0, slice, t0, fv_time = 0,
	       raw_time = 0;
	int rounds = argc > 6 ? (int)strtol(argv[6], NULL, 10) : 20, i;
	long fv_ops = 0, raw_ops = 0;
	fv_context *fctx = NULL;
	fv_key *key = NULL;
	TSS2_TCTI_CONTEXT *tcti = NULL;
	ESYS_CONTEXT *esys = NULL;
	ESYS_TR key_tr = ESYS_TR_NONE;
	TPM2B_PUBLIC_KEY_RSA in;
	TPM2B_PUBLIC_KEY_RSA *out = NULL;
	TPMT_RSA_DECRYPT scheme;
	TPM2B_DATA label = { .size = 0 };
	TSS2_RC r;

	if (argc < 5 || rounds < 1 || seconds <= 0) {
		fprintf(stderr, "usage: %s CONFIG KEY TCTI HANDLE [SECONDS] [ROUNDS]\n", argv[0]);
		return 2;
	}
	memset(&scheme, 0, sizeof(scheme));
	scheme.scheme = TPM2_ALG_OAEP;
	scheme.details.oaep.hashAlg = TPM2_ALG_SHA256;
	slice = seconds / (2.0 * rounds);

	if (fv_context_open(&fctx, argv[1], 0) != FV_OK)
		return die_fv("configuration");
	if (fv_key_open(&key, fctx, argv[2]) != FV_OK)
		return die_fv("open key");
	if (fv_key_public_der(&der, &der_len, key) != FV_OK)
		return die_fv("public key");
	if (encrypt_to(der, der_len, msg, sizeof(msg), cipher, &cipher_len) != 0) {
		fprintf(stderr, "bench-tpm2: OpenSSL cannot encrypt to the key\n");
		return 1;
	}

	r = Tss2_TctiLdr_Initialize(argv[3], &tcti);
	if (r)
		return die_tss("TCTI", r);
	r = Esys_Initialize(&esys, tcti, NULL);
	if (r)
		return die_tss("ESYS", r);
	r = Esys_TR_FromTPMPublic(esys, (TPM2_HANDLE)strtoul(argv[4], NULL, 0), ESYS_TR_NONE,
	                          ESYS_TR_NONE, ESYS_TR_NONE, &key_tr);
	if (r)
		return die_tss("persistent handle", r);
	in.size = (UINT16)cipher_len;
	memcpy(in.buffer, cipher, cipher_len);

	/* Both sides must decrypt correctly before anything is timed. */
	plain_len = sizeof(plain);
	if (fv_key_decrypt(plain, &plain_len, key, cipher, cipher_len) != FV_OK)
		return die_fv("decrypt");
	if (plain_len != sizeof(msg) || memcmp(plain, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "bench-tpm2: flowvault decrypted something else\n");
		return 1;
	}
	r = Esys_RSA_Decrypt(esys, key_tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &in,
	                     &scheme, &label, &out);
	if (r)
		return die_tss("Esys_RSA_Decrypt", r);
	if (out->size != sizeof(msg) || memcmp(out->buffer, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "bench-tpm2: Esys_RSA_Decrypt decrypted something else\n");
		return 1;
	}
	Esys_Free(out);

	/* ABBA order: neither side always runs first in a round. */
	for (i = 0; i < 2 * rounds; i++) {
		int fv_side = (i % 4 == 0 || i % 4 == 3);

		t0 = now();
		do {
			if (fv_side) {
				plain_len = sizeof(plain);
				if (fv_key_decrypt(plain, &plain_len, key, cipher, cipher_len) != FV_OK)
					return die_fv("decrypt");
				fv_ops++;
			} else {
				r = Esys_RSA_Decrypt(esys, key_tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
				                     ESYS_TR_NONE, &in, &scheme, &label, &out);
				if (r)
					return die_tss("Esys_RSA_Decrypt", r);
				Esys_Free(out);
				raw_ops++;
			}
		} while (now() - t0 < slice);
		if (fv_side)
			fv_time += now() - t0;
		else
			raw_time += now() - t0;
	}

	printf("TPM RSA-2048 OAEP-SHA256 decryptions, %d alternating rounds, %.1f s in all\n",
	       rounds, fv_time + raw_time);
	printf("  flowvault (fv_key_decrypt):  %8.1f /s  (%ld in %.2f s)\n", fv_ops / fv_time,
	       fv_ops, fv_time);
	printf("  raw Esys_RSA_Decrypt loop:   %8.1f /s  (%ld in %.2f s)\n", raw_ops / raw_time,
	       raw_ops, raw_time);
	printf("  ratio flowvault / raw:       %8.3f  (target >= 0.95)\n",
	       (fv_ops / fv_time) / (raw_ops / raw_time));

	Esys_TR_Close(esys, &key_tr);
	Esys_Finalize(&esys);
	Tss2_TctiLdr_Finalize(&tcti);
	fv_free(der);
	fv_key_free(key);
	fv_context_free(fctx);
	return 0;
}
