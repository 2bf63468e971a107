/* A shared object on the plugin path that is not a flowvault plugin: it has
 * no entry symbol. The loader must refuse it and say so. */
#include <flowvault/provider.h>

FV_PROVIDER_EXPORT int not_a_provider_entry(void);

FV_PROVIDER_EXPORT int not_a_provider_entry(void)
{
	return 42;
}
