/*
 * bench-tpm2: RSA-OAEP-SHA256 decryptions per second on one TPM key, three
 * ways in one run:
 *   - flowvault (fv_key_decrypt -> tpm2 plugin -> TPM), which decrypts in a
 *     salted HMAC session with response parameter encryption;
 *   - a bare Esys_RSA_Decrypt loop in the same kind of session (salted to
 *     an owner-hierarchy ECC primary, AES-128-CFB response encryption);
 *   - a bare Esys_RSA_Decrypt loop with a password session, which returns
 *     the plain text in the clear (what flowvault did before sessions).
 * It prints the cost of the session (session / clear) and flowvault's own
 * overhead (flowvault / bare loop in a session).
 *
 *   bench-tpm2 CONFIG KEY TCTI HANDLE [SECONDS] [ROUNDS]
 *
 * KEY must be a tpm2 key at persistent HANDLE (no auth value), so every
 * side makes the TPM do the same decryption. The sides take turns in
 * ROUNDS rounds of SECONDS / (3 * ROUNDS) each, in an order that rotates
 * and reverses from round to round, so drift in the TPM's speed (or in the
 * machine's load) hits all alike.
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

enum side { SIDE_FV, SIDE_SESSION, SIDE_CLEAR, SIDES };

/* A salted HMAC session with response encryption, as the plugin makes it,
 * salted to an ECC primary that is flushed right after. */
static int salted_session(ESYS_CONTEXT *esys, ESYS_TR *session)
{
	const TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits = { .aes = 128 },
	                           .mode = { .aes = TPM2_ALG_CFB } };
	TPM2B_SENSITIVE_CREATE sensitive;
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside = { .size = 0 };
	TPML_PCR_SELECTION pcrs = { .count = 0 };
	ESYS_TR primary = ESYS_TR_NONE;
	TSS2_RC r;

	memset(&sensitive, 0, sizeof(sensitive));
	memset(&tmpl, 0, sizeof(tmpl));
	tmpl.publicArea.type = TPM2_ALG_ECC;
	tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl.publicArea.objectAttributes =
		TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |
		TPMA_OBJECT_NODA | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
		TPMA_OBJECT_SENSITIVEDATAORIGIN;
	tmpl.publicArea.parameters.eccDetail.symmetric = (TPMT_SYM_DEF_OBJECT){
		.algorithm = TPM2_ALG_AES, .keyBits = { .aes = 128 }, .mode = { .aes = TPM2_ALG_CFB } };
	tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
	tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	r = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                       ESYS_TR_NONE, &sensitive, &tmpl, &outside, &pcrs, &primary, NULL,
	                       NULL, NULL, NULL);
	if (r)
		return die_tss("Esys_CreatePrimary", r);
	r = Esys_StartAuthSession(esys, primary, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
	                          ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256,
	                          session);
	Esys_FlushContext(esys, primary);
	if (r)
		return die_tss("Esys_StartAuthSession", r);
	r = Esys_TRSess_SetAttributes(esys, *session,
	                              TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_ENCRYPT, 0xff);
	if (r)
		return die_tss("Esys_TRSess_SetAttributes", r);
	return 0;
}

int main(int argc, char **argv)
{
	static const unsigned char msg[32] = "flows AES-128 key + IV payload";
	static const char *const names[SIDES] = {
		"flowvault (fv_key_decrypt):       ",
		"raw, salted encrypted session:    ",
		"raw, password session (clear):    ",
	};
	unsigned char cipher[512], plain[512];
	size_t cipher_len = sizeof(cipher), plain_len;
	unsigned char *der = NULL;
	size_t der_len = 0;
	double seconds = argc > 5 ? strtod(argv[5], NULL) : 20.0, slice, t0,
	       spent[SIDES] = { 0 }, rate[SIDES], total = 0;
	int rounds = argc > 6 ? (int)strtol(argv[6], NULL, 10) : 20, k, j;
	long ops[SIDES] = { 0 };
	fv_context *fctx = NULL;
	fv_key *key = NULL;
	TSS2_TCTI_CONTEXT *tcti = NULL;
	ESYS_CONTEXT *esys = NULL;
	ESYS_TR key_tr = ESYS_TR_NONE, session = ESYS_TR_NONE;
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
	slice = seconds / (3.0 * rounds);

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
	if (salted_session(esys, &session) != 0)
		return 1;
	in.size = (UINT16)cipher_len;
	memcpy(in.buffer, cipher, cipher_len);

	/* Every side must decrypt correctly before anything is timed. */
	plain_len = sizeof(plain);
	if (fv_key_decrypt(plain, &plain_len, key, cipher, cipher_len) != FV_OK)
		return die_fv("decrypt");
	if (plain_len != sizeof(msg) || memcmp(plain, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "bench-tpm2: flowvault decrypted something else\n");
		return 1;
	}
	for (j = SIDE_SESSION; j <= SIDE_CLEAR; j++) {
		r = Esys_RSA_Decrypt(esys, key_tr, j == SIDE_SESSION ? session : ESYS_TR_PASSWORD,
		                     ESYS_TR_NONE, ESYS_TR_NONE, &in, &scheme, &label, &out);
		if (r)
			return die_tss("Esys_RSA_Decrypt", r);
		if (out->size != sizeof(msg) || memcmp(out->buffer, msg, sizeof(msg)) != 0) {
			fprintf(stderr, "bench-tpm2: Esys_RSA_Decrypt decrypted something else\n");
			return 1;
		}
		Esys_Free(out);
	}

	for (k = 0; k < rounds; k++) {
		for (j = 0; j < SIDES; j++) {
			/* Rotate the order each round, and reverse it every other one. */
			int side = (k + (k % 2 ? SIDES - 1 - j : j)) % SIDES;

			t0 = now();
			do {
				if (side == SIDE_FV) {
					plain_len = sizeof(plain);
					if (fv_key_decrypt(plain, &plain_len, key, cipher, cipher_len) != FV_OK)
						return die_fv("decrypt");
				} else {
					r = Esys_RSA_Decrypt(esys, key_tr,
					                     side == SIDE_SESSION ? session : ESYS_TR_PASSWORD,
					                     ESYS_TR_NONE, ESYS_TR_NONE, &in, &scheme, &label,
					                     &out);
					if (r)
						return die_tss("Esys_RSA_Decrypt", r);
					Esys_Free(out);
				}
				ops[side]++;
			} while (now() - t0 < slice);
			spent[side] += now() - t0;
		}
	}

	for (j = 0; j < SIDES; j++) {
		rate[j] = ops[j] / spent[j];
		total += spent[j];
	}
	printf("TPM RSA-2048 OAEP-SHA256 decryptions, %d rotating rounds, %.1f s in all\n",
	       rounds, total);
	for (j = 0; j < SIDES; j++)
		printf("  %s %8.1f /s  (%ld in %.2f s)\n", names[j], rate[j], ops[j], spent[j]);
	printf("  ratio session / clear (raw):       %8.3f  (the cost of the encrypted session)\n",
	       rate[SIDE_SESSION] / rate[SIDE_CLEAR]);
	printf("  ratio flowvault / raw session:     %8.3f  (target >= 0.95)\n",
	       rate[SIDE_FV] / rate[SIDE_SESSION]);

	Esys_FlushContext(esys, session);
	Esys_TR_Close(esys, &key_tr);
	Esys_Finalize(&esys);
	Tss2_TctiLdr_Finalize(&tcti);
	fv_free(der);
	fv_key_free(key);
	fv_context_free(fctx);
	return 0;
}
