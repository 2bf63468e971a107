/*
 * The admin listener's protection: serve.admin_token, checked on every
 * /healthz and /metrics request. The supervisor resolves the reference and
 * keeps only the token's SHA-256; a worker compares the digest of what a
 * client sent with it in constant time, so neither the token's length nor
 * its bytes show in the answer's timing.
 */
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../serve_internal.h"

#define BEARER "Bearer "

int fv__admin_token_load(struct serve_gen *gen)
{
	char *token = NULL;
	size_t len = 0;
	int rc;

	gen->admin_token_set = 0;
	if (!gen->cfg.admin_token)
		return FV_OK;
	/* Read again at each reload: a token file rewritten in place is a new
	 * token (env: values stay available once taken). */
	if ((rc = fv_secret_resolve(&token, &len, gen->cfg.admin_token, "serve.admin_token")) != FV_OK)
		return rc;
	if (len < 16) {
		fv_secret_free(token, len);
		return fv__error_set(FV_ERR_SECRET, "serve.admin_token: the token has %zu characters; "
		                     "use at least 16 random ones (e.g. openssl rand -hex 32)", len);
	}
	if (EVP_Digest(token, len, gen->admin_token_digest, NULL, EVP_sha256(), NULL) != 1)
		rc = fv__error_set(FV_ERR_GENERIC, "serve.admin_token: SHA-256 is not available");
	else
		gen->admin_token_set = 1;
	fv_secret_free(token, len);
	return rc;
}

int fv__admin_authorized(const unsigned char digest[ADMIN_DIGEST_BYTES], const char *header)
{
	unsigned char got[EVP_MAX_MD_SIZE];
	unsigned int got_len = 0;
	size_t len;
	int ok;

	/* The scheme's name is case-insensitive (RFC 9110, 11.1). */
	if (!header || strncasecmp(header, BEARER, strlen(BEARER)) != 0)
		return 0;
	header += strlen(BEARER);
	while (*header == ' ')
		header++;
	len = strlen(header);
	while (len && (header[len - 1] == ' ' || header[len - 1] == '\t'))
		len--;
	if (!len || EVP_Digest(header, len, got, &got_len, EVP_sha256(), NULL) != 1 ||
	    got_len != ADMIN_DIGEST_BYTES)
		return 0;
	ok = CRYPTO_memcmp(got, digest, ADMIN_DIGEST_BYTES) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	return ok;
}

void fv__admin_warn(const struct serve_config *cfg)
{
	if (!cfg->admin_listen || !cfg->admin_insecure || fv__host_is_loopback(cfg->admin_host))
		return;
	fv__log(FV_LOG_WARNING, "serve: serve.admin_insecure is true: the admin listener on %s "
	        "is reachable from other machines %s; set serve.admin_cert, serve.admin_key and "
	        "serve.admin_token", cfg->admin_listen,
	        cfg->admin_cert_path ? "without a token (serve.admin_token)"
	        : cfg->admin_token ? "in plain HTTP, its token readable on the way"
	        : "in plain HTTP and without a token");
}

void fv__admin_http_setup(struct serve_http *http, const struct serve_gen *gen)
{
	http->admin_tls_cert = gen->admin_tls_cert;
	http->admin_tls_key = gen->admin_tls_key;
	http->admin_token_set = gen->admin_token_set;
	memcpy(http->admin_token_digest, gen->admin_token_digest, sizeof(http->admin_token_digest));
}
