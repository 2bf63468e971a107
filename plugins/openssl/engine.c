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

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/engine.h>
#include <openssl/err.h>

#include "openssl_plugin.h"

struct engine_backend {
	ENGINE *engine;      /* structural reference from ENGINE_by_id */
	int initialised;     /* a functional reference from ENGINE_init too */
	char *id;
};

/* Apply one "NAME=VALUE" or "NAME" control command. */
static int apply_command(ENGINE *e, const char *id, const char *command,
                         size_t index, const char *location)
{
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
	ERR_clear_error();
	if (!ENGINE_ctrl_cmd_string(e, name, eq ? eq + 1 : NULL, 0))
		return ossl_host->error(FV_ERR_CONFIG,
			"%s.engine_commands[%zu]: ENGINE '%s' refused command '%s' (%s); "
			"check its name and value in the engine's documentation",
			location, index, id, name, ossl_error_text(err, sizeof(err)));
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
	ERR_clear_error();
	eb->engine = ENGINE_by_id(id);
	if (!eb->engine) {
		rc = ossl_host->error(FV_ERR_BACKEND,
			"%s.engine: OpenSSL cannot load ENGINE '%s' (%s); install it "
			"(libengine-pkcs11-openssl provides 'pkcs11') or point "
			"OPENSSL_ENGINES at the directory holding %s.so",
			location, id, ossl_error_text(err, sizeof(err)), id);
		goto fail;
	}
	for (i = 0; i < command_count; i++) {
		rc = apply_command(eb->engine, id, commands[i], i, location);
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
	if (!eb)
		return;
	if (eb->engine) {
		if (eb->initialised)
			ENGINE_finish(eb->engine);
		ENGINE_free(eb->engine);
	}
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
