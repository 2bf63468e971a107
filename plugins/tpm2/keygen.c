/*
 * Key generation: TPM2_Create of an RSA-2048 decryption key under the
 * parent, then either a TSS2 key file (written atomically, never over an
 * existing file) or TPM2_EvictControl to a persistent handle (never over an
 * occupied one).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "tpm2_plugin.h"

void tpm2_key_template(TPM2B_PUBLIC *t)
{
	TPMS_RSA_PARMS *p = &t->publicArea.parameters.rsaDetail;

	memset(t, 0, sizeof(*t));
	t->publicArea.type = TPM2_ALG_RSA;
	t->publicArea.nameAlg = TPM2_ALG_SHA256;
	/* Decrypt only: the key cannot sign, and it cannot leave this TPM
	 * (fixedTPM) or be moved under another parent (fixedParent). */
	t->publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	                                 TPMA_OBJECT_SENSITIVEDATAORIGIN |
	                                 TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_DECRYPT;
	p->symmetric.algorithm = TPM2_ALG_NULL;
	/* NULL, so TPM2_RSA_Decrypt picks OAEP-SHA256 per call; tpm2-openssl
	 * also loads such keys. */
	p->scheme.scheme = TPM2_ALG_NULL;
	p->keyBits = 2048;
	p->exponent = 0; /* 65537 */
}

/* Memory for the auth value the instance keeps: the host's secure memory
 * (not in core dumps, locked, wiped on free) when it offers it. */
static TPM2B_AUTH *auth_alloc(void)
{
	TPM2B_AUTH *a;

	if (FV_HOST_HAS(tpm2_host, secure_alloc) && FV_HOST_HAS(tpm2_host, secure_free)) {
		a = tpm2_host->secure_alloc(sizeof(*a));
		if (a)
			memset(a, 0, sizeof(*a));
		return a;
	}
	return calloc(1, sizeof(*a));
}

void tpm2_auth_free(fv_instance *inst)
{
	if (!inst->auth)
		return;
	if (FV_HOST_HAS(tpm2_host, secure_alloc) && FV_HOST_HAS(tpm2_host, secure_free)) {
		tpm2_host->secure_free(inst->auth, sizeof(*inst->auth));
	} else {
		OPENSSL_cleanse(inst->auth, sizeof(*inst->auth));
		free(inst->auth);
	}
	inst->auth = NULL;
}

int tpm2_auth_resolve(fv_instance *inst)
{
	char purpose[256], *secret = NULL;
	size_t len = 0;
	int rc;

	if (!inst->auth_ref || inst->auth)
		return FV_OK;
	snprintf(purpose, sizeof(purpose), "authorization value of TPM key %s", inst->where);
	rc = tpm2_host->secret_resolve(inst->auth_ref, purpose, &secret, &len);
	if (rc != FV_OK)
		return rc;
	/* TPM2B_AUTH holds at most the name algorithm's digest size. */
	if (len > 32) {
		tpm2_host->secret_free(secret, len);
		return TPM2_ERROR(FV_ERR_CONFIG,
			"%s.auth: the TPM takes authorization values of at most 32 bytes (this one has %zu)",
			inst->where, len);
	}
	inst->auth = auth_alloc();
	if (!inst->auth) {
		tpm2_host->secret_free(secret, len);
		return FV_ERR_NOMEM;
	}
	inst->auth->size = (UINT16)len;
	memcpy(inst->auth->buffer, secret, len);
	tpm2_host->secret_free(secret, len);
	return FV_OK;
}

static int persist(fv_instance *inst, ESYS_TR parent, const TPM2B_PRIVATE *priv,
                   const TPM2B_PUBLIC *pub)
{
	ESYS_TR loaded = ESYS_TR_NONE, persistent = ESYS_TR_NONE;
	TSS2_RC r;

	r = Esys_Load(inst->esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv,
	              pub, &loaded);
	if (r != TSS2_RC_SUCCESS)
		return TPM2_ERROR(FV_ERR_BACKEND, "cannot load the new key (%s)", tpm2_rc_text(r));
	r = Esys_EvictControl(inst->esys, ESYS_TR_RH_OWNER, loaded, ESYS_TR_PASSWORD,
	                      ESYS_TR_NONE, ESYS_TR_NONE, inst->handle, &persistent);
	Esys_FlushContext(inst->esys, loaded);
	if (r != TSS2_RC_SUCCESS) {
		if (tpm2_rc_base(r) == TPM2_RC_NV_DEFINED)
			return TPM2_ERROR(FV_ERR_EXISTS,
				"%s.handle 0x%08x is occupied; choose another handle",
				inst->where, inst->handle);
		if (tpm2_rc_base(r) == TPM2_RC_BAD_AUTH || tpm2_rc_base(r) == TPM2_RC_AUTH_FAIL)
			return TPM2_ERROR(FV_ERR_AUTH,
				"the TPM's owner hierarchy has a password, which flowvault does not use; make the key persistent yourself (tpm2_evictcontrol) or use key_file");
		if (tpm2_rc_base(r) == TPM2_RC_NV_SPACE)
			return TPM2_ERROR(FV_ERR_BACKEND,
				"the TPM has no room for another persistent object (%s); remove one you no longer need with tpm2_evictcontrol",
				tpm2_rc_text(r));
		return TPM2_ERROR(FV_ERR_BACKEND, "TPM2_EvictControl to 0x%08x failed (%s)",
		                  inst->handle, tpm2_rc_text(r));
	}
	Esys_TR_Close(inst->esys, &persistent);
	return FV_OK;
}

static int write_file(fv_instance *inst, uint32_t parent, const TPM2B_PRIVATE *priv,
                      const TPM2B_PUBLIC *pub)
{
	struct tpm2_keyblob blob;
	char *pem = NULL;
	size_t pem_len = 0;
	int rc;

	memset(&blob, 0, sizeof(blob));
	blob.parent = parent;
	blob.empty_auth = !(inst->auth && inst->auth->size > 0);
	blob.pub = *pub;
	blob.priv = *priv;
	rc = tpm2_keyblob_encode(&pem, &pem_len, &blob);
	if (rc != FV_OK)
		return rc;
	rc = tpm2_host->file_create(inst->key_file, pem, pem_len, 0600);
	OPENSSL_free(pem);
	if (rc == FV_ERR_EXISTS)
		return TPM2_ERROR(FV_ERR_EXISTS,
			"%s.key_file '%s' exists; refusing to overwrite a key (move it away first)",
			inst->where, inst->key_file);
	return rc;
}

int tpm2_generate(fv_instance *inst)
{
	TPM2B_SENSITIVE_CREATE sensitive;
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside = { .size = 0 };
	TPML_PCR_SELECTION pcrs = { .count = 0 };
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *pub = NULL;
	ESYS_TR parent_tr = ESYS_TR_NONE, session = ESYS_TR_NONE;
	struct stat st;
	uint32_t parent;
	TSS2_RC r;
	int flush = 0, rc;

	/* Refuse early, before the TPM spends seconds on a key. */
	if (inst->key_file && lstat(inst->key_file, &st) == 0)
		return TPM2_ERROR(FV_ERR_EXISTS,
			"%s.key_file '%s' exists; refusing to overwrite a key (move it away first)",
			inst->where, inst->key_file);
	rc = tpm2_auth_resolve(inst);
	if (rc != FV_OK)
		return rc;
	rc = tpm2_connect(inst);
	if (rc != FV_OK)
		return rc;
	if (inst->handle) {
		rc = tpm2_handle_exists(inst, inst->handle);
		if (rc < 0)
			return rc;
		if (rc > 0)
			return TPM2_ERROR(FV_ERR_EXISTS,
				"%s.handle 0x%08x is occupied; choose another handle, or remove what is there with tpm2_evictcontrol -C o -c 0x%08x (this destroys that key)",
				inst->where, inst->handle, inst->handle);
	}
	rc = tpm2_parent_default(inst, &parent);
	if (rc != FV_OK)
		return rc;
	rc = tpm2_parent_get(inst, parent, &parent_tr, &flush);
	if (rc != FV_OK)
		return rc;

	/* The new key's auth value is a command parameter of TPM2_Create: send
	 * it encrypted, in a session salted to the parent. */
	rc = tpm2_session_start(inst, parent_tr,
	                        TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT, &session);
	if (rc != FV_OK)
		goto out;
	tpm2_key_template(&tmpl);
	memset(&sensitive, 0, sizeof(sensitive));
	if (inst->auth)
		sensitive.sensitive.userAuth = *inst->auth;
	r = Esys_Create(inst->esys, parent_tr, session, ESYS_TR_NONE, ESYS_TR_NONE,
	                &sensitive, &tmpl, &outside, &pcrs, &priv, &pub, NULL, NULL, NULL);
	OPENSSL_cleanse(&sensitive, sizeof(sensitive));
	if (r != TSS2_RC_SUCCESS) {
		rc = tpm2_rc_base(r) == TPM2_RC_OBJECT_MEMORY ? tpm2_object_memory_error(r) :
		     TPM2_ERROR(FV_ERR_BACKEND, "TPM2_Create under parent 0x%08x failed (%s)",
		                parent, tpm2_rc_text(r));
		goto out;
	}
	TPM2_LOG(FV_LOG_INFO, "%s: created an RSA-2048 key under parent 0x%08x", inst->where,
	         parent);
	if (inst->handle)
		rc = persist(inst, parent_tr, priv, pub);
	else
		rc = write_file(inst, parent, priv, pub);
out:
	if (session != ESYS_TR_NONE)
		Esys_FlushContext(inst->esys, session);
	if (parent_tr != ESYS_TR_NONE) {
		if (flush)
			Esys_FlushContext(inst->esys, parent_tr);
		else
			Esys_TR_Close(inst->esys, &parent_tr);
	}
	Esys_Free(priv);
	Esys_Free(pub);
	return rc;
}
