/*
 * Access tokens for Cloud KMS, from the first of these that is configured:
 *  1. access_token: a secret reference to a token obtained elsewhere;
 *  2. credentials_file, else $GOOGLE_APPLICATION_CREDENTIALS: a service-account
 *     key file; a JWT (RS256, signed with OpenSSL) is exchanged at the file's
 *     token_uri for an access token (RFC 7523);
 *  3. the metadata server ($GCE_METADATA_HOST, else 169.254.169.254), as on
 *     Compute Engine, GKE with Workload Identity, and Cloud Run.
 * Tokens are cached per instance until shortly before they expire.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "gcp.h"

#define SA_FILE_MAX (64 * 1024)
#define JWT_LIFETIME_S 3600

/* The whole file, NUL-terminated, wiped and freed by the caller. */
static int read_key_file(const struct fv_instance *inst, const char *path, char **out,
                         size_t *out_len)
{
	mode_t mode = 0;
	int err = cloud_file_read(path, SA_FILE_MAX, out, out_len, &mode);

	if (err == ENOMEM)
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	if (err == EINVAL || err == EFBIG)
		return CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: '%s' is not a service-account key file (not a regular file of at most %d bytes)",
			inst->location, path, SA_FILE_MAX);
	if (err)
		return CLOUD_ERROR(gcp_host, err == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_AUTH,
			"%s: cannot open the service-account key file '%s': %s; download a key for the "
			"service account, or set credentials_file to the right path",
			inst->location, path, strerror(err));
	if (mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH))
		gcp_host->log(FV_LOG_WARNING,
			"%s: %s: service-account key file '%s' is readable or writable by others (mode %03o); chmod 600 it",
			GCP_PLUGIN, inst->location, path, (unsigned)(mode & 0777));
	return FV_OK;
}

static int load_service_account(struct fv_instance *inst, const char *path, const char *how)
{
	struct gcp_auth *a = &inst->auth;
	json_object *doc = NULL;
	const char *type, *email, *key_id, *pem, *token_uri;
	size_t text_len = 0, pem_len = 0;
	char *text = NULL;
	BIO *bio;
	int rc;

	rc = read_key_file(inst, path, &text, &text_len);
	if (rc != FV_OK)
		return rc;
	rc = cloud_json_parse(text, text_len, &doc);
	OPENSSL_clear_free(text, text_len + 1);
	if (rc != FV_OK)
		return CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: service-account key file '%s' (%s) is not JSON; download the key again",
			inst->location, path, how);
	type = cloud_json_string(doc, "type", NULL);
	email = cloud_json_string(doc, "client_email", NULL);
	key_id = cloud_json_string(doc, "private_key_id", NULL);
	pem = cloud_json_string(doc, "private_key", &pem_len);
	token_uri = cloud_json_string(doc, "token_uri", NULL);
	if (!type || strcmp(type, "service_account") != 0) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: '%s' (%s) is a credentials file of type '%s', not a service-account key; "
			"use a service-account key, the metadata server or access_token",
			inst->location, path, how, type ? type : "(none)");
		goto out;
	}
	if (!email || !pem || !token_uri || strncmp(token_uri, "https://", 8) != 0) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: service-account key file '%s' (%s) lacks client_email, private_key or an "
			"https token_uri; download the key again",
			inst->location, path, how);
		goto out;
	}
	bio = BIO_new_mem_buf(pem, (int)pem_len);
	a->sa_key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	if (!a->sa_key || !EVP_PKEY_is_a(a->sa_key, "RSA")) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: the private_key in service-account key file '%s' (%s) is not an RSA key in PEM; "
			"download the key again",
			inst->location, path, how);
		goto out;
	}
	a->sa_email = strdup(email);
	a->sa_key_id = strdup(key_id ? key_id : "");
	a->token_uri = strdup(token_uri);
	if (!a->sa_email || !a->sa_key_id || !a->token_uri) {
		rc = CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	snprintf(a->source, sizeof(a->source), "service-account key file '%s' (%s, client_email %s)",
	         path, how, email);
	a->token_source.fix = "check that the key is not deleted or disabled in IAM";
	rc = FV_OK;
out:
	cloud_json_free_wiped(doc);
	return rc;
}

int gcp_auth_open(struct fv_instance *inst, const fv_config *cfg)
{
	struct gcp_auth *a = &inst->auth;
	const char *token_ref = NULL, *file = NULL, *env;
	char url[512];
	int rc;

	rc = cloud_token_init(&a->token);
	if (rc != FV_OK)
		return CLOUD_ERROR(gcp_host, rc, "out of memory");
	a->token_source = (struct cloud_token_source){
		.http = inst->http, .location = inst->location, .source = a->source,
		.token_name = "access token" };
	if (gcp_host->config_string(cfg, "access_token", &token_ref) == FV_OK && token_ref) {
		a->kind = GCP_AUTH_TOKEN;
		snprintf(a->source, sizeof(a->source), "access_token '%s'", token_ref);
		return cloud_token_configure(gcp_host, &a->token, inst->location, "access_token",
		                             token_ref, "Cloud KMS access token");
	}
	if (gcp_host->config_string(cfg, "credentials_file", &file) == FV_OK && file) {
		a->kind = GCP_AUTH_SERVICE_ACCOUNT;
		return load_service_account(inst, file, "credentials_file");
	}
	env = getenv("GOOGLE_APPLICATION_CREDENTIALS");
	if (env && *env) {
		a->kind = GCP_AUTH_SERVICE_ACCOUNT;
		return load_service_account(inst, env, "$GOOGLE_APPLICATION_CREDENTIALS");
	}
	a->kind = GCP_AUTH_METADATA;
	env = getenv("GCE_METADATA_HOST");
	if (!env || !*env)
		env = GCP_METADATA_HOST_DEFAULT;
	if (strpbrk(env, "/?#@ \t\r\n"))
		return CLOUD_ERROR(gcp_host, FV_ERR_CONFIG,
			"%s: $GCE_METADATA_HOST '%s' is not HOST or HOST:PORT", inst->location, env);
	snprintf(url, sizeof(url),
	         "http://%s/computeMetadata/v1/instance/service-accounts/default/token", env);
	a->metadata_url = strdup(url);
	if (!a->metadata_url)
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	snprintf(a->source, sizeof(a->source), "metadata server %s%s", env,
	         getenv("GCE_METADATA_HOST") ? " ($GCE_METADATA_HOST)" : "");
	a->token_source.fix = "check that the instance has a service account with the cloudkms scope";
	return FV_OK;
}

void gcp_auth_close(struct gcp_auth *a)
{
	cloud_token_destroy(gcp_host, &a->token);
	EVP_PKEY_free(a->sa_key);
	free(a->sa_email);
	free(a->sa_key_id);
	free(a->token_uri);
	free(a->metadata_url);
}

/* ---- Service account: the JWT bearer grant ---- */

static char *b64url_json(json_object *obj)
{
	size_t len = 0;
	char *text = cloud_json_body(obj, &len), *out;

	if (!text)
		return NULL;
	out = cloud_base64url_encode((const unsigned char *)text, len);
	cloud_buf_free(text, len);
	return out;
}

/* header.claims.signature, RS256 with the service account's key. */
static int make_assertion(struct fv_instance *inst, char **out, size_t *out_len)
{
	struct gcp_auth *a = &inst->auth;
	json_object *header = json_object_new_object(), *claims = json_object_new_object();
	char *h64 = NULL, *c64 = NULL, *s64 = NULL, *input = NULL, *jwt;
	unsigned char *sig = NULL;
	size_t sig_len = 0, n;
	EVP_MD_CTX *md = NULL;
	int64_t now = (int64_t)time(NULL);
	int rc = FV_ERR_NOMEM;

	if (!header || !claims)
		goto out;
	json_object_object_add(header, "alg", json_object_new_string("RS256"));
	json_object_object_add(header, "typ", json_object_new_string("JWT"));
	if (a->sa_key_id[0])
		json_object_object_add(header, "kid", json_object_new_string(a->sa_key_id));
	json_object_object_add(claims, "iss", json_object_new_string(a->sa_email));
	json_object_object_add(claims, "scope", json_object_new_string(GCP_SCOPE));
	json_object_object_add(claims, "aud", json_object_new_string(a->token_uri));
	json_object_object_add(claims, "iat", json_object_new_int64(now));
	json_object_object_add(claims, "exp", json_object_new_int64(now + JWT_LIFETIME_S));
	h64 = b64url_json(header);
	c64 = b64url_json(claims);
	if (!h64 || !c64)
		goto out;
	n = strlen(h64) + 1 + strlen(c64);
	input = malloc(n + 1);
	if (!input)
		goto out;
	snprintf(input, n + 1, "%s.%s", h64, c64);
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->sa_key) <= 0 ||
	    EVP_DigestSign(md, NULL, &sig_len, (unsigned char *)input, n) <= 0 ||
	    !(sig = OPENSSL_malloc(sig_len)) ||
	    EVP_DigestSign(md, sig, &sig_len, (unsigned char *)input, n) <= 0) {
		ERR_clear_error();
		rc = CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: OpenSSL cannot sign a token request with the key of the %s",
			inst->location, a->source);
		goto out;
	}
	s64 = cloud_base64url_encode(sig, sig_len);
	jwt = s64 ? malloc(n + 1 + strlen(s64) + 1) : NULL;
	if (!jwt)
		goto out;
	*out_len = (size_t)snprintf(jwt, n + 1 + strlen(s64) + 1, "%s.%s", input, s64);
	*out = jwt;
	rc = FV_OK;
out:
	if (rc == FV_ERR_NOMEM)
		CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	EVP_MD_CTX_free(md);
	OPENSSL_free(sig);
	free(h64);
	free(c64);
	free(s64);
	free(input);
	json_object_put(header);
	json_object_put(claims);
	return rc;
}

static int fetch_service_account(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                                 int64_t *lifetime_s)
{
	struct fv_instance *inst = arg;
	struct cloud_form_field form[] = {
		{ "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer", 0 },
		{ "assertion", NULL, 0 },
	};
	char *jwt = NULL;
	size_t jwt_len = 0;
	int rc;

	rc = make_assertion(inst, &jwt, &jwt_len);
	if (rc != FV_OK)
		return rc;
	form[1].value = jwt;
	form[1].len = jwt_len;
	rc = cloud_oauth_form_post(gcp_host, &inst->auth.token_source, inst->auth.token_uri,
	                           "token exchange (service account)", form, 2, deadline_ms, out,
	                           lifetime_s);
	cloud_buf_free(jwt, jwt_len + 1);
	return rc;
}

/* ---- Metadata server ---- */

static int fetch_metadata(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                          int64_t *lifetime_s)
{
	static const char *const headers[] = { "Metadata-Flavor: Google", NULL };
	struct fv_instance *inst = arg;
	struct cloud_request req = { 0 };

	req.method = "GET";
	req.url = inst->auth.metadata_url;
	req.headers = headers;
	req.idempotent = 1;
	/* The metadata server is link-local and speaks plain HTTP only. */
	req.allow_http = 1;
	req.what = "token from the metadata server";
	return cloud_oauth_request(gcp_host, &inst->auth.token_source, &req, deadline_ms, out,
	                           lifetime_s);
}

int gcp_request(struct fv_instance *inst, const struct cloud_request *req, int64_t deadline_ms,
                struct cloud_response *resp)
{
	cloud_token_fetch_fn fetch = NULL;

	switch (inst->auth.kind) {
	case GCP_AUTH_TOKEN:
		fetch = NULL; /* configured: never fetched */
		break;
	case GCP_AUTH_SERVICE_ACCOUNT:
		fetch = fetch_service_account;
		break;
	case GCP_AUTH_METADATA:
		fetch = fetch_metadata;
		break;
	}
	return cloud_bearer_perform(gcp_host, inst->http, &inst->auth.token, fetch, inst, req,
	                            deadline_ms, resp);
}
