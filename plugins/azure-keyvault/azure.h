/*
 * The Azure Key Vault key provider: the private key is an RSA-HSM key in a
 * vault (or a Managed HSM) and never leaves it; OAEP (RSA-OAEP-256) runs
 * there, over the Key Vault REST API.
 *
 *   azure.c  the provider table, keys, generate, the REST calls and how
 *            Key Vault errors map to flowvault's
 *   auth.c   Key Vault's bearer challenge and where the token comes from:
 *            client credentials (Microsoft Entra ID), managed identity
 *            (IMDS), or a configured token
 */
#ifndef FLOWVAULT_AZURE_KEYVAULT_H
#define FLOWVAULT_AZURE_KEYVAULT_H

#include <pthread.h>

#include "cloud.h"

#define AZ_PLUGIN "azure-keyvault"
#define AZ_API_VERSION "7.4"
#define AZ_AUTHORITY_DEFAULT "https://login.microsoftonline.com"
#define AZ_IMDS_DEFAULT "http://169.254.169.254/metadata/identity/oauth2/token"

extern const fv_host *az_host;

enum az_auth_kind {
	AZ_AUTH_TOKEN,              /* access_token: a secret reference */
	AZ_AUTH_CLIENT_SECRET,      /* tenant_id + client_id + client_secret */
	AZ_AUTH_MANAGED_IDENTITY    /* IMDS */
};

struct az_auth {
	enum az_auth_kind kind;
	/* For messages: "client credentials (tenant T, client_id C,
	 * client_secret env:X)", "managed identity (IMDS http://...)". */
	char source[600];
	struct cloud_token token;
	/* How tokens are asked for, and what to check when they are refused. */
	struct cloud_token_source token_source;
	struct cloud_secret client_secret;
	char *tenant_id;
	char *client_id;            /* also a user-assigned managed identity */
	char *authority;            /* without a trailing slash */
	char *imds_url;
	/* From Key Vault's challenge, set once under `lock`. */
	pthread_mutex_t lock;
	int lock_ready;
	int challenged;
	char scope[300];            /* "https://vault.azure.net/.default" */
	char resource[300];         /* "https://vault.azure.net" */
};

struct fv_instance {
	char *location;             /* "keys.flows" */
	char *vault_url;            /* without a trailing slash */
	char *vault_host;           /* for the challenge's resource check */
	char *key_name;
	char *key_version;          /* NULL: the newest version, fixed at key_open */
	char *generated_version;    /* made by key_generate, handed to key_open */
	int software;               /* key_type RSA instead of RSA-HSM */
	struct cloud_http *http;
	struct az_auth auth;
};

/* auth.c */
int az_auth_open(struct fv_instance *inst, const fv_config *cfg);
void az_auth_close(struct az_auth *auth);
/*
 * Send `req` with a bearer token, as Microsoft's SDKs do: the first request
 * of an instance goes without token and body to get Key Vault's challenge
 * (authority tenant and resource, checked against the vault's host), then
 * with a token for that resource. A 401 later drops the cached token and
 * tries once more. FV_OK with any HTTP status in *resp.
 */
int az_request(struct fv_instance *inst, const struct cloud_request *req, int64_t deadline_ms,
               struct cloud_response *resp);

#endif /* FLOWVAULT_AZURE_KEYVAULT_H */
