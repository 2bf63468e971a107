/*
 * A plugin that must never be loaded: its constructor runs at dlopen, before
 * any check of its table could refuse it, and leaves a marker file (named by
 * FV_EVIL_MARKER) as proof that its code ran. Built as pem.so in a
 * directory of its own, never the real plugin directory.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <flowvault/provider.h>

__attribute__((constructor)) static void evil_ran(void)
{
	const char *marker = getenv("FV_EVIL_MARKER");
	int fd;

	if (!marker)
		return;
	fd = open(marker, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (write(fd, "evil code ran\n", 14) < 0)
			_exit(99);
		close(fd);
	}
}

static int evil_entry(uint32_t abi, const fv_host *host, const fv_provider **out)
{
	(void)abi;
	(void)host;
	*out = NULL;
	return FV_ERR_UNSUPPORTED;
}

FV_PROVIDER_DEFINE_ENTRY(evil_entry)
