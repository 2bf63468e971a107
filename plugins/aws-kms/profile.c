/*
 * The AWS shared credentials file (~/.aws/credentials) and config file
 * (~/.aws/config): INI text, sections "[name]" in the first and
 * "[profile name]" (or "[default]") in the second, "key = value" lines,
 * comments starting with '#' or ';'. Only the static keys are read; a
 * profile that needs more (role_arn, credential_process, sso_*) is named
 * as unsupported so the message can say so.
 */
#include <string.h>

#include "aws_kms.h"

static const char *skip_blank(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

static const char *trim_end(const char *start, const char *end)
{
	while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	return end;
}

static int span_equals(const char *s, const char *e, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(e - s) == n && memcmp(s, word, n) == 0;
}

/* Whether the header between '[' and ']' names profile `name`. */
static int section_matches(const char *s, const char *e, const char *name, int is_config)
{
	s = skip_blank(s, e);
	e = trim_end(s, e);
	if (!is_config)
		return span_equals(s, e, name);
	if (strcmp(name, "default") == 0 && span_equals(s, e, "default"))
		return 1;
	if ((size_t)(e - s) > 8 && memcmp(s, "profile", 7) == 0 &&
	    (s[7] == ' ' || s[7] == '\t')) {
		s = skip_blank(s + 7, e);
		return span_equals(s, e, name);
	}
	return 0;
}

static const char *const unsupported_keys[] = {
	"role_arn", "credential_process", "sso_start_url", "sso_session",
	"web_identity_token_file", "credential_source",
};

void aws_profile_clear(const fv_host *host, struct aws_profile *p)
{
	cloud_secret_clear(host, &p->access_key);
	cloud_secret_clear(host, &p->secret_key);
	cloud_secret_clear(host, &p->session_token);
	p->found = 0;
	p->unsupported[0] = '\0';
}

int aws_profile_parse(const fv_host *host, const char *text, size_t len,
                      const char *name, int is_config, struct aws_profile *out)
{
	const char *p = text, *end = text + len;
	int in_section = 0, rc = FV_OK;

	while (p < end && rc == FV_OK) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		const char *s = skip_blank(p, line_end), *e = trim_end(s, line_end);

		p = nl ? nl + 1 : end;
		if (s == e || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			const char *close = memchr(s, ']', (size_t)(e - s));

			in_section = close && section_matches(s + 1, close, name, is_config);
			if (in_section)
				out->found = 1;
			continue;
		}
		if (!in_section) {
			continue;
		} else {
			const char *eq = memchr(s, '=', (size_t)(e - s));
			const char *ks = s, *ke, *vs;
			struct cloud_secret *target = NULL;
			size_t i;

			if (!eq)
				continue;
			ke = trim_end(ks, eq);
			vs = skip_blank(eq + 1, e);
			if (span_equals(ks, ke, "aws_access_key_id"))
				target = &out->access_key;
			else if (span_equals(ks, ke, "aws_secret_access_key"))
				target = &out->secret_key;
			else if (span_equals(ks, ke, "aws_session_token"))
				target = &out->session_token;
			if (target) {
				if (e > vs)
					rc = cloud_secret_set(host, vs, (size_t)(e - vs), target);
				continue;
			}
			for (i = 0; i < sizeof(unsupported_keys) / sizeof(unsupported_keys[0]); i++) {
				if (span_equals(ks, ke, unsupported_keys[i]) && !out->unsupported[0]) {
					strncpy(out->unsupported, unsupported_keys[i],
					        sizeof(out->unsupported) - 1);
					out->unsupported[sizeof(out->unsupported) - 1] = '\0';
				}
			}
		}
	}
	return rc;
}
