/*
 * skeleton: a minimal flowvault key-provider plugin, written to be copied.
 *
 * It keeps an RSA private key in an UNENCRYPTED PEM file named by the key
 * entry's "path" field and does the one private-key operation flowvault
 * needs, RSA-OAEP-SHA256 decryption, with OpenSSL. A real plugin would talk
 * to a token, a TPM or a remote KMS instead; the shape stays the same:
 *
 *     {"keys": {"demo": {"provider": "skeleton", "path": "demo.pem"}}}
 *
 * The file is built against <flowvault/provider.h> alone (found with
 * `pkg-config --cflags flowvault-provider`) plus whatever library talks to
 * the key store -- here libcrypto. It never includes flowvault.h and never
 * links libflowvault: everything the host offers comes in the fv_host table.
 *
 * The sections are numbered in the order the host uses them; the table (2)
 * and the entry point (1) come last in the file because C wants each
 * function defined before the table that points to it:
 *   1. the entry point and the version checks  (skeleton_entry, at the end)
 *   2. the function table and capabilities     (skeleton_provider)
 *   3. declared configuration fields           (skeleton_fields)
 *   4. instance_open / instance_close          (per configured key entry)
 *   5. key_open / key_close                    (the key itself)
 *   6. key_public_der                          (the buffer-size protocol)
 *   7. key_decrypt                             (the one private-key operation)
 *   8. key_info                                (an optional operation)
 * Every failure returns an FV_ERR_* code through svc->error() with a
 * message that names the object and says what to do about it.
 */
#define _POSIX_C_SOURCE 200809L /* strdup with -std=c11 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <flowvault/provider.h>

#define SKELETON_VERSION "1.0.0"
#define SKELETON_MIN_BITS 2048

/*
 * The host's service table, kept from the entry point. The host guarantees
 * it stays valid until the plugin is unloaded, and the entry point runs
 * before any other call, so a plain static pointer is enough.
 */
static const fv_host *svc;

/*
 * The ABI declares fv_instance and fv_pkey as opaque types: each plugin
 * defines them as it likes. The host only ever passes the pointers back.
 */
struct fv_instance {
	char *location; /* "keys.<name>", for messages about this entry */
	char *path;     /* absolute: "path" is declared FV_FIELD_PATH */
};

struct fv_pkey {
	EVP_PKEY *pkey; /* read-only after key_open, so safe to share */
	size_t modulus_bytes;
	char *path;
};

/* OpenSSL's reason for the last failure, for a message (never a secret). */
static const char *openssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (!e)
		snprintf(buf, len, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

/* ---- 3. Configuration fields -------------------------------------------
 *
 * Every member a key entry may hold besides "provider" (and the host's own
 * "phone_numbers" and "waba_id") is declared here. The host refuses unknown
 * members and wrong JSON types before instance_open is called, so the
 * plugin never parses JSON. Flags tell the host more:
 *   FV_FIELD_REQUIRED       the entry is refused without it;
 *   FV_FIELD_KEY_REFERENCE  it names the key inside the store (what differs
 *                           between two keys of the same store);
 *   FV_FIELD_PATH           a file name: the host makes it absolute against
 *                           the configuration file's directory.
 * A passphrase or PIN would be FV_FIELD_SECRET: the host then refuses a
 * literal value and the plugin resolves the reference with
 * svc->secret_resolve() and wipes it with svc->secret_free().
 */
static const fv_config_field skeleton_fields[] = {
	{ "path", FV_FIELD_STRING,
	  FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE | FV_FIELD_PATH,
	  "unencrypted RSA private key, PEM (PKCS#1 or PKCS#8)" },
	{ NULL, 0, 0, NULL } /* terminator */
};

/* ---- 4. Instances -------------------------------------------------------
 *
 * One instance per configured key entry. Read the configuration here and
 * connect to the store if it has a connection; do NOT require the key to
 * exist yet, since `flowvault generate` also starts from an instance.
 * Strings from config_string() belong to the host: copy what you keep.
 */
static int skeleton_instance_open(const fv_config *cfg, fv_instance **out)
{
	const char *location = svc->config_location(cfg), *path = NULL;
	fv_instance *inst;

	if (svc->config_string(cfg, "path", &path) != FV_OK)
		/* Unreachable in practice (the field is REQUIRED), but cheap. */
		return svc->error(FV_ERR_CONFIG, "%s.path: missing; name the PEM key file",
		                   location);
	inst = calloc(1, sizeof(*inst));
	if (!inst || !(inst->location = strdup(location)) || !(inst->path = strdup(path))) {
		if (inst)
			free(inst->location);
		free(inst);
		return svc->error(FV_ERR_NOMEM, "out of memory");
	}
	svc->log(FV_LOG_DEBUG, "skeleton: %s uses %s", inst->location, inst->path);
	*out = inst;
	return FV_OK;
}

static void skeleton_instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	free(inst->location);
	free(inst->path);
	free(inst);
}

/* ---- 5. Keys ------------------------------------------------------------
 *
 * key_open finds the configured key and returns a handle. FV_ERR_NOT_FOUND
 * means "no such key"; other codes say why an existing key cannot be used. Here the private key is
 * loaded into this process, as in the bundled "pem" provider; a token or
 * TPM plugin would only keep a handle to the object in the store. (The pem
 * provider also refuses key files that others can read; a skeleton that
 * accepts unencrypted keys is for trying the ABI out, not for production.)
 */

/* PEM password callback that refuses: this provider has no passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf; (void)size; (void)rwflag; (void)arg;
	return -1;
}

static int skeleton_key_open(fv_instance *inst, fv_pkey **out)
{
	char why[256];
	EVP_PKEY *pkey;
	fv_pkey *key;
	FILE *f;
	int bits;

	f = fopen(inst->path, "re");
	if (!f) {
		int err = errno;

		if (err == ENOENT)
			return svc->error(FV_ERR_NOT_FOUND,
			                   "%s.path: no such file '%s'; create the key there",
			                   inst->location, inst->path);
		return svc->error(FV_ERR_BACKEND, "%s.path: cannot open '%s': %s",
		                   inst->location, inst->path, strerror(err));
	}
	pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!pkey)
		return svc->error(FV_ERR_BACKEND,
		                   "%s.path: '%s' is not an unencrypted PEM private key (%s); "
		                   "use the pem provider for encrypted keys",
		                   inst->location, inst->path, openssl_reason(why, sizeof(why)));
	bits = EVP_PKEY_get_bits(pkey);
	if (!EVP_PKEY_is_a(pkey, "RSA") || bits < SKELETON_MIN_BITS) {
		EVP_PKEY_free(pkey);
		return svc->error(FV_ERR_UNSUPPORTED,
		                   "%s.path: '%s' must hold an RSA key of at least %d bits "
		                   "(WhatsApp Flows uses RSA-2048)",
		                   inst->location, inst->path, SKELETON_MIN_BITS);
	}
	key = calloc(1, sizeof(*key));
	if (!key || !(key->path = strdup(inst->path))) {
		free(key);
		EVP_PKEY_free(pkey);
		return svc->error(FV_ERR_NOMEM, "out of memory");
	}
	key->pkey = pkey;
	key->modulus_bytes = (size_t)EVP_PKEY_get_size(pkey);
	*out = key;
	return FV_OK;
}

static void skeleton_key_close(fv_pkey *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey); /* OpenSSL wipes the private key material */
	free(key->path);
	free(key);
}

/* ---- 6. The public key --------------------------------------------------
 *
 * The host owns `der` and says how big it is in *len. Two rules:
 *   - der == NULL asks for the size: set *len, return FV_OK;
 *   - a buffer that is too small: set *len to the size needed and return
 *     FV_ERR_BUFFER_TOO_SMALL (no message needed; the host retries).
 * The result is a DER SubjectPublicKeyInfo -- what `openssl pkey -pubout
 * -outform DER` writes -- from which the host makes the PEM and fingerprint.
 */
static int skeleton_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	char why[256];
	unsigned char *p = der;
	int need = i2d_PUBKEY(key->pkey, NULL);

	if (need <= 0)
		return svc->error(FV_ERR_BACKEND, "'%s': cannot encode the public key (%s)",
		                   key->path, openssl_reason(why, sizeof(why)));
	if (!der || *len < (size_t)need) {
		*len = (size_t)need;
		return der ? FV_ERR_BUFFER_TOO_SMALL : FV_OK;
	}
	if (i2d_PUBKEY(key->pkey, &p) != need)
		return svc->error(FV_ERR_BACKEND, "'%s': cannot encode the public key (%s)",
		                   key->path, openssl_reason(why, sizeof(why)));
	*len = (size_t)need;
	return FV_OK;
}

/* ---- 7. Decryption ------------------------------------------------------
 *
 * Exactly one scheme: RSA-OAEP, SHA-256, MGF1 with SHA-256, empty label.
 * The input is one modulus long; a ciphertext that fails the padding check
 * is FV_ERR_DECRYPT (a bad request, not a broken store).
 *
 * Threads: the host may call this concurrently, on one key or several. An
 * EVP_PKEY may be shared by threads for reading, and every call builds its
 * own EVP_PKEY_CTX, so nothing here needs a lock. A store with one session
 * or context would take a mutex around its own calls instead.
 */
static int skeleton_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                                unsigned char *out, size_t *out_len)
{
	EVP_PKEY_CTX *ctx;
	unsigned char *plain;
	size_t plain_len;
	int rc = FV_OK;

	if (in_len != key->modulus_bytes)
		return svc->error(FV_ERR_DECRYPT,
		                   "ciphertext is %zu bytes, the key '%s' needs %zu",
		                   in_len, key->path, key->modulus_bytes);
	/* Decrypt into our own buffer, so a small `out` still gives a precise
	 * FV_ERR_BUFFER_TOO_SMALL instead of an OpenSSL length error. */
	plain_len = key->modulus_bytes;
	plain = malloc(plain_len);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
	if (!plain || !ctx) {
		rc = svc->error(FV_ERR_NOMEM, "out of memory");
	} else if (EVP_PKEY_decrypt_init(ctx) <= 0 ||
	           EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	           EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", NULL) <= 0 ||
	           EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA256", NULL) <= 0) {
		char why[256];

		rc = svc->error(FV_ERR_BACKEND, "'%s': cannot set up RSA-OAEP-SHA256 (%s)",
		                 key->path, openssl_reason(why, sizeof(why)));
	} else if (EVP_PKEY_decrypt(ctx, plain, &plain_len, in, in_len) <= 0) {
		/* Deliberately no OpenSSL reason: padding oracles live in details. */
		ERR_clear_error();
		rc = svc->error(FV_ERR_DECRYPT,
		                 "ciphertext does not decrypt with the key '%s' "
		                 "(wrong key, or not RSA-OAEP-SHA256)", key->path);
	} else if (plain_len > *out_len) {
		*out_len = plain_len;
		rc = FV_ERR_BUFFER_TOO_SMALL;
	} else {
		memcpy(out, plain, plain_len);
		*out_len = plain_len;
	}
	EVP_PKEY_CTX_free(ctx);
	if (plain)
		OPENSSL_clear_free(plain, key->modulus_bytes); /* plain text is sensitive */
	return rc;
}

/* ---- 8. An optional operation ------------------------------------------
 *
 * Optional members are used only when their capability bit is set in the
 * table; without FV_CAP_INFO this function would simply be left NULL.
 * key_info gives `flowvault keys` one line saying where OAEP runs.
 */
static int skeleton_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (len)
		snprintf(buf, len, "oaep: in process (OpenSSL); file %s", key->path);
	return FV_OK;
}

/* ---- 2. The function table ----------------------------------------------
 *
 * Static, so it and its strings stay valid until the plugin is unloaded.
 * abi_version and struct_size come first and are what the host checks
 * before anything else: fill them from the header you compile against.
 * `name` must equal the file name without ".so" (skeleton.so). Capability
 * bits announce the optional members; key_generate, key_list and
 * key_delete are left NULL, and their bits unset.
 */
static const fv_provider skeleton_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "skeleton",
	.version = SKELETON_VERSION,
	.capabilities = FV_CAP_INFO,
	.config_fields = skeleton_fields,
	.instance_open = skeleton_instance_open,
	.instance_close = skeleton_instance_close,
	.key_generate = NULL,
	.key_open = skeleton_key_open,
	.key_close = skeleton_key_close,
	.key_public_der = skeleton_key_public_der,
	.key_decrypt = skeleton_key_decrypt,
	.key_info = skeleton_key_info,
	.key_list = NULL,
	.key_delete = NULL,
};

/* ---- 1. The entry point -------------------------------------------------
 *
 * Called once, right after dlopen(), before anything else. Check the host
 * the same way the host checks us:
 *   - another major version means incompatible tables: decline;
 *   - a host table shorter than the 1.0 layout cannot be trusted: decline
 *     without calling into it;
 *   - a newer minor host is fine: we only use members we know, and
 *     struct_size tells which of them it has.
 * fv_provider_host_check() in provider.h applies exactly these rules.
 * Do nothing else here: the host may run the entry point once more in a
 * short-lived child process to vet the plugin, so opening devices, starting
 * threads or touching the store belongs in instance_open.
 */
static int skeleton_entry(uint32_t host_abi_version, const fv_host *h,
                          const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, h) != FV_OK)
		return FV_ERR_PLUGIN;
	svc = h;
	*out = &skeleton_provider;
	return FV_OK;
}

/* FV_PROVIDER_DEFINE_ENTRY declares and defines `flowvault_provider_entry`
 * with default visibility, so the plugin can (and should) be built with
 * -fvisibility=hidden: nothing else leaks into the host's symbol space. */
FV_PROVIDER_DEFINE_ENTRY(skeleton_entry)
