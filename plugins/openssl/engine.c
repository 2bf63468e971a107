/*
 * Keys behind a legacy OpenSSL ENGINE, such as libp11's `pkcs11` engine.
 *
 * OpenSSL 3 deprecates the ENGINE API in favour of providers, yet sites
 * still run engines (libengine-pkcs11-openssl, tpm2-tss-engine) and this
 * plugin exists to reach them. The deprecation warnings are silenced here,
 * in this one file, so that every other file still gets them: new code must
 * not start using ENGINE calls by accident.
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>

#include "openssl_plugin.h"

/* Descriptors of checked files an ENGINE loads (its own .so, a PKCS#11
 * module named by MODULE_PATH): open until the engine is gone, since an
 * engine may load a module only when it first needs it, and the loader
 * knows a loaded file by its /proc/self/fd/N name (provider.h). */
#define ENGINE_MAX_FDS 4

struct engine_backend {
	ENGINE *engine;      /* the engine the dynamic engine loaded */
	int initialised;     /* a functional reference from ENGINE_init too */
	char *id;
	int fds[ENGINE_MAX_FDS];
	size_t fd_count;
};

/* Open `path` with the host's checks (as for flowvault's own plugins) and
 * keep the descriptor; *fd_path names the checked file for loading. */
static int open_checked(struct engine_backend *eb, const char *path, const char *what,
                        char fd_path[FV_HOST_FD_PATH_MAX])
{
	int fd = -1, rc;

	if (!FV_HOST_HAS(ossl_host, file_open_checked))
		return ossl_host->error(FV_ERR_PLUGIN,
			"this flowvault is too old to check %s files (provider ABI 1.1 needed); refusing to load '%s'",
			what, path);
	if (eb->fd_count >= ENGINE_MAX_FDS)
		return ossl_host->error(FV_ERR_CONFIG, "too many files for one ENGINE");
	rc = ossl_host->file_open_checked(path, what, &fd);
	if (rc != FV_OK)
		return rc;
	eb->fds[eb->fd_count++] = fd;
	fv_host_fd_path(fd_path, fd);
	return FV_OK;
}

/* Where OpenSSL would look for ENGINE `id`: $OPENSSL_ENGINES (honoured only
 * outside setuid programs, as OpenSSL does) or the built-in directory. */
static int engine_file(char *buf, size_t len, const char *id)
{
	const char *dir = secure_getenv("OPENSSL_ENGINES");
	const char *builtin = OpenSSL_version(OPENSSL_ENGINES_DIR);
	char quoted_dir[4096];
	size_t n;

	if (!dir || !dir[0]) {
		/* "ENGINESDIR: \"/usr/lib/.../engines-3\"" */
		const char *q = strchr(builtin, '"');

		if (!q)
			return -1;
		snprintf(quoted_dir, sizeof(quoted_dir), "%s", q + 1);
		n = strlen(quoted_dir);
		if (n && quoted_dir[n - 1] == '"')
			quoted_dir[n - 1] = '\0';
		dir = quoted_dir;
	}
	return snprintf(buf, len, "%s/%s.so", dir, id) < (int)len ? 0 : -1;
}

/* Apply one "NAME=VALUE" or "NAME" control command. */
static int apply_command(struct engine_backend *eb, const char *id, const char *command,
                         size_t index, const char *location)
{
	ENGINE *e = eb->engine;
	char fd_path[FV_HOST_FD_PATH_MAX];
	const char *value;
	int rc;
	const char *eq = strchr(command, '=');
	size_t name_len = eq ? (size_t)(eq - command) : strlen(command);
	char name[128];
	char err[256];

	if (name_len == 0 || name_len >= sizeof(name))
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.engine_commands[%zu]: expected \"NAME=VALUE\" or \"NAME\" "
			"with a command name of 1 to %zu characters",
			location, index, sizeof(name) - 1);
	memcpy(name, command, name_len);
	name[name_len] = '\0';
	/* A PIN written here would be a literal secret in the configuration. */
	if (strcasecmp(name, "PIN") == 0)
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.engine_commands[%zu]: do not put the PIN in engine_commands; "
			"set \"pin\" to a secret reference (env:NAME, file:PATH or prompt)",
			location, index);
	/* Loading other code by path would bypass the checks below. */
	if (strcasecmp(name, "SO_PATH") == 0 || strcasecmp(name, "LOAD") == 0)
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.engine_commands[%zu]: '%s' is refused: the ENGINE is loaded from "
			"the checked file that \"engine\" names", location, index, name);
	value = eq ? eq + 1 : NULL;
	/* libp11's PKCS#11 module: checked like the pkcs11 plugin's modules,
	 * and loaded from the checked descriptor. */
	if (strcasecmp(name, "MODULE_PATH") == 0 && value) {
		rc = open_checked(eb, value, "PKCS#11 module", fd_path);
		if (rc != FV_OK)
			return rc;
		value = fd_path;
	}
	ERR_clear_error();
	if (!ENGINE_ctrl_cmd_string(e, name, value, 0))
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.engine_commands[%zu]: ENGINE '%s' refused command '%s' (%s); "
			"check its name and value in the engine's documentation",
			location, index, id, name, ossl_error_text(err, sizeof(err)));
	return FV_OK;
}

/*
 * The ENGINE's shared object is code run in this process: resolve it as
 * OpenSSL would, check it like flowvault's own plugins, and have OpenSSL's
 * `dynamic` engine load exactly the checked file (SO_PATH=/proc/self/fd/N)
 * instead of looking the id up again.
 */
static int load_engine(struct engine_backend *eb, const char *id, const char *location)
{
	char path[4096], fd_path[FV_HOST_FD_PATH_MAX], err[256];
	ENGINE *e;
	int rc;

	if (strchr(id, '/') || engine_file(path, sizeof(path), id) != 0)
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.engine: '%s' is not an ENGINE id (e.g. \"pkcs11\")", location, id);
	rc = open_checked(eb, path, "OpenSSL ENGINE", fd_path);
	if (rc == FV_ERR_NOT_FOUND)
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.engine: OpenSSL cannot load ENGINE '%s': no file '%s'; install it "
			"(libengine-pkcs11-openssl provides 'pkcs11') or point "
			"OPENSSL_ENGINES at the directory holding %s.so",
			location, id, path, id);
	if (rc != FV_OK)
		return rc;
	ERR_clear_error();
	e = ENGINE_by_id("dynamic");
	if (!e)
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.engine: OpenSSL's dynamic ENGINE is not available (%s)",
			location, ossl_error_text(err, sizeof(err)));
	if (!ENGINE_ctrl_cmd_string(e, "SO_PATH", fd_path, 0) ||
	    !ENGINE_ctrl_cmd_string(e, "ID", id, 0) ||
	    !ENGINE_ctrl_cmd_string(e, "LOAD", NULL, 0)) {
		ENGINE_free(e);
		return ossl_host->error(FV_ERR_BACKEND,
			"%s.engine: OpenSSL cannot load ENGINE '%s' from '%s' (%s); "
			"check that it is an ENGINE for this OpenSSL",
			location, id, path, ossl_error_text(err, sizeof(err)));
	}
	eb->engine = e;
	return FV_OK;
}

int engine_backend_open(struct engine_backend **out, const char *id,
                        const char *const *commands, size_t command_count,
                        const char *location)
{
	struct engine_backend *eb;
	char err[256];
	size_t i;
	int rc;

	*out = NULL;
	eb = calloc(1, sizeof(*eb));
	if (!eb || !(eb->id = strdup(id))) {
		free(eb);
		return ossl_host->error(FV_ERR_NOMEM, "%s: out of memory", location);
	}
	for (i = 0; i < ENGINE_MAX_FDS; i++)
		eb->fds[i] = -1;
	rc = load_engine(eb, id, location);
	if (rc != FV_OK)
		goto fail;
	for (i = 0; i < command_count; i++) {
		rc = apply_command(eb, id, commands[i], i, location);
		if (rc != FV_OK)
			goto fail;
	}
	if (!ENGINE_init(eb->engine)) {
		rc = ossl_host->error(FV_ERR_BACKEND,
			"%s.engine: ENGINE '%s' failed to initialise (%s); check "
			"engine_commands and the device it drives",
			location, id, ossl_error_text(err, sizeof(err)));
		goto fail;
	}
	eb->initialised = 1;
	*out = eb;
	return FV_OK;
fail:
	engine_backend_close(eb);
	return rc;
}

void engine_backend_close(struct engine_backend *eb)
{
	size_t i;

	if (!eb)
		return;
	if (eb->engine) {
		if (eb->initialised)
			ENGINE_finish(eb->engine);
		ENGINE_free(eb->engine);
	}
	for (i = 0; i < eb->fd_count; i++)
		close(eb->fds[i]);
	free(eb->id);
	free(eb);
}

const char *engine_backend_id(const struct engine_backend *eb)
{
	return eb->id;
}

int engine_backend_load_key(struct engine_backend *eb, const char *key_id,
                            UI_METHOD *ui, struct secret_prompt *prompt,
                            EVP_PKEY **pkey)
{
	*pkey = ENGINE_load_private_key(eb->engine, key_id, ui, prompt);
	return *pkey != NULL;
}
