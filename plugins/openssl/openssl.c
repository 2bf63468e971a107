/*
 * The `openssl` key provider: a key reached through OpenSSL's loadable
 * backends, for sites that already use them.
 *
 *  - "engine": a legacy ENGINE (engine.c), e.g. libp11's "pkcs11", with
 *    "engine_commands" applied before ENGINE_init; "uri" is the key id the
 *    engine understands.
 *  - "providers": providers loaded besides "default" into a library context
 *    of our own (OSSL_LIB_CTX_new), so the host's default context, which
 *    libflowvault and the application use, is never changed; "uri" is an
 *    OSSL_STORE URI or an absolute path.
 *
 * The key is used only through EVP_PKEY_decrypt with RSA-OAEP, SHA-256,
 * MGF1-SHA-256. A backend that refuses those parameters gets
 * FV_ERR_UNSUPPORTED: falling back to another padding would break the Flows
 * protocol and weaken the key's use.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "openssl_plugin.h"

#define PLUGIN_VERSION "0.1.0"
#define MIN_RSA_BITS 2048
/* Stop reading a store that keeps yielding objects that are not keys. */
#define MAX_STORE_OBJECTS 64

const fv_host *ossl_host;

struct fv_instance {
	int refs;                   /* the instance, plus one per open key */
	char *location;             /* "keys.flows" */
	char *uri;
	char *secret_ref;           /* pin or passphrase reference, or NULL */
	const char *secret_field;   /* "pin" or "passphrase" */
	struct engine_backend *engine;
	OSSL_LIB_CTX *libctx;       /* providers mode only */
	OSSL_PROVIDER **providers;  /* "default" first, then the configured ones */
	const char **provider_names;/* configured name of each (borrowed from cfg) */
	void **provider_dls;        /* dlopen handle of each checked module, or NULL */
	int *provider_fds;          /* its checked descriptor, open while loaded, or -1 */
	size_t provider_count;
	char *store_propq;          /* "?provider=<first configured>" or NULL */
	int allow_host_oaep;
};

struct fv_pkey {
	fv_instance *inst;
	EVP_PKEY *pkey;
	unsigned char *spki;        /* SubjectPublicKeyInfo DER, cached */
	size_t spki_len;
	size_t modulus_len;         /* ciphertext length */
	size_t out_cap;             /* what EVP_PKEY_decrypt may write */
	unsigned char *modulus;     /* big-endian, modulus_len bytes, or NULL */
	char *propq;                /* steers fetches to the key's own provider */
	/* Engines and hardware-backed providers keep one device session; they
	 * are not all safe to call from two threads at once. */
	int serialize;
	pthread_mutex_t lock;
	char info[256];
	const char *backend;        /* "engine", "provider", "file" */
	const char *oaep;           /* "host" when known or assumed, else NULL */
	char location[512];
	/* Health: the last time a self-made ciphertext decrypted (seconds,
	 * CLOCK_MONOTONIC), to tell a bad ciphertext from a failing backend. */
	long healthy_at;
};

static const fv_config_field config_fields[] = {
	{ "engine", FV_FIELD_STRING, 0,
	  "OpenSSL ENGINE id, e.g. \"pkcs11\" (instead of providers)" },
	{ "engine_commands", FV_FIELD_STRING_ARRAY, 0,
	  "ENGINE control commands applied in order before ENGINE_init: "
	  "\"NAME=VALUE\", or \"NAME\" for a command without a value" },
	{ "providers", FV_FIELD_STRING_ARRAY, 0,
	  "OpenSSL providers to load besides \"default\", e.g. [\"tpm2\"]" },
	{ "uri", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE,
	  "OSSL_STORE URI or absolute path (providers), or the ENGINE's key id" },
	{ "pin", FV_FIELD_SECRET, 0,
	  "secret reference answering the backend's PIN prompt" },
	{ "passphrase", FV_FIELD_SECRET, 0,
	  "secret reference answering the backend's passphrase prompt "
	  "(set pin or passphrase, not both)" },
	{ "allow_host_oaep", FV_FIELD_BOOL, 0,
	  "accept an ENGINE key although the ENGINE may remove the OAEP padding on "
	  "this host (libp11 does when the token refuses OAEP-SHA256; default false)" },
	{ NULL, 0, 0, NULL }
};

/* ---- configuration ---- */

static int nomem(const char *location)
{
	return ossl_host->error(FV_ERR_NOMEM, "%s: out of memory", location);
}

static int optional_string(const fv_config *cfg, const char *name,
                           const char **out)
{
	int rc = ossl_host->config_string(cfg, name, out);

	if (rc == FV_ERR_NOT_FOUND) {
		*out = NULL;
		return FV_OK;
	}
	return rc;
}

/* Read the string array `name` into a NULL-terminated vector of borrowed
 * strings (free only the vector). Absent: *out NULL, *count 0. */
static int string_array(const fv_config *cfg, const char *name,
                        const char *location, const char ***out, size_t *count)
{
	const char **v;
	size_t n, i;
	int rc = ossl_host->config_array_size(cfg, name, &n);

	*out = NULL;
	*count = 0;
	if (rc == FV_ERR_NOT_FOUND)
		return FV_OK;
	if (rc != FV_OK)
		return ossl_host->error(rc, "%s.%s: cannot read the list", location, name);
	v = calloc(n + 1, sizeof(*v));
	if (!v)
		return nomem(location);
	for (i = 0; i < n; i++) {
		rc = ossl_host->config_string_at(cfg, name, i, &v[i]);
		if (rc != FV_OK) {
			free(v);
			return ossl_host->error(FV_ERR_CONFIG,
				"%s.%s[%zu]: expected a string", location, name, i);
		}
	}
	*out = v;
	*count = n;
	return FV_OK;
}

static int has_scheme(const char *uri)
{
	const char *p = uri;

	/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
		return 0;
	while (*p && *p != ':' && *p != '/')
		p++;
	return *p == ':';
}

static void instance_unref(fv_instance *inst)
{
	size_t i;

	if (!inst || --inst->refs > 0)
		return;
	engine_backend_close(inst->engine);
	/* Unload in reverse order: "default" last, as it was loaded first. */
	for (i = inst->provider_count; i-- > 0;)
		OSSL_PROVIDER_unload(inst->providers[i]);
	OSSL_LIB_CTX_free(inst->libctx);
	inst->libctx = NULL;
	/* Only once OpenSSL let go of their code. */
	for (i = 0; inst->provider_dls && i <= inst->provider_count; i++)
		if (inst->provider_dls[i])
			dlclose(inst->provider_dls[i]);
	/* Then the descriptors: the loader knew each module by its name. */
	for (i = 0; inst->provider_fds && i <= inst->provider_count; i++)
		if (inst->provider_fds[i] >= 0)
			close(inst->provider_fds[i]);
	free(inst->providers);
	free(inst->provider_names);
	free(inst->provider_dls);
	free(inst->provider_fds);
	OSSL_LIB_CTX_free(inst->libctx);
	free(inst->store_propq);
	free(inst->secret_ref);
	free(inst->uri);
	free(inst->location);
	free(inst);
}

/* Where OpenSSL would look for provider `name`: $OPENSSL_MODULES (outside
 * setuid programs, as OpenSSL) or its built-in directory. */
static int provider_file(char *buf, size_t len, const char *name)
{
	const char *dir = secure_getenv("OPENSSL_MODULES");
	const char *builtin = OpenSSL_version(OPENSSL_MODULES_DIR);
	char unquoted[4096];
	size_t n;

	if (!dir || !dir[0]) {
		const char *q = strchr(builtin, '"'); /* MODULESDIR: "..." */

		if (!q)
			return -1;
		snprintf(unquoted, sizeof(unquoted), "%s", q + 1);
		n = strlen(unquoted);
		if (n && unquoted[n - 1] == '"')
			unquoted[n - 1] = '\0';
		dir = unquoted;
	}
	return snprintf(buf, len, "%s/%s.so", dir, name) < (int)len ? 0 : -1;
}

/*
 * A configured provider is code run in this process: its module file is
 * checked like flowvault's own plugins, opened once, and that descriptor is
 * what gets loaded: we dlopen it and hand its OSSL_provider_init to our
 * library context as a built-in under the provider's own name, so that
 * OpenSSL never looks the name up on disk and "?provider=NAME" still works.
 */
static int load_one_provider(fv_instance *inst, const char *name, size_t index)
{
	char path[4096], fd_path[FV_HOST_FD_PATH_MAX], err[256];
	OSSL_provider_init_fn *init;
	size_t n = inst->provider_count;
	int fd = -1, rc;

	if (strchr(name, '/') || provider_file(path, sizeof(path), name) != 0)
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.providers[%zu]: '%s' is not a provider name (e.g. \"tpm2\")",
			inst->location, index, name);
	if (!FV_HOST_HAS(ossl_host, file_open_checked))
		return ossl_host->error(FV_ERR_PLUGIN,
			"%s.providers[%zu]: this flowvault is too old to check provider files (provider ABI 1.1 needed)",
			inst->location, index);
	rc = ossl_host->file_open_checked(path, "OpenSSL provider", &fd);
	if (rc == FV_ERR_NOT_FOUND)
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.providers[%zu]: OpenSSL provider '%s' failed to load (no file '%s'); "
			"install it (tpm2-openssl provides 'tpm2', which also needs "
			"its TPM reachable: set TPM2OPENSSL_TCTI) or set "
			"OPENSSL_MODULES to the directory holding %s.so",
			inst->location, index, name, path, name);
	if (rc != FV_OK)
		return rc;
	inst->provider_fds[n] = fd; /* open until the module is unloaded */
	fv_host_fd_path(fd_path, fd);
	inst->provider_dls[n] = dlopen(fd_path, RTLD_NOW | RTLD_LOCAL);
	if (!inst->provider_dls[n])
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.providers[%zu]: '%s' cannot be loaded (%s)", inst->location, index,
			path, dlerror());
	*(void **)&init = dlsym(inst->provider_dls[n], "OSSL_provider_init");
	if (!init)
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.providers[%zu]: '%s' is not an OpenSSL provider (no OSSL_provider_init)",
			inst->location, index, path);
	inst->provider_names[n] = name;
	ERR_clear_error();
	if (OSSL_PROVIDER_add_builtin(inst->libctx, name, init) != 1 ||
	    !(inst->providers[n] = OSSL_PROVIDER_load(inst->libctx, name)))
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.providers[%zu]: OpenSSL provider '%s' failed to load (%s); "
			"install it (tpm2-openssl provides 'tpm2', which also needs "
			"its TPM reachable: set TPM2OPENSSL_TCTI) or set "
			"OPENSSL_MODULES to the directory holding %s.so",
			inst->location, index, name, ossl_error_text(err, sizeof(err)), name);
	inst->provider_count++;
	if (!inst->store_propq) {
		size_t len = strlen("?provider=") + strlen(name) + 1;

		inst->store_propq = malloc(len);
		if (!inst->store_propq)
			return nomem(inst->location);
		snprintf(inst->store_propq, len, "?provider=%s", name);
	}
	return FV_OK;
}

static int load_providers(fv_instance *inst, const char *const *names,
                          size_t count)
{
	char err[256];
	size_t i, j;
	int rc;

	inst->libctx = OSSL_LIB_CTX_new();
	inst->providers = calloc(count + 1, sizeof(*inst->providers)); // NOLINT(bugprone-sizeof-expression): an array of provider pointers
	inst->provider_names = calloc(count + 1, sizeof(*inst->provider_names)); // NOLINT(bugprone-sizeof-expression): an array of names
	inst->provider_dls = calloc(count + 2, sizeof(*inst->provider_dls)); // NOLINT(bugprone-sizeof-expression): an array of handles
	inst->provider_fds = malloc((count + 2) * sizeof(*inst->provider_fds));
	if (!inst->libctx || !inst->providers || !inst->provider_names || !inst->provider_dls ||
	    !inst->provider_fds)
		return nomem(inst->location);
	for (i = 0; i < count + 2; i++)
		inst->provider_fds[i] = -1;
	ERR_clear_error();
	/* "default" parses files (OSSL_STORE "file:"), hashes and encodes the
	 * public key; the others hold the keys. It is part of libcrypto. */
	inst->providers[0] = OSSL_PROVIDER_load(inst->libctx, "default");
	if (!inst->providers[0])
		return ossl_host->error(FV_ERR_BACKEND,
			"%s: cannot load OpenSSL's default provider (%s); check "
			"the OpenSSL installation", inst->location,
			ossl_error_text(err, sizeof(err)));
	inst->provider_names[0] = "default";
	inst->provider_count = 1;
	for (i = 0; i < count; i++) {
		if (!names[i][0])
			return ossl_host->error(FV_ERR_CONFIG,
				"%s.providers[%zu]: empty provider name", inst->location, i);
		if (strcmp(names[i], "default") == 0)
			continue; /* always loaded */
		for (j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return ossl_host->error(FV_ERR_CONFIG,
					"%s.providers[%zu]: '%s' is listed twice",
					inst->location, i, names[i]);
		rc = load_one_provider(inst, names[i], i);
		if (rc != FV_OK)
			return rc;
	}
	return FV_OK;
}

/* The configured name of a provider loaded into the instance's context. */
static const char *provider_display_name(const fv_instance *inst, const OSSL_PROVIDER *prov)
{
	size_t i;

	for (i = 0; i < inst->provider_count; i++)
		if (inst->providers[i] == prov)
			return inst->provider_names[i];
	return prov ? OSSL_PROVIDER_get0_name(prov) : "default";
}

static int openssl_instance_open(const fv_config *cfg, fv_instance **out)
{
	const char *location = ossl_host->config_location(cfg);
	const char *engine = NULL, *uri = NULL, *pin = NULL, *passphrase = NULL;
	int allow_host_oaep = 0;
	const char **commands = NULL, **providers = NULL;
	size_t command_count = 0, provider_count = 0;
	fv_instance *inst = NULL;
	int rc;

	*out = NULL;
	if ((rc = optional_string(cfg, "engine", &engine)) != FV_OK ||
	    (rc = optional_string(cfg, "uri", &uri)) != FV_OK ||
	    (rc = optional_string(cfg, "pin", &pin)) != FV_OK ||
	    (rc = optional_string(cfg, "passphrase", &passphrase)) != FV_OK)
		return ossl_host->error(rc, "%s: cannot read the configuration", location);
	if (ossl_host->config_bool(cfg, "allow_host_oaep", &allow_host_oaep) == FV_ERR_NOT_FOUND)
		allow_host_oaep = 0;
	if ((rc = string_array(cfg, "engine_commands", location, &commands,
	                       &command_count)) != FV_OK ||
	    (rc = string_array(cfg, "providers", location, &providers,
	                       &provider_count)) != FV_OK)
		goto done;

	rc = FV_ERR_CONFIG;
	if (!uri || !uri[0]) {
		ossl_host->error(rc, "%s.uri: required: an OSSL_STORE URI, an absolute "
		                 "path, or the ENGINE's key id", location);
		goto done;
	}
	if (engine && providers) {
		ossl_host->error(rc, "%s: set either \"engine\" or \"providers\", "
		                 "not both", location);
		goto done;
	}
	if (engine && !engine[0]) {
		ossl_host->error(rc, "%s.engine: empty ENGINE id (e.g. \"pkcs11\")",
		                 location);
		goto done;
	}
	if (commands && !engine) {
		ossl_host->error(rc, "%s.engine_commands: only meaningful with "
		                 "\"engine\"; remove it or name the ENGINE", location);
		goto done;
	}
	if (pin && passphrase) {
		ossl_host->error(rc, "%s: set \"pin\" or \"passphrase\", not both: "
		                 "both answer the backend's one prompt", location);
		goto done;
	}
	/* OSSL_STORE would read a relative path against the working directory,
	 * which is not where the configuration lives. */
	if (!engine && !has_scheme(uri) && uri[0] != '/') {
		ossl_host->error(rc, "%s.uri: '%s' is neither a URI nor an absolute "
		                 "path; write an absolute path or a file: URI",
		                 location, uri);
		goto done;
	}

	inst = calloc(1, sizeof(*inst));
	if (!inst) {
		rc = nomem(location);
		goto done;
	}
	inst->refs = 1;
	inst->allow_host_oaep = allow_host_oaep;
	inst->secret_field = pin ? "pin" : "passphrase";
	if (!(inst->location = strdup(location)) || !(inst->uri = strdup(uri)) ||
	    ((pin || passphrase) &&
	     !(inst->secret_ref = strdup(pin ? pin : passphrase)))) {
		rc = nomem(location);
		goto done;
	}
	if (engine)
		rc = engine_backend_open(&inst->engine, engine, commands,
		                         command_count, location);
	else
		rc = load_providers(inst, providers, provider_count);
	if (rc == FV_OK) {
		*out = inst;
		inst = NULL;
	}
done:
	instance_unref(inst);
	free(commands);
	free(providers);
	return rc;
}

static void openssl_instance_close(fv_instance *inst)
{
	instance_unref(inst);
}

/* ---- keys ---- */

/* Why loading failed, from what the prompt saw and OpenSSL's queue. */
static int load_failure(fv_instance *inst, const struct secret_prompt *prompt,
                        const char *via, int store_opened)
{
	char err[512];

	if (prompt->status != FV_OK)
		return prompt->status; /* the host's message says which reference */
	ossl_error_text(err, sizeof(err));
	if (prompt->asked && !inst->secret_ref)
		return ossl_host->error(FV_ERR_AUTH,
			"%s asks for a PIN or passphrase to open '%s'; set %s.pin "
			"(or .passphrase) to a secret reference (env:NAME, file:PATH "
			"or prompt)", via, inst->uri, inst->location);
	/* Engines and decoders word these differently; match what they say
	 * before guessing from the fact that a secret was asked for. */
	if (strcasestr(err, "pin incorrect") || strcasestr(err, "pin invalid") ||
	    strcasestr(err, "bad decrypt"))
		goto wrong_secret;
	if (strcasestr(err, "not found") || strcmp(err, "no detail from OpenSSL") == 0)
		return ossl_host->error(FV_ERR_NOT_FOUND,
			"%s found no private key at '%s' (%s); check %s.uri",
			via, inst->uri, err, inst->location);
	if (prompt->asked)
		goto wrong_secret;
	if (store_opened)
		return ossl_host->error(FV_ERR_NOT_FOUND,
			"'%s' holds no private key that %s can read (%s); a public "
			"key or certificate is not enough, and a key held by a provider "
			"(e.g. a TSS2 key file) needs it in %s.providers",
			inst->uri, via, err, inst->location);
	return ossl_host->error(FV_ERR_BACKEND,
		"%s cannot load the key '%s' (%s); check %s.uri, the "
		"backend's settings and that its token or device is present",
		via, inst->uri, err, inst->location);
wrong_secret:
	return ossl_host->error(FV_ERR_AUTH,
		"%s did not accept the %s for '%s' (%s); check %s.%s",
		via, inst->secret_field, inst->uri, err, inst->location,
		inst->secret_field);
}

/* A plain path or file: URI that does not exist is reported as such,
 * rather than as whatever the store loaders make of it. */
static int check_local_file(const fv_instance *inst)
{
	const char *path = inst->uri;
	struct stat st;

	if (strncmp(path, "file://", 7) == 0)
		path += 7;
	else if (strncmp(path, "file:", 5) == 0)
		path += 5;
	else if (has_scheme(path))
		return FV_OK;
	if (stat(path, &st) != 0)
		return ossl_host->error(errno == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_BACKEND,
			"%s.uri: cannot read '%s': %s", inst->location, path,
			strerror(errno));
	return FV_OK;
}

static int store_load(fv_instance *inst, UI_METHOD *ui,
                      struct secret_prompt *prompt, EVP_PKEY **pkey)
{
	OSSL_STORE_CTX *store;
	OSSL_STORE_INFO *info;
	int rc, i;

	*pkey = NULL;
	if ((rc = check_local_file(inst)) != FV_OK)
		return rc;
	store = OSSL_STORE_open_ex(inst->uri, inst->libctx, inst->store_propq,
	                           ui, prompt, NULL, NULL, NULL);
	if (!store)
		return load_failure(inst, prompt, "OSSL_STORE", 0);
	/* Only private keys; loaders that cannot filter ignore this. */
	(void)OSSL_STORE_expect(store, OSSL_STORE_INFO_PKEY);
	for (i = 0; i < MAX_STORE_OBJECTS && !*pkey && !OSSL_STORE_eof(store); i++) {
		info = OSSL_STORE_load(store);
		if (!info)
			continue;
		if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
			*pkey = OSSL_STORE_INFO_get1_PKEY(info);
		OSSL_STORE_INFO_free(info);
	}
	OSSL_STORE_close(store);
	return *pkey ? FV_OK : load_failure(inst, prompt, "OSSL_STORE", 1);
}

/*
 * What can be said about where the key is and who checks the OAEP padding.
 *
 * An ENGINE cannot tell: OpenSSL 3 decrypts with an ENGINE key either
 * through the engine's own EVP_PKEY_METHOD or through the default
 * provider's RSA cipher, which asks the engine for a raw RSA operation and
 * removes the padding here; libp11's method itself falls back to raw RSA
 * (CKM_RSA_X_509) plus the host's unpadding whenever the token refuses
 * CKM_RSA_PKCS_OAEP with SHA-256 (SoftHSM2 does), and reports neither. So
 * for an ENGINE key the OAEP check is taken to be on this host.
 * A provider's key: the provider does OAEP itself, where it likes (unknown);
 * the default provider's key is in this process.
 */
static void describe_backend(fv_pkey *key)
{
	const fv_instance *inst = key->inst;
	const OSSL_PROVIDER *prov = EVP_PKEY_get0_provider(key->pkey);
	const char *name = provider_display_name(inst, prov);

	if (inst->engine) {
		snprintf(key->info, sizeof(key->info),
		         "engine: %s; oaep: host assumed (an ENGINE does not say where "
		         "the padding is checked)", engine_backend_id(inst->engine));
		snprintf(key->location, sizeof(key->location), "ENGINE '%s', key '%s'",
		         engine_backend_id(inst->engine), inst->uri);
		key->backend = "engine";
		key->oaep = "host";
		key->serialize = 1;
		return;
	}
	snprintf(key->location, sizeof(key->location), "provider '%s', key '%s'", name, inst->uri);
	key->backend = "provider";
	if (strcmp(name, "default") == 0) {
		snprintf(key->info, sizeof(key->info), "provider: default; oaep: host");
		key->oaep = "host";
		return;
	}
	snprintf(key->info, sizeof(key->info), "provider: %s; oaep: unknown (inside the provider)",
	         name);
	key->oaep = NULL;
	{
		size_t len = strlen("?provider=") + strlen(name) + 1;

		key->propq = malloc(len);
		if (key->propq)
			snprintf(key->propq, len, "?provider=%s", name);
	}
	key->serialize = 1;
}

static void key_free(fv_pkey *key)
{
	if (!key)
		return;
	EVP_PKEY_free(key->pkey);
	OPENSSL_free(key->spki);
	OPENSSL_free(key->modulus);
	free(key->propq);
	pthread_mutex_destroy(&key->lock);
	instance_unref(key->inst);
	free(key);
}

/* Keep the modulus to tell a ciphertext that is out of range for this key
 * (a decryption error) from a failing device: tokens report both alike. */
static void load_modulus(fv_pkey *key)
{
	BIGNUM *n = NULL;

	if (EVP_PKEY_get_bn_param(key->pkey, "n", &n) > 0 &&
	    (key->modulus = OPENSSL_malloc(key->modulus_len)) != NULL &&
	    BN_bn2binpad(n, key->modulus, (int)key->modulus_len) < 0) {
		OPENSSL_free(key->modulus);
		key->modulus = NULL;
	}
	BN_free(n);
	ERR_clear_error();
}

static int check_key(fv_pkey *key)
{
	const fv_instance *inst = key->inst;
	unsigned char *p;
	int bits, len;
	char err[256];

	if (!EVP_PKEY_is_a(key->pkey, "RSA"))
		return ossl_host->error(FV_ERR_UNSUPPORTED,
			"'%s' is not an RSA key (type %s); WhatsApp Flows needs an "
			"RSA key of at least %d bits", inst->uri,
			EVP_PKEY_get0_type_name(key->pkey) ? EVP_PKEY_get0_type_name(key->pkey)
			                                   : "non-RSA",
			MIN_RSA_BITS);
	bits = EVP_PKEY_get_bits(key->pkey);
	if (bits < MIN_RSA_BITS)
		return ossl_host->error(FV_ERR_UNSUPPORTED,
			"'%s' is a %d-bit RSA key; WhatsApp Flows needs at least "
			"%d bits: create a new key", inst->uri, bits,
			MIN_RSA_BITS);
	/* From the bit count: some providers (tpm2-openssl) report their largest
	 * supported size through EVP_PKEY_get_size instead. */
	key->modulus_len = ((size_t)bits + 7) / 8;
	key->out_cap = (size_t)EVP_PKEY_get_size(key->pkey);
	if (key->out_cap < key->modulus_len)
		key->out_cap = key->modulus_len;
	ERR_clear_error();
	len = i2d_PUBKEY(key->pkey, NULL);
	if (len <= 0)
		return ossl_host->error(FV_ERR_BACKEND,
			"cannot encode the public key of '%s' (%s)",
			inst->uri, ossl_error_text(err, sizeof(err)));
	key->spki = OPENSSL_malloc((size_t)len);
	if (!key->spki)
		return nomem(inst->location);
	p = key->spki;
	if (i2d_PUBKEY(key->pkey, &p) != len)
		return ossl_host->error(FV_ERR_BACKEND,
			"cannot encode the public key of '%s' (%s)",
			inst->uri, ossl_error_text(err, sizeof(err)));
	key->spki_len = (size_t)len;
	load_modulus(key);
	return FV_OK;
}

static int openssl_key_open(fv_instance *inst, fv_pkey **out)
{
	struct secret_prompt prompt = {
		.reference = inst->secret_ref,
		.field = inst->secret_field,
		.location = inst->location,
		.status = FV_OK,
	};
	UI_METHOD *ui;
	fv_pkey *key;
	int rc;

	*out = NULL;
	key = calloc(1, sizeof(*key));
	if (!key)
		return nomem(inst->location);
	if (pthread_mutex_init(&key->lock, NULL) != 0) {
		free(key);
		return nomem(inst->location);
	}
	key->inst = inst;
	inst->refs++;

	ui = secret_prompt_method();
	if (!ui) {
		rc = nomem(inst->location);
		goto fail;
	}
	ERR_clear_error();
	if (inst->engine) {
		char via[96];

		snprintf(via, sizeof(via), "ENGINE '%s'", engine_backend_id(inst->engine));
		rc = engine_backend_load_key(inst->engine, inst->uri, ui, &prompt,
		                             &key->pkey)
		             ? FV_OK
		             : load_failure(inst, &prompt, via, 0);
	} else {
		rc = store_load(inst, ui, &prompt, &key->pkey);
	}
	UI_destroy_method(ui);
	if (rc != FV_OK)
		goto fail;
	describe_backend(key);
	if ((rc = check_key(key)) != FV_OK)
		goto fail;
	if (inst->engine && !inst->allow_host_oaep) {
		rc = ossl_host->error(FV_ERR_UNSUPPORTED,
			"ENGINE '%s' does not say whether the OAEP padding is checked in its device or "
			"on this host, and libp11's 'pkcs11' ENGINE checks it here whenever the token "
			"refuses OAEP-SHA256 (e.g. SoftHSM2). Use the pkcs11 plugin (\"provider\": "
			"\"pkcs11\"), which does OAEP in the token or refuses, or set "
			"\"allow_host_oaep\": true in %s to accept host unpadding",
			engine_backend_id(inst->engine), inst->location);
		goto fail;
	}
	ERR_clear_error();
	*out = key;
	return FV_OK;
fail:
	ERR_clear_error();
	key_free(key);
	return rc;
}

static void openssl_key_close(fv_pkey *key)
{
	key_free(key);
}

static int openssl_key_public_der(fv_pkey *key, unsigned char *der,
                                  size_t *len)
{
	size_t cap = *len;

	*len = key->spki_len;
	if (!der)
		return FV_OK;
	if (cap < key->spki_len)
		return FV_ERR_BUFFER_TOO_SMALL;
	memcpy(der, key->spki, key->spki_len);
	return FV_OK;
}

static int refused_oaep(const fv_pkey *key, const char *what)
{
	char err[256];

	ossl_error_text(err, sizeof(err));
	if (strcmp(err, "no detail from OpenSSL") == 0)
		err[0] = '\0';
	return ossl_host->error(FV_ERR_UNSUPPORTED,
		"the key's backend (%s) refuses RSA-OAEP decryption with "
		"SHA-256 and MGF1-SHA-256: %s%s%s. flowvault decrypts with OAEP "
		"only; Debian 12's tpm2-openssl 1.1.1 offers PKCS#1 v1.5 only. "
		"For a TPM key use the 'tpm2' plugin (\"provider\": \"tpm2\"), "
		"which has the TPM do OAEP itself",
		key->info, what, err[0] ? ": " : "", err);
}

/* EVP_PKEY_decrypt into `out` (out_cap bytes) with the one padding
 * flowvault allows. */
static int decrypt_oaep(fv_pkey *key, const unsigned char *in, size_t in_len,
                        unsigned char *out, size_t *out_len)
{
	const fv_instance *inst = key->inst;
	EVP_PKEY_CTX *ctx;
	char err[256];
	int rc = FV_OK;

	ERR_clear_error();
	ctx = EVP_PKEY_CTX_new_from_pkey(inst->libctx, key->pkey, key->propq);
	if (!ctx)
		return ossl_host->error(FV_ERR_BACKEND,
			"cannot set up decryption with '%s' (%s)",
			inst->uri, ossl_error_text(err, sizeof(err)));
	if (EVP_PKEY_decrypt_init(ctx) <= 0)
		rc = refused_oaep(key, "no decryption operation for this key");
	else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0)
		rc = refused_oaep(key, "OAEP padding refused");
	else if (EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) <= 0)
		rc = refused_oaep(key, "OAEP digest SHA-256 refused");
	else if (EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0)
		rc = refused_oaep(key, "MGF1 digest SHA-256 refused");
	else if (EVP_PKEY_decrypt(ctx, out, out_len, in, in_len) <= 0) {
		ossl_error_text(err, sizeof(err));
		if (strcasestr(err, "oaep decoding error"))
			rc = ossl_host->error(FV_ERR_DECRYPT,
				"the ciphertext does not decrypt with this key "
				"(RSA-OAEP padding check failed): it was encrypted for "
				"another key or altered");
		else
			rc = ossl_host->error(FV_ERR_BACKEND,
				"decryption with '%s' failed in the backend (%s)", inst->uri, err);
	}
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

static long monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec;
}

/*
 * After a decryption failed in the backend for a reason OpenSSL does not
 * call a padding error: is the backend itself fine? It is when a
 * ciphertext we make now, with the public key, decrypts. Then the request's
 * ciphertext was at fault (FV_ERR_DECRYPT), as tokens word a bad ciphertext
 * in many ways. A success within the last seconds counts, so that a flood of
 * bad ciphertexts costs at most one extra decryption per second.
 */
#define HEALTH_PROBE_INTERVAL 1
static int backend_healthy(fv_pkey *key)
{
	unsigned char secret[16], ct[1024], plain[1024];
	const unsigned char *p = key->spki;
	size_t ct_len = sizeof(ct), plain_len = sizeof(plain);
	EVP_PKEY *pub = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	long now = monotonic_seconds();
	int ok = 0;

	if (__atomic_load_n(&key->healthy_at, __ATOMIC_RELAXED) + HEALTH_PROBE_INTERVAL >= now)
		return 1;
	if (key->out_cap > sizeof(plain) || key->modulus_len > sizeof(ct) ||
	    RAND_bytes(secret, sizeof(secret)) != 1 ||
	    !(pub = d2i_PUBKEY(NULL, &p, (long)key->spki_len)) ||
	    !(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) ||
	    EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_encrypt(ctx, ct, &ct_len, secret, sizeof(secret)) <= 0)
		goto out;
	if (decrypt_oaep(key, ct, ct_len, plain, &plain_len) == FV_OK &&
	    plain_len == sizeof(secret) && CRYPTO_memcmp(plain, secret, sizeof(secret)) == 0) {
		__atomic_store_n(&key->healthy_at, now, __ATOMIC_RELAXED);
		ok = 1;
	}
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(plain, sizeof(plain));
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pub);
	ERR_clear_error();
	return ok;
}

static int openssl_key_decrypt(fv_pkey *key, const unsigned char *in,
                               size_t in_len, unsigned char *out,
                               size_t *out_len)
{
	unsigned char *plain;
	size_t plain_len = key->out_cap;
	int rc;

	if (in_len != key->modulus_len)
		return ossl_host->error(FV_ERR_DECRYPT,
			"the ciphertext is %zu bytes, the key's modulus %zu: it was "
			"not encrypted for this key", in_len,
			key->modulus_len);
	/* Public values, so an ordinary comparison. */
	if (key->modulus && memcmp(in, key->modulus, in_len) >= 0)
		return ossl_host->error(FV_ERR_DECRYPT,
			"the ciphertext is not below the key's modulus: it was not "
			"encrypted for this key");
	/* Engines write a whole modulus before removing the padding, whatever
	 * the caller's buffer: decrypt into our own, then copy. */
	plain = OPENSSL_malloc(key->out_cap);
	if (!plain)
		return nomem(key->inst->location);
	if (key->serialize)
		pthread_mutex_lock(&key->lock);
	rc = decrypt_oaep(key, in, in_len, plain, &plain_len);
	if (rc == FV_ERR_BACKEND && backend_healthy(key))
		rc = ossl_host->error(FV_ERR_DECRYPT,
			"the backend refused the ciphertext although it decrypts ciphertexts made "
			"for this key: it was not encrypted for this key with RSA-OAEP-SHA256");
	if (key->serialize)
		pthread_mutex_unlock(&key->lock);
	if (rc == FV_OK) {
		if (plain_len > *out_len)
			rc = FV_ERR_BUFFER_TOO_SMALL;
		else
			memcpy(out, plain, plain_len);
		*out_len = plain_len;
	}
	OPENSSL_clear_free(plain, key->out_cap);
	return rc;
}

static int openssl_key_describe(fv_pkey *key, fv_key_description *out)
{
	if (out->struct_size < offsetof(fv_key_description, properties_known) +
	                       sizeof(out->properties_known))
		return FV_ERR_USAGE;
	out->oaep = key->oaep;
	out->backend = key->backend;
	out->location = key->location;
	out->remote_id = NULL;
	out->bits = (unsigned int)(key->modulus_len * 8);
	/* Only the default provider's keys are known to be in this process;
	 * an ENGINE or another provider does not report its key's attributes. */
	out->properties_known = 0;
	out->properties = 0;
	if (!key->inst->engine && key->oaep) { /* the default provider's key */
		out->properties_known = FV_KEY_PROP_IN_HOST_MEMORY;
		out->properties = FV_KEY_PROP_IN_HOST_MEMORY;
	}
	return FV_OK;
}

static int openssl_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (len)
		snprintf(buf, len, "%s", key->info);
	return FV_OK;
}

static const fv_provider openssl_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "openssl",
	.version = PLUGIN_VERSION,
	/* No FV_CAP_GENERATE: neither the ENGINE interface nor OSSL_STORE can
	 * create a key at a given URI, and generating in this process would
	 * put the private key in memory we cannot vouch for. */
	.capabilities = FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = config_fields,
	.instance_open = openssl_instance_open,
	.instance_close = openssl_instance_close,
	.key_open = openssl_key_open,
	.key_close = openssl_key_close,
	.key_public_der = openssl_key_public_der,
	.key_decrypt = openssl_key_decrypt,
	.key_info = openssl_key_info,
	.key_describe = openssl_key_describe,
};

static int openssl_entry(uint32_t host_abi_version, const fv_host *host,
                         const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, host) != FV_OK)
		return FV_ERR_PLUGIN;
	ossl_host = host;
	*out = &openssl_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(openssl_entry)
