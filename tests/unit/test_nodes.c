/*
 * What a node takes from outside for serve.nodes: another node's /healthz
 * answer (fv__node_health_parse), the node URLs of the configuration
 * (fv__node_url_check, fv__host_is_loopback), and the Authorization header
 * of an admin request (fv__admin_authorized). Built from the core sources:
 * these functions are internal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "serve_internal.h"

#define FP1 "fb1b3c15dcbe48fa753313b7d84a1265b17a4d3cdfaef7b7436aab7cfd53a441"
#define FP2 "f77da7197994d76cca399a505d8d02f71696dbf7d12ab01767bac30440d4595d"

static int parse(struct node_health *h, const char *text)
{
	return fv__node_health_parse(h, text, strlen(text));
}

static void test_health_accepted(void **state)
{
	struct node_health h;

	(void)state;
	assert_int_equal(parse(&h, "{\"status\":\"unavailable\",\"generation\":7,\"keys\":"
	                           "{\"flows2\":\"ok\",\"flows\":\"unavailable\"},\"fingerprints\":"
	                           "{\"flows2\":\"" FP2 "\",\"flows\":\"" FP1 "\"}}\n"), FV_OK);
	assert_false(h.all_ok);
	assert_int_equal(h.generation, 7);
	assert_int_equal(h.key_count, 2);
	assert_string_equal(h.keys[0].name, "flows2");
	assert_string_equal(h.keys[0].fingerprint, FP2);
	assert_true(h.keys[0].ok);
	assert_string_equal(h.keys[1].name, "flows");
	assert_false(h.keys[1].ok);
	/* A key without a fingerprint, and no keys at all. */
	assert_int_equal(parse(&h, "{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"}}"),
	                 FV_OK);
	assert_string_equal(h.keys[0].fingerprint, "");
	assert_int_equal(parse(&h, "{\"status\":\"ok\",\"generation\":0,\"keys\":{},"
	                           "\"fingerprints\":{}}"), FV_OK);
	assert_int_equal(h.key_count, 0);
}

static void test_health_serve_rendering(void **state)
{
	char fps[SERVE_MAX_KEYS][FV_FINGERPRINT_HEX_SIZE] = { FP1, "" };
	const char *names[] = { "flows", "next" };
	struct node_health h;
	char *body;
	int status;

	(void)state;
	body = fv__health_body(&status, names, 2, 1u, fps, 4);
	assert_non_null(body);
	assert_int_equal(status, 503);
	assert_int_equal(parse(&h, body), FV_OK);
	assert_int_equal(h.generation, 4);
	assert_int_equal(h.key_count, 2);
	assert_string_equal(h.keys[0].fingerprint, FP1);
	assert_true(h.keys[0].ok);
	assert_false(h.keys[1].ok);
	free(body);
}

static void test_health_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"}} x",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"}}{}",
		"{\"status\":\"fine\",\"generation\":1,\"keys\":{}}",
		"{\"generation\":1,\"keys\":{}}",
		"{\"status\":\"ok\",\"generation\":-1,\"keys\":{}}",
		"{\"status\":\"ok\",\"generation\":4294967296,\"keys\":{}}",
		"{\"status\":\"ok\",\"generation\":\"1\",\"keys\":{}}",
		"{\"status\":\"ok\",\"generation\":1}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":[\"a\"]}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":true}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a b\":\"ok\"}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\\u001b[2J\":\"ok\"}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"},\"fingerprints\":[]}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"},\"fingerprints\":{\"a\":\"00\"}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"},\"fingerprints\":"
		"{\"a\":\"FB1B3C15DCBE48FA753313B7D84A1265B17A4D3CDFAEF7B7436AAB7CFD53A441\"}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\"},\"fingerprints\":"
		"{\"b\":\"" FP1 "\"}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{\"a\":\"ok\",\"b\":\"ok\",\"c\":\"ok\","
		"\"d\":\"ok\",\"e\":\"ok\",\"f\":\"ok\",\"g\":\"ok\",\"h\":\"ok\",\"i\":\"ok\"}}",
		"{\"status\":\"ok\",\"generation\":1,\"keys\":{},\"x\":[[[[[[1]]]]]]}",
		"{'status':'ok','generation':1,'keys':{}}",
	};
	static const char doc[] = "{\"status\":\"ok\",\"generation\":1,\"keys\":{}}";
	struct node_health h;
	char *big;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h.key_count = 99;
		if (parse(&h, bad[i]) == FV_OK)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(h.key_count, 0);
	}
	/* A NUL inside, and more than NODE_HEALTH_MAX_BYTES. */
	assert_int_not_equal(fv__node_health_parse(&h, "{}\0{}", 5), FV_OK);
	big = malloc(NODE_HEALTH_MAX_BYTES + 2);
	assert_non_null(big);
	memset(big, ' ', NODE_HEALTH_MAX_BYTES + 1);
	memcpy(big, doc, strlen(doc));
	big[NODE_HEALTH_MAX_BYTES + 1] = '\0';
	assert_int_not_equal(fv__node_health_parse(&h, big, NODE_HEALTH_MAX_BYTES + 1), FV_OK);
	assert_int_equal(fv__node_health_parse(&h, big, NODE_HEALTH_MAX_BYTES), FV_OK);
	free(big);
}

static void test_node_urls(void **state)
{
	static const char *const good[] = {
		"https://10.0.0.5:9464", "https://node-2.example:9464/", "https://[2001:db8::5]:9464",
		"http://127.0.0.1:9464", "http://localhost:9464", "http://[::1]:9464",
		"http://127.9.8.7:1",
	};
	static const char *const bad[] = {
		"http://10.0.0.5:9464", "http://[2001:db8::5]:9464", "http://node:9464",
		"https://10.0.0.5:9464/healthz", "https://user@10.0.0.5:9464",
		"https://10.0.0.5:9464/?x", "https://10.0.0.5:9464/#x", "ftp://10.0.0.5",
		"https:/10.0.0.5:9464", "HTTPS://10.0.0.5", "10.0.0.5:9464", "https://", "",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (fv__node_url_check(good[i], "serve.nodes[0]") != FV_OK)
			fail_msg("refused %s: %s", good[i], fv_error_last()->message);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (fv__node_url_check(bad[i], "serve.nodes[3]") == FV_OK)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(strstr(fv_error_last()->message, "serve.nodes[3]"));
	}
	assert_true(fv__host_is_loopback("127.0.0.1"));
	assert_true(fv__host_is_loopback("::1"));
	assert_true(fv__host_is_loopback("::ffff:127.0.0.2"));
	assert_true(fv__host_is_loopback("LocalHost"));
	assert_false(fv__host_is_loopback("0.0.0.0"));
	assert_false(fv__host_is_loopback("::"));
	assert_false(fv__host_is_loopback("10.0.0.5"));
	assert_false(fv__host_is_loopback("127.0.0.1.example"));
	assert_false(fv__host_is_loopback(NULL));
}

static void test_admin_token(void **state)
{
	static const char token[] = "0123456789abcdef0123456789abcdef";
	unsigned char digest[ADMIN_DIGEST_BYTES];
	char header[128];

	(void)state;
	assert_int_equal(EVP_Digest(token, strlen(token), digest, NULL, EVP_sha256(), NULL), 1);
	snprintf(header, sizeof(header), "Bearer %s", token);
	assert_true(fv__admin_authorized(digest, header));
	snprintf(header, sizeof(header), "bearer %s", token);
	assert_true(fv__admin_authorized(digest, header));
	snprintf(header, sizeof(header), "Bearer %.31s", token);
	assert_false(fv__admin_authorized(digest, header));
	snprintf(header, sizeof(header), "Bearer %sx", token);
	assert_false(fv__admin_authorized(digest, header));
	snprintf(header, sizeof(header), "Basic %s", token);
	assert_false(fv__admin_authorized(digest, header));
	assert_false(fv__admin_authorized(digest, token));
	assert_false(fv__admin_authorized(digest, "Bearer "));
	assert_false(fv__admin_authorized(digest, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_accepted),
		cmocka_unit_test(test_health_serve_rendering),
		cmocka_unit_test(test_health_refused),
		cmocka_unit_test(test_node_urls),
		cmocka_unit_test(test_admin_token),
	};

	fv_log_set(NULL, NULL, -1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
