/*
 * Inspecting a configured key for `keys` and `doctor`: one place decides
 * what "ok", "refused" and "unreachable" mean and how a key's facts look in
 * JSON, so both commands say the same thing.
 */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "keyreport.h"

const char *cli_key_state_name(int state)
{
	switch (state) {
	case CLI_KEY_OK: return "ok";
	case CLI_KEY_REFUSED: return "refused";
	default: return "unreachable";
	}
}

void cli_key_report_open(struct cli_key_report *r, fv_context *ctx, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->name = name;
	r->state = CLI_KEY_UNREACHABLE;
	/* Inspect first: a key the policy refuses still shows its properties. */
	r->status = fv_key_open_ex(&r->key, ctx, name, FV_KEY_OPEN_INSPECT);
	if (r->status == FV_OK)
		r->status = fv_key_fingerprint(r->fingerprint, r->key);
	if (r->status == FV_OK)
		r->status = fv_key_details_get(&r->details, r->key);
	if (r->status != FV_OK) {
		snprintf(r->message, sizeof(r->message), "%s", fv_error_last()->message);
		r->fingerprint[0] = '\0';
		r->details = NULL;
		fv_key_free(r->key);
		r->key = NULL;
		return;
	}
	r->status = fv_key_policy_check(r->key);
	if (r->status != FV_OK) {
		snprintf(r->message, sizeof(r->message), "%s", fv_error_last()->message);
		r->state = CLI_KEY_REFUSED;
		return;
	}
	r->state = CLI_KEY_OK;
}

void cli_key_report_clear(struct cli_key_report *r)
{
	fv_key_free(r->key);
	memset(r, 0, sizeof(*r));
}

/* The public FV_KEY_PROP_* bits by the names `keys --json` gives them. */
static const struct {
	uint32_t bit;
	const char *name;
} property_names[] = {
	{ FV_KEY_PROP_EXTRACTABLE, "extractable" },
	{ FV_KEY_PROP_SENSITIVE, "sensitive" },
	{ FV_KEY_PROP_ALWAYS_SENSITIVE, "always_sensitive" },
	{ FV_KEY_PROP_NEVER_EXTRACTABLE, "never_extractable" },
	{ FV_KEY_PROP_GENERATED_INSIDE, "generated_inside" },
	{ FV_KEY_PROP_CAN_SIGN, "can_sign" },
	{ FV_KEY_PROP_CAN_UNWRAP, "can_unwrap" },
	{ FV_KEY_PROP_FIXED_TPM, "fixed_tpm" },
	{ FV_KEY_PROP_FIXED_PARENT, "fixed_parent" },
	{ FV_KEY_PROP_IN_HOST_MEMORY, "in_host_memory" },
};

static json_object *string_or_null(const char *s)
{
	return s && *s ? json_object_new_string(s) : NULL;
}

json_object *cli_key_warning_json(const fv_key_warning *w)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "property", json_object_new_string(w->property));
	json_object_object_add(o, "message", json_object_new_string(w->message));
	json_object_object_add(o, "refused", json_object_new_boolean(w->refused));
	return o;
}

void cli_key_report_json(json_object *o, const struct cli_key_report *r)
{
	const fv_key_details *d = r->details;
	json_object *props = NULL, *warnings = json_object_new_array();
	size_t i;

	json_object_object_add(o, "state", json_object_new_string(cli_key_state_name(r->state)));
	json_object_object_add(o, "fingerprint_sha256", string_or_null(r->fingerprint));
	json_object_object_add(o, "oaep", string_or_null(d ? d->oaep : NULL));
	json_object_object_add(o, "backend", string_or_null(d ? d->backend : NULL));
	json_object_object_add(o, "location", string_or_null(d ? d->location : NULL));
	json_object_object_add(o, "remote_id", string_or_null(d ? d->remote_id : NULL));
	json_object_object_add(o, "bits", d && d->bits ? json_object_new_int((int)d->bits) : NULL);
	if (d) {
		props = json_object_new_object();
		for (i = 0; i < sizeof(property_names) / sizeof(property_names[0]); i++)
			if (d->properties_known & property_names[i].bit)
				json_object_object_add(props, property_names[i].name,
					json_object_new_boolean((d->properties & property_names[i].bit) != 0));
		for (i = 0; i < d->warning_count; i++)
			json_object_array_add(warnings, cli_key_warning_json(&d->warnings[i]));
	}
	json_object_object_add(o, "properties", props);
	json_object_object_add(o, "warnings", warnings);
	json_object_object_add(o, "require_non_extractable",
		d ? json_object_new_boolean(d->require_non_extractable) : NULL);
	json_object_object_add(o, "info", string_or_null(d ? d->info : NULL));
	json_object_object_add(o, "error", string_or_null(r->state != CLI_KEY_OK ? r->message : NULL));
}

void cli_key_summary(char *buf, size_t len, const fv_key_details *d)
{
	size_t used = 0;

	buf[0] = '\0';
	if (!d)
		return;
#define ADD(...) \
	do { \
		if (used < len) \
			used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__); \
	} while (0)
	if (d->backend)
		ADD("%s", d->backend);
	if (d->location)
		ADD("%s%s", used ? ": " : "", d->location);
	if (d->remote_id)
		ADD("%s%s", used ? ", " : "", d->remote_id);
	if (used && d->bits)
		ADD(", %u bits", d->bits);
	if (used && d->oaep)
		ADD(", OAEP in %s", d->oaep);
#undef ADD
}
