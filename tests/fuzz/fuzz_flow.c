/*
 * Flows request handling without sockets (what `flowvault serve` runs per
 * request), with a fixed test key: the pywa vector key through the real pem
 * plugin. The first byte picks the mode:
 *   even: the rest is a raw request body; when bit 1 is set, the handler
 *         checks an app secret and the first 71 bytes are the
 *         X-Hub-Signature-256 header, the body follows
 *   odd:  the rest is the clear request, encrypted here the way WhatsApp
 *         does, so the fuzzer reaches the parsing after decryption
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fv_context *ctx;
static fv_key *key;
static fv_flow_handler *handler;        /* no app secret: reaches decryption */
static fv_flow_handler *signed_handler; /* one app secret: the signature check */
static EVP_PKEY *public_key;

static int upstream(void *arg, const char *key_name, const char *request,
                    size_t request_len, long *http_status, char **response,
                    size_t *response_len)
{
	static const char answer[] = "{\"screen\":\"NEXT\",\"data\":{}}";

	(void)arg;
	(void)key_name;
	(void)request;
	*http_status = request_len % 7 == 0 ? 427 : 200;
	*response = strdup(answer);
	*response_len = sizeof(answer) - 1;
	return *response ? FV_OK : FV_ERR_NOMEM;
}

static void setup(void)
{
	static const char secret[] = "fuzz-app-secret";
	const char *secrets[] = { secret };
	const size_t lens[] = { sizeof(secret) - 1 };
	fv_flow_handler_config config = { 0 };
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t der_len;
	char text[1024];

	setenv("FV_FUZZ_PASSPHRASE", "pywa", 1);
	fv_log_set(NULL, NULL, -1);
	snprintf(text, sizeof(text),
	         "{\"keys\":{\"k\":{\"provider\":\"pem\",\"path\":\"%s/tests/vectors/pywa-flows/private_key.pem\","
	         "\"passphrase\":\"env:FV_FUZZ_PASSPHRASE\",\"allow_group_readable\":true}}}",
	         FV_SOURCE_DIR);
	if (fv__context_open_text(&ctx, text, strlen(text), "fuzz.json") != FV_OK ||
	    fv_key_open(&key, ctx, "k") != FV_OK ||
	    fv_key_public_der(&der, &der_len, key) != FV_OK) {
		fprintf(stderr, "fuzz_flow: %s\n", fv_error_last()->message);
		abort();
	}
	p = der;
	public_key = d2i_PUBKEY(NULL, &p, (long)der_len);
	fv_free(der);
	config.keys = &key;
	config.key_count = 1;
	config.upstream = upstream;
	if (!public_key || fv_flow_handler_new(&handler, &config) != FV_OK)
		abort();
	config.app_secrets = secrets;
	config.app_secret_lens = lens;
	config.app_secret_count = 1;
	if (fv_flow_handler_new(&signed_handler, &config) != FV_OK)
		abort();
}

/* Encrypt `clear` into a Flows request body, as WhatsApp's client does. */
static char *make_request(const unsigned char *clear, size_t len)
{
	static const unsigned char aes_key[16] = "0123456789abcdef";
	static const unsigned char iv[16] = "fedcba9876543210";
	unsigned char wrapped[256], *sealed = malloc(len + 16);
	char *b64_data = malloc(4 * ((len + 16 + 2) / 3) + 1), b64_key[400], b64_iv[32];
	char *body = NULL;
	size_t wrapped_len = sizeof(wrapped);
	EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(public_key, NULL);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, m = 0;

	if (!sealed || !b64_data || !pctx || !c ||
	    EVP_PKEY_encrypt_init(pctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_encrypt(pctx, wrapped, &wrapped_len, aes_key, sizeof(aes_key)) <= 0 ||
	    EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL) <= 0 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 16, NULL) <= 0 ||
	    EVP_EncryptInit_ex(c, NULL, NULL, aes_key, iv) <= 0 ||
	    EVP_EncryptUpdate(c, sealed, &n, clear, (int)len) <= 0 ||
	    EVP_EncryptFinal_ex(c, sealed + n, &m) <= 0 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, sealed + n + m) <= 0)
		goto out;
	EVP_EncodeBlock((unsigned char *)b64_data, sealed, n + m + 16);
	EVP_EncodeBlock((unsigned char *)b64_key, wrapped, (int)wrapped_len);
	EVP_EncodeBlock((unsigned char *)b64_iv, iv, sizeof(iv));
	if (asprintf(&body, "{\"encrypted_flow_data\":\"%s\",\"encrypted_aes_key\":\"%s\","
	             "\"initial_vector\":\"%s\"}", b64_data, b64_key, b64_iv) < 0)
		body = NULL;
out:
	EVP_CIPHER_CTX_free(c);
	EVP_PKEY_CTX_free(pctx);
	free(sealed);
	free(b64_data);
	return body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fv_flow_reply reply = { 0 };
	fv_flow_handler *h;
	char signature[72];
	const char *header = NULL;
	char *request = NULL;
	const void *body;
	size_t body_len;

	if (size < 1 || size > 65536)
		return 0;
	if (!handler)
		setup();
	body = data + 1;
	body_len = size - 1;
	h = handler;
	if (data[0] & 1) {
		if (!(request = make_request(data + 1, size - 1)))
			return 0;
		body = request;
		body_len = strlen(request);
	} else if (data[0] & 2) {
		if (body_len < 71)
			return 0;
		h = signed_handler;
		memcpy(signature, data + 1, 71);
		signature[71] = '\0';
		header = signature;
		body = data + 72;
		body_len = size - 72;
	}
	if (fv_flow_handle(&reply, h, body, body_len, header) != FV_OK) {
		free(request);
		return 0;
	}
	/* Every answer is one of the protocol's, with a body only on 200/427. */
	if (reply.http_status != 200 && reply.http_status != 421 && reply.http_status != 427 &&
	    reply.http_status != 432 && reply.http_status != 500)
		__builtin_trap();
	if (reply.http_status == 421 && reply.body_len != 0)
		__builtin_trap();
	fv_flow_reply_clear(&reply);
	free(request);
	return 0;
}
