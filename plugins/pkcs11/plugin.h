/*
 * The PKCS#11 key provider: declarations shared by the files of this plugin.
 *
 *   pkcs11.c   entry point, function table, configuration, key glue
 *   module.c   loading and initializing modules (once per process), fork
 *   uri.c      RFC 7512 URI (through p11-kit), PIN source
 *   token.c    token selection, login, PIN flags
 *   session.c  session pool, recovery after lost sessions/login/token
 *   objects.c  object lookup, public key, list, delete
 *   keygen.c   C_GenerateKeyPair with the exact attributes
 *   decrypt.c  RSA-OAEP-SHA256 in the token, or raw RSA + host unpadding
 *   ckr.c      CKR_* names
 *
 * OpenSSL headers come before p11-kit's pkcs11.h, which defines the CK_*
 * types for everything here.
 */
#ifndef FLOWVAULT_PKCS11_PLUGIN_H
#define FLOWVAULT_PKCS11_PLUGIN_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include <flowvault/provider.h>

#define P11_PLUGIN_VERSION "0.1.0"

/* The host's services, set by the entry point. */
extern const fv_host *p11_host;

#ifdef __clang_analyzer__
/* The analyzer cannot see through the host's function pointer that error()
 * returns its non-zero status, and would follow `return P11_ERROR(...)` as
 * a success; state the contract for it. */
#define P11_ERROR(status, ...) \
	__extension__({ int p11_status_ = (status); \
	                (void)p11_host->error(p11_status_, __VA_ARGS__); p11_status_; })
#else
#define P11_ERROR(status, ...) (p11_host->error((status), __VA_ARGS__))
#endif
#define P11_LOG(level, ...) (p11_host->log((level), __VA_ARGS__))

/* ---- ckr.c ---- */
const char *p11_ckr_name(CK_RV rv);

/* ---- module.c ---- */

/* A PKCS#11 module loaded into this process. Shared by every instance that
 * names the same file, because C_Initialize and C_Finalize act on the whole
 * process: a second, private copy would finalize the first one's sessions. */
struct p11_module {
	char *spec;               /* as configured: a path or a p11-kit name */
	char *path;               /* the module file (or "remote ...") for messages */
	char *init_args;          /* pReserved of C_Initialize, or NULL */
	CK_FUNCTION_LIST *fns;    /* the one list everything here uses */
	int loaded;               /* fns came from p11-kit and must be released */
	void *dl;                 /* p11-kit's proxy: our dlopen handle, or NULL */
	int fd;                   /* the checked file it was loaded from, or -1 */
	int registered;           /* a p11-kit registration (managed by p11-kit) */
	int initialized;          /* our C_Initialize succeeded: finalize at the end */
	CK_INFO info;
	pid_t pid;                /* process in which the module was initialized */
	unsigned int epoch;       /* bumped by p11_module_reinitialize */
	int broken;               /* its last C_Initialize again failed */
	unsigned int refs;
	struct p11_module *next;
};

/* Find or load the module `spec` (absolute path, or the name of a module
 * registered with p11-kit). `where` names the config entry in messages. */
int p11_module_get(struct p11_module **out, const char *spec,
                   const char *init_args, const char *where);
void p11_module_put(struct p11_module *mod);
/* After fork(): initialize the module again in the child. Returns 1 when
 * it did (callers then forget their sessions), 0 when nothing changed, or a
 * negative status. */
int p11_module_after_fork(struct p11_module *mod);
/* Finalize and initialize the module again (a remote module whose server
 * went away and came back), unless its epoch moved past `seen_epoch`
 * already. Sessions of every instance on it are gone. */
int p11_module_reinitialize(struct p11_module *mod, unsigned int seen_epoch, CK_RV why);
/* mod->epoch, read under the module registry's lock; *broken (if not
 * NULL) tells that the last attempt to initialize it again failed. */
unsigned int p11_module_epoch(struct p11_module *mod, int *broken);
/* Have the next call initialize the module again, unless that happened
 * since `epoch` (the module came back without the token). */
void p11_module_mark_broken(struct p11_module *mod, unsigned int epoch);

/* ---- uri.c ---- */

struct p11_target {
	P11KitUri *uri;
	char *label;               /* CKA_LABEL (object=), or NULL */
	unsigned char *id;         /* CKA_ID (id=), or NULL */
	size_t id_len;
	char *pin_source_ref;      /* pin-source as a secret reference "file:PATH" */
};

int p11_target_parse(struct p11_target *t, const char *text, const char *where);
void p11_target_clear(struct p11_target *t);
/* "object 'flows' id 0a1b..." for messages (static per thread). */
const char *p11_target_describe(const struct p11_target *t);

/* ---- fv_instance (pkcs11.c owns its life) ---- */

struct fv_instance {
	char *where;                /* "keys.flows" */
	struct p11_module *mod;
	struct p11_target target;
	char *pin_ref;              /* secret reference for the PIN, or NULL */
	int allow_host_oaep;

	CK_SLOT_ID slot;
	char token_label[33];       /* for messages */
	char token_serial[17];
	unsigned int mod_epoch;     /* mod->epoch the slot and sessions belong to */
	CK_FLAGS token_flags;

	/* session pool (session.c) */
	pthread_mutex_t lock;
	CK_SESSION_HANDLE *idle;
	size_t idle_count, idle_cap;
	unsigned int generation;    /* bumped when sessions/login are renewed */
	pid_t pid;                  /* process the sessions belong to */
	int auth_failed;            /* a wrong PIN: never log in again */
};

/* ---- token.c ---- */

/* Select the one token the URI matches; fills inst->slot and its label. */
int p11_token_select(fv_instance *inst);
/* Log in on `session` unless the application is logged in already. The PIN
 * is resolved from its reference right here and wiped right after. */
int p11_token_login(fv_instance *inst, CK_SESSION_HANDLE session);
/* "; the token reports CKF_USER_PIN_FINAL_TRY (...)" or "" (per thread). */
const char *p11_token_pin_flags(fv_instance *inst);

/* ---- session.c ---- */

int p11_pool_init(fv_instance *inst);
void p11_pool_destroy(fv_instance *inst);
/* A logged-in read-only session from the pool; `gen` is the generation it
 * belongs to (give it back to p11_session_put / p11_recover). */
int p11_session_get(fv_instance *inst, CK_SESSION_HANDLE *session,
                    unsigned int *gen);
void p11_session_put(fv_instance *inst, CK_SESSION_HANDLE session,
                     unsigned int gen);
/* Close a session that must not be reused. */
void p11_session_drop(fv_instance *inst, CK_SESSION_HANDLE session);
/* A read-write session outside the pool, for generate/delete. */
int p11_session_open_rw(fv_instance *inst, CK_SESSION_HANDLE *session);
/* True for the return values after which one re-open + re-login is tried. */
int p11_rv_recoverable(CK_RV rv);
/* Renew sessions and login once for generation `gen` (no-op when another
 * thread already did). `why` is the CKR that caused it. */
int p11_recover(fv_instance *inst, unsigned int gen, CK_RV why);

/* ---- objects.c / keygen.c / decrypt.c ---- */

enum p11_oaep_mode {
	P11_OAEP_TOKEN = 1,          /* CKM_RSA_PKCS_OAEP with SHA-256 in the token */
	P11_OAEP_HOST = 2,           /* CKM_RSA_X_509 + host unpadding */
	P11_OAEP_UNAVAILABLE = 3     /* neither allowed nor possible */
};

struct fv_pkey {
	fv_instance *inst;
	pthread_mutex_t lock;        /* guards handle/handle_gen */
	CK_OBJECT_HANDLE handle;     /* the private key */
	unsigned int handle_gen;     /* inst->generation the handle was found in */
	size_t modulus_len;          /* bytes */
	unsigned char *modulus;      /* big-endian, modulus_len bytes */
	unsigned char *spki;         /* DER SubjectPublicKeyInfo */
	size_t spki_len;
	int oaep_mode;               /* enum p11_oaep_mode (read atomically) */
	uint32_t properties;         /* FV_KEY_PROP_* that hold (p11_key_load_properties) */
	uint32_t properties_known;
	char location[320];          /* token, serial, slot, object label and id */
	char oaep_reason[160];       /* why token OAEP is not used */
};

/* Find the configured private key: exactly one must match. */
int p11_find_private_key(fv_instance *inst, CK_SESSION_HANDLE session,
                         CK_OBJECT_HANDLE *out);
/* Read the public key (public object, else the private object's modulus
 * and exponent) as SPKI DER into key. */
int p11_key_load_public(fv_pkey *key, CK_SESSION_HANDLE session);
/* Read the attributes that tell how well the token protects the key
 * (CKA_EXTRACTABLE, CKA_SENSITIVE, ...) and where it is; refuse a key
 * that may not decrypt. */
int p11_key_load_properties(fv_pkey *key, CK_SESSION_HANDLE session);
int p11_objects_list(fv_instance *inst, fv_key_list_cb cb, void *arg);
int p11_objects_delete(fv_instance *inst);
/* The current handle of the key's private object for generation `gen`. */
int p11_key_handle(fv_pkey *key, CK_SESSION_HANDLE session, unsigned int gen,
                   CK_OBJECT_HANDLE *out);
/* The CKR of the last failed lookup on this thread (p11_find), so that
 * callers can tell a lost session from other failures. */
extern _Thread_local CK_RV p11_last_rv;
/* Find objects matching a template (at most `max`; *count gets how many). */
int p11_find(fv_instance *inst, CK_SESSION_HANDLE session,
             CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *found,
             CK_ULONG max, CK_ULONG *count);

int p11_keygen(fv_instance *inst);

/* Decide how OAEP is done for this key (token, host or unavailable). */
int p11_decrypt_probe(fv_pkey *key, CK_SESSION_HANDLE session);
int p11_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                unsigned char *out, size_t *out_len);

/* Hex of bytes for messages and references (static per thread). */
const char *p11_hex(const unsigned char *data, size_t len);
/* A fixed-size, space-padded PKCS#11 string as a C string. */
void p11_trim_copy(char *dst, size_t dst_size, const unsigned char *src,
                   size_t src_len);

#endif
