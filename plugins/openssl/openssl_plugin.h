/*
 * The `openssl` key provider: keys reached through OpenSSL's own loadable
 * backends, either a legacy ENGINE (engine.c) or providers loaded into a
 * library context of the plugin's own (openssl.c). Shared declarations.
 */
#ifndef FLOWVAULT_OPENSSL_PLUGIN_H
#define FLOWVAULT_OPENSSL_PLUGIN_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/ui.h>

#include <flowvault/provider.h>

/* The host's services, set once by the entry point. */
extern const fv_host *ossl_host;

/*
 * Answers the backend's PIN / passphrase prompt from a secret reference.
 * The reference is resolved only when the backend asks, and the secret is
 * wiped as soon as OpenSSL has copied it into its prompt buffer.
 */
struct secret_prompt {
	const char *reference;   /* "env:..", "file:..", "prompt" or NULL */
	const char *field;       /* "pin" or "passphrase", for messages */
	const char *location;    /* "keys.flows" */
	int asked;               /* how many times the backend asked */
	int status;              /* FV_OK, or why the secret was not given */
};

/* A UI_METHOD whose reader answers from the struct secret_prompt passed as
 * the UI's user data. NULL when out of memory. Free with UI_destroy_method. */
UI_METHOD *secret_prompt_method(void);

/* This thread's OpenSSL error queue as one line for messages: the reasons,
 * oldest first, joined with "; " (e.g. "oaep decoding error"), or
 * "no detail from OpenSSL". Clears the queue; returns `buf`. */
const char *ossl_error_text(char *buf, size_t len);

/* ---- engine.c: the legacy ENGINE interface ---- */

struct engine_backend;

/* Load ENGINE `id`, apply the "NAME=VALUE" / "NAME" commands in order,
 * initialise it. `location` names the key entry in messages. */
int engine_backend_open(struct engine_backend **out, const char *id,
                        const char *const *commands, size_t command_count,
                        const char *location);
void engine_backend_close(struct engine_backend *eb);
const char *engine_backend_id(const struct engine_backend *eb);
/* ENGINE_load_private_key(key_id) with `ui` answering prompts. On failure
 * *pkey is NULL and the OpenSSL error queue says why. */
int engine_backend_load_key(struct engine_backend *eb, const char *key_id,
                            UI_METHOD *ui, struct secret_prompt *prompt,
                            EVP_PKEY **pkey);

#endif
