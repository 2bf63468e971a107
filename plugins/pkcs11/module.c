/*
 * Loading PKCS#11 modules.
 *
 * libp11 loads the module and calls C_Initialize (with init_args as
 * pReserved); its slot list is kept for the module's life. We also keep our
 * own dlopen reference to the same file and its CK_FUNCTION_LIST, which the
 * token-side OAEP call, key generation and the session pool need (libp11
 * 0.4.12 does not expose the list; see decrypt.c and keygen.c for why its
 * higher-level calls do not fit).
 *
 * A module is initialized once per process and shared by all instances: a
 * second C_Initialize would fail, and a C_Finalize from one instance would
 * end the sessions and the login of the others.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "plugin.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *registry;

/* The CKR that libp11 left in OpenSSL's error queue, or 0. */
static CK_RV libp11_last_ckr(void)
{
	unsigned long e;
	CK_RV rv = 0;
	int lib = ERR_get_CKR_code();

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) == lib && ERR_GET_REASON(e) != 0)
			rv = (CK_RV)ERR_GET_REASON(e);
	return rv;
}

static int same_string(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* A module is code run inside this process: refuse one that others could
 * have replaced, like the plugin loader does for plugins. */
static int check_module_file(const char *path, const char *where)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return P11_ERROR(FV_ERR_NOT_FOUND,
				"%s.module: no such file '%s'; install the PKCS#11 module or fix the path",
				where, path);
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: cannot read '%s': %s",
		                 where, path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.module: '%s' is not a regular file; give the path of the PKCS#11 module (.so)",
			where, path);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return P11_ERROR(FV_ERR_PERMISSION,
			"%s.module: '%s' is writable by group or others; fix with chmod go-w '%s'",
			where, path, path);
	if (st.st_uid != 0 && st.st_uid != getuid())
		return P11_ERROR(FV_ERR_PERMISSION,
			"%s.module: '%s' is owned by uid %u, neither root nor you; refusing to load it",
			where, path, (unsigned int)st.st_uid);
	return FV_OK;
}

/*
 * `spec` with a '/' is a file; otherwise it is the name of a module
 * registered with p11-kit (p11-kit list-modules), or failing that a file
 * name in p11-kit's module directory. Either way we end with a file, which
 * is what libp11 loads.
 */
static int resolve_module(char **path, const char *spec, const char *where)
{
	CK_FUNCTION_LIST **modules;
	CK_FUNCTION_LIST *module;
	char *filename = NULL;

	*path = NULL;
	if (strchr(spec, '/')) {
		if (spec[0] != '/')
			return P11_ERROR(FV_ERR_CONFIG,
				"%s.module: '%s' is a relative path; give an absolute path or the name of a module registered with p11-kit",
				where, spec);
		*path = strdup(spec);
		return *path ? FV_OK : FV_ERR_NOMEM;
	}
	modules = p11_kit_modules_load(NULL, P11_KIT_MODULE_UNMANAGED);
	if (modules) {
		module = p11_kit_module_for_name(modules, spec);
		if (module)
			filename = p11_kit_module_get_filename(module);
		p11_kit_modules_release(modules);
	}
	if (!filename) {
		module = p11_kit_module_load(spec, P11_KIT_MODULE_UNMANAGED);
		if (module) {
			filename = p11_kit_module_get_filename(module);
			p11_kit_module_release(module);
		}
	}
	if (!filename)
		return P11_ERROR(FV_ERR_NOT_FOUND,
			"%s.module: no module '%s' is registered with p11-kit (see `p11-kit list-modules`) and p11-kit's module directory has no such file; give the module's absolute path",
			where, spec);
	*path = strdup(filename);
	free(filename);
	return *path ? FV_OK : FV_ERR_NOMEM;
}

static void module_free(struct p11_module *mod)
{
	if (!mod)
		return;
	if (mod->ctx) {
		if (mod->slots)
			PKCS11_release_all_slots(mod->ctx, mod->slots, mod->slot_count);
		if (mod->fns)
			PKCS11_CTX_unload(mod->ctx);
		PKCS11_CTX_free(mod->ctx);
	}
	/* Under AddressSanitizer the module stays mapped, so that LeakSanitizer
	 * can name (and its suppressions match) what the module keeps. */
#if !defined(__SANITIZE_ADDRESS__)
	if (mod->dl)
		dlclose(mod->dl);
#endif
	free(mod->path);
	free(mod->init_args);
	free(mod);
}

static int module_load(struct p11_module *mod, const char *where)
{
	CK_RV (*get_function_list)(CK_FUNCTION_LIST **);
	CK_RV rv;
	int rc;

	rc = check_module_file(mod->path, where);
	if (rc != FV_OK)
		return rc;
	/* Our own dlopen first: it tells apart "not a shared library" and
	 * "not a PKCS#11 module", which libp11 reports alike. */
	mod->dl = dlopen(mod->path, RTLD_NOW | RTLD_LOCAL);
	if (!mod->dl)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.module: '%s' cannot be loaded as a shared library (%s); give the path of a PKCS#11 module",
			where, mod->path, dlerror());
	*(void **)&get_function_list = dlsym(mod->dl, "C_GetFunctionList");
	if (!get_function_list)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.module: '%s' is not a PKCS#11 module (it has no C_GetFunctionList)",
			where, mod->path);
	rv = get_function_list(&mod->fns);
	if (rv != CKR_OK || !mod->fns) {
		mod->fns = NULL;
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_GetFunctionList of '%s' failed: %s",
		                 where, mod->path, p11_ckr_name(rv));
	}

	mod->ctx = PKCS11_CTX_new();
	if (!mod->ctx)
		return FV_ERR_NOMEM;
	if (mod->init_args)
		PKCS11_CTX_init_args(mod->ctx, mod->init_args);
	ERR_clear_error();
	if (PKCS11_CTX_load(mod->ctx, mod->path) < 0) {
		rv = libp11_last_ckr();
		mod->fns = NULL; /* tells module_free there is nothing to finalize */
		if (rv == CKR_ARGUMENTS_BAD || rv == CKR_GENERAL_ERROR ||
		    rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_ERROR)
			return P11_ERROR(FV_ERR_BACKEND,
				"%s.module: C_Initialize of '%s' failed: %s; check init_args (NSS softokn needs e.g. \"configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=\") and the module's own configuration",
				where, mod->path, p11_ckr_name(rv));
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_Initialize of '%s' failed: %s",
		                 where, mod->path, p11_ckr_name(rv));
	}
	rv = mod->fns->C_GetInfo(&mod->info);
	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_GetInfo of '%s' failed: %s",
		                 where, mod->path, p11_ckr_name(rv));
	ERR_clear_error();
	if (PKCS11_enumerate_slots(mod->ctx, &mod->slots, &mod->slot_count) < 0) {
		rv = libp11_last_ckr();
		mod->slots = NULL;
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_GetSlotList of '%s' failed: %s",
		                 where, mod->path, p11_ckr_name(rv));
	}
	mod->pid = getpid();
	return FV_OK;
}

int p11_module_get(struct p11_module **out, const char *spec,
                   const char *init_args, const char *where)
{
	struct p11_module *mod;
	char *path;
	int rc;

	*out = NULL;
	rc = resolve_module(&path, spec, where);
	if (rc != FV_OK)
		return rc;

	pthread_mutex_lock(&registry_lock);
	for (mod = registry; mod; mod = mod->next) {
		if (strcmp(mod->path, path) != 0)
			continue;
		if (!same_string(mod->init_args, init_args)) {
			pthread_mutex_unlock(&registry_lock);
			rc = P11_ERROR(FV_ERR_CONFIG,
				"%s.init_args: module '%s' is already initialized in this process with other init_args; a module can be initialized only once per process, so keys on it must share init_args",
				where, path);
			free(path);
			return rc;
		}
		mod->refs++;
		pthread_mutex_unlock(&registry_lock);
		free(path);
		*out = mod;
		return FV_OK;
	}

	mod = calloc(1, sizeof(*mod));
	if (!mod || (init_args && !(mod->init_args = strdup(init_args)))) {
		pthread_mutex_unlock(&registry_lock);
		free(mod);
		free(path);
		return FV_ERR_NOMEM;
	}
	mod->path = path;
	rc = module_load(mod, where);
	if (rc != FV_OK) {
		pthread_mutex_unlock(&registry_lock);
		module_free(mod);
		return rc;
	}
	mod->refs = 1;
	mod->next = registry;
	registry = mod;
	pthread_mutex_unlock(&registry_lock);
	*out = mod;
	return FV_OK;
}

void p11_module_put(struct p11_module *mod)
{
	struct p11_module **p;

	if (!mod)
		return;
	pthread_mutex_lock(&registry_lock);
	if (--mod->refs > 0) {
		pthread_mutex_unlock(&registry_lock);
		return;
	}
	for (p = &registry; *p; p = &(*p)->next) {
		if (*p == mod) {
			*p = mod->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	module_free(mod);
}

int p11_module_after_fork(struct p11_module *mod)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;
	pid_t pid = getpid();

	pthread_mutex_lock(&registry_lock);
	if (mod->pid == pid) {
		pthread_mutex_unlock(&registry_lock);
		return 0;
	}
	/* A child inherits the parent's module state but must not use it
	 * (PKCS#11 2.40 §6.7.7): initialize again here. libp11 does the same
	 * on its next call and accepts CKR_CRYPTOKI_ALREADY_INITIALIZED. */
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	args.pReserved = mod->init_args;
	rv = mod->fns->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		pthread_mutex_unlock(&registry_lock);
		return P11_ERROR(FV_ERR_BACKEND,
			"module '%s': C_Initialize after fork() failed: %s",
			mod->path, p11_ckr_name(rv));
	}
	mod->pid = pid;
	pthread_mutex_unlock(&registry_lock);
	P11_LOG(FV_LOG_DEBUG, "module '%s' initialized again in process %ld after fork()",
	        mod->path, (long)pid);
	return 1;
}
