#include "internal.h"

/* Placeholder: accepts no fields until the Graph client lands. */
int fv__graph_config_check(json_object *section, const char *where)
{
	(void)section;
	return fv__error_set(FV_ERR_CONFIG, "%s: the Graph API section is not supported by this build", where);
}
