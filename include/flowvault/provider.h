/*
 * flowvault key-provider ABI.
 *
 * This header is everything a key-provider plugin needs: it depends on the
 * C library only (no OpenSSL, json-c or other third-party types), so a plugin
 * for any key store can be built against it alone.
 *
 * Overview
 * --------
 * A plugin is a shared object (`<name>.so`) that exports one symbol,
 * FV_PROVIDER_ENTRY_SYMBOL, of type fv_provider_entry_fn. The host calls it
 * once after dlopen() with its own ABI version and a table of host services
 * (struct fv_host). The plugin answers with a pointer to its static function
 * table (struct fv_provider). Both tables start with `abi_version` and
 * `struct_size`, and the host checks them before it touches anything else.
 *
 * The private key never leaves its store, by design: there is no operation
 * that returns private key material, and none will be added. The only
 * private-key operation is RSA-OAEP decryption with SHA-256, MGF1-SHA-256
 * and an empty label, which is all WhatsApp Flows needs.
 *
 * Versioning rules
 * ----------------
 * FV_PROVIDER_ABI_VERSION is (major << 16) | minor.
 *  - A different major version means incompatible tables: the host refuses
 *    the plugin, and a plugin should refuse a host with another major.
 *  - A minor version only appends members at the end of fv_host or
 *    fv_provider, or adds capability bits and status codes. Each side reads
 *    `struct_size` from the other and never touches a member that lies beyond
 *    it: a member past the other side's `struct_size` is treated as NULL/0.
 *  - A table shorter than FV_PROVIDER_MIN_SIZE (the 1.0 layout) is refused.
 *  - Members are never removed, reordered or retyped within a major version.
 *
 * Ownership
 * ---------
 *  - Tables returned by the entry point and strings in them are static in the
 *    plugin and must stay valid until the plugin is unloaded.
 *  - Buffers passed in by the host (`out`, `der`) belong to the host; the
 *    plugin writes at most `*len` bytes and reports the length it wrote, or
 *    the length it needs with FV_ERR_BUFFER_TOO_SMALL.
 *  - Instances and keys are allocated by the plugin and freed only through
 *    its own close functions.
 *  - Strings handed out by host config getters belong to the host and stay
 *    valid until the instance that received `cfg` is closed.
 *  - Secrets from fv_host.secret_resolve are allocated by the host and must be
 *    given back with fv_host.secret_free, which wipes them: call it as soon as
 *    the secret has been used.
 *
 * Threads
 * -------
 *  - key_decrypt may be called concurrently from several threads, on the same
 *    key handle or on different ones. A plugin whose backend cannot do that
 *    (one TPM context, one PKCS#11 session) serializes internally.
 *  - Every other call on one instance, or on the keys of one instance, is
 *    made by one thread at a time and never overlaps key_decrypt on a key
 *    that is being closed. Different instances may be used from different
 *    threads at the same time.
 *  - Host services may be called from any thread.
 *
 * Errors
 * ------
 * Every function that can fail returns an fv_status: FV_OK (0) or a negative
 * FV_ERR_* code. Before returning an error, report a message through
 * fv_host.error() that names the object (file, token, handle) and says what
 * to do. Never put a secret in a message or a log line.
 */
#ifndef FLOWVAULT_PROVIDER_H
#define FLOWVAULT_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status codes (shared with the application API in flowvault.h) ---- */

typedef enum fv_status {
	FV_OK = 0,
	FV_ERR_GENERIC = -1,          /* anything not covered below */
	FV_ERR_USAGE = -2,            /* invalid argument from the caller */
	FV_ERR_CONFIG = -3,           /* configuration is invalid */
	FV_ERR_NOT_FOUND = -4,        /* file, key, token or object not found */
	FV_ERR_EXISTS = -5,           /* refusing to overwrite an existing object */
	FV_ERR_AUTH = -6,             /* wrong PIN, passphrase or authorization */
	FV_ERR_BACKEND = -7,          /* the key store failed or is unreachable */
	FV_ERR_UNSUPPORTED = -8,      /* operation or mechanism not available */
	FV_ERR_DECRYPT = -9,          /* ciphertext rejected (length, padding) */
	FV_ERR_NOMEM = -10,           /* out of memory */
	FV_ERR_PLUGIN = -11,          /* plugin refused or misbehaved */
	FV_ERR_BUFFER_TOO_SMALL = -12,/* *len now holds the size needed */
	FV_ERR_SECRET = -13,          /* a secret reference cannot be resolved */
	FV_ERR_GRAPH = -14,           /* the Graph API refused or was unreachable */
	FV_ERR_MISMATCH = -15,        /* registered key differs or is not VALID */
	FV_ERR_PERMISSION = -16       /* unsafe file ownership or mode */
} fv_status;

/* ---- Versions and entry point ---- */

#define FV_PROVIDER_ABI_MAJOR 1
#define FV_PROVIDER_ABI_MINOR 1
#define FV_PROVIDER_ABI_VERSION \
	((uint32_t)((FV_PROVIDER_ABI_MAJOR << 16) | FV_PROVIDER_ABI_MINOR))
#define FV_PROVIDER_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)

/* The one symbol a plugin exports. */
#define FV_PROVIDER_ENTRY_SYMBOL "flowvault_provider_entry"

/* Opaque types: the host owns fv_config; the plugin defines the others. */
typedef struct fv_config fv_config;
typedef struct fv_instance fv_instance;
typedef struct fv_pkey fv_pkey;

/* ---- Host services: the host fills this table; plugins only read it ---- */

/* Log levels, most severe first. Messages at a level above the user's
 * verbosity are dropped by the host. */
enum fv_log_level {
	FV_LOG_ERROR = 0,
	FV_LOG_WARNING = 1,
	FV_LOG_INFO = 2,
	FV_LOG_DEBUG = 3
};

#if defined(__GNUC__) || defined(__clang__)
#define FV_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define FV_PRINTF(fmt, args)
#endif

typedef struct fv_host {
	uint32_t abi_version;  /* FV_PROVIDER_ABI_VERSION the host was built with */
	uint32_t struct_size;  /* sizeof(struct fv_host) in the host */

	/* Log a line (no trailing newline needed). Never pass secrets. */
	void (*log)(int level, const char *fmt, ...) FV_PRINTF(2, 3);

	/*
	 * Record the error message for the current call on this thread and
	 * return `status` unchanged, so a plugin can write
	 *     return host->error(FV_ERR_AUTH, "token '%s': wrong PIN", label);
	 * The host prefixes the key name; say what failed and what to do.
	 */
	int (*error)(int status, const char *fmt, ...) FV_PRINTF(2, 3);

	/*
	 * Configuration values of this key entry, by field name. Only fields
	 * the plugin declared in fv_provider.config_fields can be read, and the
	 * host has already checked their JSON types. Return FV_OK, or
	 * FV_ERR_NOT_FOUND when the field is absent (use the default then).
	 * Strings belong to the host (see Ownership).
	 */
	int (*config_string)(const fv_config *cfg, const char *name,
	                     const char **out);
	int (*config_int)(const fv_config *cfg, const char *name, int64_t *out);
	int (*config_bool)(const fv_config *cfg, const char *name, int *out);
	/* Arrays of strings: number of elements, then element `index`. */
	int (*config_array_size)(const fv_config *cfg, const char *name,
	                         size_t *out);
	int (*config_string_at)(const fv_config *cfg, const char *name,
	                        size_t index, const char **out);
	/* Where this entry lives in the configuration, e.g. "keys.flows", to
	 * name fields in messages: "keys.flows.path: no such file ...". */
	const char *(*config_location)(const fv_config *cfg);

	/*
	 * Resolve a secret reference ("env:NAME", "file:PATH" or "prompt").
	 * `purpose` is shown at the prompt ("PIN for token 'flows'"). On success
	 * *out is a NUL-terminated string of *out_len bytes that the plugin must
	 * give back with secret_free() right after use.
	 */
	int (*secret_resolve)(const char *reference, const char *purpose,
	                      char **out, size_t *out_len);
	void (*secret_free)(char *secret, size_t len);

	/*
	 * Create `path` with `mode` holding `len` bytes, atomically: a temporary
	 * file in the same directory, fsync, link into place only if `path` does
	 * not exist (FV_ERR_EXISTS otherwise), fsync the directory. On any
	 * failure nothing is left behind. For key files and other private blobs.
	 */
	int (*file_create)(const char *path, const void *data, size_t len,
	                   unsigned int mode);

	/* ---- ABI 1.1: check FV_HOST_HAS(host, member) before use ---- */

	/*
	 * Open a file the plugin is about to load as code (a PKCS#11 module, an
	 * OpenSSL ENGINE or provider) with the checks the host applies to its
	 * own plugins: the file is opened once without following a final
	 * symlink unless `path` itself is one, then checked through the open
	 * descriptor (a regular file, owned by root or the effective user, not
	 * writable by group or others), and every directory of the path, as
	 * given and as resolved, is checked the same way. `what` names the file
	 * in messages ("PKCS#11 module"). On success *fd is an O_RDONLY |
	 * O_CLOEXEC descriptor of the checked file: load "/proc/self/fd/<fd>"
	 * (fv_host_fd_path below) so that the file checked is the file loaded.
	 * Keep the descriptor open for as long as the module stays loaded and
	 * close it only after unloading: the dynamic loader recognises a loaded
	 * library by the name it was loaded under, so once the number is reused
	 * "/proc/self/fd/<fd>" would name the old module instead of the new
	 * file. FV_ERR_PERMISSION or FV_ERR_NOT_FOUND otherwise, with a message
	 * that says what to fix.
	 */
	int (*file_open_checked)(const char *path, const char *what, int *fd);

	/*
	 * Memory for secrets a plugin must keep (a PIN for re-login, a session
	 * token): locked where possible, excluded from core dumps, wiped by
	 * secure_free. secure_alloc returns NULL when out of memory.
	 */
	void *(*secure_alloc)(size_t len);
	void (*secure_free)(void *ptr, size_t len);
} fv_host;

/* The 1.0 layout of fv_host; a shorter table is refused by plugins. */
#define FV_HOST_MIN_SIZE (offsetof(fv_host, file_create) + sizeof(void (*)(void)))

/* True when the host's table is long enough to hold `member` (1.1 and
 * later services): a 1.0 host has none of them. */
#define FV_HOST_HAS(host, member)                                           \
	((host)->struct_size >= offsetof(fv_host, member) + sizeof((host)->member) \
	 && (host)->member != NULL)

/* The path under which the file behind descriptor `fd` can be loaded. */
#define FV_HOST_FD_PATH_MAX 32
static inline void fv_host_fd_path(char buf[FV_HOST_FD_PATH_MAX], int fd)
{
	static const char prefix[] = "/proc/self/fd/";
	char digits[12];
	size_t n = 0, i;
	unsigned int v = fd < 0 ? 0u : (unsigned int)fd;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < sizeof(digits));
	for (i = 0; i < sizeof(prefix) - 1; i++)
		buf[i] = prefix[i];
	while (n)
		buf[i++] = digits[--n];
	buf[i] = '\0';
}

/* ---- Configuration fields a plugin declares ---- */

enum fv_field_type {
	FV_FIELD_STRING = 1,
	FV_FIELD_INT = 2,
	FV_FIELD_BOOL = 3,
	FV_FIELD_STRING_ARRAY = 4,
	/* A string that must be a secret reference (env:, file:, prompt).
	 * The host refuses literal secrets; read it with config_string and
	 * resolve it with secret_resolve. */
	FV_FIELD_SECRET = 5
};

enum fv_field_flags {
	FV_FIELD_REQUIRED = 1u << 0,
	/* This field names the key inside the backend (file path, object
	 * label, handle): what changes between two keys of one backend. */
	FV_FIELD_KEY_REFERENCE = 1u << 1,
	/* A file system path: the host makes a relative path absolute against
	 * the directory of the configuration file before handing it out. */
	FV_FIELD_PATH = 1u << 2
};

typedef struct fv_config_field {
	const char *name;        /* JSON member name in the key entry */
	int type;                /* enum fv_field_type */
	unsigned int flags;      /* enum fv_field_flags */
	const char *help;        /* one line, shown in errors and docs */
} fv_config_field;

/* ---- The plugin's function table ---- */

/* Capabilities: optional operations a plugin implements. */
#define FV_CAP_GENERATE (1u << 0)  /* key_generate */
#define FV_CAP_LIST     (1u << 1)  /* key_list */
#define FV_CAP_DELETE   (1u << 2)  /* key_delete */
#define FV_CAP_INFO     (1u << 3)  /* key_info */
#define FV_CAP_DESCRIBE (1u << 4)  /* key_describe (ABI 1.1) */

/*
 * Facts about a key that tell how well its store protects it (ABI 1.1).
 * A plugin sets a bit in `properties_known` for each fact it could
 * determine, and the same bit in `properties` when the fact holds. The host
 * turns them into warnings for `keys`, `doctor` and `serve`, and refuses a
 * key that can leave its store unless the configuration allows it
 * (keys.<name>.require_non_extractable, default true).
 */
#define FV_KEY_PROP_EXTRACTABLE       (1u << 0)  /* can be exported (CKA_EXTRACTABLE) */
#define FV_KEY_PROP_SENSITIVE         (1u << 1)  /* CKA_SENSITIVE */
#define FV_KEY_PROP_ALWAYS_SENSITIVE  (1u << 2)  /* CKA_ALWAYS_SENSITIVE */
#define FV_KEY_PROP_NEVER_EXTRACTABLE (1u << 3)  /* CKA_NEVER_EXTRACTABLE */
#define FV_KEY_PROP_GENERATED_INSIDE  (1u << 4)  /* CKA_LOCAL, sensitiveDataOrigin */
#define FV_KEY_PROP_CAN_SIGN          (1u << 5)  /* usable for signatures too */
#define FV_KEY_PROP_CAN_UNWRAP        (1u << 6)  /* usable to unwrap other keys */
#define FV_KEY_PROP_FIXED_TPM         (1u << 7)  /* TPMA_OBJECT_FIXEDTPM */
#define FV_KEY_PROP_FIXED_PARENT      (1u << 8)  /* TPMA_OBJECT_FIXEDPARENT */
#define FV_KEY_PROP_IN_HOST_MEMORY    (1u << 9)  /* the private key is in this process */

/*
 * What key_describe fills in. The host zeroes it and sets struct_size to
 * the size it knows; a plugin writes no member at or beyond struct_size.
 * Strings belong to the plugin and stay valid until key_close.
 */
typedef struct fv_key_description {
	uint32_t struct_size;
	/* Where the OAEP padding is checked: "token", "host", "tpm", or the
	 * service's name ("aws-kms"); NULL when unknown. */
	const char *oaep;
	/* The kind of store: "file", "token", "tpm", "engine", "provider",
	 * or a service's name. */
	const char *backend;
	/* Where the key is, for people: a file path, "token 'fv' (serial 1a2b,
	 * slot 0), object 'flows' id 0a1b", "TPM handle 0x81000002". */
	const char *location;
	/* The key's identity in a remote service (key ARN, resource name, key
	 * id URL); NULL for local stores. */
	const char *remote_id;
	unsigned int bits;             /* modulus size in bits */
	uint32_t properties;           /* FV_KEY_PROP_* that hold */
	uint32_t properties_known;     /* FV_KEY_PROP_* the plugin determined */
} fv_key_description;

/* Callback for key_list: one call per key; return non-zero to stop. */
typedef int (*fv_key_list_cb)(void *arg, const char *reference,
                              const char *description);

typedef struct fv_provider {
	uint32_t abi_version;   /* FV_PROVIDER_ABI_VERSION the plugin was built with */
	uint32_t struct_size;   /* sizeof(struct fv_provider) in the plugin */

	/* describe: shown by `flowvault plugins`. */
	const char *name;       /* must equal the file name without ".so" */
	const char *version;    /* the plugin's own version, e.g. "1.2.0" */
	uint32_t capabilities;  /* FV_CAP_* bits; unset bits mean NULL below */
	/* Fields a key entry may contain besides "provider" and the host's own
	 * fields; terminated by an entry whose name is NULL. The host refuses
	 * unknown fields and wrong types before calling instance_open. */
	const fv_config_field *config_fields;

	/*
	 * Open a provider instance for one configured key entry: parse `cfg`,
	 * connect to the backend as needed. Do not require the key to exist
	 * (key_generate is called on an instance too).
	 */
	int (*instance_open)(const fv_config *cfg, fv_instance **out);
	void (*instance_close)(fv_instance *inst);

	/*
	 * Generate an RSA-2048 key pair inside the backend at the reference the
	 * configuration names. Refuse with FV_ERR_EXISTS if something is there
	 * already; on failure leave nothing behind. Optional (FV_CAP_GENERATE).
	 * The host may call key_open on the same instance right after: a plugin
	 * may hand over the key it just made instead of asking for secrets again.
	 */
	int (*key_generate)(fv_instance *inst);

	/* Open the configured key. FV_ERR_NOT_FOUND if it does not exist. */
	int (*key_open)(fv_instance *inst, fv_pkey **out);
	void (*key_close)(fv_pkey *key);

	/*
	 * The public key as DER SubjectPublicKeyInfo. `der` may be NULL to ask
	 * for the size. On FV_ERR_BUFFER_TOO_SMALL *len holds the size needed.
	 */
	int (*key_public_der)(fv_pkey *key, unsigned char *der, size_t *len);

	/*
	 * RSA-OAEP decryption: hash SHA-256, MGF1 with SHA-256, empty label.
	 * `in_len` must equal the modulus size; the plain text (at most
	 * in_len - 66 bytes) goes to `out`, of capacity *out_len, and *out_len
	 * is set to its length. A ciphertext that fails the padding check gives
	 * FV_ERR_DECRYPT. May run concurrently (see Threads).
	 */
	int (*key_decrypt)(fv_pkey *key, const unsigned char *in, size_t in_len,
	                   unsigned char *out, size_t *out_len);

	/*
	 * Optional (FV_CAP_INFO): one line about the key for `flowvault keys`,
	 * such as "oaep: token; label=flows". Written NUL-terminated into `buf`,
	 * truncated to `len`.
	 */
	int (*key_info)(fv_pkey *key, char *buf, size_t len);

	/* Optional (FV_CAP_LIST): enumerate keys the instance's backend holds. */
	int (*key_list)(fv_instance *inst, fv_key_list_cb cb, void *arg);

	/* Optional (FV_CAP_DELETE): destroy the configured key in the backend. */
	int (*key_delete)(fv_instance *inst);

	/* ---- ABI 1.1 ---- */

	/*
	 * Optional (FV_CAP_DESCRIBE): structured facts about an open key (see
	 * fv_key_description). When present the host uses it instead of
	 * key_info. Must not do a private-key operation.
	 */
	int (*key_describe)(fv_pkey *key, fv_key_description *out);
} fv_provider;

/* The 1.0 layout of fv_provider; the host refuses a shorter table. */
#define FV_PROVIDER_MIN_SIZE \
	(offsetof(fv_provider, key_delete) + sizeof(void (*)(void)))

/*
 * The entry point. `host_abi_version` is the host's FV_PROVIDER_ABI_VERSION;
 * `host` stays valid until the plugin is unloaded. Return FV_OK and set *out
 * to the plugin's table, or return FV_ERR_PLUGIN (after host->error when the
 * host table is usable) to decline, e.g. for an unknown major version.
 */
typedef int (*fv_provider_entry_fn)(uint32_t host_abi_version,
                                    const fv_host *host,
                                    const fv_provider **out);

/*
 * The versioning rules as a plugin's entry point applies them: FV_OK when
 * the host speaks this major version and its table holds the 1.0 members,
 * else FV_ERR_PLUGIN. Nothing is reported through the host table then: with
 * another major version its layout is unknown.
 */
static inline int fv_provider_host_check(uint32_t host_abi_version,
                                         const fv_host *host)
{
	if (!host ||
	    FV_PROVIDER_ABI_MAJOR_OF(host_abi_version) != FV_PROVIDER_ABI_MAJOR ||
	    FV_PROVIDER_ABI_MAJOR_OF(host->abi_version) != FV_PROVIDER_ABI_MAJOR ||
	    host->struct_size < FV_HOST_MIN_SIZE)
		return FV_ERR_PLUGIN;
	return FV_OK;
}

#if defined(__GNUC__) || defined(__clang__)
#define FV_PROVIDER_EXPORT __attribute__((visibility("default")))
#else
#define FV_PROVIDER_EXPORT
#endif

/* Declare the entry point in a plugin:
 *     FV_PROVIDER_DEFINE_ENTRY(my_entry_function)
 */
#define FV_PROVIDER_DEFINE_ENTRY(fn)                                        \
	FV_PROVIDER_EXPORT int flowvault_provider_entry(                        \
		uint32_t fv_host_abi_version_, const fv_host *fv_host_,             \
		const fv_provider **fv_out_);                                       \
	FV_PROVIDER_EXPORT int flowvault_provider_entry(                        \
		uint32_t fv_host_abi_version_, const fv_host *fv_host_,             \
		const fv_provider **fv_out_)                                        \
	{                                                                       \
		return fn(fv_host_abi_version_, fv_host_, fv_out_);                 \
	}

#ifdef __cplusplus
}
#endif

#endif /* FLOWVAULT_PROVIDER_H */
