/*
 * The public half of a TPM RSA key: checks on the public area and its
 * SubjectPublicKeyInfo, built by OpenSSL from the modulus and exponent.
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "tpm2_plugin.h"

int tpm2_public_check(const TPM2B_PUBLIC *pub, const char *what)
{
	const TPMT_PUBLIC *a = &pub->publicArea;
	const TPMT_RSA_SCHEME *scheme = &a->parameters.rsaDetail.scheme;

	if (a->type != TPM2_ALG_RSA)
		return TPM2_ERROR(FV_ERR_BACKEND,
			"%s is not an RSA key (TPM algorithm 0x%04x); WhatsApp Flows needs RSA-2048",
			what, a->type);
	if (a->parameters.rsaDetail.keyBits < 2048 ||
	    a->unique.rsa.size != a->parameters.rsaDetail.keyBits / 8)
		return TPM2_ERROR(FV_ERR_BACKEND,
			"%s is an RSA-%u key; WhatsApp Flows needs at least RSA-2048",
			what, (unsigned int)a->parameters.rsaDetail.keyBits);
	if (!(a->objectAttributes & TPMA_OBJECT_DECRYPT) ||
	    (a->objectAttributes & TPMA_OBJECT_RESTRICTED))
		return TPM2_ERROR(FV_ERR_BACKEND,
			"%s is not an unrestricted decryption key; generate a key for flowvault",
			what);
	/* A key bound to one scheme refuses any other at TPM2_RSA_Decrypt. */
	if (scheme->scheme != TPM2_ALG_NULL &&
	    !(scheme->scheme == TPM2_ALG_OAEP &&
	      scheme->details.oaep.hashAlg == TPM2_ALG_SHA256))
		return TPM2_ERROR(FV_ERR_UNSUPPORTED,
			"%s is bound to RSA scheme 0x%04x; flowvault needs OAEP with SHA-256 (scheme NULL or OAEP-SHA256)",
			what, scheme->scheme);
	return FV_OK;
}

int tpm2_public_to_spki(unsigned char **der, size_t *der_len,
                        const TPM2B_PUBLIC *pub, const char *what)
{
	const TPMT_PUBLIC *a = &pub->publicArea;
	/* 0 in the public area stands for the default exponent, 2^16 + 1. */
	unsigned long exponent = a->parameters.rsaDetail.exponent ?
		a->parameters.rsaDetail.exponent : 65537ul;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *n = NULL, *e = NULL;
	unsigned char *buf = NULL;
	int len, rc = FV_ERR_BACKEND;

	*der = NULL;
	*der_len = 0;
	n = BN_bin2bn(a->unique.rsa.buffer, a->unique.rsa.size, NULL);
	e = BN_new();
	bld = OSSL_PARAM_BLD_new();
	if (!n || !e || !bld || !BN_set_word(e, exponent) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    !(params = OSSL_PARAM_BLD_to_param(bld))) {
		rc = FV_ERR_NOMEM;
		goto out;
	}
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		rc = TPM2_ERROR(FV_ERR_BACKEND, "%s: OpenSSL refuses its RSA public key", what);
		goto out;
	}
	len = i2d_PUBKEY(pkey, &buf);
	if (len <= 0) {
		rc = TPM2_ERROR(FV_ERR_BACKEND, "%s: cannot encode its public key", what);
		goto out;
	}
	*der = buf;
	*der_len = (size_t)len;
	rc = FV_OK;
out:
	ERR_clear_error();
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return rc;
}
