/*
 * plugins/common on its own: base64 through OpenSSL, the JSON helpers,
 * secrets in host memory, form bodies, header redaction, and the HTTP client's refusal
 * of plain http:// and its deadline against a port nobody answers on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cloud.h"

static char last_error[1024];
static int secure_allocs;

static FV_PRINTF(2, 3) int stub_error(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return status;
}

static void stub_log(int level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}

static void *stub_secure_alloc(size_t len)
{
	secure_allocs++;
	return calloc(1, len);
}

static void stub_secure_free(void *p, size_t len)
{
	memset(p, 0, len);
	free(p);
	secure_allocs--;
}

static const fv_host host = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_host),
	.log = stub_log,
	.error = stub_error,
	.secure_alloc = stub_secure_alloc,
	.secure_free = stub_secure_free,
};

static void test_base64(void **state)
{
	static const unsigned char bin[] = { 0xfb, 0xff, 0x00, 0x41, 0x42 };
	unsigned char *out = NULL;
	size_t out_len = 0;
	char *b64 = cloud_base64_encode(bin, sizeof(bin)), *url = cloud_base64url_encode(bin, sizeof(bin));

	(void)state;
	assert_string_equal(b64, "+/8AQUI=");
	assert_string_equal(url, "-_8AQUI");
	assert_int_equal(cloud_base64_decode(b64, strlen(b64), &out, &out_len), FV_OK);
	assert_int_equal(out_len, sizeof(bin));
	assert_memory_equal(out, bin, sizeof(bin));
	cloud_buf_free(out, out_len);
	assert_int_equal(cloud_base64url_decode(url, strlen(url), &out, &out_len), FV_OK);
	assert_int_equal(out_len, sizeof(bin));
	assert_memory_equal(out, bin, sizeof(bin));
	cloud_buf_free(out, out_len);
	/* Not base64: wrong length, whitespace, foreign characters, the other alphabet. */
	assert_int_equal(cloud_base64_decode("QUJ", 3, &out, &out_len), FV_ERR_BACKEND);
	assert_int_equal(cloud_base64_decode("QU I=", 5, &out, &out_len), FV_ERR_BACKEND);
	assert_int_equal(cloud_base64_decode("QU*=", 4, &out, &out_len), FV_ERR_BACKEND);
	assert_int_equal(cloud_base64url_decode("+/8A", 4, &out, &out_len), FV_ERR_BACKEND);
	assert_int_equal(cloud_base64_decode("", 0, &out, &out_len), FV_OK);
	assert_int_equal(out_len, 0);
	cloud_buf_free(out, 1);
	free(b64);
	free(url);
}

static void test_json(void **state)
{
	json_object *doc = NULL, *obj;
	const char *s;
	size_t len = 0, body_len = 0;
	int64_t n = 0;
	char *body;

	(void)state;
	assert_int_equal(cloud_json_parse("{\"a\":\"x/y\",\"n\":5,\"b\":true}", 26, &doc), FV_OK);
	s = cloud_json_string(doc, "a", &len);
	assert_non_null(s);
	assert_string_equal(s, "x/y");
	assert_int_equal(len, 3);
	assert_null(cloud_json_string(doc, "n", NULL));
	assert_true(cloud_json_int(doc, "n", &n));
	assert_int_equal(n, 5);
	assert_false(cloud_json_int(doc, "a", &n));
	cloud_json_free_wiped(doc);
	assert_int_equal(cloud_json_parse("[1]", 3, &doc), FV_ERR_BACKEND);
	assert_int_equal(cloud_json_parse("{} x", 4, &doc), FV_ERR_BACKEND);
	assert_int_equal(cloud_json_parse("{\"a\":", 5, &doc), FV_ERR_BACKEND);
	assert_int_equal(cloud_json_parse("{}\n", 3, &doc), FV_OK);
	cloud_json_free_wiped(doc);

	obj = json_object_new_object();
	json_object_object_add(obj, "k", json_object_new_string("a/b+c="));
	body = cloud_json_body(obj, &body_len);
	assert_string_equal(body, "{\"k\":\"a/b+c=\"}");
	assert_int_equal(body_len, strlen(body));
	cloud_buf_free(body, body_len + 1);
	cloud_json_free_wiped(obj);
}

static void test_secrets(void **state)
{
	struct cloud_secret s = { NULL, 0 };

	(void)state;
	assert_int_equal(cloud_secret_set(&host, "token-1", 7, &s), FV_OK);
	assert_int_equal(secure_allocs, 1);
	assert_string_equal(s.data, "token-1");
	assert_int_equal(cloud_secret_set(&host, "t2", 2, &s), FV_OK);
	assert_int_equal(secure_allocs, 1); /* the old one was given back */
	assert_string_equal(s.data, "t2");
	cloud_secret_clear(&host, &s);
	assert_null(s.data);
	assert_int_equal(secure_allocs, 0);
}

static void test_form_body(void **state)
{
	/* The bytes the token endpoints have always been sent. */
	const struct cloud_form_field form[] = {
		{ "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer", 0 },
		{ "assertion", "eyJh.eyJp-_x.c2ln", 0 },
		{ "client_secret", "a+b/c=d&e f\0g", 13 },
	};
	size_t len = 0;
	char *body;

	(void)state;
	body = cloud_form_body(form, 3, &len);
	assert_non_null(body);
	assert_string_equal(body,
		"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
		"&assertion=eyJh.eyJp-_x.c2ln&client_secret=a%2Bb%2Fc%3Dd%26e%20f%00g");
	assert_int_equal(len, strlen(body));
	cloud_buf_free(body, len + 1);
	body = cloud_form_body(form, 0, &len);
	assert_non_null(body);
	assert_string_equal(body, "");
	assert_int_equal(len, 0);
	cloud_buf_free(body, len + 1);
}

static void test_header_redaction(void **state)
{
	(void)state;
	assert_true(cloud_header_is_secret("Authorization", 13));
	assert_true(cloud_header_is_secret("x-vault-token", 13));
	assert_true(cloud_header_is_secret("X-Amz-Security-Token", 20));
	assert_false(cloud_header_is_secret("X-Amz-Target", 12));
	assert_false(cloud_header_is_secret("Authorization-X", 15));
}

static void test_http_refuses_plain_http(void **state)
{
	struct cloud_http_opts opts = { "unit", "keys.t", NULL, 500, 200, 100 };
	struct cloud_request req;
	struct cloud_response resp;
	struct cloud_http *http = NULL;

	(void)state;
	assert_int_equal(cloud_http_new(&host, &opts, &http), FV_OK);
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.url = "http://127.0.0.1:1/x?token=secret";
	assert_int_equal(cloud_http_perform(http, &req, cloud_deadline(http), &resp), FV_ERR_CONFIG);
	assert_non_null(strstr(last_error, "not an https:// URL"));
	assert_null(strstr(last_error, "secret")); /* the query is never shown */
	assert_int_equal(cloud_http_request_count(http), 0);
	cloud_http_free(http);
}

/* A one-certificate CA file, so the test measures the deadline rather than
 * loading the system's CA store (seconds under valgrind). */
static void write_small_ca(const char *path)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *cert = X509_new();
	FILE *f = fopen(path, "w");

	assert_non_null(key);
	assert_non_null(cert);
	assert_non_null(f);
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"unit CA", -1, -1, 0);
	X509_set_issuer_name(cert, X509_get_subject_name(cert));
	X509_set_pubkey(cert, key);
	assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_X509(f, cert), 1);
	assert_int_equal(fclose(f), 0);
	X509_free(cert);
	EVP_PKEY_free(key);
}

/* A listening socket that never accepts: the TLS handshake never ends. */
static void test_http_deadline(void **state)
{
	char ca[] = "/tmp/cloud_unit_ca.XXXXXX";
	struct cloud_http_opts opts = { "unit", "keys.t", ca, 3000, 300, 200 };
	struct sockaddr_in addr;
	socklen_t alen = sizeof(addr);
	struct cloud_request req;
	struct cloud_response resp;
	struct cloud_http *http = NULL;
	char url[64];
	int64_t start, took;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	close(mkstemp(ca));
	write_small_ca(ca);
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
	snprintf(url, sizeof(url), "https://127.0.0.1:%u/", (unsigned)ntohs(addr.sin_port));
	assert_int_equal(cloud_http_new(&host, &opts, &http), FV_OK);
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = url;
	req.body = "{}";
	req.body_len = 2;
	req.idempotent = 1;
	start = cloud_now_ms();
	assert_int_equal(cloud_http_perform(http, &req, cloud_deadline(http), &resp), FV_ERR_BACKEND);
	took = cloud_now_ms() - start;
	print_message("%lld ms, %llu attempts\n", (long long)took,
	              (unsigned long long)cloud_http_request_count(http));
	/* The budget ends the retries; valgrind slows the TLS set-up of an
	 * attempt, which no timer interrupts, so allow for one slow attempt. */
	assert_true(took < 2 * 3000);
	assert_true(cloud_http_request_count(http) >= 2); /* retried inside the budget */
	assert_non_null(strstr(last_error, "budget"));
	cloud_http_free(http);
	close(fd);
	unlink(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_form_body),
		cmocka_unit_test(test_header_redaction),
		cmocka_unit_test(test_http_refuses_plain_http),
		cmocka_unit_test(test_http_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
