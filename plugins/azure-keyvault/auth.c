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
	int managed = 0;
	size_t n;

	if (pthread_mutex_init(&a->lock, NULL) != 0 || cloud_token_init(&a->token) != FV_OK)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	a->lock_ready = 1;
	a->token_source = (struct cloud_token_source){
		.http = inst->http, .location = inst->location, .source = a->source,
		.token_name = "token for Key Vault" };
	optional_string(cfg, "tenant_id", &tenant);
	optional_string(cfg, "client_id", &client);
	if (az_host->config_bool(cfg, "managed_identity", &managed) != FV_OK)
		managed = 0;
	if (client && !(a->client_id = strdup(client)))
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	if (tenant && !(a->tenant_id = strdup(tenant)))
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");

	if (optional_string(cfg, "access_token", &token_ref)) {
		a->kind = AZ_AUTH_TOKEN;
		snprintf(a->source, sizeof(a->source), "access_token '%s'", token_ref);
		return cloud_token_configure(az_host, &a->token, inst->location, "access_token",
		                             token_ref, "Key Vault access token");
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
		a->token_source.fix = "check tenant_id, client_id and the secret client_secret refers to";
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
	a->token_source.fix = "check that the machine has a managed identity with access to the vault";
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

static int fetch_client_secret(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                               int64_t *lifetime_s)
{
	struct fv_instance *inst = arg;
	struct az_auth *a = &inst->auth;
	const struct cloud_form_field form[] = {
		{ "grant_type", "client_credentials", 0 },
		{ "client_id", a->client_id, 0 },
		{ "client_secret", a->client_secret.data, a->client_secret.len },
		{ "scope", a->scope, 0 },
	};
	size_t url_len = strlen(a->authority) + strlen(a->tenant_id) + 32;
	char *url = malloc(url_len);
	int rc;

	if (!url)
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	snprintf(url, url_len, "%s/%s/oauth2/v2.0/token", a->authority, a->tenant_id);
	rc = cloud_oauth_form_post(az_host, &a->token_source, url,
	                           "token request (client credentials)", form,
	                           sizeof(form) / sizeof(form[0]), deadline_ms, out, lifetime_s);
	free(url);
	return rc;
}

static int fetch_managed_identity(void *arg, int64_t deadline_ms, struct cloud_secret *out,
                                  int64_t *lifetime_s)
{
	static const char *const headers[] = { "Metadata: true", NULL };
	struct fv_instance *inst = arg;
	struct az_auth *a = &inst->auth;
	const struct cloud_form_field query[] = {
		{ "api-version", "2018-02-01", 0 },
		{ "resource", a->resource, 0 },
		{ "client_id", a->client_id, 0 }, /* a user-assigned identity */
	};
	struct cloud_request req = { 0 };
	size_t query_len = 0, n;
	char *q = cloud_form_body(query, a->client_id ? 3 : 2, &query_len), *url = NULL;
	int rc;

	n = strlen(a->imds_url) + 1 + query_len + 1;
	if (q)
		url = malloc(n);
	if (!url) {
		cloud_buf_free(q, query_len + 1);
		return CLOUD_ERROR(az_host, FV_ERR_NOMEM, "out of memory");
	}
	snprintf(url, n, "%s?%s", a->imds_url, q);
	cloud_buf_free(q, query_len + 1);
	req.method = "GET";
	req.url = url;
	req.headers = headers;
	req.idempotent = 1;
	/* IMDS is link-local and speaks plain HTTP only. */
	req.allow_http = 1;
	req.what = "token from IMDS (managed identity)";
	rc = cloud_oauth_request(az_host, &a->token_source, &req, deadline_ms, out, lifetime_s);
	free(url);
	return rc;
}

int az_request(struct fv_instance *inst, const struct cloud_request *req, int64_t deadline_ms,
               struct cloud_response *resp)
{
	struct az_auth *a = &inst->auth;
	cloud_token_fetch_fn fetch = NULL; /* a configured token: never fetched */
	int rc;

	if (a->kind != AZ_AUTH_TOKEN) {
		rc = challenge(inst, req, deadline_ms);
		if (rc != FV_OK)
			return rc;
		fetch = a->kind == AZ_AUTH_CLIENT_SECRET ? fetch_client_secret : fetch_managed_identity;
	}
	return cloud_bearer_perform(az_host, inst->http, &a->token, fetch, inst, req, deadline_ms,
	                            resp);
}
