#include "internal.h"

/* Placeholder: accepts no fields until the endpoint server lands. */
int fv__serve_config_check(json_object *section, const char *where)
{
	(void)section;
	return fv__error_set(FV_ERR_CONFIG, "%s: the serve section is not supported by this build", where);
}
