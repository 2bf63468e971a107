/* The services libflowvault offers its plugins (struct fv_host in provider.h). */
#include <stdarg.h>
#include <string.h>

#include "internal.h"

static FV_PRINTF(2, 3) void host_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fv__vlog(level, fmt, ap);
	va_end(ap);
}

static FV_PRINTF(2, 3) int host_error(int status, const char *fmt, ...)
{
	va_list ap;

	/* A plugin must not report success as an error; keep the channel honest. */
	if (status >= 0)
		status = FV_ERR_PLUGIN;
	va_start(ap, fmt);
	fv__error_vset(status, fmt, ap);
	va_end(ap);
	return status;
}

/* The declared field `name` and its value, if present. */
static int lookup(const fv_config *cfg, const char *name,
                  const fv_config_field **field, json_object **value,
                  size_t *index)
{
	size_t i;

	if (!cfg || !name)
		return FV_ERR_USAGE;
	for (i = 0; i < cfg->field_count; i++) {
		if (strcmp(cfg->fields[i].name, name) == 0) {
			*field = &cfg->fields[i];
			if (index)
				*index = i;
			return json_object_object_get_ex(cfg->entry, name, value)
			               ? FV_OK
			               : FV_ERR_NOT_FOUND;
		}
	}
	fv__log(FV_LOG_ERROR, "plugin read undeclared configuration field '%s'", name);
	return FV_ERR_USAGE;
}

static int host_config_string(const fv_config *cfg, const char *name,
                              const char **out)
{
	const fv_config_field *field;
	json_object *v;
	size_t i;
	int rc = lookup(cfg, name, &field, &v, &i);

	if (rc != FV_OK)
		return rc;
	if (!json_object_is_type(v, json_type_string))
		return FV_ERR_USAGE;
	*out = cfg->paths[i] ? cfg->paths[i] : json_object_get_string(v);
	return FV_OK;
}

static int host_config_int(const fv_config *cfg, const char *name, int64_t *out)
{
	const fv_config_field *field;
	json_object *v;
	int rc = lookup(cfg, name, &field, &v, NULL);

	if (rc != FV_OK)
		return rc;
	if (!json_object_is_type(v, json_type_int))
		return FV_ERR_USAGE;
	*out = json_object_get_int64(v);
	return FV_OK;
}

static int host_config_bool(const fv_config *cfg, const char *name, int *out)
{
	const fv_config_field *field;
	json_object *v;
	int rc = lookup(cfg, name, &field, &v, NULL);

	if (rc != FV_OK)
		return rc;
	if (!json_object_is_type(v, json_type_boolean))
		return FV_ERR_USAGE;
	*out = json_object_get_boolean(v) ? 1 : 0;
	return FV_OK;
}

static int host_config_array_size(const fv_config *cfg, const char *name,
                                  size_t *out)
{
	const fv_config_field *field;
	json_object *v;
	int rc = lookup(cfg, name, &field, &v, NULL);

	if (rc != FV_OK)
		return rc;
	if (!json_object_is_type(v, json_type_array))
		return FV_ERR_USAGE;
	*out = json_object_array_length(v);
	return FV_OK;
}

static int host_config_string_at(const fv_config *cfg, const char *name,
                                 size_t index, const char **out)
{
	const fv_config_field *field;
	json_object *v, *item;
	int rc = lookup(cfg, name, &field, &v, NULL);

	if (rc != FV_OK)
		return rc;
	if (!json_object_is_type(v, json_type_array) ||
	    index >= json_object_array_length(v))
		return FV_ERR_NOT_FOUND;
	item = json_object_array_get_idx(v, index);
	if (!json_object_is_type(item, json_type_string))
		return FV_ERR_USAGE;
	*out = json_object_get_string(item);
	return FV_OK;
}

static const char *host_config_location(const fv_config *cfg)
{
	return cfg && cfg->location ? cfg->location : "keys";
}

static int host_secret_resolve(const char *reference, const char *purpose,
                               char **out, size_t *out_len)
{
	return fv_secret_resolve(out, out_len, reference, purpose);
}

/* The plugin's name for the file is only for messages: a missing one must
 * not turn a load into a usage error. */
static int host_file_open_checked(const char *path, const char *what, int *fd)
{
	return fv__file_open_checked(path, what && *what ? what : "file", fd);
}

static const fv_host host_services = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_host),
	.log = host_log,
	.error = host_error,
	.config_string = host_config_string,
	.config_int = host_config_int,
	.config_bool = host_config_bool,
	.config_array_size = host_config_array_size,
	.config_string_at = host_config_string_at,
	.config_location = host_config_location,
	.secret_resolve = host_secret_resolve,
	.secret_free = fv_secret_free,
	.file_create = fv__file_create,
	.file_open_checked = host_file_open_checked,
	.secure_alloc = fv__secure_alloc,
	.secure_free = fv__secure_free,
};

const fv_host *fv__host_services(void)
{
	return &host_services;
}
