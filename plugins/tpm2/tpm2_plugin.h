/*
 * The TPM 2.0 key provider: declarations shared by the files of this plugin.
 *
 *   tpm2.c     entry point, function table, configuration, key glue
 *   esys.c     ESYS/TCTI connection, parent, loading, recovery, RC text
 *   keygen.c   TPM2_Create of the decryption key; key file or EvictControl
 *   keyfile.c  the "TSS2 PRIVATE KEY" PEM format (TSSPrivKey ASN.1)
 *   public.c   TPM2B_PUBLIC -> SubjectPublicKeyInfo DER
 *
 * The key is an RSA-2048 decryption key (no sign) whose private part never
 * leaves the TPM: decryption is TPM2_RSA_Decrypt with OAEP and SHA-256, in a
 * salted HMAC session that encrypts the response, so neither the plain text
 * nor the key's authorization value crosses the TPM interface in the clear.
 */
#ifndef FLOWVAULT_TPM2_PLUGIN_H
#define FLOWVAULT_TPM2_PLUGIN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <flowvault/provider.h>

#define TPM2_PLUGIN_VERSION "0.1.0"

/* The host's services, set by the entry point. */
extern const fv_host *tpm2_host;

#define TPM2_ERROR(status, ...) (tpm2_host->error((status), __VA_ARGS__))
#define TPM2_LOG(level, ...) (tpm2_host->log((level), __VA_ARGS__))

/* The default parent: the conventional persistent storage key handle. */
#define TPM2_SRK_HANDLE 0x81000001u
/* Parent value in a key file meaning "the owner hierarchy's primary built
 * from the TCG template" (TPM2_RH_OWNER). */
#define TPM2_OWNER_PARENT 0x40000001u

/* ---- keyfile.c: TSSPrivKey, the "TSS2 PRIVATE KEY" PEM of tpm2-openssl,
 * tpm2-tss-engine and openssl_tpm2_engine ---- */

struct tpm2_keyblob {
	uint32_t parent;       /* persistent handle, or TPM2_OWNER_PARENT */
	int empty_auth;        /* 1: the key has no authorization value */
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;    /* sealed to the parent: useless off this TPM */
};

/* Parse PEM text. `what` names the file in messages ("keys.flows.key_file
 * '/x/key.pem'"). FV_ERR_BACKEND with a message on anything malformed. */
int tpm2_keyblob_decode(struct tpm2_keyblob *out, const char *pem,
                        size_t pem_len, const char *what);
/* Encode to PEM text (OPENSSL_free *pem). */
int tpm2_keyblob_encode(char **pem, size_t *pem_len,
                        const struct tpm2_keyblob *blob);
/* Read and decode a key file: FV_ERR_NOT_FOUND when it does not exist. */
int tpm2_keyblob_read(struct tpm2_keyblob *out, const char *path,
                      const char *where);

/* ---- public.c ---- */

/* Check the public area is an RSA-2048 decryption key usable with OAEP;
 * `what` names the key in messages. */
int tpm2_public_check(const TPM2B_PUBLIC *pub, const char *what);
/* DER SubjectPublicKeyInfo of an RSA public area (OPENSSL_free *der). */
int tpm2_public_to_spki(unsigned char **der, size_t *der_len,
                        const TPM2B_PUBLIC *pub, const char *what);

/* ---- tpm2.c: the instance ---- */

struct fv_instance {
	char *where;              /* "keys.flows", for messages */
	char *tcti;               /* TCTI configuration string, or NULL: default */
	char *key_file;           /* key_file, absolute; or NULL */
	uint32_t handle;          /* persistent handle of the key, or 0 */
	uint32_t parent;          /* configured parent, or 0: default */
	char *auth_ref;           /* secret reference for the key's auth, or NULL */

	/* Everything below is guarded by `lock`: one ESYS context per
	 * instance, and ESYS contexts are not thread-safe. */
	pthread_mutex_t lock;
	TSS2_TCTI_CONTEXT *tcti_ctx;
	int tcti_fd;              /* a TCTI given by path: its checked file, or -1 */
	ESYS_CONTEXT *esys;
	TPM2B_AUTH *auth;         /* the key's auth value, in host secure memory;
	                             NULL until resolved (or without auth) */
	struct tpm2_keyblob blob; /* for key files: what to load again */
	int have_blob;
	ESYS_TR key_tr;           /* loaded key, or ESYS_TR_NONE */
	ESYS_TR session;          /* salted HMAC session for key_tr, or ESYS_TR_NONE */
	int key_transient;        /* key_tr was loaded by us: flush it */
	unsigned int key_refs;    /* open fv_pkey handles on key_tr */
	TPM2B_PUBLIC key_pub;     /* public area of the loaded key */
};

/* Human-readable TCTI name for messages. */
const char *tpm2_tcti_name(const fv_instance *inst);

/* ---- esys.c (call with inst->lock held) ---- */

/* Decoded TSS2 return code: "tpm:parameter(1):value is out of range..." */
const char *tpm2_rc_text(TSS2_RC rc);
/* Whether `rc` means the connection broke or the TPM was reset, so that
 * reconnecting and loading the key again can help. */
int tpm2_rc_is_lost(TSS2_RC rc);
/* Format-one TPM error code without the parameter/handle/session bits. */
TSS2_RC tpm2_rc_base(TSS2_RC rc);

/* Connect (TCTI + ESYS) if not connected. FV_ERR_BACKEND naming the TCTI,
 * or the TCTI library that cannot be loaded. */
int tpm2_connect(fv_instance *inst);
/* Drop the connection and forget loaded objects (the TPM has lost them, or
 * will when this process ends). */
void tpm2_disconnect(fv_instance *inst);

/* A parent for TPM2_Create/TPM2_Load: `parent` is a persistent handle or
 * TPM2_OWNER_PARENT (then a primary is created; *flush is set to 1 and the
 * caller flushes it). FV_ERR_NOT_FOUND when a persistent handle is empty. */
int tpm2_parent_get(fv_instance *inst, uint32_t parent, ESYS_TR *out,
                    int *flush);
/* The parent generate uses: configured, else 0x81000001 if present, else
 * TPM2_OWNER_PARENT. */
int tpm2_parent_default(fv_instance *inst, uint32_t *out);
/* Whether a persistent handle holds an object: 1 yes, 0 no, or <0 error. */
int tpm2_handle_exists(fv_instance *inst, uint32_t handle);

/* Make sure the configured key is loaded (key_tr valid), connecting first. */
int tpm2_key_load(fv_instance *inst);
/* Flush the key if we loaded it, and its session, and forget them. */
void tpm2_key_unload(fv_instance *inst);

/* Start a salted HMAC session (AES-128-CFB parameter encryption, SHA-256)
 * whose salt is encrypted to `salt_key`, a loaded storage key, with the
 * session attributes `attrs` (TPMA_SESSION_*). */
int tpm2_session_start(fv_instance *inst, ESYS_TR salt_key, TPMA_SESSION attrs,
                       ESYS_TR *out);
/* The message for TPM_RC_OBJECT_MEMORY, with the TSS2 code. */
int tpm2_object_memory_error(TSS2_RC r);

/* RSA-OAEP-SHA256 with the loaded key; reconnects and reloads once after a
 * lost connection or a TPM reset. */
int tpm2_decrypt(fv_instance *inst, const unsigned char *in, size_t in_len,
                 unsigned char *out, size_t *out_len);

/* ---- keygen.c ---- */

int tpm2_generate(fv_instance *inst);

/* The template of the flowvault key: RSA-2048, decrypt only, scheme NULL
 * (OAEP is chosen per call), fixedTPM|fixedParent|sensitiveDataOrigin|
 * userWithAuth. */
void tpm2_key_template(TPM2B_PUBLIC *tmpl);

/* Resolve inst->auth_ref into inst->auth once. */
int tpm2_auth_resolve(fv_instance *inst);
/* Wipe and free inst->auth. */
void tpm2_auth_free(fv_instance *inst);

#endif /* FLOWVAULT_TPM2_PLUGIN_H */
