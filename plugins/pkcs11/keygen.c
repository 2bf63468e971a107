/*
 * Key generation inside the token.
 *
 * Why C_GenerateKeyPair through the module's function list and not libp11's
 * PKCS11_generate_key: libp11 0.4.12 builds its own template, which makes
 * the private key able to sign and unwrap (CKA_SIGN, CKA_UNWRAP = true),
 * leaves CKA_EXTRACTABLE to the token's default and takes no other
 * attributes; the function is also deprecated. The Flows key must only
 * decrypt and must never leave the token, so we state every attribute.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "plugin.h"

#define KEY_ID_LEN 16

/* Is anything on the token labelled `label` or carrying `id`? */
static int refuse_existing(fv_instance *inst, CK_SESSION_HANDLE s,
                           const unsigned char *id, size_t id_len)
{
	CK_ATTRIBUTE a;
	CK_OBJECT_HANDLE found[1];
	CK_ULONG count;
	int rc;

	if (inst->target.label) {
		a.type = CKA_LABEL;
		a.pValue = inst->target.label;
		a.ulValueLen = strlen(inst->target.label);
		rc = p11_find(inst, s, &a, 1, found, 1, &count);
		if (rc != FV_OK)
			return rc;
		if (count > 0)
			return P11_ERROR(FV_ERR_EXISTS,
				"token '%s' already holds an object labelled '%s'; refusing to generate over it (pick another object= label in the uri, or delete the old key)",
				inst->token_label, inst->target.label);
	}
	a.type = CKA_ID;
	a.pValue = (void *)id;
	a.ulValueLen = id_len;
	rc = p11_find(inst, s, &a, 1, found, 1, &count);
	if (rc != FV_OK)
		return rc;
	if (count > 0)
		return P11_ERROR(FV_ERR_EXISTS,
			"token '%s' already holds an object with id %s; refusing to generate over it",
			inst->token_label, p11_hex(id, id_len));
	return FV_OK;
}

static int check_mechanism(fv_instance *inst)
{
	CK_MECHANISM_INFO mi;
	CK_RV rv;

	rv = inst->mod->fns->C_GetMechanismInfo(inst->slot, CKM_RSA_PKCS_KEY_PAIR_GEN, &mi);
	if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && !(mi.flags & CKF_GENERATE_KEY_PAIR)))
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s' cannot generate RSA key pairs (C_GetMechanismInfo(CKM_RSA_PKCS_KEY_PAIR_GEN): %s)",
			inst->token_label, rv == CKR_OK ? "no CKF_GENERATE_KEY_PAIR" : p11_ckr_name(rv));
	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_GetMechanismInfo failed: %s",
		                 inst->token_label, p11_ckr_name(rv));
	if (mi.ulMaxKeySize && (mi.ulMinKeySize > 2048 || mi.ulMaxKeySize < 2048))
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s' generates RSA keys of %lu to %lu bits only; 2048 is needed",
			inst->token_label, (unsigned long)mi.ulMinKeySize, (unsigned long)mi.ulMaxKeySize);
	return FV_OK;
}

/* Read back what the token made and refuse a key that is weaker than asked. */
static int verify_private(fv_instance *inst, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
	CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, sign = CK_TRUE,
	         unwrap = CK_TRUE, decrypt = CK_FALSE, token = CK_FALSE;
	CK_ATTRIBUTE a[] = {
		{ CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
		{ CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
		{ CKA_SIGN, &sign, sizeof(sign) },
		{ CKA_UNWRAP, &unwrap, sizeof(unwrap) },
		{ CKA_DECRYPT, &decrypt, sizeof(decrypt) },
		{ CKA_TOKEN, &token, sizeof(token) },
	};
	CK_RV rv = inst->mod->fns->C_GetAttributeValue(s, h, a, sizeof(a) / sizeof(a[0]));

	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND,
			"token '%s': C_GetAttributeValue on the new private key failed: %s",
			inst->token_label, p11_ckr_name(rv));
	if (!sensitive || extractable || sign || unwrap || !decrypt || !token)
		return P11_ERROR(FV_ERR_BACKEND,
			"token '%s' did not honour the key template (sensitive=%d extractable=%d sign=%d unwrap=%d decrypt=%d token=%d); the key was removed",
			inst->token_label, sensitive, extractable, sign, unwrap, decrypt, token);
	return FV_OK;
}

int p11_keygen(fv_instance *inst)
{
	CK_FUNCTION_LIST *f = inst->mod->fns;
	CK_MECHANISM mech = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 2048;
	CK_BYTE exponent[] = { 0x01, 0x00, 0x01 };
	unsigned char random_id[KEY_ID_LEN];
	const unsigned char *id;
	size_t id_len;
	CK_ULONG label_len;
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	CK_SESSION_HANDLE s;
	CK_RV rv;
	int rc;

	if (!inst->target.label)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.uri: generate needs an object label: add object=LABEL to the uri",
			inst->where);
	label_len = strlen(inst->target.label);
	/* A fresh random CKA_ID ties the two halves together, unless the URI
	 * names one. Not secret: OpenSSL's RNG is fine. */
	if (inst->target.id) {
		id = inst->target.id;
		id_len = inst->target.id_len;
	} else {
		if (RAND_bytes(random_id, sizeof(random_id)) != 1)
			return P11_ERROR(FV_ERR_GENERIC, "cannot draw a random CKA_ID (OpenSSL RAND_bytes failed)");
		id = random_id;
		id_len = sizeof(random_id);
	}

	rc = check_mechanism(inst);
	if (rc != FV_OK)
		return rc;
	rc = p11_session_open_rw(inst, &s);
	if (rc != FV_OK)
		return rc;
	rc = refuse_existing(inst, s, id, id_len);
	if (rc != FV_OK)
		goto out;

	{
		CK_ATTRIBUTE pub_tmpl[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_ENCRYPT, &yes, sizeof(yes) },
			{ CKA_VERIFY, &no, sizeof(no) },
			{ CKA_WRAP, &no, sizeof(no) },
			{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
			{ CKA_PUBLIC_EXPONENT, exponent, sizeof(exponent) },
			{ CKA_LABEL, inst->target.label, label_len },
			{ CKA_ID, (void *)id, id_len },
		};
		CK_ATTRIBUTE priv_tmpl[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_DECRYPT, &yes, sizeof(yes) },
			{ CKA_SIGN, &no, sizeof(no) },
			{ CKA_SIGN_RECOVER, &no, sizeof(no) },
			{ CKA_UNWRAP, &no, sizeof(no) },
			{ CKA_DERIVE, &no, sizeof(no) },
			{ CKA_LABEL, inst->target.label, label_len },
			{ CKA_ID, (void *)id, id_len },
		};

		rv = f->C_GenerateKeyPair(s, &mech, pub_tmpl, sizeof(pub_tmpl) / sizeof(pub_tmpl[0]),
		                          priv_tmpl, sizeof(priv_tmpl) / sizeof(priv_tmpl[0]),
		                          &pub, &priv);
	}
	if (rv != CKR_OK) {
		rc = P11_ERROR(rv == CKR_USER_NOT_LOGGED_IN ? FV_ERR_AUTH : FV_ERR_BACKEND,
			"token '%s': C_GenerateKeyPair(RSA-2048) failed: %s",
			inst->token_label, p11_ckr_name(rv));
		goto out;
	}
	rc = verify_private(inst, s, priv);
	if (rc != FV_OK) {
		f->C_DestroyObject(s, priv);
		f->C_DestroyObject(s, pub);
		goto out;
	}
	P11_LOG(FV_LOG_INFO, "token '%s': generated RSA-2048 key pair '%s' (id %s)",
	        inst->token_label, inst->target.label, p11_hex(id, id_len));
out:
	f->C_CloseSession(s);
	return rc;
}
