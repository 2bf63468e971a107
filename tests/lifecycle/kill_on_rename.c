/*
 * LD_PRELOAD for the crash tests: a process that is about to rename a file
 * onto a path ending in $FV_TEST_KILL_ON_RENAME dies of SIGKILL instead,
 * before the rename: a crash at the exact moment a configuration rewrite
 * would land, with no hook in the code under test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((visibility("default"))) int rename(const char *from, const char *to)
{
	int (*real)(const char *, const char *);
	const char *suffix = getenv("FV_TEST_KILL_ON_RENAME");
	size_t n = suffix ? strlen(suffix) : 0, m = to ? strlen(to) : 0;

	if (n && m >= n && strcmp(to + m - n, suffix) == 0)
		raise(SIGKILL);
	*(void **)(&real) = dlsym(RTLD_NEXT, "rename");
	return real(from, to);
}
