/*
 * Plugin loading: find <name>.so on the search path, refuse unsafe files,
 * check the ABI tables before using anything in them.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define PLUGIN_SUFFIX ".so"

/*
 * Under AddressSanitizer plugins stay mapped at exit: LeakSanitizer can only
 * name (and suppressions can only match) code that is still loaded, and the
 * libraries plugins use (NSS, libp11) keep memory until process exit.
 */
#if defined(__SANITIZE_ADDRESS__)
#define plugin_unload(handle) ((void)(handle))
#else
#define plugin_unload(handle) dlclose(handle)
#endif

/*
 * A plugin is loaded by the name /proc/self/fd/N of its checked descriptor.
 * The dynamic loader finds an already loaded library by name first, so N
 * must keep naming this file for as long as the library stays mapped: the
 * descriptor is closed only once the library is gone.
 */
static void plugin_release(void *handle, int fd)
{
	char fd_path[FV_HOST_FD_PATH_MAX];
	void *still;

	plugin_unload(handle);
	fv_host_fd_path(fd_path, fd);
	still = dlopen(fd_path, RTLD_LAZY | RTLD_NOLOAD);
	if (still) {
		dlclose(still); /* only the reference NOLOAD took */
		return;
	}
	close(fd);
}

struct search_dirs {
	char **dirs;
	size_t count;
};

static void search_dirs_free(struct search_dirs *sd)
{
	size_t i;

	for (i = 0; i < sd->count; i++)
		free(sd->dirs[i]);
	free(sd->dirs);
	sd->dirs = NULL;
	sd->count = 0;
}

static int search_dirs_add(struct search_dirs *sd, char *dir)
{
	char **grown;

	if (!dir)
		return fv__error_nomem();
	grown = realloc(sd->dirs, (sd->count + 1) * sizeof(*grown));
	if (!grown) {
		free(dir);
		return fv__error_nomem();
	}
	sd->dirs = grown;
	sd->dirs[sd->count++] = dir;
	return FV_OK;
}

/* <directory of the running executable>/../lib/flowvault/plugins (the
 * relative part follows the install layout, FLOWVAULT_PLUGIN_RELDIR). */
static char *exe_relative_dir(void)
{
	char exe[PATH_MAX], *slash, *dir, *real;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	if (asprintf(&dir, "%s/" FLOWVAULT_PLUGIN_RELDIR, exe) < 0)
		return NULL;
	/* Shown to users: without the "bin/.." detour when the directory exists. */
	real = realpath(dir, NULL);
	if (real) {
		free(dir);
		dir = real;
	}
	return dir;
}

static int search_dirs_build(struct search_dirs *sd, fv_context *ctx)
{
	/* Not for a set-user-ID caller: it would choose the code we load. */
	const char *env = secure_getenv("FLOWVAULT_PLUGIN_PATH");
	size_t i;
	char *dir;
	int rc;

	for (i = 0; i < ctx->plugin_path_count; i++)
		if ((rc = search_dirs_add(sd, fv__config_resolve_path(ctx, ctx->plugin_path[i]))) != FV_OK)
			return rc;
	if (env && *env) {
		char *copy = strdup(env), *save = NULL, *part;

		if (!copy)
			return fv__error_nomem();
		for (part = strtok_r(copy, ":", &save); part; part = strtok_r(NULL, ":", &save)) {
			if ((rc = search_dirs_add(sd, strdup(part))) != FV_OK) {
				free(copy);
				return rc;
			}
		}
		free(copy);
	}
	if ((dir = exe_relative_dir()) != NULL && (rc = search_dirs_add(sd, dir)) != FV_OK)
		return rc;
	return FV_OK;
}

const char *fv_plugins_search_path(fv_context *ctx)
{
	struct search_dirs sd = { 0 };
	size_t i, len = 1;

	if (!ctx)
		return "";
	if (!ctx->search_path) {
		if (search_dirs_build(&sd, ctx) != FV_OK) {
			search_dirs_free(&sd);
			return "";
		}
		for (i = 0; i < sd.count; i++)
			len += strlen(sd.dirs[i]) + 1;
		ctx->search_path = calloc(1, len);
		for (i = 0; ctx->search_path && i < sd.count; i++) {
			if (i)
				strcat(ctx->search_path, ":");
			strcat(ctx->search_path, sd.dirs[i]);
		}
		search_dirs_free(&sd);
	}
	return ctx->search_path ? ctx->search_path : "";
}

/* Check the table a plugin returned; on refusal set the error and return it. */
static int check_table(const fv_provider *ops, const char *name, const char *path)
{
	uint32_t major;

	if (!ops)
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': entry point returned no function table; the plugin is broken, rebuild it",
			path);
	major = FV_PROVIDER_ABI_MAJOR_OF(ops->abi_version);
	if (major != FV_PROVIDER_ABI_MAJOR)
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': built for provider ABI %u.%u, this flowvault supports %u.x; "
			"rebuild the plugin against this flowvault's provider.h",
			path, (unsigned)major, (unsigned)(ops->abi_version & 0xffff),
			(unsigned)FV_PROVIDER_ABI_MAJOR);
	if (ops->struct_size < FV_PROVIDER_MIN_SIZE)
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': function table is %u bytes, smaller than the %zu of ABI %u.0; "
			"rebuild the plugin against this flowvault's provider.h",
			path, (unsigned)ops->struct_size, (size_t)FV_PROVIDER_MIN_SIZE,
			(unsigned)FV_PROVIDER_ABI_MAJOR);
	if (!ops->name || strcmp(ops->name, name) != 0)
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': calls itself '%s'; the file must be named after the provider (%s.so)",
			path, ops->name ? ops->name : "(null)", ops->name ? ops->name : "NAME");
	if (!ops->version || !ops->instance_open || !ops->instance_close ||
	    !ops->key_open || !ops->key_close || !ops->key_public_der ||
	    !ops->key_decrypt)
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': a required operation is missing from its table (version, instance_open/close, key_open/close, key_public_der, key_decrypt)",
			path);
	if (((ops->capabilities & FV_CAP_GENERATE) && !ops->key_generate) ||
	    ((ops->capabilities & FV_CAP_INFO) && !ops->key_info) ||
	    ((ops->capabilities & FV_CAP_LIST) && !ops->key_list) ||
	    ((ops->capabilities & FV_CAP_DELETE) && !ops->key_delete) ||
	    ((ops->capabilities & FV_CAP_DESCRIBE) &&
	     (ops->struct_size < offsetof(fv_provider, key_describe) + sizeof(ops->key_describe) ||
	      !ops->key_describe)))
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': claims a capability whose operation is NULL", path);
	return FV_OK;
}

/* Seconds a plugin's entry point may take in the probe. */
#define PROBE_SECONDS 10

/*
 * Run the plugin's entry point once in a child process first, so that a
 * plugin that crashes or hangs while loading is refused with a message
 * instead of taking the caller down. The child reports nothing but how it
 * ended; the real checks happen in this process afterwards.
 */
static int probe_in_child(const char *path, const char *fd_path)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return FV_OK; /* cannot probe: fall through to the checked load */
	if (pid == 0) {
		fv_provider_entry_fn entry;
		const fv_provider *ops = NULL;
		void *handle, *sym;

		alarm(PROBE_SECONDS);
		/* Only the parent reports; keep the child's own logs quiet. */
		fv_log_set(NULL, NULL, -1);
		handle = dlopen(fd_path, RTLD_NOW | RTLD_LOCAL);
		if (!handle)
			_exit(0);
		sym = dlsym(handle, FV_PROVIDER_ENTRY_SYMBOL);
		if (!sym)
			_exit(0);
		memcpy(&entry, &sym, sizeof(entry));
		entry(FV_PROVIDER_ABI_VERSION, fv__host_services(), &ops);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return FV_OK;
	/* The child ends with _exit(0) once the entry point has returned; any
	 * other end (a sanitizer's report, the plugin calling exit) is a crash. */
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': ended the process while loading (exit status %d); the plugin is broken, fix or remove it",
			path, WEXITSTATUS(status));
	if (WIFSIGNALED(status)) {
		if (WTERMSIG(status) == SIGALRM)
			return fv__error_set(FV_ERR_PLUGIN,
				"plugin '%s': did not finish loading within %d seconds; the plugin is broken, fix or remove it",
				path, PROBE_SECONDS);
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': crashed while loading (%s); the plugin is broken, fix or remove it",
			path, strsignal(WTERMSIG(status)));
	}
	return FV_OK;
}

/* Load one plugin file; the new plugin is not linked into ctx yet. The file
 * is opened once and checked through its descriptor; the probe and the load
 * use that descriptor's /proc/self/fd name, so the file checked is the file
 * loaded even if `path` is swapped meanwhile. */
static int plugin_load_file(struct fv_plugin **out, const char *path,
                            const char *name)
{
	char fd_path[FV_HOST_FD_PATH_MAX];
	fv_provider_entry_fn entry;
	const fv_provider *ops = NULL;
	struct fv_plugin *plugin;
	void *handle, *sym;
	int rc, fd;

	*out = NULL;
	/* Plugins hold keys: dumps off and the secure heap ready before one
	 * is loaded (its constructor may already allocate key material). */
	fv__process_harden();
	if ((rc = fv__file_open_checked(path, "plugin", &fd)) != FV_OK)
		return rc;
	fv_host_fd_path(fd_path, fd);
	if ((rc = probe_in_child(path, fd_path)) != FV_OK) {
		close(fd);
		return rc;
	}
	dlerror();
	handle = dlopen(fd_path, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		close(fd);
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': cannot be loaded: %s (is it a flowvault plugin built for this system, with its libraries installed?)",
			path, dlerror());
	}
	sym = dlsym(handle, FV_PROVIDER_ENTRY_SYMBOL);
	if (!sym) {
		plugin_release(handle, fd);
		return fv__error_set(FV_ERR_PLUGIN,
			"plugin '%s': has no entry symbol '%s'; it is not a flowvault provider plugin",
			path, FV_PROVIDER_ENTRY_SYMBOL);
	}
	/* POSIX guarantees a data pointer from dlsym can hold a function. */
	memcpy(&entry, &sym, sizeof(entry));
	fv_error_clear();
	rc = entry(FV_PROVIDER_ABI_VERSION, fv__host_services(), &ops);
	if (rc != FV_OK) {
		char why[512];

		/* Copied: the message lives in the buffer fv__error_set writes. */
		snprintf(why, sizeof(why), "%s", fv_error_last()->message);
		rc = fv__error_set(FV_ERR_PLUGIN, "plugin '%s': declined to load: %s", path,
		                   *why ? why : "no reason given");
		plugin_release(handle, fd);
		return rc;
	}
	if ((rc = check_table(ops, name, path)) != FV_OK) {
		plugin_release(handle, fd);
		return rc;
	}
	plugin = calloc(1, sizeof(*plugin));
	if (!plugin || !(plugin->name = strdup(name)) || !(plugin->path = strdup(path))) {
		if (plugin)
			free(plugin->name);
		free(plugin);
		plugin_release(handle, fd);
		return fv__error_nomem();
	}
	plugin->handle = handle;
	plugin->fd = fd;
	plugin->ops = ops;
	plugin->ops_size = ops->struct_size < sizeof(fv_provider) ? ops->struct_size
	                                                          : sizeof(fv_provider);
	*out = plugin;
	return FV_OK;
}

static struct fv_plugin *plugin_cached(fv_context *ctx, const char *path)
{
	struct fv_plugin *p;

	for (p = ctx->plugins; p; p = p->next)
		if (strcmp(p->path, path) == 0)
			return p;
	return NULL;
}

static int plugin_get_locked(const struct fv_plugin **out, fv_context *ctx,
                             const char *name)
{
	struct search_dirs sd = { 0 };
	struct fv_plugin *plugin;
	char path[PATH_MAX];
	size_t i;
	int rc;

	*out = NULL;
	for (plugin = ctx->plugins; plugin; plugin = plugin->next) {
		if (strcmp(plugin->name, name) == 0) {
			*out = plugin;
			return FV_OK;
		}
	}
	if ((rc = search_dirs_build(&sd, ctx)) != FV_OK) {
		search_dirs_free(&sd);
		return rc;
	}
	rc = FV_ERR_NOT_FOUND;
	for (i = 0; i < sd.count; i++) {
		snprintf(path, sizeof(path), "%s/%s%s", sd.dirs[i], name, PLUGIN_SUFFIX);
		if (access(path, F_OK) != 0)
			continue;
		rc = plugin_load_file(&plugin, path, name);
		break;
	}
	search_dirs_free(&sd);
	if (rc == FV_ERR_NOT_FOUND)
		return fv__error_set(FV_ERR_PLUGIN,
			"no plugin '%s' found (searched %s); check the provider name, plugin_path or FLOWVAULT_PLUGIN_PATH",
			name, fv_plugins_search_path(ctx));
	if (rc != FV_OK)
		return rc == FV_ERR_NOMEM ? rc : fv__error_restatus(FV_ERR_PLUGIN);
	if (!plugin)
		return fv__error_set(FV_ERR_PLUGIN, "plugin '%s': failed to load", name);
	plugin->next = ctx->plugins;
	ctx->plugins = plugin;
	*out = plugin;
	return FV_OK;
}

int fv__plugin_get(const struct fv_plugin **out, fv_context *ctx, const char *name)
{
	int rc;

	pthread_mutex_lock(&ctx->plugins_lock);
	rc = plugin_get_locked(out, ctx, name);
	pthread_mutex_unlock(&ctx->plugins_lock);
	return rc;
}

void fv__plugins_unload(fv_context *ctx)
{
	struct fv_plugin *p = ctx->plugins, *next;

	for (; p; p = next) {
		next = p->next;
		plugin_release(p->handle, p->fd);
		free(p->name);
		free(p->path);
		free(p);
	}
	ctx->plugins = NULL;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a > b && strcmp(s + a - b, suffix) == 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Report one file: loaded (cached or now), shadowed, or refused with its
 * reason. `shadowed`: an earlier directory has a file of the same name,
 * which is the one fv__plugin_get uses, loadable or not. */
static int report_file(fv_context *ctx, const char *dir, const char *file,
                       int shadowed, fv_plugin_cb cb, void *arg)
{
	char path[PATH_MAX], name[NAME_MAX + 1];
	fv_plugin_info info = { 0 };
	struct fv_plugin *plugin = NULL;
	size_t stem = strlen(file) - strlen(PLUGIN_SUFFIX);

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(name, sizeof(name), "%.*s", (int)stem, file);
	info.name = name;
	info.path = path;
	if (shadowed) {
		/* Check it anyway, so its own problem is reported; never keep it. */
		if (plugin_load_file(&plugin, path, name) == FV_OK) {
			plugin_release(plugin->handle, plugin->fd);
			free(plugin->name);
			free(plugin->path);
			free(plugin);
			plugin = NULL;
		} else {
			shadowed = 0; /* its own reason says more */
		}
	} else {
		plugin = plugin_cached(ctx, path);
		if (!plugin && plugin_load_file(&plugin, path, name) == FV_OK) {
			plugin->next = ctx->plugins;
			ctx->plugins = plugin;
		}
	}
	if (plugin) {
		info.version = plugin->ops->version;
		info.abi_version = plugin->ops->abi_version;
		info.capabilities = plugin->ops->capabilities;
	} else if (shadowed) {
		info.refused = "shadowed by a plugin of the same name earlier on the search path";
	} else {
		info.refused = fv_error_last()->message;
	}
	return cb(arg, &info);
}

int fv_plugins_foreach(fv_context *ctx, fv_plugin_cb cb, void *arg)
{
	struct search_dirs sd = { 0 };
	char **seen = NULL, **grown_seen;   /* file names listed so far */
	size_t i, j, seen_count = 0;
	int rc, stop = 0;

	if (!ctx || !cb)
		return fv__error_set(FV_ERR_USAGE, "fv_plugins_foreach: missing argument");
	if ((rc = search_dirs_build(&sd, ctx)) != FV_OK) {
		search_dirs_free(&sd);
		return rc;
	}
	pthread_mutex_lock(&ctx->plugins_lock);
	for (i = 0; i < sd.count && !stop; i++) {
		DIR *d = opendir(sd.dirs[i]);
		struct dirent *de;
		char **files = NULL;
		size_t n = 0;

		if (!d)
			continue;
		while ((de = readdir(d)) != NULL) {
			char **grown;

			if (de->d_name[0] == '.' || !has_suffix(de->d_name, PLUGIN_SUFFIX))
				continue;
			grown = realloc(files, (n + 1) * sizeof(*files));
			if (!grown)
				break;
			files = grown;
			if ((files[n] = strdup(de->d_name)) != NULL)
				n++;
		}
		closedir(d);
		if (n)
			qsort(files, n, sizeof(*files), compare_names);
		for (j = 0; j < n; j++) {
			int shadowed = 0;
			size_t k;

			for (k = 0; k < seen_count; k++)
				if (strcmp(seen[k], files[j]) == 0)
					shadowed = 1;
			if (!stop && report_file(ctx, sd.dirs[i], files[j], shadowed, cb, arg) != 0)
				stop = 1;
			if (!shadowed && (grown_seen = realloc(seen, (seen_count + 1) * sizeof(*seen)))) {
				seen = grown_seen;
				seen[seen_count++] = files[j];
			} else {
				free(files[j]);
			}
		}
		free(files);
	}
	pthread_mutex_unlock(&ctx->plugins_lock);
	for (i = 0; i < seen_count; i++)
		free(seen[i]);
	free(seen);
	search_dirs_free(&sd);
	fv_error_clear();
	return FV_OK;
}
