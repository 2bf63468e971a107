/*
 * RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) with the key in the token.
 *
 * Why our own session and the module's function list, not libp11: libp11's
 * EVP/RSA path does OAEP as raw RSA in the token plus padding removal in the
 * host, and has no way to pass CK_RSA_PKCS_OAEP_PARAMS. To have the padding
 * checked inside the HSM we call C_DecryptInit(CKM_RSA_PKCS_OAEP) ourselves.
 * Our sessions are logged in because login state is per application and
 * token (PKCS#11 2.40 §5.6), not per session.
 *
 * Some tokens list CKM_RSA_PKCS_OAEP but only with SHA-1 (SoftHSM 2.6.1
 * answers CKR_ARGUMENTS_BAD to SHA-256 parameters), so a probe at key open
 * tries C_DecryptInit with the exact parameters. Without token OAEP the
 * token can still do raw RSA (CKM_RSA_X_509) and the host removes the OAEP
 * padding, but only when the configuration says allow_host_oaep: true,
 * because then the padding check (and the plain text's OAEP encoding) is
 * outside the HSM.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rsa.h>

#include "plugin.h"

#define MAX_MODULUS_BYTES 1024

static CK_RSA_PKCS_OAEP_PARAMS oaep_sha256 = {
	CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0
};

static void mechanism_for(int mode, CK_MECHANISM *mech, CK_RSA_PKCS_OAEP_PARAMS *params)
{
	if (mode == P11_OAEP_TOKEN) {
		*params = oaep_sha256;
		mech->mechanism = CKM_RSA_PKCS_OAEP;
		mech->pParameter = params;
		mech->ulParameterLen = sizeof(*params);
	} else {
		mech->mechanism = CKM_RSA_X_509;
		mech->pParameter = NULL;
		mech->ulParameterLen = 0;
	}
}

static int mode_get(fv_pkey *key)
{
	return __atomic_load_n(&key->oaep_mode, __ATOMIC_ACQUIRE);
}

static void mode_set(fv_pkey *key, int mode)
{
	__atomic_store_n(&key->oaep_mode, mode, __ATOMIC_RELEASE);
}

/* The token lacks SHA-256 OAEP: use host unpadding if allowed. */
static void fall_back(fv_pkey *key, const char *reason)
{
	fv_instance *inst = key->inst;
	CK_MECHANISM_INFO mi;
	CK_RV rv;

	snprintf(key->oaep_reason, sizeof(key->oaep_reason), "%s", reason);
	rv = inst->mod->fns->C_GetMechanismInfo(inst->slot, CKM_RSA_X_509, &mi);
	if (inst->allow_host_oaep && rv == CKR_OK && (mi.flags & CKF_DECRYPT)) {
		mode_set(key, P11_OAEP_HOST);
		return;
	}
	if (inst->allow_host_oaep)
		snprintf(key->oaep_reason, sizeof(key->oaep_reason),
		         "%s, and no CKM_RSA_X_509 decryption either", reason);
	mode_set(key, P11_OAEP_UNAVAILABLE);
}

int p11_decrypt_probe(fv_pkey *key, CK_SESSION_HANDLE session)
{
	fv_instance *inst = key->inst;
	CK_FUNCTION_LIST *f = inst->mod->fns;
	CK_MECHANISM_INFO mi;
	CK_MECHANISM mech;
	CK_RSA_PKCS_OAEP_PARAMS params;
	CK_SESSION_HANDLE probe;
	char reason[120];
	CK_RV rv;

	(void)session;
	rv = f->C_GetMechanismInfo(inst->slot, CKM_RSA_PKCS_OAEP, &mi);
	if (rv != CKR_OK || !(mi.flags & CKF_DECRYPT)) {
		snprintf(reason, sizeof(reason), "the token does not offer CKM_RSA_PKCS_OAEP decryption (C_GetMechanismInfo: %s)",
		         rv == CKR_OK ? "no CKF_DECRYPT" : p11_ckr_name(rv));
		fall_back(key, reason);
		return FV_OK;
	}
	/* Listed: does it take SHA-256 parameters? Try on a session of its
	 * own; closing it ends the operation the probe started. */
	rv = f->C_OpenSession(inst->slot, CKF_SERIAL_SESSION, NULL, NULL, &probe);
	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_OpenSession failed: %s",
		                 inst->token_label, p11_ckr_name(rv));
	mechanism_for(P11_OAEP_TOKEN, &mech, &params);
	rv = f->C_DecryptInit(probe, &mech, key->handle);
	f->C_CloseSession(probe);
	if (rv == CKR_OK) {
		mode_set(key, P11_OAEP_TOKEN);
		return FV_OK;
	}
	if (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID ||
	    rv == CKR_MECHANISM_INVALID) {
		snprintf(reason, sizeof(reason),
		         "the token refuses OAEP with SHA-256 (C_DecryptInit(CKM_RSA_PKCS_OAEP): %s)",
		         p11_ckr_name(rv));
		fall_back(key, reason);
		return FV_OK;
	}
	if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED || rv == CKR_KEY_TYPE_INCONSISTENT)
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s': %s cannot decrypt (C_DecryptInit: %s); the key needs CKA_DECRYPT=true",
			inst->token_label, p11_target_describe(&inst->target), p11_ckr_name(rv));
	return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_DecryptInit(CKM_RSA_PKCS_OAEP) failed: %s",
	                 inst->token_label, p11_ckr_name(rv));
}

static int unavailable_error(fv_pkey *key)
{
	fv_instance *inst = key->inst;

	if (inst->allow_host_oaep)
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s' cannot decrypt RSA-OAEP-SHA256: %s",
			inst->token_label, key->oaep_reason);
	return P11_ERROR(FV_ERR_UNSUPPORTED,
		"token '%s' cannot do RSA-OAEP-SHA256 inside the token: %s. Either use a token that supports CKM_RSA_PKCS_OAEP with CKM_SHA256/CKG_MGF1_SHA256, or set \"allow_host_oaep\": true in %s so that the token does raw RSA (CKM_RSA_X_509) and the OAEP padding is removed by this host",
		inst->token_label, key->oaep_reason, inst->where);
}

/* OAEP padding removal on the host, for tokens without SHA-256 OAEP. */
static int host_unpad(fv_pkey *key, unsigned char *plain, size_t *plain_len,
                      const unsigned char *em, size_t k)
{
	int n;

	/* RSA_padding_check_PKCS1_OAEP_mgf1 is deprecated in OpenSSL 3 for
	 * applications, yet it is the one public, constant-time OAEP decoder
	 * that works on a raw RSA result computed elsewhere (the token). */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
	n = RSA_padding_check_PKCS1_OAEP_mgf1(plain, (int)k, em, (int)k, (int)k,
	                                      NULL, 0, EVP_sha256(), EVP_sha256());
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
	if (n < 0)
		return P11_ERROR(FV_ERR_DECRYPT,
			"token '%s': the ciphertext does not decrypt to valid RSA-OAEP-SHA256 padding; it was not encrypted to this key",
			key->inst->token_label);
	*plain_len = (size_t)n;
	return FV_OK;
}

static int decrypt_error(fv_pkey *key, const char *fn, CK_RV rv)
{
	fv_instance *inst = key->inst;

	switch (rv) {
	case CKR_ENCRYPTED_DATA_INVALID:
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		return P11_ERROR(FV_ERR_DECRYPT,
			"token '%s': %s failed: %s: the ciphertext was not encrypted to this key with RSA-OAEP-SHA256",
			inst->token_label, fn, p11_ckr_name(rv));
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s': %s failed: %s: %s may not decrypt (CKA_DECRYPT is false)",
			inst->token_label, fn, p11_ckr_name(rv), p11_target_describe(&inst->target));
	case CKR_USER_NOT_LOGGED_IN:
		return P11_ERROR(FV_ERR_AUTH, "token '%s': %s failed: %s; log in failed again",
		                 inst->token_label, fn, p11_ckr_name(rv));
	default:
		return P11_ERROR(FV_ERR_BACKEND, "token '%s': %s failed: %s",
		                 inst->token_label, fn, p11_ckr_name(rv));
	}
}

/*
 * C_Decrypt refused the input with something other than the two "bad
 * ciphertext" codes. Tokens differ in what they answer for a ciphertext
 * that fails: SoftHSM2 says CKR_GENERAL_ERROR, some HSMs CKR_DEVICE_ERROR or
 * CKR_FUNCTION_FAILED. When the session is still logged in and the token
 * answers, the device is fine and the input was at fault: a decryption
 * failure (421 for Flows), not a backend error, alarm and metric that an
 * attacker could trigger at will.
 */
static int decrypt_failure_is_input(fv_pkey *key, CK_SESSION_HANDLE s, CK_RV rv)
{
	fv_instance *inst = key->inst;
	CK_SESSION_INFO si;
	CK_TOKEN_INFO ti;

	if (rv != CKR_GENERAL_ERROR && rv != CKR_FUNCTION_FAILED &&
	    rv != CKR_DEVICE_ERROR && rv != CKR_DATA_INVALID &&
	    rv != CKR_DATA_LEN_RANGE)
		return 0;
	if (inst->mod->fns->C_GetSessionInfo(s, &si) != CKR_OK ||
	    si.slotID != inst->slot ||
	    (si.state != CKS_RO_USER_FUNCTIONS && si.state != CKS_RW_USER_FUNCTIONS &&
	     (inst->token_flags & CKF_LOGIN_REQUIRED)))
		return 0;
	if (inst->mod->fns->C_GetTokenInfo(inst->slot, &ti) != CKR_OK)
		return 0;
	P11_LOG(FV_LOG_DEBUG, "token '%s': C_Decrypt answered %s, the session and token are healthy: taken as a bad ciphertext",
	        inst->token_label, p11_ckr_name(rv));
	return 1;
}

int p11_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                unsigned char *out, size_t *out_len)
{
	fv_instance *inst = key->inst;
	CK_FUNCTION_LIST *f = inst->mod->fns;
	unsigned char buf[MAX_MODULUS_BYTES], plain[MAX_MODULUS_BYTES];
	size_t k = key->modulus_len, plain_len = 0;
	CK_MECHANISM mech;
	CK_RSA_PKCS_OAEP_PARAMS params;
	CK_OBJECT_HANDLE handle;
	CK_SESSION_HANDLE s;
	CK_ULONG n;
	unsigned int gen;
	const char *fn;
	int attempt, mode, rc;
	CK_RV rv = CKR_OK;

	if (in_len != k)
		return P11_ERROR(FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; RSA-%zu with the key on token '%s' needs exactly %zu",
			in_len, k * 8, inst->token_label, k);
	if (k > MAX_MODULUS_BYTES)
		return P11_ERROR(FV_ERR_UNSUPPORTED, "RSA-%zu is larger than supported", k * 8);
	/* A value at or above the modulus is no RSA ciphertext. Tokens answer
	 * it with anything up to CKR_GENERAL_ERROR, which must not reach the
	 * caller as a backend failure: told apart from a bad padding, it
	 * would reveal where the modulus lies. The modulus is public, so an
	 * ordinary comparison. */
	if (memcmp(in, key->modulus, k) >= 0)
		return P11_ERROR(FV_ERR_DECRYPT,
			"token '%s': the ciphertext is not below the key's modulus: it was not encrypted to this key",
			inst->token_label);

	for (attempt = 0; ; attempt++) {
		mode = mode_get(key);
		if (mode == P11_OAEP_UNAVAILABLE)
			return unavailable_error(key);
		rc = p11_session_get(inst, &s, &gen);
		if (rc != FV_OK)
			return rc;
		rc = p11_key_handle(key, s, gen, &handle);
		if (rc != FV_OK) {
			rv = p11_last_rv;
			if (attempt == 0 && rc == FV_ERR_BACKEND && rv == CKR_OK) {
				/* The key vanished under sessions opened before the
				 * token was reset: new sessions see the token anew. */
				p11_session_drop(inst, s);
				if (p11_recover(inst, gen, CKR_OBJECT_HANDLE_INVALID) == FV_OK)
					continue;
				return rc;
			}
			if (!p11_rv_recoverable(rv)) {
				/* The session is fine (the key is not there):
				 * keep it, closing the last one logs out. */
				p11_session_put(inst, s, gen);
				return rc;
			}
			p11_session_drop(inst, s);
			if (attempt == 0 && p11_recover(inst, gen, rv) == FV_OK)
				continue;
			return rc;
		}
		mechanism_for(mode, &mech, &params);
		fn = "C_DecryptInit";
		rv = f->C_DecryptInit(s, &mech, handle);
		if (rv == CKR_OK) {
			fn = "C_Decrypt";
			n = sizeof(buf);
			rv = f->C_Decrypt(s, (CK_BYTE *)in, (CK_ULONG)in_len, buf, &n);
		}
		if (rv == CKR_OK) {
			p11_session_put(inst, s, gen);
			break;
		}
		if (attempt == 0 && (rv == CKR_OBJECT_HANDLE_INVALID ||
		                     rv == CKR_KEY_HANDLE_INVALID)) {
			/* The token forgot the handle (reset, store re-read): find
			 * the key again, once. */
			pthread_mutex_lock(&key->lock);
			key->handle_gen = gen - 1;
			pthread_mutex_unlock(&key->lock);
			p11_session_put(inst, s, gen);
			continue;
		}
		if (attempt == 0 && p11_rv_recoverable(rv)) {
			p11_session_drop(inst, s);
			rc = p11_recover(inst, gen, rv);
			if (rc != FV_OK)
				return rc;
			continue;
		}
		if (strcmp(fn, "C_Decrypt") == 0 && decrypt_failure_is_input(key, s, rv)) {
			p11_session_put(inst, s, gen);
			return P11_ERROR(FV_ERR_DECRYPT,
				"token '%s': C_Decrypt failed: %s on a healthy session: the ciphertext was not encrypted to this key with RSA-OAEP-SHA256",
				inst->token_label, p11_ckr_name(rv));
		}
		/* A failed C_Decrypt ends the operation; the session is reusable. */
		p11_session_put(inst, s, gen);
		if (mode == P11_OAEP_TOKEN && strcmp(fn, "C_DecryptInit") == 0 &&
		    (rv == CKR_ARGUMENTS_BAD || rv == CKR_MECHANISM_PARAM_INVALID) &&
		    attempt == 0) {
			/* Refused only now (e.g. the token changed): decide again. */
			char reason[120];

			snprintf(reason, sizeof(reason),
			         "the token refuses OAEP with SHA-256 (C_DecryptInit(CKM_RSA_PKCS_OAEP): %s)",
			         p11_ckr_name(rv));
			fall_back(key, reason);
			continue;
		}
		return decrypt_error(key, fn, rv);
	}

	if (mode == P11_OAEP_TOKEN) {
		plain_len = n;
		memcpy(plain, buf, n);
		rc = FV_OK;
	} else {
		/* Raw RSA gives the encoded message; a token may drop leading
		 * zero bytes, so right-align it to the modulus size. */
		unsigned char em[MAX_MODULUS_BYTES];

		if (n > k) {
			OPENSSL_cleanse(buf, sizeof(buf));
			return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_Decrypt(CKM_RSA_X_509) returned %lu bytes for a %zu-byte modulus",
			                 inst->token_label, (unsigned long)n, k);
		}
		memset(em, 0, k - n);
		memcpy(em + (k - n), buf, n);
		rc = host_unpad(key, plain, &plain_len, em, k);
		OPENSSL_cleanse(em, sizeof(em));
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	if (rc == FV_OK) {
		if (!out || *out_len < plain_len) {
			*out_len = plain_len;
			rc = P11_ERROR(FV_ERR_BUFFER_TOO_SMALL,
				"decrypted text is %zu bytes; the output buffer is too small", plain_len);
		} else {
			memcpy(out, plain, plain_len);
			*out_len = plain_len;
		}
	}
	OPENSSL_cleanse(plain, sizeof(plain));
	return rc;
}
