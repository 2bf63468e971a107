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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "gcp.h"

#define SA_FILE_MAX (64 * 1024)
#define JWT_LIFETIME_S 3600

/* The whole file, NUL-terminated, wiped and freed by the caller. */
static int read_small_file(const struct fv_instance *inst, const char *path, char **out,
                           size_t *out_len)
{
	struct stat st;
	size_t used = 0;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int err = errno;

		return CLOUD_ERROR(gcp_host, err == ENOENT ? FV_ERR_NOT_FOUND : FV_ERR_AUTH,
			"%s: cannot open the service-account key file '%s': %s; download a key for the "
			"service account, or set credentials_file to the right path",
			inst->location, path, strerror(err));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SA_FILE_MAX) {
		close(fd);
		return CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
			"%s: '%s' is not a service-account key file (not a regular file of at most %d bytes)",
			inst->location, path, SA_FILE_MAX);
	}
	if (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH))
		gcp_host->log(FV_LOG_WARNING,
			"%s: %s: service-account key file '%s' is readable or writable by others (mode %03o); chmod 600 it",
			GCP_PLUGIN, inst->location, path, (unsigned)(st.st_mode & 0777));
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	}
	while (used < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + used, (size_t)st.st_size - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	*out = buf;
	*out_len = used;
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

	rc = read_small_file(inst, path, &text, &text_len);
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
	if (gcp_host->config_string(cfg, "access_token", &token_ref) == FV_OK && token_ref) {
		a->kind = GCP_AUTH_TOKEN;
		snprintf(a->source, sizeof(a->source), "access_token '%s'", token_ref);
		/* Resolved now, once: a prompt is answered before serving starts. */
		rc = cloud_secret_resolve(gcp_host, token_ref, "Cloud KMS access token", &a->token.value);
		if (rc != FV_OK)
			return rc;
		if (a->token.value.len == 0 || strpbrk(a->token.value.data, "\r\n"))
			return CLOUD_ERROR(gcp_host, FV_ERR_AUTH,
				"%s.access_token: the token from '%s' is empty or has a line break",
				inst->location, token_ref);
		{
			/* Kept as the header value the requests send. */
			struct cloud_secret raw = a->token.value;

			a->token.value.data = NULL;
			a->token.value.len = 0;
			rc = cloud_bearer_set(gcp_host, raw.data, raw.len, &a->token.value);
			cloud_secret_clear(gcp_host, &raw);
			if (rc != FV_OK)
				return rc;
		}
		a->token.refresh_at_ms = INT64_MAX;
		return FV_OK;
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

/* ---- Token responses ---- */

static int token_from_response(struct fv_instance *inst, const struct cloud_response *resp,
                               struct cloud_secret *out, int64_t *lifetime_s)
{
	int rc = cloud_oauth_token(gcp_host, resp, out, lifetime_s);

	if (rc == FV_ERR_BACKEND)
		return CLOUD_ERROR(gcp_host, FV_ERR_BACKEND,
			"%s: the token service of the %s answered without a usable access_token/expires_in",
			inst->location, inst->auth.source);
	return rc;
}

static int token_refused(struct fv_instance *inst, const struct cloud_response *resp)
{
	char error[64], description[400];

	cloud_oauth_error(resp, error, sizeof(error), description, sizeof(description));
	return CLOUD_ERROR(gcp_host, resp->status >= 500 ? FV_ERR_BACKEND : FV_ERR_AUTH,
		"%s: no access token from the %s: HTTP %ld %s%s%s; %s",
		inst->location, inst->auth.source, resp->status, error, description[0] ? ": " : "",
		description,
		inst->auth.kind == GCP_AUTH_SERVICE_ACCOUNT
			? "check that the key is not deleted or disabled in IAM"
			: "check that the instance has a service account with the cloudkms scope");
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
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", NULL
	};
	static const char prefix[] =
		"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
	struct fv_instance *inst = arg;
	struct cloud_request req = { 0 };
	struct cloud_response resp;
	char *jwt = NULL, *body;
	size_t jwt_len = 0, body_len;
	int rc;

	rc = make_assertion(inst, &jwt, &jwt_len);
	if (rc != FV_OK)
		return rc;
	/* base64url and dots need no form encoding. */
	body_len = sizeof(prefix) - 1 + jwt_len;
	body = malloc(body_len + 1);
	if (!body) {
		cloud_buf_free(jwt, jwt_len + 1);
		return CLOUD_ERROR(gcp_host, FV_ERR_NOMEM, "out of memory");
	}
	memcpy(body, prefix, sizeof(prefix) - 1);
	memcpy(body + sizeof(prefix) - 1, jwt, jwt_len + 1);
	cloud_buf_free(jwt, jwt_len + 1);

	req.method = "POST";
	req.url = inst->auth.token_uri;
	req.headers = headers;
	req.body = body;
	req.body_len = body_len;
	req.idempotent = 1;
	req.what = "token exchange (service account)";
	rc = cloud_http_perform(inst->http, &req, deadline_ms, &resp);
	cloud_buf_free(body, body_len + 1);
	if (rc != FV_OK)
		return rc;
	rc = resp.status == 200 ? token_from_response(inst, &resp, out, lifetime_s)
	                        : token_refused(inst, &resp);
	cloud_response_free(&resp);
	return rc;
}

/* ---- Metadata server ---- */

static int fetch_metadata(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                          int64_t *lifetime_s)
{
	static const char *const headers[] = { "Metadata-Flavor: Google", NULL };
	struct fv_instance *inst = arg;
	struct cloud_request req = { 0 };
	struct cloud_response resp;
	int rc;

	req.method = "GET";
	req.url = inst->auth.metadata_url;
	req.headers = headers;
	req.idempotent = 1;
	/* The metadata server is link-local and speaks plain HTTP only. */
	req.allow_http = 1;
	req.what = "token from the metadata server";
	rc = cloud_http_perform(inst->http, &req, deadline_ms, &resp);
	if (rc != FV_OK)
		return rc;
	rc = resp.status == 200 ? token_from_response(inst, &resp, out, lifetime_s)
	                        : token_refused(inst, &resp);
	cloud_response_free(&resp);
	return rc;
}

int gcp_auth_header(struct fv_instance *inst, int64_t deadline_ms, struct cloud_secret *out)
{
	cloud_token_fetch_fn fetch = NULL;

	switch (inst->auth.kind) {
	case GCP_AUTH_TOKEN:
		fetch = NULL;
		break;
	case GCP_AUTH_SERVICE_ACCOUNT:
		fetch = fetch_service_account;
		break;
	case GCP_AUTH_METADATA:
		fetch = fetch_metadata;
		break;
	}
	if (!fetch)
		return cloud_secret_set(gcp_host, inst->auth.token.value.data,
		                        inst->auth.token.value.len, out);
	return cloud_token_get(gcp_host, &inst->auth.token, fetch, inst, deadline_ms, out);
}
