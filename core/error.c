/* One error convention: a status and a per-thread message (see flowvault.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The analysis-only stand-ins from internal.h; the real functions are here. */
#undef fv__error_set
#undef fv__error_nomem

#define FV_ERROR_MESSAGE_MAX 1024

static _Thread_local char error_message[FV_ERROR_MESSAGE_MAX];
static _Thread_local fv_error error_last;

const fv_error *fv_error_last(void)
{
	/* The address of a thread-local is not a constant initializer. */
	error_last.message = error_message;
	return &error_last;
}

void fv_error_clear(void)
{
	error_last.status = FV_OK;
	error_message[0] = '\0';
}

int fv__error_vset(int status, const char *fmt, va_list ap)
{
	error_last.status = status;
	if (vsnprintf(error_message, sizeof(error_message), fmt, ap) >=
	    (int)sizeof(error_message))
		memcpy(error_message + sizeof(error_message) - 4, "...", 4);
	return status;
}

int fv__error_set(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fv__error_vset(status, fmt, ap);
	va_end(ap);
	return status;
}

int fv__error_prefix(const char *fmt, ...)
{
	char prefix[256];
	char old[FV_ERROR_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, error_message, sizeof(old));
	if (snprintf(error_message, sizeof(error_message), "%s: %s", prefix, old) >=
	    (int)sizeof(error_message))
		memcpy(error_message + sizeof(error_message) - 4, "...", 4);
	return error_last.status;
}

int fv__error_restatus(int status)
{
	error_last.status = status;
	return status;
}

int fv__error_nomem(void)
{
	return fv__error_set(FV_ERR_NOMEM, "out of memory");
}

const char *fv_status_name(int status)
{
	switch (status) {
	case FV_OK: return "ok";
	case FV_ERR_GENERIC: return "error";
	case FV_ERR_USAGE: return "usage";
	case FV_ERR_CONFIG: return "config";
	case FV_ERR_NOT_FOUND: return "not-found";
	case FV_ERR_EXISTS: return "exists";
	case FV_ERR_AUTH: return "auth";
	case FV_ERR_BACKEND: return "backend";
	case FV_ERR_UNSUPPORTED: return "unsupported";
	case FV_ERR_DECRYPT: return "decrypt";
	case FV_ERR_NOMEM: return "nomem";
	case FV_ERR_PLUGIN: return "plugin";
	case FV_ERR_BUFFER_TOO_SMALL: return "buffer-too-small";
	case FV_ERR_SECRET: return "secret";
	case FV_ERR_GRAPH: return "graph";
	case FV_ERR_MISMATCH: return "mismatch";
	case FV_ERR_PERMISSION: return "permission";
	default: return "unknown";
	}
}

void fv_free(void *ptr)
{
	free(ptr);
}
