/*
 * Memory for secrets and private keys: OpenSSL's secure heap, which is
 * locked where the memory limit allows and excluded from core dumps
 * (MADV_DONTDUMP). Initialised once per process, before any secret is
 * resolved or key opened, so that OpenSSL's own private-key numbers land in
 * it too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include "internal.h"

/* Secrets, PIN copies and a few RSA private keys' numbers: small. */
#define SECURE_HEAP_BYTES (256 * 1024)
#define SECURE_HEAP_MIN_ALLOC 32

static pthread_once_t secure_heap_once = PTHREAD_ONCE_INIT;
static int secure_heap_state;   /* CRYPTO_secure_malloc_init's answer */

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

static void secure_heap_init(void)
{
#ifdef SANITIZED
	/* LeakSanitizer does not scan the secure heap's arena, so everything
	 * reachable only through it (OpenSSL's DRBGs) would show as leaked:
	 * sanitizer builds use the ordinary heap, which it can see. */
	secure_heap_state = 0;
	return;
#endif
	if (CRYPTO_secure_malloc_initialized()) {
		secure_heap_state = 1;
		return;
	}
	/* 1: locked and not dumped; 2: not locked (RLIMIT_MEMLOCK), still not
	 * dumped; 0: unavailable, and OpenSSL falls back to the ordinary heap. */
	secure_heap_state = CRYPTO_secure_malloc_init(SECURE_HEAP_BYTES, SECURE_HEAP_MIN_ALLOC);
}

int fv__secure_heap_ready(void)
{
	pthread_once(&secure_heap_once, secure_heap_init);
	return secure_heap_state;
}

void *fv__secure_alloc(size_t len)
{
	void *p;

	fv__secure_heap_ready();
	p = OPENSSL_secure_zalloc(len ? len : 1);
	return p;
}

void fv__secure_free(void *ptr, size_t len)
{
	(void)len; /* the secure heap knows each block's size and wipes it all */
	if (ptr)
		OPENSSL_secure_clear_free(ptr, len);
}

static pthread_once_t harden_once = PTHREAD_ONCE_INIT;

static void process_harden(void)
{
	const char *allow = secure_getenv("FLOWVAULT_ALLOW_CORE_DUMPS");
	struct rlimit none = { 0, 0 };

	/* Before any secret or private key is in memory: their numbers land on
	 * the secure heap, which is never dumped. */
	fv__secure_heap_ready();
	if (allow && strcmp(allow, "1") == 0) {
		fv__log(FV_LOG_WARNING,
			"FLOWVAULT_ALLOW_CORE_DUMPS=1: core dumps and ptrace stay allowed; a core "
			"file of this process may hold secrets (unset it outside debugging)");
		return;
	}
	if (setrlimit(RLIMIT_CORE, &none) != 0)
		fv__log(FV_LOG_WARNING, "cannot turn core dumps off (RLIMIT_CORE): %s",
		        strerror(errno));
	/* Also keeps other processes of the same user from ptrace and from
	 * reading /proc/PID/mem and /proc/PID/environ. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		fv__log(FV_LOG_WARNING, "cannot mark the process non-dumpable: %s",
		        strerror(errno));
}

void fv__process_harden(void)
{
	pthread_once(&harden_once, process_harden);
}
