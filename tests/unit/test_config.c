/*
 * The configuration file: search order, strict parsing (unknown fields and
 * wrong types are errors naming the JSON path), literal secrets refused, and
 * what a plugin reads back through the host's config services.
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

struct fixture {
	char *dir;
	char config[1024];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = ut_mkdtemp("config");
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
	return 0;
}

/* Open `text` as the configuration; return the status (error in
 * fv_error_last()). */
static int open_text(struct fixture *f, const char *text, fv_context **ctx)
{
	ut_write(f->config, text, 0600);
	*ctx = NULL;
	return fv_context_open(ctx, f->config, 0);
}

/* The configuration must be refused with FV_ERR_CONFIG and a message that
 * has every one of the NULL-terminated strings. */
static void expect_refused(struct fixture *f, const char *text, ...)
{
	fv_context *ctx = NULL;
	const char *needle;
	va_list ap;

	if (open_text(f, text, &ctx) == FV_OK)
		fail_msg("accepted: %s", text);
	assert_null(ctx);
	assert_int_equal(fv_error_last()->status, FV_ERR_CONFIG);
	va_start(ap, text);
	while ((needle = va_arg(ap, const char *)) != NULL)
		if (!ut_has(fv_error_last()->message, needle))
			fail_msg("for %s", text);
	va_end(ap);
}

/* A key entry of the test plugin; the configuration opens, the key must not.
 * The message must have every one of the NULL-terminated strings. */
static void expect_key_refused(struct fixture *f, const char *entry, int status, ...)
{
	char text[4096];
	fv_context *ctx = NULL;
	fv_key *key = NULL;
	const char *needle;
	va_list ap;

	snprintf(text, sizeof(text),
	         "{\"plugin_path\": [\"" FV_TEST_PLUGIN_DIR "\"], \"keys\": {\"k\": %s}}", entry);
	if (open_text(f, text, &ctx) != FV_OK)
		fail_msg("config refused: %s (%s)", fv_error_last()->message, text);
	if (fv_key_open(&key, ctx, "k") == FV_OK)
		fail_msg("key accepted: %s", entry);
	assert_null(key);
	assert_int_equal(fv_error_last()->status, status);
	va_start(ap, status);
	while ((needle = va_arg(ap, const char *)) != NULL)
		if (!ut_has(fv_error_last()->message, needle))
			fail_msg("for %s", entry);
	va_end(ap);
	fv_context_free(ctx);
}

static void test_minimal_and_key_order(void **state)
{
	struct fixture *f = *state;
	fv_context *ctx;

	assert_int_equal(open_text(f, "{}", &ctx), FV_OK);
	assert_int_equal(fv_context_key_count(ctx), 0);
	assert_string_equal(fv_context_config_path(ctx), f->config);
	fv_context_free(ctx);

	assert_int_equal(open_text(f,
		"{\"keys\": {\"zeta\": {\"provider\": \"pem\", \"path\": \"z.pem\"},\n"
		"            \"alpha\": {\"provider\": \"pem\", \"path\": \"a.pem\",\n"
		"                        \"phone_numbers\": [\"123\", \"456\"], \"waba_id\": \"789\"}}}\n\n",
		&ctx), FV_OK);
	assert_int_equal(fv_context_key_count(ctx), 2);
	assert_string_equal(fv_context_key_name(ctx, 0), "zeta");
	assert_string_equal(fv_context_key_name(ctx, 1), "alpha");
	assert_null(fv_context_key_name(ctx, 2));
	assert_int_equal(fv_context_key_phone_count(ctx, "alpha"), 2);
	assert_string_equal(fv_context_key_phone(ctx, "alpha", 1), "456");
	assert_string_equal(fv_context_key_waba(ctx, "alpha"), "789");
	assert_null(fv_context_key_waba(ctx, "zeta"));
	fv_context_free(ctx);
}

static void test_not_json(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, "{\"keys\": {\n\"a\": \n", "not valid JSON", f->config, (const char *)NULL);
	expect_refused(f, "{\"keys\": {}} trailing", "not valid JSON", (const char *)NULL);
	expect_refused(f, "[1, 2]", "JSON object", (const char *)NULL);
	expect_refused(f, "", "not valid JSON", (const char *)NULL);
}

static void test_unknown_fields(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, "{\"plugins_path\": []}", "plugins_path", "unknown field", (const char *)NULL);
	expect_refused(f, "{\"keys\": {}, \"kyes\": {}}", "kyes", "unknown field", (const char *)NULL);
	/* Inside a key entry, against the fields its plugin declares. */
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"lable\": \"y\"}",
	                   FV_ERR_CONFIG, "keys.k.lable", "unknown field", "testgood", (const char *)NULL);
	/* A field of another provider is unknown here too. */
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"passphrase\": \"env:X\"}",
	                   FV_ERR_CONFIG, "keys.k.passphrase", "unknown field", (const char *)NULL);
}

/* The graph and serve sections belong to later features; unknown members in
 * them are errors all the same. */
static void test_unknown_fields_in_sections(void **state)
{
	struct fixture *f = *state;
	fv_context *ctx = NULL;

	assert_int_not_equal(open_text(f, "{\"graph\": {\"no_such_member\": 1}}", &ctx), FV_OK);
	assert_int_equal(fv_error_last()->status, FV_ERR_CONFIG);
	if (strstr(fv_error_last()->message, "not supported by this build"))
		skip(); /* the Graph section is still a placeholder */
	assert_true(ut_has(fv_error_last()->message, "graph.no_such_member"));
	assert_int_not_equal(open_text(f, "{\"serve\": {\"no_such_member\": 1}}", &ctx), FV_OK);
	assert_int_equal(fv_error_last()->status, FV_ERR_CONFIG);
	if (strstr(fv_error_last()->message, "not supported by this build"))
		skip(); /* the serve section is still a placeholder */
	assert_true(ut_has(fv_error_last()->message, "serve.no_such_member"));
}

static void test_wrong_types(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, "{\"keys\": []}", "keys", "expected an object", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"k\": \"pem\"}}", "keys.k", "expected an object", (const char *)NULL);
	expect_refused(f, "{\"plugin_path\": \"/usr/lib\"}", "plugin_path", "expected an array", (const char *)NULL);
	expect_refused(f, "{\"plugin_path\": [\"/a\", 7]}", "plugin_path[1]", "expected a string", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"k\": {\"provider\": 1}}}", "keys.k.provider",
	               "expected a string", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"k\": {\"provider\": \"../evil\"}}}", "keys.k.provider", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"k\": {\"provider\": \"pem\", \"phone_numbers\": \"123\"}}}",
	               "keys.k.phone_numbers", "expected an array", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"k\": {\"provider\": \"pem\", \"phone_numbers\": [\"12a\"]}}}",
	               "keys.k.phone_numbers[0]", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"k\": {\"provider\": \"pem\", \"waba_id\": 123}}}",
	               "keys.k.waba_id", "expected a string", (const char *)NULL);

	/* Plugin-declared fields, each type. */
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": 5}", FV_ERR_CONFIG,
	                   "keys.k.label", "expected a string", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"count\": \"3\"}",
	                   FV_ERR_CONFIG, "keys.k.count", "expected an integer", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"count\": 1.5}",
	                   FV_ERR_CONFIG, "keys.k.count", "expected an integer", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"flag\": \"yes\"}",
	                   FV_ERR_CONFIG, "keys.k.flag", "expected a boolean", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"flag\": 1}",
	                   FV_ERR_CONFIG, "keys.k.flag", "expected a boolean", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"list\": [\"a\", 2]}",
	                   FV_ERR_CONFIG, "keys.k.list", "array of strings", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"secret\": 1234}",
	                   FV_ERR_CONFIG, "keys.k.secret", (const char *)NULL);
}

static void test_missing_provider_and_required(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, "{\"keys\": {\"k\": {\"path\": \"k.pem\"}}}",
	               "keys.k.provider", "missing", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"testgood\"}", FV_ERR_CONFIG,
	                   "keys.k.label", "missing", (const char *)NULL);
	expect_key_refused(f, "{\"provider\": \"nosuch\"}", FV_ERR_PLUGIN,
	                   "keys.k.provider", "no plugin 'nosuch'", (const char *)NULL);
}

static void test_literal_secret_refused(void **state)
{
	struct fixture *f = *state;
	static const char *const literals[] = {
		"hunter2-literal", "env:", "env:1ABC", "file:", "PROMPT", "env:A-B",
	};
	char entry[512];
	size_t i;

	for (i = 0; i < sizeof(literals) / sizeof(literals[0]); i++) {
		snprintf(entry, sizeof(entry),
		         "{\"provider\": \"testgood\", \"label\": \"x\", \"secret\": \"%s\"}",
		         literals[i]);
		expect_key_refused(f, entry, FV_ERR_CONFIG, "keys.k.secret", (const char *)NULL);
	}
	/* The message never repeats what may be the secret itself. */
	expect_key_refused(f, "{\"provider\": \"testgood\", \"label\": \"x\", \"secret\": \"hunter2-literal\"}",
	                   FV_ERR_CONFIG, "env:NAME", (const char *)NULL);
	assert_null(strstr(fv_error_last()->message, "hunter2"));
}

/* What a plugin reads: values by name, paths made absolute against the
 * configuration's directory, secrets resolved through the host. */
static void test_plugin_reads_config(void **state)
{
	struct fixture *f = *state;
	char text[2048], expected[2048];
	unsigned char digest[32];
	char hex[FV_FINGERPRINT_HEX_SIZE], want[FV_FINGERPRINT_HEX_SIZE];
	unsigned int dlen;
	fv_context *ctx;
	fv_key *key = NULL;
	char info[1024];
	size_t i;

	setenv("FV_UNIT_SECRET", "12345678", 1);
	snprintf(text, sizeof(text),
	         "{\"plugin_path\": [\"" FV_TEST_PLUGIN_DIR "\"], \"keys\": {"
	         "\"full\": {\"provider\": \"testgood\", \"label\": \"L1\", \"count\": 42,"
	         " \"flag\": true, \"list\": [\"a\", \"b\"], \"secret\": \"env:FV_UNIT_SECRET\","
	         " \"file\": \"sub/k.bin\", \"phone_numbers\": [\"1\"]},"
	         "\"bare\": {\"provider\": \"testgood\", \"label\": \"L2\", \"file\": \"/abs/k.bin\"}}}");
	assert_int_equal(open_text(f, text, &ctx), FV_OK);

	if (fv_key_open(&key, ctx, "full") != FV_OK)
		fail_msg("full: %s", fv_error_last()->message);
	assert_int_equal(fv_key_info(info, sizeof(info), key), FV_OK);
	snprintf(expected, sizeof(expected),
	         "location=keys.full label=L1 count=42 flag=1 file=%s/sub/k.bin secret_len=8 list=a,b",
	         f->dir);
	assert_string_equal(info, expected);
	assert_string_equal(fv_key_provider(key), "testgood");

	/* The fingerprint is SHA-256 of exactly what the plugin returned. */
	assert_int_equal(fv_key_fingerprint(hex, key), FV_OK);
	assert_true(EVP_Digest("TESTDER:L1", 10, digest, &dlen, EVP_sha256(), NULL));
	for (i = 0; i < 32; i++)
		snprintf(want + 2 * i, 3, "%02x", digest[i]);
	assert_string_equal(hex, want);
	fv_key_free(key);

	if (fv_key_open(&key, ctx, "bare") != FV_OK)
		fail_msg("bare: %s", fv_error_last()->message);
	assert_int_equal(fv_key_info(info, sizeof(info), key), FV_OK);
	assert_string_equal(info,
		"location=keys.bare label=L2 count=-1 flag=-1 file=/abs/k.bin secret_len=0 list=");
	fv_key_free(key);

	/* No such key; and a plugin without generate. */
	assert_int_equal(fv_key_open(&key, ctx, "nope"), FV_ERR_CONFIG);
	assert_true(ut_has(fv_error_last()->message, "nope"));
	assert_true(ut_has(fv_error_last()->message, "full"));
	assert_int_equal(fv_key_generate(NULL, ctx, "full"), FV_ERR_UNSUPPORTED);
	assert_true(ut_has(fv_error_last()->message, "testgood"));
	fv_context_free(ctx);
	unsetenv("FV_UNIT_SECRET");
}

/* Strict JSON: what json-c would take leniently, and duplicate members
 * (json-c keeps the last silently), are refused, naming line and member. */
static void test_strict_json(void **state)
{
	struct fixture *f = *state;

	expect_refused(f, "{\n\"keys\": {}, // none yet\n}", "not valid JSON",
	               "comments are not allowed", (const char *)NULL);
	expect_refused(f, "{\"keys\": {} /* none */}", "comments are not allowed",
	               (const char *)NULL);
	expect_refused(f, "{\"keys\": {},}", "trailing comma", (const char *)NULL);
	expect_refused(f, "{\"plugin_path\": [\"/a\",\n ]}", "trailing comma", (const char *)NULL);
	expect_refused(f, "{'keys': {}}", "single quotes", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"a\": {\"provider\": \"pem\", \"n\": NaN}}}",
	               "NaN", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"a\": {\"provider\": \"pem\", \"n\": -Infinity}}}",
	               "Infinity", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"a\": {\"provider\": \"pem\", \"n\": 1.}}}",
	               "ends in '.'", (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"a\": {\"provider\": \"pem\", \"s\": \"x\ty\"}}}",
	               "control character", (const char *)NULL);

	expect_refused(f, "{\n \"serve\": {\"keys\": [\"a\"]},\n\n \"serve\": {}\n}",
	               "serve: duplicate member (first at line 2, again at line 4)",
	               (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"a\": {\"provider\": \"pem\"},\n\"a\": {\"provider\": \"pem\"}}}",
	               "keys.a: duplicate member (first at line 1, again at line 2)",
	               (const char *)NULL);
	/* The same name once escaped: json-c sees one member. */
	expect_refused(f, "{\"keys\": {}, \"k\\u0065ys\": {}}", "keys: duplicate member",
	               (const char *)NULL);
	expect_refused(f, "{\"keys\": {\"a\": {\"provider\": \"pem\", \"l\": [{}, {\"x\": 1, \"x\": 1}]}}}",
	               "keys.a.l[1].x: duplicate member", (const char *)NULL);
	/* Same names in different objects, and in strings, are fine. */
	{
		fv_context *ctx = NULL;

		assert_int_equal(open_text(f,
			"{\"keys\": {\"a\": {\"provider\": \"pem\", \"path\": \"a\\\"keys\\\": {,\"},"
			" \"b\": {\"provider\": \"pem\", \"path\": \"1.5e3\"}}}", &ctx), FV_OK);
		fv_context_free(ctx);
	}
}

/* Key names go into an HTTP header: [A-Za-z0-9._-]{1,64}. */
static void test_key_names(void **state)
{
	static const char *const bad[] = {
		"", "a b", "a\\r\\nX-Injected: 1", "a/b", "a:b", "\\u00e9",
		"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", /* 65 */
	};
	struct fixture *f = *state;
	char text[512];
	fv_context *ctx = NULL;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "{\"keys\": {\"%s\": {\"provider\": \"pem\"}}}", bad[i]);
		expect_refused(f, text, "not a valid key name", "1 to 64", (const char *)NULL);
		assert_null(strchr(fv_error_last()->message, '\n'));
	}
	assert_int_equal(open_text(f,
		"{\"keys\": {\"Flows-2.prod_a\": {\"provider\": \"pem\"},"
		" \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\": {\"provider\": \"pem\"}}}",
		&ctx), FV_OK);
	assert_int_equal(fv_context_key_count(ctx), 2);
	fv_context_free(ctx);
}

/* A relative file: reference in a plugin's secret field is relative to the
 * configuration's directory, whatever the working directory. */
static void test_relative_secret_file(void **state)
{
	struct fixture *f = *state;
	char path[1024], info[1024], cwd[1024];
	fv_context *ctx;
	fv_key *key = NULL;

	ut_join(path, sizeof(path), f->dir, "pass");
	ut_write(path, "0123456789\n", 0600);
	assert_int_equal(open_text(f,
		"{\"plugin_path\": [\"" FV_TEST_PLUGIN_DIR "\"], \"keys\": {"
		"\"k\": {\"provider\": \"testgood\", \"label\": \"L\", \"secret\": \"file:pass\"}}}",
		&ctx), FV_OK);
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/"), 0);
	if (fv_key_open(&key, ctx, "k") != FV_OK)
		fail_msg("relative file: secret: %s", fv_error_last()->message);
	assert_int_equal(chdir(cwd), 0);
	assert_int_equal(fv_key_info(info, sizeof(info), key), FV_OK);
	assert_true(ut_has(info, "secret_len=10"));
	fv_key_free(key);
	fv_context_free(ctx);
}

/* A secret reference that cannot be resolved fails the key, not the file. */
static void test_secret_unresolvable(void **state)
{
	struct fixture *f = *state;

	unsetenv("FV_UNIT_UNSET");
	expect_key_refused(f,
		"{\"provider\": \"testgood\", \"label\": \"x\", \"secret\": \"env:FV_UNIT_UNSET\"}",
		FV_ERR_SECRET, "FV_UNIT_UNSET", (const char *)NULL);
}

/* The configuration file itself must not be writable by others. */
static void test_config_file_permissions(void **state)
{
	struct fixture *f = *state;
	fv_context *ctx = NULL;

	ut_write(f->config, "{}", 0664);
	assert_int_equal(fv_context_open(&ctx, f->config, 0), FV_ERR_CONFIG);
	assert_null(ctx);
	assert_true(ut_has(fv_error_last()->message, "writable by its group"));
	assert_true(ut_has(fv_error_last()->message, "chmod go-w"));
	ut_write(f->config, "{}", 0644);
	assert_int_equal(fv_context_open(&ctx, f->config, 0), FV_OK);
	fv_context_free(ctx);
}

/* --config, then $FLOWVAULT_CONFIG, then $XDG_CONFIG_HOME/flowvault/config.json
 * (or ~/.config/flowvault/config.json), then /etc/flowvault/config.json. */
static void test_search_order(void **state)
{
	struct fixture *f = *state;
	char xdg[1024], xdg_dir[1024], home_dir[1024], home_cfg[1024], env_cfg[1024];
	char buf[1024];
	fv_context *ctx = NULL;
	int etc_exists = access("/etc/flowvault/config.json", F_OK) == 0;

	/* Nothing anywhere. */
	if (!etc_exists) {
		assert_int_equal(fv_context_open(&ctx, NULL, 0), FV_ERR_CONFIG);
		assert_null(ctx);
		snprintf(buf, sizeof(buf), "%s/xdg/flowvault/config.json", f->dir);
		assert_true(ut_has(fv_error_last()->message, buf));
		assert_true(ut_has(fv_error_last()->message, "/etc/flowvault/config.json"));
		assert_true(ut_has(fv_error_last()->message, "--config"));
		/* ...which some commands accept. */
		assert_int_equal(fv_context_open(&ctx, NULL, FV_CONTEXT_CONFIG_OPTIONAL), FV_OK);
		assert_null(fv_context_config_path(ctx));
		assert_int_equal(fv_context_key_count(ctx), 0);
		fv_context_free(ctx);
	}

	/* ~/.config when XDG_CONFIG_HOME is not set. */
	ut_join(home_dir, sizeof(home_dir), f->dir, "home");
	ut_mkdir(home_dir, 0700);
	ut_join(buf, sizeof(buf), home_dir, ".config");
	ut_mkdir(buf, 0700);
	ut_join(buf, sizeof(buf), home_dir, ".config/flowvault");
	ut_mkdir(buf, 0700);
	ut_join(home_cfg, sizeof(home_cfg), home_dir, ".config/flowvault/config.json");
	ut_write(home_cfg, "{\"keys\": {\"home\": {\"provider\": \"pem\"}}}", 0600);
	unsetenv("XDG_CONFIG_HOME");
	assert_int_equal(fv_context_open(&ctx, NULL, 0), FV_OK);
	assert_string_equal(fv_context_key_name(ctx, 0), "home");
	fv_context_free(ctx);

	/* $XDG_CONFIG_HOME wins over ~/.config. */
	ut_join(xdg_dir, sizeof(xdg_dir), f->dir, "xdg");
	ut_mkdir(xdg_dir, 0700);
	setenv("XDG_CONFIG_HOME", xdg_dir, 1);
	ut_join(buf, sizeof(buf), xdg_dir, "flowvault");
	ut_mkdir(buf, 0700);
	ut_join(xdg, sizeof(xdg), xdg_dir, "flowvault/config.json");
	ut_write(xdg, "{\"keys\": {\"xdg\": {\"provider\": \"pem\"}}}", 0600);
	assert_int_equal(fv_context_open(&ctx, NULL, 0), FV_OK);
	assert_string_equal(fv_context_key_name(ctx, 0), "xdg");
	assert_string_equal(fv_context_config_path(ctx), xdg);
	fv_context_free(ctx);

	/* $FLOWVAULT_CONFIG wins over XDG. */
	ut_join(env_cfg, sizeof(env_cfg), f->dir, "env.json");
	ut_write(env_cfg, "{\"keys\": {\"env\": {\"provider\": \"pem\"}}}", 0600);
	setenv("FLOWVAULT_CONFIG", env_cfg, 1);
	assert_int_equal(fv_context_open(&ctx, NULL, 0), FV_OK);
	assert_string_equal(fv_context_key_name(ctx, 0), "env");
	fv_context_free(ctx);

	/* An explicit path wins over everything. */
	ut_write(f->config, "{\"keys\": {\"explicit\": {\"provider\": \"pem\"}}}", 0600);
	assert_int_equal(fv_context_open(&ctx, f->config, 0), FV_OK);
	assert_string_equal(fv_context_key_name(ctx, 0), "explicit");
	fv_context_free(ctx);

	/* A named file that does not exist is an error, not a fall-through. */
	ut_join(buf, sizeof(buf), f->dir, "missing.json");
	assert_int_equal(fv_context_open(&ctx, buf, 0), FV_ERR_CONFIG);
	assert_true(ut_has(fv_error_last()->message, buf));
	setenv("FLOWVAULT_CONFIG", buf, 1);
	assert_int_equal(fv_context_open(&ctx, NULL, 0), FV_ERR_CONFIG);
	assert_true(ut_has(fv_error_last()->message, buf));
	unsetenv("FLOWVAULT_CONFIG");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_minimal_and_key_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_fields_in_sections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_provider_and_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_literal_secret_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plugin_reads_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_unresolvable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_file_permissions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strict_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_secret_file, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
