/*
 * The connection to the TPM (TCTI loader + ESYS), parents, loading the key,
 * decryption and recovery after a lost connection or a TPM reset.
 *
 * Direct TCTIs (device:/dev/tpm0, swtpm, mssim) have no resource manager:
 * every transient object we load stays in the TPM until flushed, and a
 * software TPM has only three slots. So a parent primary is flushed as soon
 * as the key is loaded, and the key itself when its last handle closes.
 *
 * Every function here is called with inst->lock held.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <tss2/tss2_rc.h>

#include "tpm2_plugin.h"

const char *tpm2_rc_text(TSS2_RC rc)
{
	return Tss2_RC_Decode(rc);
}

TSS2_RC tpm2_rc_base(TSS2_RC rc)
{
	if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER)
		return rc;
	if (rc & TPM2_RC_FMT1)
		return rc & (TPM2_RC_FMT1 | 0x3f); /* drop parameter/handle/session number */
	return rc & 0xfff;
}

int tpm2_rc_is_lost(TSS2_RC rc)
{
	TSS2_RC base = rc & ~TSS2_RC_LAYER_MASK;

	if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
		switch (tpm2_rc_base(rc)) {
		case TPM2_RC_INITIALIZE:     /* the TPM was reset and not started */
		case TPM2_RC_REFERENCE_H0:   /* our object is gone: TPM reset */
		case TPM2_RC_REFERENCE_S0:   /* our session is gone: TPM reset */
		case TPM2_RC_HANDLE:
			return 1;
		default:
			return 0;
		}
	}
	switch (base) {
	case TSS2_BASE_RC_IO_ERROR:
	case TSS2_BASE_RC_NO_CONNECTION:
	case TSS2_BASE_RC_MALFORMED_RESPONSE:
	case TSS2_BASE_RC_INSUFFICIENT_RESPONSE:
	case TSS2_BASE_RC_BAD_SEQUENCE:      /* ESYS state after an aborted command */
	case TSS2_BASE_RC_TRY_AGAIN:
		return 1;
	default:
		return 0;
	}
}

const char *tpm2_tcti_name(const fv_instance *inst)
{
	return inst->tcti ? inst->tcti : "(tpm2-tss default)";
}

/* TCTI modules of tpm2-tss and tpm2-abrmd; Debian packages the library of
 * each NAME as libtss2-tcti-NAME0. */
static const char *const tcti_known[] = {
	"device", "tabrmd", "swtpm", "mssim", "cmd", "pcap", "libtpms", "spi-helper", NULL
};

/*
 * Tss2_TctiLdr_Initialize answers "not supported" both for a TCTI library
 * that is not installed and for a name it does not know. Ask the loader for
 * the library alone, so the message can say which of the two it is instead
 * of blaming the TPM. FV_OK when the library loads (the TPM is the problem).
 */
static int tcti_library_check(const fv_instance *inst)
{
	char name[128];
	const char *colon;
	TSS2_TCTI_INFO *info = NULL;
	size_t len, i;

	if (!inst->tcti)
		return FV_OK;
	colon = strchr(inst->tcti, ':');
	len = colon ? (size_t)(colon - inst->tcti) : strlen(inst->tcti);
	if (len == 0 || len >= sizeof(name))
		return FV_OK;
	memcpy(name, inst->tcti, len);
	name[len] = '\0';
	if (Tss2_TctiLdr_GetInfo(name, &info) == TSS2_RC_SUCCESS) {
		Tss2_TctiLdr_FreeInfo(&info);
		return FV_OK;
	}
	if (strchr(name, '/'))
		return TPM2_ERROR(FV_ERR_CONFIG,
			"%s.tcti: '%s' cannot be loaded as a TCTI library (missing, or not a tpm2-tss TCTI); correct the path",
			inst->where, name);
	for (i = 0; tcti_known[i]; i++)
		if (strcmp(name, tcti_known[i]) == 0)
			return TPM2_ERROR(FV_ERR_BACKEND,
				"TCTI '%s': its library libtss2-tcti-%s.so.0 cannot be loaded; install it (Debian package libtss2-tcti-%s0%s), or choose another TCTI in %s.tcti",
				name, name, name,
				strcmp(name, "tabrmd") == 0 ? ", and run the tpm2-abrmd service" : "",
				inst->where);
	return TPM2_ERROR(FV_ERR_CONFIG,
		"%s.tcti: unknown TCTI '%s': neither libtss2-tcti-%s.so.0 nor a library '%s' can be loaded; use device, tabrmd, swtpm or mssim (e.g. \"device:/dev/tpmrm0\")",
		inst->where, name, name, name);
}

/*
 * The TCTI string to hand tctildr. A TCTI named by path is code loaded into
 * this process: the host checks the file (as it checks plugins) and tctildr
 * loads that same file as /proc/self/fd/N, whose descriptor stays open until
 * the library is unloaded. A TCTI named by name (device, swtpm, tabrmd) is
 * found by the dynamic loader in the system's library directories.
 */
static int tcti_checked(fv_instance *inst, char *buf, size_t len, const char **conf)
{
	char fd_path[FV_HOST_FD_PATH_MAX], path[512];
	const char *colon;
	size_t name_len;
	int rc;

	*conf = inst->tcti;
	inst->tcti_fd = -1;
	if (!inst->tcti)
		return FV_OK;
	colon = strchr(inst->tcti, ':');
	name_len = colon ? (size_t)(colon - inst->tcti) : strlen(inst->tcti);
	if (!memchr(inst->tcti, '/', name_len))
		return FV_OK;
	if (name_len >= sizeof(path))
		return TPM2_ERROR(FV_ERR_CONFIG, "%s.tcti: the TCTI library path is too long",
		                  inst->where);
	if (!FV_HOST_HAS(tpm2_host, file_open_checked))
		return TPM2_ERROR(FV_ERR_PLUGIN,
			"%s.tcti: this flowvault is too old to check library files (provider ABI 1.1 needed); name the TCTI (device, swtpm, tabrmd) instead of its path",
			inst->where);
	memcpy(path, inst->tcti, name_len);
	path[name_len] = '\0';
	if ((rc = tpm2_host->file_open_checked(path, "TCTI library", &inst->tcti_fd)) != FV_OK)
		return rc;
	fv_host_fd_path(fd_path, inst->tcti_fd);
	snprintf(buf, len, "%s%s", fd_path, colon ? colon : "");
	*conf = buf;
	return FV_OK;
}

static void tcti_fd_close(fv_instance *inst)
{
	if (inst->tcti_fd >= 0)
		close(inst->tcti_fd);
	inst->tcti_fd = -1;
}

int tpm2_connect(fv_instance *inst)
{
	char tcti_buf[1024];
	const char *tcti;
	TSS2_RC r;
	int rc;

	if (inst->esys)
		return FV_OK;
	if ((rc = tcti_checked(inst, tcti_buf, sizeof(tcti_buf), &tcti)) != FV_OK)
		return rc;
	r = Tss2_TctiLdr_Initialize(tcti, &inst->tcti_ctx);
	if (r != TSS2_RC_SUCCESS) {
		inst->tcti_ctx = NULL;
		tcti_fd_close(inst);
		if ((rc = tcti_library_check(inst)) != FV_OK)
			return rc;
		return TPM2_ERROR(FV_ERR_BACKEND,
			"TPM not reachable through TCTI '%s' (%s); check that the TPM or swtpm is running, that this user may open it, and %s.tcti",
			tpm2_tcti_name(inst), tpm2_rc_text(r), inst->where);
	}
	r = Esys_Initialize(&inst->esys, inst->tcti_ctx, NULL);
	if (r != TSS2_RC_SUCCESS) {
		inst->esys = NULL;
		Tss2_TctiLdr_Finalize(&inst->tcti_ctx);
		tcti_fd_close(inst);
		return TPM2_ERROR(FV_ERR_BACKEND, "TPM through TCTI '%s': cannot start ESYS (%s)",
		                  tpm2_tcti_name(inst), tpm2_rc_text(r));
	}
	inst->key_tr = ESYS_TR_NONE;
	inst->session = ESYS_TR_NONE;
	return FV_OK;
}

void tpm2_disconnect(fv_instance *inst)
{
	if (inst->esys)
		Esys_Finalize(&inst->esys);
	if (inst->tcti_ctx)
		Tss2_TctiLdr_Finalize(&inst->tcti_ctx);
	/* After the library is unloaded: its /proc/self/fd name must not be reused. */
	tcti_fd_close(inst);
	inst->esys = NULL;
	inst->tcti_ctx = NULL;
	inst->key_tr = ESYS_TR_NONE;
	inst->session = ESYS_TR_NONE;
}

int tpm2_object_memory_error(TSS2_RC r)
{
	return TPM2_ERROR(FV_ERR_BACKEND,
		"TPM has no free transient object slot (%s); another program left objects loaded: flush them (tpm2_flushcontext -t) or use a resource manager (tabrmd, /dev/tpmrm0)",
		tpm2_rc_text(r));
}

/* One TPM2_GetCapability row: 1 when the TPM lists `property` in `cap`. */
static int tpm2_capability_has(fv_instance *inst, TPM2_CAP cap, uint32_t property,
                               const char *what)
{
	TPMS_CAPABILITY_DATA *data = NULL;
	TPMI_YES_NO more;
	TSS2_RC r;
	int found = 0;

	r = Esys_GetCapability(inst->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, cap,
	                       property, 1, &more, &data);
	if (r != TSS2_RC_SUCCESS)
		return TPM2_ERROR(FV_ERR_BACKEND, "TPM through TCTI '%s': cannot query %s (%s)",
		                  tpm2_tcti_name(inst), what, tpm2_rc_text(r));
	if (cap == TPM2_CAP_HANDLES)
		found = data->data.handles.count > 0 && data->data.handles.handle[0] == property;
	else if (cap == TPM2_CAP_ALGS)
		found = data->data.algorithms.count > 0 &&
		        data->data.algorithms.algProperties[0].alg == property;
	Esys_Free(data);
	return found;
}

int tpm2_handle_exists(fv_instance *inst, uint32_t handle)
{
	return tpm2_capability_has(inst, TPM2_CAP_HANDLES, handle, "persistent handles");
}

int tpm2_parent_default(fv_instance *inst, uint32_t *out)
{
	int rc;

	if (inst->parent) {
		*out = inst->parent;
		return FV_OK;
	}
	rc = tpm2_handle_exists(inst, TPM2_SRK_HANDLE);
	if (rc < 0)
		return rc;
	*out = rc ? TPM2_SRK_HANDLE : TPM2_OWNER_PARENT;
	return FV_OK;
}

/*
 * The owner-hierarchy primary that a TSS2 key file with parent 0x40000001
 * stands for. The key file convention (and tpm2-openssl, which must load our
 * files) derive it from the TCG provisioning-guidance storage templates with
 * empty unique fields: ECC NIST P-256 when the TPM has ECC, RSA-2048
 * otherwise. Any other template gives a different primary, under which the
 * file cannot load.
 */
static void primary_template(TPM2B_PUBLIC *t, int ecc)
{
	memset(t, 0, sizeof(*t));
	t->publicArea.nameAlg = TPM2_ALG_SHA256;
	t->publicArea.objectAttributes =
		TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |
		TPMA_OBJECT_NODA | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
		TPMA_OBJECT_SENSITIVEDATAORIGIN;
	if (ecc) {
		TPMS_ECC_PARMS *p = &t->publicArea.parameters.eccDetail;

		t->publicArea.type = TPM2_ALG_ECC;
		p->symmetric.algorithm = TPM2_ALG_AES;
		p->symmetric.keyBits.aes = 128;
		p->symmetric.mode.aes = TPM2_ALG_CFB;
		p->scheme.scheme = TPM2_ALG_NULL;
		p->curveID = TPM2_ECC_NIST_P256;
		p->kdf.scheme = TPM2_ALG_NULL;
	} else {
		TPMS_RSA_PARMS *p = &t->publicArea.parameters.rsaDetail;

		t->publicArea.type = TPM2_ALG_RSA;
		p->symmetric.algorithm = TPM2_ALG_AES;
		p->symmetric.keyBits.aes = 128;
		p->symmetric.mode.aes = TPM2_ALG_CFB;
		p->scheme.scheme = TPM2_ALG_NULL;
		p->keyBits = 2048;
		p->exponent = 0;
	}
}

int tpm2_parent_get(fv_instance *inst, uint32_t parent, ESYS_TR *out, int *flush)
{
	TPM2B_SENSITIVE_CREATE sensitive;
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside = { .size = 0 };
	TPML_PCR_SELECTION pcrs = { .count = 0 };
	TSS2_RC r;
	int rc;

	*out = ESYS_TR_NONE;
	*flush = 0;
	if (parent != TPM2_OWNER_PARENT) {
		rc = tpm2_handle_exists(inst, parent);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return TPM2_ERROR(FV_ERR_NOT_FOUND,
				"parent key 0x%08x is not in the TPM (TCTI '%s'); provision it (tpm2_createprimary -C o -c srk.ctx; tpm2_evictcontrol -C o -c srk.ctx 0x%08x) or use the TPM the key was made on",
				parent, tpm2_tcti_name(inst), parent);
		r = Esys_TR_FromTPMPublic(inst->esys, parent, ESYS_TR_NONE, ESYS_TR_NONE,
		                          ESYS_TR_NONE, out);
		if (r != TSS2_RC_SUCCESS)
			return TPM2_ERROR(FV_ERR_BACKEND, "parent key 0x%08x: cannot read it (%s)", parent,
			                  tpm2_rc_text(r));
		return FV_OK;
	}

	rc = tpm2_capability_has(inst, TPM2_CAP_ALGS, TPM2_ALG_ECC, "algorithms");
	if (rc < 0)
		return rc;
	primary_template(&tmpl, rc);
	memset(&sensitive, 0, sizeof(sensitive));
	r = Esys_CreatePrimary(inst->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	                       ESYS_TR_NONE, &sensitive, &tmpl, &outside, &pcrs, out, NULL, NULL,
	                       NULL, NULL);
	if (r != TSS2_RC_SUCCESS) {
		*out = ESYS_TR_NONE;
		if (tpm2_rc_base(r) == TPM2_RC_BAD_AUTH || tpm2_rc_base(r) == TPM2_RC_AUTH_FAIL)
			return TPM2_ERROR(FV_ERR_AUTH,
				"the TPM's owner hierarchy has a password, so the standard primary cannot be created; make a persistent storage key and name it in %s.parent",
				inst->where);
		if (tpm2_rc_base(r) == TPM2_RC_OBJECT_MEMORY)
			return tpm2_object_memory_error(r);
		return TPM2_ERROR(FV_ERR_BACKEND,
			"cannot create the owner-hierarchy storage primary (%s)", tpm2_rc_text(r));
	}
	*flush = 1;
	return FV_OK;
}

static void parent_put(fv_instance *inst, ESYS_TR *tr, int flush)
{
	if (*tr == ESYS_TR_NONE)
		return;
	if (flush)
		Esys_FlushContext(inst->esys, *tr);
	else
		Esys_TR_Close(inst->esys, tr);
	*tr = ESYS_TR_NONE;
}

int tpm2_session_start(fv_instance *inst, ESYS_TR salt_key, TPMA_SESSION attrs,
                       ESYS_TR *out)
{
	const TPMT_SYM_DEF symmetric = {
		.algorithm = TPM2_ALG_AES,
		.keyBits = { .aes = 128 },
		.mode = { .aes = TPM2_ALG_CFB },
	};
	TSS2_RC r;

	/* Salted, unbound: the session key comes from a random salt that only
	 * the TPM can decrypt (ESYS encrypts it to salt_key's public key), so
	 * someone reading the bus learns neither it nor the keys derived from
	 * it for HMACs and parameter encryption. */
	r = Esys_StartAuthSession(inst->esys, salt_key, ESYS_TR_NONE, ESYS_TR_NONE,
	                          ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &symmetric,
	                          TPM2_ALG_SHA256, out);
	if (r != TSS2_RC_SUCCESS) {
		*out = ESYS_TR_NONE;
		if (tpm2_rc_base(r) == TPM2_RC_SESSION_MEMORY ||
		    tpm2_rc_base(r) == TPM2_RC_SESSION_HANDLES)
			return TPM2_ERROR(FV_ERR_BACKEND,
				"TPM has no free session slot (%s); another program left sessions loaded: flush them (tpm2_flushcontext -l; -s for saved ones) or use a resource manager (tabrmd, /dev/tpmrm0)",
				tpm2_rc_text(r));
		return TPM2_ERROR(FV_ERR_BACKEND,
			"TPM through TCTI '%s': cannot start a session salted to the key's storage parent (%s); the parent must be a storage (restricted decryption) key: check %s.parent, or the parent the key file records",
			tpm2_tcti_name(inst), tpm2_rc_text(r), inst->where);
	}
	r = Esys_TRSess_SetAttributes(inst->esys, *out, attrs, 0xff);
	if (r != TSS2_RC_SUCCESS) {
		Esys_FlushContext(inst->esys, *out);
		*out = ESYS_TR_NONE;
		return TPM2_ERROR(FV_ERR_BACKEND, "cannot set the session's attributes (%s)",
		                  tpm2_rc_text(r));
	}
	return FV_OK;
}

/*
 * The decryption session: salted to the key's storage parent, response
 * parameter encryption (TPMA_SESSION_ENCRYPT) so TPM2_RSA_Decrypt's plain
 * text crosses the bus under AES-128-CFB, continued across decryptions.
 */
static int key_session_start(fv_instance *inst, ESYS_TR parent)
{
	return tpm2_session_start(inst, parent,
	                          TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_ENCRYPT,
	                          &inst->session);
}

static int load_from_file(fv_instance *inst)
{
	const struct tpm2_keyblob *b = &inst->blob;
	ESYS_TR parent;
	TSS2_RC r;
	int flush, rc;

	rc = tpm2_parent_get(inst, b->parent, &parent, &flush);
	if (rc != FV_OK)
		return rc;
	r = Esys_Load(inst->esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
	              &b->priv, &b->pub, &inst->key_tr);
	if (r != TSS2_RC_SUCCESS) {
		TSS2_RC base = tpm2_rc_base(r);

		parent_put(inst, &parent, flush);
		inst->key_tr = ESYS_TR_NONE;
		if (base == TPM2_RC_INTEGRITY || base == TPM2_RC_BINDING ||
		    base == TPM2_RC_SIZE || base == TPM2_RC_VALUE)
			return TPM2_ERROR(FV_ERR_BACKEND,
				"%s.key_file '%s': the TPM refuses to load it (%s): it was made on another TPM or under another parent than 0x%08x, or it is damaged",
				inst->where, inst->key_file, tpm2_rc_text(r), b->parent);
		if (base == TPM2_RC_OBJECT_MEMORY)
			return tpm2_object_memory_error(r);
		return TPM2_ERROR(FV_ERR_BACKEND, "%s.key_file '%s': TPM2_Load failed (%s)",
		                  inst->where, inst->key_file, tpm2_rc_text(r));
	}
	inst->key_transient = 1;
	inst->key_pub = b->pub;
	rc = key_session_start(inst, parent);
	parent_put(inst, &parent, flush);
	return rc;
}

static int load_persistent(fv_instance *inst)
{
	TPM2B_PUBLIC *pub = NULL;
	ESYS_TR parent;
	uint32_t parent_handle;
	TSS2_RC r;
	int flush, rc;

	rc = tpm2_handle_exists(inst, inst->handle);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return TPM2_ERROR(FV_ERR_NOT_FOUND,
			"%s.handle 0x%08x: no key at this persistent handle (TCTI '%s'); create it with `flowvault generate`",
			inst->where, inst->handle, tpm2_tcti_name(inst));
	r = Esys_TR_FromTPMPublic(inst->esys, inst->handle, ESYS_TR_NONE, ESYS_TR_NONE,
	                          ESYS_TR_NONE, &inst->key_tr);
	if (r == TSS2_RC_SUCCESS)
		r = Esys_ReadPublic(inst->esys, inst->key_tr, ESYS_TR_NONE, ESYS_TR_NONE,
		                    ESYS_TR_NONE, &pub, NULL, NULL);
	if (r != TSS2_RC_SUCCESS) {
		if (inst->key_tr != ESYS_TR_NONE)
			Esys_TR_Close(inst->esys, &inst->key_tr);
		inst->key_tr = ESYS_TR_NONE;
		/* A persistent object needs a free transient slot for each command
		 * that uses it, so a full TPM refuses it just like a key file. */
		if (tpm2_rc_base(r) == TPM2_RC_OBJECT_MEMORY)
			return tpm2_object_memory_error(r);
		return TPM2_ERROR(FV_ERR_BACKEND, "%s.handle 0x%08x: cannot read the key (%s)",
		                  inst->where, inst->handle, tpm2_rc_text(r));
	}
	inst->key_pub = *pub;
	Esys_Free(pub);
	inst->key_transient = 0;

	/* The key's own parent is not recorded anywhere for a persistent key:
	 * salt with the storage key generate uses (configured parent, else
	 * 0x81000001, else the standard owner primary). */
	rc = tpm2_parent_default(inst, &parent_handle);
	if (rc == FV_OK)
		rc = tpm2_parent_get(inst, parent_handle, &parent, &flush);
	if (rc != FV_OK)
		return rc;
	rc = key_session_start(inst, parent);
	parent_put(inst, &parent, flush);
	return rc;
}

int tpm2_key_load(fv_instance *inst)
{
	char what[128];
	TSS2_RC r;
	int rc;

	rc = tpm2_connect(inst);
	if (rc != FV_OK)
		return rc;
	if (inst->key_tr != ESYS_TR_NONE)
		return FV_OK;
	rc = inst->key_file ? load_from_file(inst) : load_persistent(inst);
	if (rc != FV_OK) {
		tpm2_key_unload(inst);
		return rc;
	}
	if (inst->key_file)
		snprintf(what, sizeof(what), "%s.key_file", inst->where);
	else
		snprintf(what, sizeof(what), "%s.handle 0x%08x", inst->where, inst->handle);
	rc = tpm2_public_check(&inst->key_pub, what);
	/* ESYS mixes the auth value into the session's HMAC and parameter
	 * encryption keys; it is never sent to the TPM. */
	if (rc == FV_OK && inst->auth) {
		r = Esys_TR_SetAuth(inst->esys, inst->key_tr, inst->auth);
		if (r != TSS2_RC_SUCCESS)
			rc = TPM2_ERROR(FV_ERR_BACKEND, "%s: cannot set its authorization (%s)", what,
			                tpm2_rc_text(r));
	}
	if (rc != FV_OK)
		tpm2_key_unload(inst);
	return rc;
}

void tpm2_key_unload(fv_instance *inst)
{
	if (!inst->esys) {
		inst->key_tr = ESYS_TR_NONE;
		inst->session = ESYS_TR_NONE;
		return;
	}
	if (inst->session != ESYS_TR_NONE)
		Esys_FlushContext(inst->esys, inst->session);
	inst->session = ESYS_TR_NONE;
	if (inst->key_tr == ESYS_TR_NONE)
		return;
	if (inst->key_transient)
		Esys_FlushContext(inst->esys, inst->key_tr);
	else
		Esys_TR_Close(inst->esys, &inst->key_tr);
	inst->key_tr = ESYS_TR_NONE;
}

/* 1 when the TPM's self-test result says it is healthy. */
static int tpm_healthy(fv_instance *inst)
{
	TPM2B_MAX_BUFFER *data = NULL;
	TPM2_RC result = TPM2_RC_FAILURE;
	TSS2_RC r;

	r = Esys_GetTestResult(inst->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &data,
	                       &result);
	Esys_Free(data);
	return r == TSS2_RC_SUCCESS && result == TPM2_RC_SUCCESS;
}

static int decrypt_error(fv_instance *inst, TSS2_RC r)
{
	/* libtpms before 0.9.7/0.10 (swtpm) answers a ciphertext whose padding
	 * does not check with TPM_RC_FAILURE instead of TPM_RC_VALUE, without
	 * entering failure mode: ask the TPM whether it is really failing. */
	if (tpm2_rc_base(r) == TPM2_RC_FAILURE && tpm_healthy(inst))
		return TPM2_ERROR(FV_ERR_DECRYPT,
			"the TPM rejects the ciphertext: the ciphertext failed the OAEP check (this TPM reports that as %s, and its self-test result is fine): it was not encrypted to this key with RSA-OAEP-SHA256",
			tpm2_rc_text(r));
	switch (tpm2_rc_base(r)) {
	case TPM2_RC_AUTH_FAIL:
	case TPM2_RC_BAD_AUTH:
		return TPM2_ERROR(FV_ERR_AUTH,
			"the TPM refuses the key's authorization value (%s); check %s.auth (each failure counts towards the TPM's dictionary-attack lockout)",
			tpm2_rc_text(r), inst->where);
	case TPM2_RC_LOCKOUT:
		return TPM2_ERROR(FV_ERR_AUTH,
			"the TPM is in dictionary-attack lockout after wrong authorization values (%s); wait for it to recover or reset it with tpm2_dictionarylockout -c",
			tpm2_rc_text(r));
	case TPM2_RC_VALUE:
	case TPM2_RC_SIZE:
		return TPM2_ERROR(FV_ERR_DECRYPT,
			"the TPM rejects the ciphertext (%s): it was not encrypted to this key with RSA-OAEP-SHA256",
			tpm2_rc_text(r));
	case TPM2_RC_OBJECT_MEMORY:
		return tpm2_object_memory_error(r);
	case TPM2_RC_SCHEME:
	case TPM2_RC_ATTRIBUTES:
	case TPM2_RC_KEY:
		return TPM2_ERROR(FV_ERR_UNSUPPORTED,
			"the TPM refuses RSA-OAEP-SHA256 with this key (%s); generate a decryption key for flowvault",
			tpm2_rc_text(r));
	default:
		return TPM2_ERROR(FV_ERR_BACKEND, "TPM2_RSA_Decrypt through TCTI '%s' failed (%s)",
		                  tpm2_tcti_name(inst), tpm2_rc_text(r));
	}
}

int tpm2_decrypt(fv_instance *inst, const unsigned char *in, size_t in_len,
                 unsigned char *out, size_t *out_len)
{
	TPM2B_PUBLIC_KEY_RSA cipher;
	TPMT_RSA_DECRYPT scheme;
	TPM2B_DATA label = { .size = 0 };
	TPM2B_PUBLIC_KEY_RSA *plain = NULL;
	TSS2_RC r = TSS2_RC_SUCCESS;
	int attempt, rc;

	if (in_len != inst->key_pub.publicArea.unique.rsa.size)
		return TPM2_ERROR(FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; this RSA-%u key takes exactly %u", in_len,
			(unsigned int)inst->key_pub.publicArea.parameters.rsaDetail.keyBits,
			(unsigned int)inst->key_pub.publicArea.unique.rsa.size);
	/* A value the TPM cannot take (not below the modulus) is the sender's
	 * fault; say so without asking the TPM, whose answer to it varies. */
	if (memcmp(in, inst->key_pub.publicArea.unique.rsa.buffer, in_len) >= 0)
		return TPM2_ERROR(FV_ERR_DECRYPT,
			"the ciphertext is not smaller than the key's modulus: it was not encrypted to this key");
	cipher.size = (UINT16)in_len;
	memcpy(cipher.buffer, in, in_len);
	memset(&scheme, 0, sizeof(scheme));
	scheme.scheme = TPM2_ALG_OAEP;
	scheme.details.oaep.hashAlg = TPM2_ALG_SHA256;

	for (attempt = 0; attempt < 2; attempt++) {
		rc = tpm2_key_load(inst);
		if (rc != FV_OK)
			return rc;
		r = Esys_RSA_Decrypt(inst->esys, inst->key_tr, inst->session, ESYS_TR_NONE,
		                     ESYS_TR_NONE, &cipher, &scheme, &label, &plain);
		if (r == TSS2_RC_SUCCESS || attempt > 0 || !tpm2_rc_is_lost(r))
			break;
		/* The TPM restarted or the connection broke: the loaded key and the
		 * session are gone with it. Connect again, load again (with a new
		 * session), try once more. */
		TPM2_LOG(FV_LOG_WARNING, "%s: TPM connection lost or TPM reset (%s); reconnecting",
		         inst->where, tpm2_rc_text(r));
		/* When the TPM itself answered, whatever of ours it still holds (the
		 * key when only the session is gone) is flushed, not left behind. */
		if ((r & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER)
			tpm2_key_unload(inst);
		tpm2_disconnect(inst);
	}
	if (r != TSS2_RC_SUCCESS)
		return decrypt_error(inst, r);
	if (!out || *out_len < plain->size) {
		*out_len = plain->size;
		rc = out ? TPM2_ERROR(FV_ERR_BUFFER_TOO_SMALL, "plain text needs %zu bytes",
		                      (size_t)plain->size) : FV_OK;
	} else {
		memcpy(out, plain->buffer, plain->size);
		*out_len = plain->size;
		rc = FV_OK;
	}
	OPENSSL_cleanse(plain->buffer, sizeof(plain->buffer));
	Esys_Free(plain);
	return rc;
}
