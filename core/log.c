/* Log lines of the library and its plugins go to one sink the application sets. */
#include <stdio.h>

#include "internal.h"

static void log_to_stderr(void *arg, int level, const char *message)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };

	(void)arg;
	fprintf(stderr, "flowvault: %s: %s\n",
	        names[level < 0 ? 0 : level > 3 ? 3 : level], message);
}

/* Set once at start-up by the application, before threads exist. */
static fv_log_fn log_fn = log_to_stderr;
static void *log_arg;
static int log_level = FV_LOG_WARNING;

void fv_log_set(fv_log_fn fn, void *arg, int level)
{
	log_fn = fn ? fn : log_to_stderr;
	log_arg = arg;
	log_level = level;
}

int fv__log_enabled(int level)
{
	return level <= log_level;
}

void fv__vlog(int level, const char *fmt, va_list ap)
{
	char line[2048];

	if (level > log_level)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	log_fn(log_arg, level, line);
}

void fv__log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fv__vlog(level, fmt, ap);
	va_end(ap);
}

int fv__log_sink_is_default(void)
{
	return log_fn == log_to_stderr;
}

int fv__log_level(void)
{
	return log_level;
}
