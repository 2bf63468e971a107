/*
 * Tokens for Key Vault, from the first of these that is configured:
 *  1. access_token: a secret reference to a token obtained elsewhere;
 *  2. client_secret (with tenant_id and client_id): the OAuth 2.0 client
 *     credentials grant at authority_host (Microsoft Entra ID);
 *  3. otherwise the managed identity of the VM, scale set, App Service or
 *     AKS pod, through IMDS (imds_endpoint; client_id picks a user-assigned
 *     identity).
 * Key Vault names the resource to ask a token for in its bearer challenge;
 * it is checked against the vault's host, as Microsoft's SDKs do, so a
 * vault URL that points elsewhere cannot make us send a token for Key Vault
 * to another resource. Tokens are cached until shortly before expiry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "azure.h"

/* 1 when the optional string field is set and not empty. */
static int optional_string(const fv_config *cfg, const char *name, const char **out)
{
	*out = NULL;
	return cloud_config_string(az_host, cfg, name, out) == FV_OK && *out;
}

int az_auth_open(struct fv_instance *inst, const fv_config *cfg)
{
	struct az_auth *a = &inst->auth;
	const char *token_ref, *secret_ref, *tenant, *client, *authority, *imds;
	int rc, managed = 0;
	size_t n;

	if (pthread_mutex_init(&a->lock, NULL) != 0 || cloud_token_init(&a->token) != FV_OK)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	a->lock_ready = 1;
	optional_string(cfg, "tenant_id", &tenant);
	optional_string(cfg, "client_id", &client);
	if (az_host->config_bool(cfg, "managed_identity", &managed) != FV_OK)
		managed = 0;
	if (client && !(a->client_id = strdup(client)))
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	if (tenant && !(a->tenant_id = strdup(tenant)))
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");

	if (optional_string(cfg, "access_token", &token_ref)) {
		struct cloud_secret raw = { NULL, 0 };

		a->kind = AZ_AUTH_TOKEN;
		snprintf(a->source, sizeof(a->source), "access_token '%s'", token_ref);
		rc = cloud_secret_resolve(az_host, token_ref, "Key Vault access token", &raw);
		if (rc != FV_OK)
			return rc;
		if (raw.len == 0 || strpbrk(raw.data, "\r\n")) {
			cloud_secret_clear(az_host, &raw);
			return CLOUD_ERROR(az_host, FV_ERR_AUTH,
				"%s.access_token: the token from '%s' is empty or has a line break",
				inst->location, token_ref);
		}
		rc = cloud_bearer_set(az_host, raw.data, raw.len, &a->token.value);
		cloud_secret_clear(az_host, &raw);
		a->token.refresh_at_ms = INT64_MAX;
		return rc;
	}
	if (optional_string(cfg, "client_secret", &secret_ref)) {
		a->kind = AZ_AUTH_CLIENT_SECRET;
		if (!tenant || !client)
			return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
				"%s: client_secret needs tenant_id and client_id (the application's "
				"directory and application ids)", inst->location);
		if (!optional_string(cfg, "authority_host", &authority))
			authority = AZ_AUTHORITY_DEFAULT;
		if (strncmp(authority, "https://", 8) != 0 || strpbrk(authority, "?# \t\r\n"))
			return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
				"%s.authority_host: '%s' is not an https:// URL", inst->location, authority);
		if (!(a->authority = strdup(authority)))
			return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
		n = strlen(a->authority);
		while (n > 8 && a->authority[n - 1] == '/')
			a->authority[--n] = '\0';
		snprintf(a->source, sizeof(a->source),
		         "client credentials (tenant %s, client_id %s, client_secret '%s', authority %s)",
		         tenant, client, secret_ref, a->authority);
		return cloud_secret_resolve(az_host, secret_ref, "Azure client secret", &a->client_secret);
	}
	a->kind = AZ_AUTH_MANAGED_IDENTITY;
	if (!optional_string(cfg, "imds_endpoint", &imds))
		imds = AZ_IMDS_DEFAULT;
	if (strncmp(imds, "http://", 7) != 0 && strncmp(imds, "https://", 8) != 0)
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.imds_endpoint: '%s' is not an http:// URL", inst->location, imds);
	if (strpbrk(imds, "?# \t\r\n"))
		return CLOUD_ERROR(az_host, FV_ERR_CONFIG,
			"%s.imds_endpoint: '%s' must not have a query", inst->location, imds);
	if (!(a->imds_url = strdup(imds)))
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	snprintf(a->source, sizeof(a->source), "managed identity (%s%s%s, IMDS %s)",
	         client ? "client_id " : "system-assigned", client ? client : "",
	         managed ? "" : "; no other credentials configured", imds);
	return FV_OK;
}

void az_auth_close(struct az_auth *a)
{
	cloud_token_destroy(az_host, &a->token);
	cloud_secret_clear(az_host, &a->client_secret);
	free(a->tenant_id);
	free(a->client_id);
	free(a->authority);
	free(a->imds_url);
	if (a->lock_ready)
		pthread_mutex_destroy(&a->lock);
}

/* ---- Key Vault's challenge ---- */

/* The value of `name="..."` in a WWW-Authenticate header, or 0. */
static int challenge_param(const char *header, const char *name, char *out, size_t out_len)
{
	size_t n = strlen(name);
	const char *p = header;

	while ((p = strstr(p, name)) != NULL) {
		const char *end;

		if ((p == header || p[-1] == ' ' || p[-1] == ',') && p[n] == '=' && p[n + 1] == '"') {
			p += n + 2;
			end = strchr(p, '"');
			if (!end || (size_t)(end - p) >= out_len)
				return 0;
			memcpy(out, p, (size_t)(end - p));
			out[end - p] = '\0';
			return 1;
		}
		p += n;
	}
	return 0;
}

/* The host of an https URL ("https://vault.azure.net/x" -> "vault.azure.net"). */
static void url_host(const char *url, char *out, size_t out_len)
{
	const char *p = strstr(url, "://");
	size_t n;

	p = p ? p + 3 : url;
	n = strcspn(p, "/:?#");
	if (n >= out_len)
		n = out_len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

static int take_challenge(struct fv_instance *inst, const struct cloud_response *resp)
{
	struct az_auth *a = &inst->auth;
	char authorization[300] = "", resource[300] = "", scope[300] = "", host[256], tenant[128];
	const char *h = resp->www_authenticate, *path;
	size_t hl, vl, n;

	if (resp->status != 401 || strncmp(h, "Bearer ", 7) != 0)
		return CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: '%s' answered HTTP %ld without Key Vault's bearer challenge; is vault_url "
			"a Key Vault?", inst->location, inst->vault_url, resp->status);
	if (!challenge_param(h, "authorization", authorization, sizeof(authorization)))
		challenge_param(h, "authorization_uri", authorization, sizeof(authorization));
	if (challenge_param(h, "resource", resource, sizeof(resource)))
		snprintf(scope, sizeof(scope), "%s/.default", resource);
	else if (challenge_param(h, "scope", scope, sizeof(scope)))
		snprintf(resource, sizeof(resource), "%.*s", (int)(strlen(scope) > 9 &&
		         strcmp(scope + strlen(scope) - 9, "/.default") == 0 ? strlen(scope) - 9
		                                                               : strlen(scope)), scope);
	if (!resource[0] || strncmp(resource, "https://", 8) != 0)
		return CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: Key Vault's challenge names no resource: '%s'", inst->location, h);
	/* The vault must be a host under the resource's domain. */
	url_host(resource, host, sizeof(host));
	hl = strlen(host);
	vl = strlen(inst->vault_host);
	if (!hl || vl <= hl + 1 || strcmp(inst->vault_host + vl - hl, host) != 0 ||
	    inst->vault_host[vl - hl - 1] != '.')
		return CLOUD_ERROR(az_host, FV_ERR_AUTH,
			"%s: the vault at '%s' asks for a token for '%s', whose domain it is not in; "
			"refusing to send one (check vault_url)",
			inst->location, inst->vault_url, resource);
	tenant[0] = '\0';
	path = strstr(authorization, "://");
	if (path && (path = strchr(path + 3, '/')) != NULL) {
		n = strcspn(path + 1, "/?#");
		if (n < sizeof(tenant)) {
			memcpy(tenant, path + 1, n);
			tenant[n] = '\0';
		}
	}
	if (a->kind == AZ_AUTH_CLIENT_SECRET && tenant[0] && strcmp(tenant, a->tenant_id) != 0)
		return CLOUD_ERROR(az_host, FV_ERR_AUTH,
			"%s: the vault '%s' belongs to tenant %s, not tenant_id %s; set tenant_id to the "
			"vault's tenant", inst->location, inst->vault_url, tenant, a->tenant_id);
	snprintf(a->resource, sizeof(a->resource), "%s", resource);
	snprintf(a->scope, sizeof(a->scope), "%s", scope);
	a->challenged = 1;
	az_host->log(FV_LOG_DEBUG, "%s: %s: Key Vault challenge: tenant %s, resource %s", AZ_PLUGIN,
	             inst->location, tenant[0] ? tenant : "(none)", resource);
	return FV_OK;
}

/* Once per instance: the same request without token and body. */
static int challenge(struct fv_instance *inst, const struct cloud_request *req,
                     int64_t deadline_ms)
{
	struct az_auth *a = &inst->auth;
	struct cloud_request bare = *req;
	struct cloud_response resp;
	int rc = FV_OK;

	pthread_mutex_lock(&a->lock);
	if (!a->challenged) {
		bare.secret_header_name = NULL;
		bare.secret_header_value = NULL;
		bare.body = req->body ? "" : NULL;
		bare.body_len = 0;
		bare.idempotent = 1; /* without a token nothing can happen */
		rc = cloud_http_perform(inst->http, &bare, deadline_ms, &resp);
		if (rc == FV_OK) {
			rc = take_challenge(inst, &resp);
			cloud_response_free(&resp);
		}
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* ---- Token services ---- */

static int token_from_response(struct fv_instance *inst, const struct cloud_response *resp,
                               struct cloud_secret *out, int64_t *lifetime_s)
{
	int rc = cloud_oauth_token(az_host, resp, out, lifetime_s);

	if (rc == FV_ERR_BACKEND)
		return CLOUD_ERROR(az_host, FV_ERR_BACKEND,
			"%s: the token service of the %s answered without a usable access_token/expires_in",
			inst->location, inst->auth.source);
	return rc;
}

static int token_refused(struct fv_instance *inst, const struct cloud_response *resp)
{
	char error[64], description[400];

	cloud_oauth_error(resp, error, sizeof(error), description, sizeof(description));
	return CLOUD_ERROR(az_host, resp->status >= 500 ? FV_ERR_BACKEND : FV_ERR_AUTH,
		"%s: no token for Key Vault from the %s: HTTP %ld %s%s%s; %s",
		inst->location, inst->auth.source, resp->status, error, description[0] ? ": " : "",
		description,
		inst->auth.kind == AZ_AUTH_CLIENT_SECRET
			? "check tenant_id, client_id and the secret client_secret refers to"
			: "check that the machine has a managed identity with access to the vault");
}

static char *form_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *copy;

	if (!e)
		return NULL;
	copy = strdup(e);
	curl_free(e);
	return copy;
}

static int fetch_client_secret(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                               int64_t *lifetime_s)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", NULL
	};
	struct fv_instance *inst = arg;
	struct az_auth *a = &inst->auth;
	struct cloud_request req = { 0 };
	struct cloud_response resp;
	char *url = NULL, *body = NULL, *client = form_escape(a->client_id),
	     *scope = form_escape(a->scope), *secret = NULL;
	size_t url_len, body_len = 0;
	int rc = FV_ERR_NOMEM;

	/* The escaped secret lives only in wiped memory. */
	{
		char *e = curl_easy_escape(NULL, a->client_secret.data, (int)a->client_secret.len);

		if (e) {
			size_t n = strlen(e);

			secret = OPENSSL_malloc(n + 1);
			if (secret)
				memcpy(secret, e, n + 1);
			OPENSSL_cleanse(e, n);
			curl_free(e);
		}
	}
	url_len = strlen(a->authority) + strlen(a->tenant_id) + 32;
	url = malloc(url_len);
	if (client && scope && secret && url) {
		snprintf(url, url_len, "%s/%s/oauth2/v2.0/token", a->authority, a->tenant_id);
		body_len = strlen(client) + strlen(scope) + strlen(secret) + 80;
		body = OPENSSL_malloc(body_len);
	}
	if (body) {
		body_len = (size_t)snprintf(body, body_len,
			"grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
			client, secret, scope);
		req.method = "POST";
		req.url = url;
		req.headers = headers;
		req.body = body;
		req.body_len = body_len;
		req.idempotent = 1;
		req.what = "token request (client credentials)";
		rc = cloud_http_perform(inst->http, &req, deadline_ms, &resp);
		if (rc == FV_OK) {
			rc = resp.status == 200 ? token_from_response(inst, &resp, out, lifetime_s)
			                        : token_refused(inst, &resp);
			cloud_response_free(&resp);
		}
		OPENSSL_clear_free(body, body_len + 1);
	} else {
		CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	}
	if (secret)
		OPENSSL_clear_free(secret, strlen(secret) + 1);
	free(client);
	free(scope);
	free(url);
	return rc;
}

static int fetch_managed_identity(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                                  int64_t *lifetime_s)
{
	static const char *const headers[] = { "Metadata: true", NULL };
	struct fv_instance *inst = arg;
	struct az_auth *a = &inst->auth;
	struct cloud_request req = { 0 };
	struct cloud_response resp;
	char *resource = form_escape(a->resource), *client = a->client_id ? form_escape(a->client_id) : NULL;
	char *url = NULL;
	size_t n;
	int rc = FV_ERR_NOMEM;

	n = strlen(a->imds_url) + (resource ? strlen(resource) : 0) + (client ? strlen(client) : 0) + 64;
	if (resource && (client || !a->client_id))
		url = malloc(n);
	if (url) {
		snprintf(url, n, "%s?api-version=2018-02-01&resource=%s%s%s", a->imds_url, resource,
		         client ? "&client_id=" : "", client ? client : "");
		req.method = "GET";
		req.url = url;
		req.headers = headers;
		req.idempotent = 1;
		/* IMDS is link-local and speaks plain HTTP only. */
		req.allow_http = 1;
		req.what = "token from IMDS (managed identity)";
		rc = cloud_http_perform(inst->http, &req, deadline_ms, &resp);
		if (rc == FV_OK) {
			rc = resp.status == 200 ? token_from_response(inst, &resp, out, lifetime_s)
			                        : token_refused(inst, &resp);
			cloud_response_free(&resp);
		}
	} else {
		CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	}
	free(resource);
	free(client);
	free(url);
	return rc;
}

int az_request(struct fv_instance *inst, const struct cloud_request *req, int64_t deadline_ms,
               struct cloud_response *resp)
{
	struct az_auth *a = &inst->auth;
	struct cloud_secret bearer = { NULL, 0 };
	struct cloud_request authorized = *req;
	cloud_token_fetch_fn fetch;
	int attempt, rc = FV_OK;

	if (a->kind != AZ_AUTH_TOKEN) {
		rc = challenge(inst, req, deadline_ms);
		if (rc != FV_OK)
			return rc;
	}
	fetch = a->kind == AZ_AUTH_CLIENT_SECRET ? fetch_client_secret : fetch_managed_identity;
	authorized.secret_header_name = "Authorization";
	authorized.secret_header_value = &bearer;
	for (attempt = 0; attempt < 2; attempt++) {
		if (a->kind == AZ_AUTH_TOKEN)
			rc = cloud_secret_set(az_host, a->token.value.data, a->token.value.len, &bearer);
		else
			rc = cloud_token_get(az_host, &a->token, fetch, inst, deadline_ms, &bearer);
		if (rc != FV_OK)
			break;
		rc = cloud_http_perform(inst->http, &authorized, deadline_ms, resp);
		if (rc != FV_OK || resp->status != 401 || a->kind == AZ_AUTH_TOKEN || attempt == 1)
			break;
		az_host->log(FV_LOG_DEBUG, "%s: %s: %s: the token was refused; fetching a new one",
		             AZ_PLUGIN, inst->location, req->what);
		cloud_token_invalidate(&a->token, &bearer);
		cloud_secret_clear(az_host, &bearer);
		cloud_response_free(resp);
	}
	cloud_secret_clear(az_host, &bearer);
	return rc;
}
