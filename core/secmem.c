/*
 * Memory for secrets and private keys: OpenSSL's secure heap, which is
 * locked where the memory limit allows and excluded from core dumps
 * (MADV_DONTDUMP). Initialised once per process, before any secret is
 * resolved or key opened, so that OpenSSL's own private-key numbers land in
 * it too.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"

/* Secrets, PIN copies and a few RSA private keys' numbers: small. */
#define SECURE_HEAP_BYTES (256 * 1024)
#define SECURE_HEAP_MIN_ALLOC 32

static pthread_once_t secure_heap_once = PTHREAD_ONCE_INIT;
static int secure_heap_state;   /* CRYPTO_secure_malloc_init's answer */

static void secure_heap_init(void)
{
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
