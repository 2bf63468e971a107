/*
 * libflowvault: keep the WhatsApp Flows private key in its store (PEM file,
 * HSM, TPM) and use it through key-provider plugins.
 *
 * Conventions, everywhere in this API:
 *  - Functions that can fail return an fv_status (0 or a negative FV_ERR_*
 *    code, defined in provider.h); results come back through out-parameters,
 *    which come first.
 *  - After a failure, fv_error_last() on the same thread gives the status and
 *    a message that names the object and says what to do. Messages never
 *    contain secrets.
 *  - Every fv_*_open/new has a matching fv_*_free; fv_free releases buffers
 *    this library returns.
 *  - A context may be shared by threads only for reading; separate fv_key
 *    handles may be used from separate threads, and fv_key_decrypt may be
 *    called concurrently on one handle.
 */
#ifndef FLOWVAULT_H
#define FLOWVAULT_H

#include <stddef.h>
#include <stdint.h>

#include <flowvault/provider.h> /* fv_status and log levels */

#ifdef __cplusplus
extern "C" {
#endif

#define FLOWVAULT_VERSION "0.1.0"

/* Marks the functions libflowvault exports; everything else is hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define FV_API __attribute__((visibility("default")))
#else
#define FV_API
#endif

/* ---- Errors ---- */

typedef struct fv_error {
	int status;          /* an fv_status */
	const char *message; /* never NULL; "" when there is none */
} fv_error;

/* The last error recorded on this thread. Valid until the next call into
 * libflowvault on this thread. */
FV_API const fv_error *fv_error_last(void);
FV_API void fv_error_clear(void);
/* A short name for a status, e.g. "auth" for FV_ERR_AUTH. */
FV_API const char *fv_status_name(int status);

/* Free a buffer returned by this library. */
FV_API void fv_free(void *ptr);

/* ---- Versions ---- */

/* A component libflowvault runs with, as it reports itself at run time. */
typedef struct fv_library_version {
	const char *name;     /* "libflowvault", "provider-abi", "OpenSSL", ... */
	const char *version;
} fv_library_version;

/* libflowvault itself, the provider ABI version it loads plugins with, and
 * the libraries it is running with (OpenSSL, json-c, libcurl,
 * libmicrohttpd); the array ends with a NULL name. */
FV_API const fv_library_version *fv_library_versions(void);

/* ---- Logging ---- */

typedef void (*fv_log_fn)(void *arg, int level, const char *message);

/* Send library and plugin log lines at `level` or more severe to `fn`
 * (process-wide; default: stderr at FV_LOG_WARNING). */
FV_API void fv_log_set(fv_log_fn fn, void *arg, int level);

/* ---- Context: one configuration and its plugins ---- */

typedef struct fv_context fv_context;

enum fv_context_flags {
	/* Open without a configuration file when none is found (for
	 * `flowvault plugins`): no keys, default plugin path. */
	FV_CONTEXT_CONFIG_OPTIONAL = 1u << 0
};

/*
 * Read the configuration: `config_path` if not NULL, else $FLOWVAULT_CONFIG,
 * $XDG_CONFIG_HOME/flowvault/config.json (or ~/.config/flowvault/config.json),
 * /etc/flowvault/config.json: the first that exists. Unknown fields, wrong
 * types and literal secrets are errors naming the JSON path.
 */
FV_API int fv_context_open(fv_context **out, const char *config_path,
                    unsigned int flags);
FV_API void fv_context_free(fv_context *ctx);
/* The file the configuration was read from, or NULL. */
FV_API const char *fv_context_config_path(const fv_context *ctx);

/* Configured key names, in file order. */
FV_API size_t fv_context_key_count(const fv_context *ctx);
FV_API const char *fv_context_key_name(const fv_context *ctx, size_t index);
/* The provider a configured key names (its "provider" field), or NULL. */
FV_API const char *fv_context_key_provider(const fv_context *ctx, const char *name);

/* ---- Plugins ---- */

typedef struct fv_plugin_info {
	const char *name;        /* provider name (file name without .so) */
	const char *path;        /* the file */
	const char *version;     /* plugin's own version; NULL when refused */
	uint32_t abi_version;    /* 0 when unknown */
	uint32_t capabilities;   /* FV_CAP_* */
	const char *refused;     /* NULL if loaded, else why it was refused */
} fv_plugin_info;

typedef int (*fv_plugin_cb)(void *arg, const fv_plugin_info *info);

/* Every plugin file on the search path (config plugin_path, then
 * $FLOWVAULT_PLUGIN_PATH, then <executable dir>/../lib/flowvault/plugins),
 * loaded or refused, in search order. A name found twice is listed twice;
 * the first one is used. */
FV_API int fv_plugins_foreach(fv_context *ctx, fv_plugin_cb cb, void *arg);

/* The directories searched, in order, joined with ':' (owned by ctx). */
FV_API const char *fv_plugins_search_path(fv_context *ctx);

/* ---- Keys ---- */

typedef struct fv_key fv_key;

/* Generate the key a configuration entry names, inside its backend.
 * FV_ERR_EXISTS if it is there already; nothing is changed on failure.
 * When `out` is not NULL the new key is also opened, without asking for
 * its secrets a second time. */
FV_API int fv_key_generate(fv_key **out, fv_context *ctx, const char *name);

FV_API int fv_key_open(fv_key **out, fv_context *ctx, const char *name);
FV_API void fv_key_free(fv_key *key);

FV_API const char *fv_key_name(const fv_key *key);
FV_API const char *fv_key_provider(const fv_key *key);

/* SubjectPublicKeyInfo, DER (fv_free it). */
FV_API int fv_key_public_der(unsigned char **der, size_t *der_len, fv_key *key);
/* SubjectPublicKeyInfo, PEM "-----BEGIN PUBLIC KEY-----", NUL-terminated,
 * byte-identical to `openssl pkey -pubout` (fv_free it). */
FV_API int fv_key_public_pem(char **pem, fv_key *key);
/* Lowercase hex SHA-256 of the SPKI DER: 64 characters and a NUL. */
#define FV_FINGERPRINT_HEX_SIZE 65
FV_API int fv_key_fingerprint(char hex[FV_FINGERPRINT_HEX_SIZE], fv_key *key);

/* Fingerprint of a DER SPKI held by the caller (e.g. read back from Graph). */
FV_API int fv_spki_fingerprint(char hex[FV_FINGERPRINT_HEX_SIZE],
                        const unsigned char *der, size_t der_len);

/* RSA-OAEP-SHA256 decryption inside the backend; *out_len is the capacity
 * of `out` on input and the plain-text length on output. */
FV_API int fv_key_decrypt(unsigned char *out, size_t *out_len, fv_key *key,
                   const unsigned char *in, size_t in_len);

/* A line about the key from its plugin (e.g. "oaep: token"), or "" when the
 * plugin has none. */
FV_API int fv_key_info(char *buf, size_t len, fv_key *key);

/* Flags for fv_key_open_ex. */
enum fv_key_open_flags {
	/* Open a key even when its properties are refused by
	 * keys.<name>.require_non_extractable, to report them (`keys`,
	 * `doctor`); fv_key_policy_check says whether it may be used. */
	FV_KEY_OPEN_INSPECT = 1u << 0
};

FV_API int fv_key_open_ex(fv_key **out, fv_context *ctx, const char *name,
                          unsigned int flags);

/* One property of a key that weakens its protection. */
typedef struct fv_key_warning {
	const char *property;  /* stable name: "extractable", "can-sign", ... */
	const char *message;   /* what it means, for people */
	int refused;           /* refused while require_non_extractable is true */
} fv_key_warning;

/* Structured facts about an open key; owned by the key. Strings may be
 * NULL when the plugin does not say (plugins before ABI 1.1 give `info`
 * only). */
typedef struct fv_key_details {
	const char *oaep;        /* where OAEP is checked: "token", "host", "tpm", a service */
	const char *backend;     /* "file", "token", "tpm", "engine", a service */
	const char *location;    /* where the key is, for people */
	const char *remote_id;   /* identity in a remote service, or NULL */
	unsigned int bits;       /* modulus size (always set) */
	uint32_t properties;     /* FV_KEY_PROP_* that hold */
	uint32_t properties_known;
	const fv_key_warning *warnings;
	size_t warning_count;
	int require_non_extractable; /* the key's setting (default 1) */
	const char *info;        /* the plugin's key_info line, or "" */
} fv_key_details;

FV_API int fv_key_details_get(const fv_key_details **out, fv_key *key);

/* FV_OK when the key may be used under its require_non_extractable
 * setting; FV_ERR_PERMISSION naming each refused property otherwise. */
FV_API int fv_key_policy_check(fv_key *key);

/* ---- Targets a key is meant for (configuration "phone_numbers", "waba_id") ---- */

FV_API size_t fv_context_key_phone_count(const fv_context *ctx, const char *name);
FV_API const char *fv_context_key_phone(const fv_context *ctx, const char *name,
                                 size_t index);
/* NULL when the key entry names no WABA. */
FV_API const char *fv_context_key_waba(const fv_context *ctx, const char *name);

/* ---- Secret references ---- */

/* Resolve "env:NAME", "file:PATH" or "prompt"; free with fv_secret_free,
 * which wipes. `purpose` is shown at the prompt. */
FV_API int fv_secret_resolve(char **out, size_t *out_len, const char *reference,
                      const char *purpose);
FV_API void fv_secret_free(char *secret, size_t len);
/* FV_OK when `reference` has the form of a secret reference. */
FV_API int fv_secret_check_reference(const char *reference);

#ifdef __cplusplus
}
#endif

#include <flowvault/graph.h>
#include <flowvault/flow.h>
#include <flowvault/lifecycle.h>

#endif /* FLOWVAULT_H */
