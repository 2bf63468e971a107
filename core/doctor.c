/*
 * What `flowvault doctor` and `flowvault version` need from the library: a
 * decryption self-test of a key, read access to the "serve" section, and
 * the versions of the libraries it runs with.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json_c_version.h>
#include <microhttpd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "serve_internal.h"

#ifndef FLOWVAULT_VERSION_STRING
#define FLOWVAULT_VERSION_STRING FLOWVAULT_VERSION
#endif

static char abi_version[16];
static fv_library_version library_versions[7];
static pthread_once_t library_versions_once = PTHREAD_ONCE_INIT;

static void library_versions_fill(void)
{
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
	fv_library_version *l = library_versions;

	snprintf(abi_version, sizeof(abi_version), "%d.%d", FV_PROVIDER_ABI_MAJOR,
	         FV_PROVIDER_ABI_MINOR);
	l[0] = (fv_library_version){ "libflowvault", FLOWVAULT_VERSION_STRING };
	l[1] = (fv_library_version){ "provider-abi", abi_version };
	l[2] = (fv_library_version){ "OpenSSL", OpenSSL_version(OPENSSL_VERSION_STRING) };
	l[3] = (fv_library_version){ "json-c", json_c_version() };
	l[4] = (fv_library_version){ "libcurl", curl ? curl->version : "unknown" };
	l[5] = (fv_library_version){ "libmicrohttpd", MHD_get_version() };
}

const fv_library_version *fv_library_versions(void)
{
	pthread_once(&library_versions_once, library_versions_fill);
	return library_versions;
}

int fv_key_self_test(fv_key *key)
{
	unsigned char secret[32], plain[512], *wrapped = NULL, *der = NULL;
	const unsigned char *p;
	size_t der_len = 0, wrapped_len = 0, plain_len = sizeof(plain);
	EVP_PKEY *pub = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int rc;

	if (!key)
		return fv__error_set(FV_ERR_USAGE, "fv_key_self_test: key is NULL");
	if ((rc = fv_key_public_der(&der, &der_len, key)) != FV_OK)
		return rc;
	p = der;
	if (RAND_bytes(secret, sizeof(secret)) != 1 ||
	    !(pub = d2i_PUBKEY(NULL, &p, (long)der_len)) ||
	    !(pctx = EVP_PKEY_CTX_new(pub, NULL)) ||
	    EVP_PKEY_encrypt_init(pctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_encrypt(pctx, NULL, &wrapped_len, secret, sizeof(secret)) <= 0 ||
	    !(wrapped = OPENSSL_malloc(wrapped_len)) ||
	    EVP_PKEY_encrypt(pctx, wrapped, &wrapped_len, secret, sizeof(secret)) <= 0) {
		ERR_clear_error();
		rc = fv__error_set(FV_ERR_GENERIC,
			"key '%s': cannot encrypt a test message to its public key (is it RSA?)",
			fv_key_name(key));
		goto out;
	}
	rc = fv_key_decrypt(plain, &plain_len, key, wrapped, wrapped_len);
	if (rc == FV_OK && (plain_len != sizeof(secret) ||
	                    CRYPTO_memcmp(plain, secret, sizeof(secret)) != 0))
		rc = fv__error_set(FV_ERR_BACKEND,
			"key '%s': the backend decrypted an OAEP-SHA256 test message to the wrong "
			"value; the private key does not belong to this public key, or the backend "
			"uses other OAEP parameters", fv_key_name(key));
out:
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(plain, sizeof(plain));
	OPENSSL_free(wrapped);
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pub);
	fv_free(der);
	return rc;
}

static json_object *serve_member(const fv_context *ctx, const char *name)
{
	json_object *v;

	return ctx && ctx->serve && json_object_object_get_ex(ctx->serve, name, &v) ? v : NULL;
}

static size_t array_len(json_object *a)
{
	return json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

int fv_context_has_serve(const fv_context *ctx)
{
	return ctx && ctx->serve;
}

int fv_context_serve_allow_unsigned(const fv_context *ctx)
{
	json_object *v = serve_member(ctx, "allow_unsigned");

	return json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

int fv_context_has_graph(const fv_context *ctx)
{
	return ctx && ctx->graph;
}

size_t fv_context_serve_key_count(const fv_context *ctx)
{
	return array_len(serve_member(ctx, "keys"));
}

const char *fv_context_serve_key(const fv_context *ctx, size_t index)
{
	json_object *a = serve_member(ctx, "keys");

	return index < array_len(a) ? json_object_get_string(json_object_array_get_idx(a, index))
	                            : NULL;
}

size_t fv_context_serve_secret_count(const fv_context *ctx)
{
	return array_len(serve_member(ctx, "app_secrets"));
}

const char *fv_context_serve_secret(const fv_context *ctx, size_t index)
{
	json_object *a = serve_member(ctx, "app_secrets");

	return index < array_len(a) ? json_object_get_string(json_object_array_get_idx(a, index))
	                            : NULL;
}

char *fv_context_serve_tls_file(const fv_context *ctx, int want_key)
{
	json_object *v = serve_member(ctx, want_key ? "key" : "cert");

	return json_object_is_type(v, json_type_string)
	               ? fv__config_resolve_path(ctx, json_object_get_string(v)) : NULL;
}

int fv_context_serve_admin_insecure(const fv_context *ctx)
{
	struct serve_config cfg;
	int insecure;

	memset(&cfg, 0, sizeof(cfg));
	if (!ctx || !ctx->serve || fv__serve_config_parse(&cfg, ctx->serve, "serve", ctx) != FV_OK) {
		fv_error_clear();
		return 0;
	}
	insecure = cfg.admin_insecure && cfg.admin_listen && !fv__host_is_loopback(cfg.admin_host) &&
	           !(cfg.admin_cert_path && cfg.admin_token);
	fv__serve_config_clear(&cfg);
	return insecure;
}
