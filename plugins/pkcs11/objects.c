/* Objects on the token: finding the key, its public half, listing, deleting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "plugin.h"

_Thread_local CK_RV p11_last_rv;

int p11_find(fv_instance *inst, CK_SESSION_HANDLE session, CK_ATTRIBUTE *tmpl,
             CK_ULONG n, CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count)
{
	CK_FUNCTION_LIST *f = inst->mod->fns;
	CK_RV rv;

	*count = 0;
	p11_last_rv = CKR_OK;
	rv = f->C_FindObjectsInit(session, tmpl, n);
	if (rv != CKR_OK)
		goto fail;
	rv = f->C_FindObjects(session, found, max, count);
	f->C_FindObjectsFinal(session);
	if (rv == CKR_OK)
		return FV_OK;
fail:
	p11_last_rv = rv;
	return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_FindObjects failed: %s",
	                 inst->token_label, p11_ckr_name(rv));
}

/* One attribute, allocated (NUL-terminated for convenience). */
static CK_RV get_attr(fv_instance *inst, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                      CK_ATTRIBUTE_TYPE type, unsigned char **out, CK_ULONG *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	*out = NULL;
	*len = 0;
	rv = inst->mod->fns->C_GetAttributeValue(s, h, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == (CK_ULONG)-1)
		return CKR_ATTRIBUTE_SENSITIVE;
	a.pValue = malloc(a.ulValueLen + 1);
	if (!a.pValue)
		return CKR_HOST_MEMORY;
	rv = inst->mod->fns->C_GetAttributeValue(s, h, &a, 1);
	if (rv != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	((unsigned char *)a.pValue)[a.ulValueLen] = '\0';
	*out = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}

static CK_RV get_ulong(fv_instance *inst, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                       CK_ATTRIBUTE_TYPE type, CK_ULONG *out)
{
	CK_ATTRIBUTE a = { type, out, sizeof(*out) };

	return inst->mod->fns->C_GetAttributeValue(s, h, &a, 1);
}

/* Template for the configured object: class plus label and/or id. */
static CK_ULONG target_template(fv_instance *inst, CK_ATTRIBUTE tmpl[3],
                                CK_OBJECT_CLASS *cls)
{
	CK_ULONG n = 0;

	tmpl[n].type = CKA_CLASS;
	tmpl[n].pValue = cls;
	tmpl[n++].ulValueLen = sizeof(*cls);
	if (inst->target.label) {
		tmpl[n].type = CKA_LABEL;
		tmpl[n].pValue = inst->target.label;
		tmpl[n++].ulValueLen = strlen(inst->target.label);
	}
	if (inst->target.id) {
		tmpl[n].type = CKA_ID;
		tmpl[n].pValue = inst->target.id;
		tmpl[n++].ulValueLen = inst->target.id_len;
	}
	return n;
}

int p11_find_private_key(fv_instance *inst, CK_SESSION_HANDLE session,
                         CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[3];
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n, count;
	int rc;

	n = target_template(inst, tmpl, &cls);
	rc = p11_find(inst, session, tmpl, n, found, 2, &count);
	if (rc != FV_OK)
		return rc;
	if (count == 0)
		return P11_ERROR(FV_ERR_NOT_FOUND,
			"token '%s' has no private key with %s; create it with `flowvault generate`, or fix object=/id= in the uri",
			inst->token_label, p11_target_describe(&inst->target));
	if (count > 1)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.uri: token '%s' has several private keys with %s; add id= to the uri to pick one",
			inst->where, inst->token_label, p11_target_describe(&inst->target));
	*out = found[0];
	return FV_OK;
}

int p11_key_handle(fv_pkey *key, CK_SESSION_HANDLE session, unsigned int gen,
                   CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_HANDLE h;
	int rc = FV_OK;

	pthread_mutex_lock(&key->lock);
	if (key->handle_gen != gen) {
		/* Handles may change when sessions, login or the token were
		 * renewed: look the key up again. */
		rc = p11_find_private_key(key->inst, session, &h);
		if (rc == FV_OK) {
			key->handle = h;
			key->handle_gen = gen;
		} else if (rc == FV_ERR_NOT_FOUND && key->handle != CK_INVALID_HANDLE) {
			/* It was there when the key was opened: not a configuration
			 * mistake but a token that was reset, replaced or is away. */
			rc = P11_ERROR(FV_ERR_BACKEND,
				"token '%s': C_FindObjects no longer finds %s (CKR_OK, no match), although it was there when the key was opened; the token was reset, replaced or is not reachable: check it, then retry",
				key->inst->token_label, p11_target_describe(&key->inst->target));
		}
	}
	*out = key->handle;
	pthread_mutex_unlock(&key->lock);
	return rc;
}

static int spki_from_rsa(fv_pkey *key, const unsigned char *n, CK_ULONG n_len,
                         const unsigned char *e, CK_ULONG e_len)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL);
	BIGNUM *bn_e = BN_bin2bn(e, (int)e_len, NULL);
	unsigned char *der = NULL;
	int der_len, rc = FV_ERR_NOMEM;

	bld = OSSL_PARAM_BLD_new();
	if (!bn_n || !bn_e || !bld ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
	    !(params = OSSL_PARAM_BLD_to_param(bld)) ||
	    !(pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)))
		goto out;
	if (EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0 ||
	    (der_len = i2d_PUBKEY(pkey, &der)) <= 0) {
		rc = P11_ERROR(FV_ERR_BACKEND,
			"token '%s': the RSA public key of %s cannot be encoded (bad modulus or exponent)",
			key->inst->token_label, p11_target_describe(&key->inst->target));
		goto out;
	}
	key->spki = malloc((size_t)der_len);
	if (!key->spki)
		goto out;
	memcpy(key->spki, der, (size_t)der_len);
	key->spki_len = (size_t)der_len;
	rc = FV_OK;
out:
	OPENSSL_free(der);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	return rc;
}

/* Strip leading zero bytes (some tokens pad big integers). */
static void strip_zeros(unsigned char **p, CK_ULONG *len)
{
	while (*len > 1 && (*p)[0] == 0) {
		(*p)++;
		(*len)--;
	}
}

int p11_key_load_public(fv_pkey *key, CK_SESSION_HANDLE session)
{
	fv_instance *inst = key->inst;
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_KEY_TYPE ktype = 0;
	CK_ATTRIBUTE tmpl[2];
	CK_OBJECT_HANDLE pubs[8];
	unsigned char *priv_n = NULL, *id = NULL, *n = NULL, *e = NULL, *pn, *pe;
	CK_ULONG priv_n_len = 0, id_len = 0, n_len = 0, e_len = 0, count = 0, i;
	CK_ULONG pn_len, pe_len;
	const char *source = "private key object";
	CK_RV rv;
	int rc;

	rv = get_ulong(inst, session, key->handle, CKA_KEY_TYPE, &ktype);
	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_GetAttributeValue(CKA_KEY_TYPE) of %s failed: %s",
		                 inst->token_label, p11_target_describe(&inst->target), p11_ckr_name(rv));
	if (ktype != CKK_RSA)
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s': %s is not an RSA key; WhatsApp Flows needs RSA-2048",
			inst->token_label, p11_target_describe(&inst->target));

	/* The private object's modulus is public information, readable even
	 * for a sensitive key on most tokens; used to pair the public object. */
	rv = get_attr(inst, session, key->handle, CKA_MODULUS, &priv_n, &priv_n_len);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID) {
		rc = P11_ERROR(FV_ERR_BACKEND, "token '%s': C_GetAttributeValue(CKA_MODULUS) failed: %s",
		               inst->token_label, p11_ckr_name(rv));
		goto out;
	}
	get_attr(inst, session, key->handle, CKA_ID, &id, &id_len);

	tmpl[0].type = CKA_CLASS;
	tmpl[0].pValue = &cls;
	tmpl[0].ulValueLen = sizeof(cls);
	if (id_len > 0) {
		tmpl[1].type = CKA_ID;
		tmpl[1].pValue = id;
		tmpl[1].ulValueLen = id_len;
	} else {
		tmpl[1].type = CKA_LABEL;
		tmpl[1].pValue = inst->target.label ? inst->target.label : "";
		tmpl[1].ulValueLen = inst->target.label ? strlen(inst->target.label) : 0;
	}
	rc = p11_find(inst, session, tmpl, 2, pubs, 8, &count);
	if (rc != FV_OK)
		goto out;
	for (i = 0; i < count && !n; i++) {
		if (get_attr(inst, session, pubs[i], CKA_MODULUS, &n, &n_len) != CKR_OK)
			continue;
		pn = n;
		pn_len = n_len;
		strip_zeros(&pn, &pn_len);
		if (priv_n) {
			unsigned char *qn = priv_n;
			CK_ULONG qn_len = priv_n_len;

			strip_zeros(&qn, &qn_len);
			if (qn_len != pn_len || memcmp(qn, pn, pn_len) != 0) {
				free(n);
				n = NULL;
				continue; /* same id, other key: not ours */
			}
		}
		if (get_attr(inst, session, pubs[i], CKA_PUBLIC_EXPONENT, &e, &e_len) != CKR_OK) {
			free(n);
			n = NULL;
			continue;
		}
		source = "public key object";
	}
	if (!n) {
		if (!priv_n) {
			rc = P11_ERROR(FV_ERR_NOT_FOUND,
				"token '%s': no public key object pairs with %s and the private object does not reveal its modulus; import the public key with the same CKA_ID",
				inst->token_label, p11_target_describe(&inst->target));
			goto out;
		}
		rv = get_attr(inst, session, key->handle, CKA_PUBLIC_EXPONENT, &e, &e_len);
		if (rv != CKR_OK) {
			rc = P11_ERROR(FV_ERR_NOT_FOUND,
				"token '%s': no public key object pairs with %s and C_GetAttributeValue(CKA_PUBLIC_EXPONENT) of the private object failed: %s",
				inst->token_label, p11_target_describe(&inst->target), p11_ckr_name(rv));
			goto out;
		}
		n = priv_n;
		n_len = priv_n_len;
		priv_n = NULL;
	}
	pn = n;
	pn_len = n_len;
	pe = e;
	pe_len = e_len;
	strip_zeros(&pn, &pn_len);
	strip_zeros(&pe, &pe_len);
	if (pn_len < 256) {
		rc = P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s': %s is RSA-%lu; WhatsApp Flows needs at least RSA-2048",
			inst->token_label, p11_target_describe(&inst->target),
			(unsigned long)pn_len * 8);
		goto out;
	}
	key->modulus_len = pn_len;
	key->modulus = malloc(pn_len);
	if (!key->modulus) {
		rc = FV_ERR_NOMEM;
		goto out;
	}
	memcpy(key->modulus, pn, pn_len);
	rc = spki_from_rsa(key, pn, pn_len, pe, pe_len);
	if (rc == FV_OK)
		P11_LOG(FV_LOG_DEBUG, "token '%s': public key of %s read from the %s",
		        inst->token_label, p11_target_describe(&inst->target), source);
out:
	free(priv_n);
	free(id);
	free(n);
	free(e);
	return rc;
}

/* One CK_BBOOL attribute per call: a token that does not know one of them
 * (CKR_ATTRIBUTE_TYPE_INVALID) must not hide the others. */
static const struct {
	CK_ATTRIBUTE_TYPE type;
	uint32_t prop;
} protection_attributes[] = {
	{ CKA_EXTRACTABLE, FV_KEY_PROP_EXTRACTABLE },
	{ CKA_SENSITIVE, FV_KEY_PROP_SENSITIVE },
	{ CKA_ALWAYS_SENSITIVE, FV_KEY_PROP_ALWAYS_SENSITIVE },
	{ CKA_NEVER_EXTRACTABLE, FV_KEY_PROP_NEVER_EXTRACTABLE },
	{ CKA_LOCAL, FV_KEY_PROP_GENERATED_INSIDE },
	{ CKA_SIGN, FV_KEY_PROP_CAN_SIGN },
	{ CKA_UNWRAP, FV_KEY_PROP_CAN_UNWRAP },
};

int p11_key_load_properties(fv_pkey *key, CK_SESSION_HANDLE session)
{
	fv_instance *inst = key->inst;
	unsigned char *label = NULL, *id = NULL;
	CK_ULONG label_len = 0, id_len = 0;
	CK_BBOOL v, decrypt = CK_FALSE;
	CK_ATTRIBUTE a = { CKA_DECRYPT, &decrypt, sizeof(decrypt) };
	size_t i;
	CK_RV rv;

	rv = inst->mod->fns->C_GetAttributeValue(session, key->handle, &a, 1);
	if (rv == CKR_OK && !decrypt)
		return P11_ERROR(FV_ERR_UNSUPPORTED,
			"token '%s': %s may not decrypt (CKA_DECRYPT is false); WhatsApp Flows needs a decryption key: generate one with `flowvault generate`",
			inst->token_label, p11_target_describe(&inst->target));
	key->properties = key->properties_known = 0;
	for (i = 0; i < sizeof(protection_attributes) / sizeof(protection_attributes[0]); i++) {
		a.type = protection_attributes[i].type;
		a.pValue = &v;
		a.ulValueLen = sizeof(v);
		v = CK_FALSE;
		if (inst->mod->fns->C_GetAttributeValue(session, key->handle, &a, 1) != CKR_OK ||
		    a.ulValueLen != sizeof(v))
			continue;
		key->properties_known |= protection_attributes[i].prop;
		if (v)
			key->properties |= protection_attributes[i].prop;
	}
	get_attr(inst, session, key->handle, CKA_LABEL, &label, &label_len);
	get_attr(inst, session, key->handle, CKA_ID, &id, &id_len);
	snprintf(key->location, sizeof(key->location),
	         "token '%s' (serial %s, slot %lu), object '%.*s' id %s",
	         inst->token_label, inst->token_serial, (unsigned long)inst->slot,
	         (int)(label_len < 64 ? label_len : 64), label ? (char *)label : "",
	         id_len ? p11_hex(id, id_len) : "(none)");
	free(label);
	free(id);
	return FV_OK;
}

/* "pkcs11:token=...;object=...;id=...;type=private", formatted by p11-kit. */
static char *format_reference(fv_instance *inst, const unsigned char *label,
                              CK_ULONG label_len, const unsigned char *id,
                              CK_ULONG id_len)
{
	P11KitUri *uri = p11_kit_uri_new();
	CK_TOKEN_INFO *ti;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE a;
	char *text = NULL;
	size_t n;

	if (!uri)
		return NULL;
	ti = p11_kit_uri_get_token_info(uri);
	memset(ti->label, ' ', sizeof(ti->label));
	n = strlen(inst->token_label);
	memcpy(ti->label, inst->token_label, n);
	a.type = CKA_CLASS;
	a.pValue = &cls;
	a.ulValueLen = sizeof(cls);
	p11_kit_uri_set_attribute(uri, &a);
	if (label_len) {
		a.type = CKA_LABEL;
		a.pValue = (void *)label;
		a.ulValueLen = label_len;
		p11_kit_uri_set_attribute(uri, &a);
	}
	if (id_len) {
		a.type = CKA_ID;
		a.pValue = (void *)id;
		a.ulValueLen = id_len;
		p11_kit_uri_set_attribute(uri, &a);
	}
	if (p11_kit_uri_format(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &text) != P11_KIT_URI_OK)
		text = NULL;
	p11_kit_uri_free(uri);
	return text;
}

static CK_BBOOL get_bool(fv_instance *inst, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                         CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = CK_FALSE;
	CK_ATTRIBUTE a = { type, &v, sizeof(v) };

	if (inst->mod->fns->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
		return CK_FALSE;
	return v;
}

int p11_objects_list(fv_instance *inst, fv_key_list_cb cb, void *arg)
{
	CK_FUNCTION_LIST *f = inst->mod->fns;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl = { CKA_CLASS, &cls, sizeof(cls) };
	CK_OBJECT_HANDLE *all = NULL, batch[32], *grown;
	CK_ULONG count, total = 0, i;
	CK_SESSION_HANDLE s;
	unsigned int gen;
	CK_RV rv;
	int rc;

	rc = p11_session_get(inst, &s, &gen);
	if (rc != FV_OK)
		return rc;
	rv = f->C_FindObjectsInit(s, &tmpl, 1);
	while (rv == CKR_OK) {
		rv = f->C_FindObjects(s, batch, 32, &count);
		if (rv != CKR_OK || count == 0)
			break;
		grown = realloc(all, (total + count) * sizeof(*all));
		if (!grown) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		all = grown;
		memcpy(all + total, batch, count * sizeof(*all));
		total += count;
	}
	f->C_FindObjectsFinal(s);
	if (rv != CKR_OK) {
		p11_session_put(inst, s, gen);
		free(all);
		return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_FindObjects(private keys) failed: %s",
		                 inst->token_label, p11_ckr_name(rv));
	}
	for (i = 0; i < total && rc == FV_OK; i++) {
		unsigned char *label = NULL, *id = NULL, *mod = NULL;
		CK_ULONG label_len = 0, id_len = 0, mod_len = 0;
		CK_KEY_TYPE kt = (CK_KEY_TYPE)-1;
		char desc[256], type[32], *ref;

		get_attr(inst, s, all[i], CKA_LABEL, &label, &label_len);
		get_attr(inst, s, all[i], CKA_ID, &id, &id_len);
		get_ulong(inst, s, all[i], CKA_KEY_TYPE, &kt);
		if (kt == CKK_RSA)
			get_attr(inst, s, all[i], CKA_MODULUS, &mod, &mod_len);
		if (kt == CKK_RSA)
			snprintf(type, sizeof(type), "RSA-%lu", (unsigned long)mod_len * 8);
		else
			snprintf(type, sizeof(type), "%s", kt == CKK_EC ? "EC" : "other key type");
		/* "never extractable" is CKA_NEVER_EXTRACTABLE: a key that is not
		 * extractable now may have been before (and copied then). */
		snprintf(desc, sizeof(desc), "%s; %ssensitive, %s, %s; token '%s'",
		         type,
		         get_bool(inst, s, all[i], CKA_SENSITIVE) ? "" : "not ",
		         get_bool(inst, s, all[i], CKA_EXTRACTABLE) ? "extractable"
		         : get_bool(inst, s, all[i], CKA_NEVER_EXTRACTABLE) ? "never extractable"
		                                                          : "not extractable now, but was before",
		         get_bool(inst, s, all[i], CKA_LOCAL) ? "generated in the token" : "imported",
		         inst->token_label);
		ref = format_reference(inst, label, label_len, id, id_len);
		if (!ref)
			rc = FV_ERR_NOMEM;
		else if (cb(arg, ref, desc) != 0)
			total = i; /* the caller asked to stop */
		free(ref);
		free(label);
		free(id);
		free(mod);
	}
	free(all);
	p11_session_put(inst, s, gen);
	return rc;
}

int p11_objects_delete(fv_instance *inst)
{
	CK_FUNCTION_LIST *f = inst->mod->fns;
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_OBJECT_HANDLE priv, pubs[8];
	CK_ATTRIBUTE tmpl[2];
	CK_SESSION_HANDLE s;
	unsigned char *id = NULL, *priv_n = NULL;
	CK_ULONG id_len = 0, priv_n_len = 0, count = 0, i;
	CK_RV rv;
	int rc;

	rc = p11_session_open_rw(inst, &s);
	if (rc != FV_OK)
		return rc;
	rc = p11_find_private_key(inst, s, &priv);
	if (rc != FV_OK)
		goto out;
	get_attr(inst, s, priv, CKA_ID, &id, &id_len);
	get_attr(inst, s, priv, CKA_MODULUS, &priv_n, &priv_n_len);
	/* Public objects go too, but only those that are this key's half:
	 * same CKA_ID and the same modulus. */
	if (id_len > 0 && priv_n_len > 0) {
		tmpl[0].type = CKA_CLASS;
		tmpl[0].pValue = &cls;
		tmpl[0].ulValueLen = sizeof(cls);
		tmpl[1].type = CKA_ID;
		tmpl[1].pValue = id;
		tmpl[1].ulValueLen = id_len;
		if (p11_find(inst, s, tmpl, 2, pubs, 8, &count) != FV_OK)
			count = 0;
		for (i = 0; i < count; i++) {
			unsigned char *n = NULL;
			CK_ULONG n_len = 0;

			if (get_attr(inst, s, pubs[i], CKA_MODULUS, &n, &n_len) == CKR_OK &&
			    n_len == priv_n_len && memcmp(n, priv_n, n_len) == 0) {
				rv = f->C_DestroyObject(s, pubs[i]);
				if (rv != CKR_OK)
					P11_LOG(FV_LOG_WARNING,
						"token '%s': C_DestroyObject(public key) failed: %s",
						inst->token_label, p11_ckr_name(rv));
			}
			free(n);
		}
	}
	rv = f->C_DestroyObject(s, priv);
	if (rv != CKR_OK)
		rc = P11_ERROR(FV_ERR_BACKEND, "token '%s': C_DestroyObject(private key %s) failed: %s",
		               inst->token_label, p11_target_describe(&inst->target),
		               p11_ckr_name(rv));
out:
	free(id);
	free(priv_n);
	f->C_CloseSession(s);
	return rc;
}
