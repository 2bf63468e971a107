/*
 * The plugin loader: each unsafe or broken plugin is refused with a reason
 * that names the file and the fix, through fv_plugins_foreach (what
 * `flowvault plugins` shows) and through fv_key_open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <flowvault/flowvault.h>

#include "unit_util.h"

#define MAX_SEEN 64

struct seen {
	size_t count;
	struct {
		char name[64];
		char path[1024];
		char version[32];
		char refused[1024];
		int is_refused;
		uint32_t abi_version;
		uint32_t capabilities;
	} p[MAX_SEEN];
};

static int collect(void *arg, const fv_plugin_info *info)
{
	struct seen *s = arg;

	if (s->count == MAX_SEEN)
		return 1;
	snprintf(s->p[s->count].name, sizeof(s->p[0].name), "%s", info->name);
	snprintf(s->p[s->count].path, sizeof(s->p[0].path), "%s", info->path);
	snprintf(s->p[s->count].version, sizeof(s->p[0].version), "%s",
	         info->version ? info->version : "");
	snprintf(s->p[s->count].refused, sizeof(s->p[0].refused), "%s",
	         info->refused ? info->refused : "");
	s->p[s->count].is_refused = info->refused != NULL;
	s->p[s->count].abi_version = info->abi_version;
	s->p[s->count].capabilities = info->capabilities;
	s->count++;
	return 0;
}

/* The entry for `path`, or fail. */
static size_t find_path(const struct seen *s, const char *path)
{
	size_t i;

	for (i = 0; i < s->count; i++)
		if (strcmp(s->p[i].path, path) == 0)
			return i;
	fail_msg("plugin %s was not listed", path);
	return 0;
}

struct fixture {
	char *dir;
	char config[1024];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = ut_mkdtemp("loader");
	ut_isolate_env(f->dir);
	ut_join(f->config, sizeof(f->config), f->dir, "config.json");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ut_rmtree(f->dir);
	free(f->dir);
	free(f);
	unsetenv("FLOWVAULT_PLUGIN_PATH");
	return 0;
}

/* A configuration with `plugin_path` (a JSON array) and one key per
 * provider name in `providers` (space-separated), each named after it. */
static fv_context *open_config(struct fixture *f, const char *plugin_path,
                               const char *providers)
{
	char text[4096], *copy = strdup(providers), *save = NULL, *p;
	size_t used;
	fv_context *ctx = NULL;

	used = (size_t)snprintf(text, sizeof(text), "{\"plugin_path\": %s, \"keys\": {",
	                        plugin_path);
	for (p = strtok_r(copy, " ", &save); p; p = strtok_r(NULL, " ", &save))
		used += (size_t)snprintf(text + used, sizeof(text) - used,
			"%s\"%s\": {\"provider\": \"%s\", \"label\": \"x\"}",
			text[used - 1] == '{' ? "" : ", ", p, p);
	snprintf(text + used, sizeof(text) - used, "}}\n");
	free(copy);
	ut_write(f->config, text, 0600);
	if (fv_context_open(&ctx, f->config, 0) != FV_OK)
		fail_msg("config: %s", fv_error_last()->message);
	return ctx;
}

/* The test plugins are built outside the real plugin directory. */
static void test_plugins_not_in_real_dir(void **state)
{
	static const char *const names[] = { "testgood", "testabi", "testshort",
	                                     "testdecline", "testnosym" };
	char path[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s.so", FV_REAL_PLUGIN_DIR, names[i]);
		assert_int_equal(access(path, F_OK), -1);
		snprintf(path, sizeof(path), "%s/%s.so", FV_TEST_PLUGIN_DIR, names[i]);
		assert_int_equal(access(path, F_OK), 0);
	}
}

/* Every file in the test plugin directory, loaded or refused with why. */
static void test_foreach_reasons(void **state)
{
	struct fixture *f = *state;
	struct seen s = { 0 };
	char path[1024];
	fv_context *ctx = open_config(f, "[\"" FV_TEST_PLUGIN_DIR "\"]", "testgood");
	size_t i;

	assert_int_equal(fv_plugins_foreach(ctx, collect, &s), FV_OK);

	snprintf(path, sizeof(path), "%s/testgood.so", FV_TEST_PLUGIN_DIR);
	i = find_path(&s, path);
	assert_false(s.p[i].is_refused);
	assert_string_equal(s.p[i].name, "testgood");
	assert_string_equal(s.p[i].version, "9.9.9");
	assert_int_equal(s.p[i].abi_version, FV_PROVIDER_ABI_VERSION);
	assert_int_equal(s.p[i].capabilities, FV_CAP_INFO);

	snprintf(path, sizeof(path), "%s/testabi.so", FV_TEST_PLUGIN_DIR);
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, path));
	assert_true(ut_has(s.p[i].refused, "ABI 2.0"));
	assert_true(ut_has(s.p[i].refused, "rebuild"));

	snprintf(path, sizeof(path), "%s/testnosym.so", FV_TEST_PLUGIN_DIR);
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, path));
	assert_true(ut_has(s.p[i].refused, FV_PROVIDER_ENTRY_SYMBOL));

	snprintf(path, sizeof(path), "%s/testshort.so", FV_TEST_PLUGIN_DIR);
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, path));
	assert_true(ut_has(s.p[i].refused, "function table"));
	assert_true(ut_has(s.p[i].refused, "rebuild"));

	snprintf(path, sizeof(path), "%s/testdecline.so", FV_TEST_PLUGIN_DIR);
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, "testdecline needs a newer host"));

	/* The real plugins come from <exe>/../lib/flowvault/plugins, after ours. */
	snprintf(path, sizeof(path), "%s/pem.so", FV_REAL_PLUGIN_DIR);
	{
		char real[4096];

		assert_non_null(realpath(path, real));
		i = find_path(&s, real);
		assert_false(s.p[i].is_refused);
		assert_int_equal(s.p[i].abi_version, FV_PROVIDER_ABI_VERSION);
		assert_int_equal(s.p[i].capabilities & (FV_CAP_GENERATE | FV_CAP_INFO),
		                 FV_CAP_GENERATE | FV_CAP_INFO);
	}
	fv_context_free(ctx);
}

/* fv_key_open on a key whose provider is refused gives FV_ERR_PLUGIN with
 * the same reason, named after the key. */
static void test_key_open_refused(void **state)
{
	struct fixture *f = *state;
	static const struct { const char *provider, *reason; } cases[] = {
		{ "testabi", "ABI 2.0" },
		{ "testnosym", FV_PROVIDER_ENTRY_SYMBOL },
		{ "testshort", "function table" },
		{ "testdecline", "needs a newer host" },
		{ "nosuchplugin", "no plugin 'nosuchplugin' found" },
	};
	fv_context *ctx = open_config(f, "[\"" FV_TEST_PLUGIN_DIR "\"]",
	                              "testgood testabi testnosym testshort testdecline nosuchplugin");
	fv_key *key = NULL;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(fv_key_open(&key, ctx, cases[i].provider), FV_ERR_PLUGIN);
		assert_null(key);
		assert_true(ut_has(fv_error_last()->message, cases[i].reason));
		assert_true(ut_has(fv_error_last()->message, cases[i].provider));
	}
	/* The search path is in the message, so the user sees where we looked. */
	assert_int_equal(fv_key_open(&key, ctx, "nosuchplugin"), FV_ERR_PLUGIN);
	assert_true(ut_has(fv_error_last()->message, FV_TEST_PLUGIN_DIR));

	/* And the good one next to them still works. */
	if (fv_key_open(&key, ctx, "testgood") != FV_OK)
		fail_msg("testgood: %s", fv_error_last()->message);
	fv_key_free(key);
	fv_context_free(ctx);
}

/* A plugin in a group-writable directory, a group/other-writable plugin
 * file, a foreign-owned file, an unsafe parent directory: all refused. */
static void test_unsafe_locations(void **state)
{
	struct fixture *f = *state;
	char good_so[1024], gw_dir[1024], ok_dir[1024], ow_dir[1024], foreign_dir[1024];
	char parent[1024], child[1024], path[1024], plugin_path[8192];
	struct seen s = { 0 };
	fv_context *ctx;
	fv_key *key = NULL;
	size_t i;

	snprintf(good_so, sizeof(good_so), "%s/testgood.so", FV_TEST_PLUGIN_DIR);

	ut_join(gw_dir, sizeof(gw_dir), f->dir, "group-writable");
	ut_mkdir(gw_dir, 0775);
	ut_join(path, sizeof(path), gw_dir, "testgood.so");
	ut_copy(good_so, path, 0755);

	ut_join(ok_dir, sizeof(ok_dir), f->dir, "writable-file");
	ut_mkdir(ok_dir, 0755);
	ut_join(path, sizeof(path), ok_dir, "gw.so");
	ut_copy(good_so, path, 0775);
	ut_join(path, sizeof(path), ok_dir, "ow.so");
	ut_copy(good_so, path, 0757);
	ut_join(path, sizeof(path), ok_dir, "renamed.so");
	ut_copy(good_so, path, 0755);

	ut_join(foreign_dir, sizeof(foreign_dir), f->dir, "foreign");
	ut_mkdir(foreign_dir, 0755);
	ut_join(path, sizeof(path), foreign_dir, "testgood.so");
	ut_copy(good_so, path, 0755);
	/* Only root can give a file away; skip that case otherwise. */
	int chowned = geteuid() == 0 && chown(path, 54321, 54321) == 0;

	ut_join(parent, sizeof(parent), f->dir, "open-parent");
	ut_mkdir(parent, 0777); /* no sticky bit: anyone may swap its entries */
	ut_join(child, sizeof(child), parent, "child");
	ut_mkdir(child, 0755);
	ut_join(ow_dir, sizeof(ow_dir), child, "testgood.so");
	ut_copy(good_so, ow_dir, 0755);

	snprintf(plugin_path, sizeof(plugin_path),
	         "[\"%s\", \"%s\", \"%s\", \"%s\", \"" FV_TEST_PLUGIN_DIR "\"]",
	         gw_dir, ok_dir, foreign_dir, child);
	ctx = open_config(f, plugin_path, "testgood");
	assert_int_equal(fv_plugins_foreach(ctx, collect, &s), FV_OK);

	ut_join(path, sizeof(path), gw_dir, "testgood.so");
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, gw_dir));
	assert_true(ut_has(s.p[i].refused, "writable by its group"));
	assert_true(ut_has(s.p[i].refused, "chmod go-w"));

	ut_join(path, sizeof(path), ok_dir, "gw.so");
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, "writable by its group"));

	ut_join(path, sizeof(path), ok_dir, "ow.so");
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, "writable by others"));

	ut_join(path, sizeof(path), ok_dir, "renamed.so");
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, "testgood"));

	if (chowned) {
		ut_join(path, sizeof(path), foreign_dir, "testgood.so");
		i = find_path(&s, path);
		assert_true(s.p[i].is_refused);
		assert_true(ut_has(s.p[i].refused, "owned by uid 54321"));
	}

	ut_join(path, sizeof(path), child, "testgood.so");
	i = find_path(&s, path);
	assert_true(s.p[i].is_refused);
	assert_true(ut_has(s.p[i].refused, parent));
	assert_true(ut_has(s.p[i].refused, "writable by others"));

	fv_context_free(ctx);

	/* Opening a key does not fall through to a later copy of a refused
	 * plugin: the first one on the path decides, and the user hears why. */
	ctx = open_config(f, plugin_path, "testgood");
	assert_int_equal(fv_key_open(&key, ctx, "testgood"), FV_ERR_PLUGIN);
	assert_null(key);
	assert_true(ut_has(fv_error_last()->message, "writable by its group"));
	fv_context_free(ctx);

	/* Fix the directory's mode: the same file now loads. */
	assert_int_equal(chmod(gw_dir, 0755), 0);
	ctx = open_config(f, plugin_path, "testgood");
	if (fv_key_open(&key, ctx, "testgood") != FV_OK)
		fail_msg("after chmod: %s", fv_error_last()->message);
	fv_key_free(key);
	fv_context_free(ctx);
}

/* Search order: plugin_path, then $FLOWVAULT_PLUGIN_PATH, then the directory
 * beside the executable; a name found twice is used from the first place. */
static void test_search_order(void **state)
{
	struct fixture *f = *state;
	char env_dir[1024], cfg_dir[1024], path[1024], expected[8192], real[4096];
	char json[2048];
	struct seen s = { 0 };
	fv_context *ctx;
	size_t first, second;

	ut_join(env_dir, sizeof(env_dir), f->dir, "from-env");
	ut_mkdir(env_dir, 0755);
	ut_join(cfg_dir, sizeof(cfg_dir), f->dir, "from-config");
	ut_mkdir(cfg_dir, 0755);
	ut_join(path, sizeof(path), cfg_dir, "testgood.so");
	ut_copy(FV_TEST_PLUGIN_DIR "/testgood.so", path, 0755);
	ut_join(path, sizeof(path), env_dir, "testgood.so");
	ut_copy(FV_TEST_PLUGIN_DIR "/testgood.so", path, 0755);
	setenv("FLOWVAULT_PLUGIN_PATH", env_dir, 1);

	/* A relative plugin_path entry is taken from the config file's directory. */
	snprintf(json, sizeof(json), "[\"from-config\"]");
	ctx = open_config(f, json, "testgood");
	assert_non_null(realpath(FV_REAL_PLUGIN_DIR, real));
	snprintf(expected, sizeof(expected), "%s:%s:%s", cfg_dir, env_dir, real);
	assert_string_equal(fv_plugins_search_path(ctx), expected);

	assert_int_equal(fv_plugins_foreach(ctx, collect, &s), FV_OK);
	ut_join(path, sizeof(path), cfg_dir, "testgood.so");
	first = find_path(&s, path);
	ut_join(path, sizeof(path), env_dir, "testgood.so");
	second = find_path(&s, path);
	assert_true(first < second);
	assert_false(s.p[first].is_refused);
	assert_true(s.p[second].is_refused);
	assert_true(ut_has(s.p[second].refused, "shadowed"));
	fv_context_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plugins_not_in_real_dir),
		cmocka_unit_test_setup_teardown(test_foreach_reasons, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_open_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_locations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
