/*
 * Loading PKCS#11 modules, through p11-kit's module API.
 *
 * One function list and one C_Initialize per module and process, used by
 * everything in this plugin: p11-kit's client and proxy modules hand out a
 * new, uninitialized instance on every C_GetFunctionList, so a second
 * loader (libp11 did this before) would hold a list nobody initialized.
 *
 *  - A path is opened once and checked by the host (file_open_checked:
 *    owner, mode, every directory as given and as resolved), then p11-kit
 *    loads that same file as "/proc/self/fd/N", unmanaged: we get the
 *    module's own list and call C_Initialize with init_args ourselves.
 *    p11-kit-proxy.so is the libp11-kit this plugin runs on, which p11-kit
 *    refuses to load as a module of its own: its C_GetFunctionList is
 *    called once, directly.
 *  - A name is a module registered with p11-kit (p11-kit list-modules):
 *    p11-kit loads its registrations, managed, so that the registration
 *    means what it means to p11-kit: x-init-reserved becomes pReserved (how
 *    NSS softokn is registered), "remote:" registrations reach a p11-kit
 *    server. The module file of a local registration is checked too.
 *
 * A module is initialized once per process and shared by all instances: a
 * second C_Initialize would fail, and a C_Finalize from one instance would
 * end the sessions and the login of the others.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *registry;

static int same_string(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

/* p11-kit's last message, or a fallback, for error texts. */
static const char *p11kit_reason(void)
{
	const char *m = p11_kit_message();

	return m && m[0] ? m : "no detail from p11-kit";
}

/* The arguments this module is initialized with (again after fork). NULL
 * for a registered module without init_args: p11-kit's managed wrapper then
 * passes the registration's own (OS locking, x-init-reserved). */
static CK_C_INITIALIZE_ARGS *init_args_for(struct p11_module *mod,
                                           CK_C_INITIALIZE_ARGS *args)
{
	if (mod->registered && !mod->init_args)
		return NULL;
	memset(args, 0, sizeof(*args));
	args->flags = CKF_OS_LOCKING_OK;
	args->pReserved = mod->init_args;
	return args;
}

/* Is the file behind `fd` the libp11-kit this plugin is linked with, i.e.
 * p11-kit's proxy module? */
static int is_own_p11kit(int fd)
{
	CK_FUNCTION_LIST *(*in_p11kit)(const char *, int) = p11_kit_module_load;
	struct stat mine, theirs;
	void *address;
	Dl_info info;

	/* POSIX lets a function pointer be stored as void * (dlsym's reverse). */
	memcpy(&address, &in_p11kit, sizeof(address));
	if (!dladdr(address, &info) || !info.dli_fname ||
	    stat(info.dli_fname, &mine) != 0 || fstat(fd, &theirs) != 0)
		return 0;
	return mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino;
}

/* p11-kit's proxy: one C_GetFunctionList call, one list. */
static int load_proxy(struct p11_module *mod, const char *fd_path, const char *where)
{
	CK_RV (*get_function_list)(CK_FUNCTION_LIST **);
	CK_RV rv;

	mod->dl = dlopen(fd_path, RTLD_NOW | RTLD_LOCAL);
	if (!mod->dl)
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: '%s' cannot be loaded (%s)",
		                 where, mod->spec, dlerror());
	*(void **)&get_function_list = dlsym(mod->dl, "C_GetFunctionList");
	rv = get_function_list ? get_function_list(&mod->fns) : CKR_FUNCTION_NOT_SUPPORTED;
	if (rv != CKR_OK || !mod->fns) {
		mod->fns = NULL;
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_GetFunctionList of '%s' failed: %s",
		                 where, mod->spec, p11_ckr_name(rv));
	}
	return FV_OK;
}

/* A module file as code for this process: checked by the host, loaded by
 * p11-kit from the checked descriptor. */
static int load_path(struct p11_module *mod, const char *where)
{
	char fd_path[FV_HOST_FD_PATH_MAX];
	int fd = -1, rc;

	if (mod->spec[0] != '/')
		return P11_ERROR(FV_ERR_CONFIG,
			"%s.module: '%s' is a relative path; give an absolute path or the name of a module registered with p11-kit",
			where, mod->spec);
	if (!FV_HOST_HAS(p11_host, file_open_checked))
		return P11_ERROR(FV_ERR_PLUGIN,
			"%s.module: this flowvault is too old to check module files (provider ABI 1.1 needed); refusing to load '%s'",
			where, mod->spec);
	rc = p11_host->file_open_checked(mod->spec, "PKCS#11 module", &fd);
	if (rc == FV_ERR_NOT_FOUND)
		return P11_ERROR(FV_ERR_NOT_FOUND,
			"%s.module: no such file '%s'; install the PKCS#11 module or fix the path",
			where, mod->spec);
	if (rc != FV_OK)
		return rc; /* the host's message names the file and what to fix */
	/* Open while the module is loaded: the loader knows it by this name,
	 * which must not come to mean another file (provider.h). */
	mod->fd = fd;
	fv_host_fd_path(fd_path, fd);
	if (is_own_p11kit(fd))
		return load_proxy(mod, fd_path, where);
	mod->fns = p11_kit_module_load(fd_path, P11_KIT_MODULE_UNMANAGED | P11_KIT_MODULE_CRITICAL);
	if (!mod->fns)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.module: '%s' cannot be loaded as a PKCS#11 module (%s); give the path of a PKCS#11 module (.so)",
			where, mod->spec, p11kit_reason());
	mod->loaded = 1;
	return FV_OK;
}

static const char *user_config_note(void)
{
	if (getuid() == 0 || geteuid() != getuid())
		return "; p11-kit ignores the user's own registrations (~/.config/pkcs11/modules) in a process running as root or setuid, so register it under /etc/pkcs11/modules or give the module's path";
	return "";
}

/* A module registered with p11-kit by name. */
static int load_registered(struct p11_module *mod, const char *where)
{
	CK_FUNCTION_LIST **all;
	char *filename;
	size_t i;
	int fd = -1, rc;

	/* Not critical: an unrelated registration that fails to load is
	 * skipped (as p11-kit's own tools do), unless it says critical: yes. */
	all = p11_kit_modules_load(NULL, 0);
	if (!all)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.module: p11-kit cannot load its registered modules (%s); check `p11-kit list-modules`",
			where, p11kit_reason());
	for (i = 0; all[i]; i++) {
		char *name = p11_kit_module_get_name(all[i]);

		if (!mod->fns && name && strcmp(name, mod->spec) == 0)
			mod->fns = all[i];
		else
			p11_kit_module_release(all[i]);
		free(name);
	}
	free(all);
	if (!mod->fns)
		return P11_ERROR(FV_ERR_CONFIG,
			"%s.module: no module '%s' is registered with p11-kit (see `p11-kit list-modules`)%s; or give the module's absolute path",
			where, mod->spec, user_config_note());
	mod->loaded = 1;
	mod->registered = 1;
	/* A remote registration has no file here; a local one is code in
	 * this process: apply the host's checks to the file p11-kit chose. */
	filename = p11_kit_module_get_filename(mod->fns);
	if (filename) {
		rc = FV_HOST_HAS(p11_host, file_open_checked)
		             ? p11_host->file_open_checked(filename, "PKCS#11 module", &fd)
		             : FV_OK;
		if (fd >= 0)
			close(fd);
		if (rc != FV_OK) {
			rc = P11_ERROR(rc, "%s.module: the file of p11-kit module '%s' ('%s') is not safe to use; refusing it",
			               where, mod->spec, filename);
			free(filename);
			return rc;
		}
		mod->path = filename;
	} else {
		char *remote = p11_kit_config_option(mod->fns, "remote");

		if (remote) {
			size_t len = strlen(remote) + sizeof("remote ");

			mod->path = malloc(len);
			if (mod->path)
				snprintf(mod->path, len, "remote %s", remote);
			free(remote);
		}
	}
	return FV_OK;
}

static void module_free(struct p11_module *mod)
{
	if (!mod)
		return;
	/* Finalize only what we initialized, in the process that did it. */
	if (mod->fns && mod->initialized && mod->pid == getpid())
		mod->fns->C_Finalize(NULL);
	/* Under AddressSanitizer the module stays mapped, so that LeakSanitizer
	 * can name (and its suppressions match) what the module keeps. */
#if !defined(__SANITIZE_ADDRESS__)
	if (mod->loaded)
		p11_kit_module_release(mod->fns);
	if (mod->dl)
		dlclose(mod->dl);
	fv_host_fd_release(mod->fd);
#endif
	free(mod->spec);
	free(mod->path);
	free(mod->init_args);
	free(mod);
}

static int module_initialize(struct p11_module *mod, const char *where)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	rv = mod->fns->C_Initialize(init_args_for(mod, &args));
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		/* Someone else in this process (an OpenSSL ENGINE, the
		 * application) initialized it: use it, never finalize it. */
		P11_LOG(FV_LOG_DEBUG, "%s.module: '%s' was already initialized in this process",
		        where, mod->path);
		return FV_OK;
	}
	if (rv == CKR_ARGUMENTS_BAD || rv == CKR_GENERAL_ERROR ||
	    rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_ERROR)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.module: C_Initialize of '%s' failed: %s; check init_args (NSS softokn needs e.g. \"configdir='sql:DIR' certPrefix='' keyPrefix='' secmod='secmod.db' flags=\"), the registration's x-init-reserved, and the module's own configuration",
			where, mod->path, p11_ckr_name(rv));
	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_Initialize of '%s' failed: %s",
		                 where, mod->path, p11_ckr_name(rv));
	mod->initialized = 1;
	return FV_OK;
}

static int module_load(struct p11_module *mod, const char *where)
{
	CK_RV rv;
	int rc;

	rc = strchr(mod->spec, '/') ? load_path(mod, where) : load_registered(mod, where);
	if (rc != FV_OK)
		return rc;
	if (!mod->path && !(mod->path = strdup(mod->spec)))
		return FV_ERR_NOMEM;
	if (mod->registered && mod->init_args)
		P11_LOG(FV_LOG_INFO, "%s.init_args: used instead of the x-init-reserved of p11-kit module '%s'",
		        where, mod->spec);
	rc = module_initialize(mod, where);
	if (rc != FV_OK)
		return rc;
	mod->pid = getpid();
	rv = mod->fns->C_GetInfo(&mod->info);
	if (rv != CKR_OK)
		return P11_ERROR(FV_ERR_BACKEND, "%s.module: C_GetInfo of '%s' failed: %s",
		                 where, mod->path, p11_ckr_name(rv));
	return FV_OK;
}

int p11_module_get(struct p11_module **out, const char *spec,
                   const char *init_args, const char *where)
{
	struct p11_module *mod;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&registry_lock);
	for (mod = registry; mod; mod = mod->next) {
		if (strcmp(mod->spec, spec) != 0)
			continue;
		if (!same_string(mod->init_args, init_args)) {
			pthread_mutex_unlock(&registry_lock);
			return P11_ERROR(FV_ERR_CONFIG,
				"%s.init_args: module '%s' is already initialized in this process with other init_args; a module can be initialized only once per process, so keys on it must share init_args",
				where, spec);
		}
		mod->refs++;
		pthread_mutex_unlock(&registry_lock);
		*out = mod;
		return FV_OK;
	}

	mod = calloc(1, sizeof(*mod));
	if (mod)
		mod->fd = -1;
	if (!mod || !(mod->spec = strdup(spec)) ||
	    (init_args && !(mod->init_args = strdup(init_args)))) {
		pthread_mutex_unlock(&registry_lock);
		if (mod)
			free(mod->spec);
		free(mod);
		return FV_ERR_NOMEM;
	}
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
	 * (PKCS#11 2.40 §6.7.7): initialize again here. */
	rv = mod->fns->C_Initialize(init_args_for(mod, &args));
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

int p11_module_reinitialize(struct p11_module *mod, unsigned int seen_epoch, CK_RV why)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	pthread_mutex_lock(&registry_lock);
	if (mod->epoch != seen_epoch) {
		/* Another instance did it since this one noticed the failure. */
		pthread_mutex_unlock(&registry_lock);
		return FV_OK;
	}
	/* A remote module whose server went away stays broken until it is
	 * initialized again, which connects anew. Every instance on this
	 * module loses its sessions: they renew them on their next call. */
	mod->fns->C_Finalize(NULL);
	rv = mod->fns->C_Initialize(init_args_for(mod, &args));
	/* Bumped either way: every instance's sessions died with C_Finalize. */
	mod->epoch++;
	mod->broken = rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED;
	if (!mod->broken)
		mod->pid = getpid();
	pthread_mutex_unlock(&registry_lock);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return P11_ERROR(FV_ERR_BACKEND,
			"module '%s': %s, and initializing it again failed: %s; check that the token (or the p11-kit server) is reachable, then retry",
			mod->path, p11_ckr_name(why), p11_ckr_name(rv));
	P11_LOG(FV_LOG_WARNING, "module '%s': %s; initialized it again", mod->path,
	        p11_ckr_name(why));
	return FV_OK;
}

unsigned int p11_module_epoch(struct p11_module *mod, int *broken)
{
	unsigned int epoch;

	pthread_mutex_lock(&registry_lock);
	epoch = mod->epoch;
	if (broken)
		*broken = mod->broken;
	pthread_mutex_unlock(&registry_lock);
	return epoch;
}

void p11_module_mark_broken(struct p11_module *mod, unsigned int epoch)
{
	pthread_mutex_lock(&registry_lock);
	if (mod->epoch == epoch)
		mod->broken = 1;
	pthread_mutex_unlock(&registry_lock);
}
