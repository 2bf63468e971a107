/*
 * Answering OpenSSL's PIN and passphrase prompts from secret references,
 * and turning OpenSSL's error queue into message text.
 *
 * Both ENGINE_load_private_key and OSSL_STORE_open_ex take a UI_METHOD and
 * hand our user data to it (OSSL_STORE also routes provider passphrase
 * callbacks through it), so one reader serves every backend. The secret
 * is resolved only when a backend really asks, and wiped right after
 * OpenSSL has copied it into the prompt's own buffer.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ui.h>

#include "openssl_plugin.h"

/* A backend that keeps asking is not going to accept the answer. */
#define MAX_ASKS 3

static int prompt_read(UI *ui, UI_STRING *uis)
{
	struct secret_prompt *p = UI_get0_user_data(ui);
	char purpose[160];
	char *secret = NULL;
	size_t len = 0;
	int rc;

	switch (UI_get_string_type(uis)) {
	case UIT_PROMPT:
	case UIT_VERIFY:
		break;
	default:
		return 1; /* informational strings need no answer */
	}
	if (!p)
		return 0;
	p->asked++;
	if (!p->reference || p->status != FV_OK || p->asked > MAX_ASKS)
		return 0;
	snprintf(purpose, sizeof(purpose), "%s for %s", p->field, p->location);
	rc = ossl_host->secret_resolve(p->reference, purpose, &secret, &len);
	if (rc != FV_OK) {
		/* The host has recorded why; keep its message. */
		p->status = rc;
		return 0;
	}
	rc = UI_set_result_ex(ui, uis, secret, (int)len);
	ossl_host->secret_free(secret, len);
	return rc == 0 ? 1 : 0;
}

UI_METHOD *secret_prompt_method(void)
{
	UI_METHOD *m = UI_create_method("flowvault secret reference");

	if (m && UI_method_set_reader(m, prompt_read) != 0) {
		UI_destroy_method(m);
		m = NULL;
	}
	return m;
}

const char *ossl_error_text(char *buf, size_t len)
{
	const char *data = NULL, *reason;
	char entry[256];
	size_t used = 0;
	unsigned long e;
	int flags = 0, n;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		reason = ERR_reason_error_string(e);
		if (data && (flags & ERR_TXT_STRING) && *data)
			snprintf(entry, sizeof(entry), "%s (%s)",
			         reason ? reason : "unknown error", data);
		else
			snprintf(entry, sizeof(entry), "%s",
			         reason ? reason : "unknown error");
		/* Engines and decoders often raise the same error repeatedly. */
		if (strstr(buf, entry) || used >= len - 1)
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", entry);
		if (n > 0)
			used += (size_t)n < len - used ? (size_t)n : len - used - 1;
	}
	if (!buf[0])
		snprintf(buf, len, "no detail from OpenSSL");
	return buf;
}
