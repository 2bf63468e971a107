/*
 * The Vault Transit key provider (HashiCorp Vault, OpenBao): declarations
 * shared by the files of this plugin.
 *
 *   vault_transit.c  entry point, table, configuration, keys, decrypt, generate
 *   auth.c           the Vault token: a configured token, or an AppRole or
 *                    Kubernetes login, cached until shortly before its lease ends
 *   api.c            one Vault API call and its error mapping
 *
 * Transit decrypts RSA with OAEP, SHA-256 for the hash and for MGF1, empty
 * label: exactly Flows' OAEP. Newer servers take padding_scheme and
 * hash_algorithm on decrypt; the plugin sends "oaep" and "sha2-256", which
 * older servers ignore (with a warning) while doing the same.
 */
#ifndef FLOWVAULT_VAULT_TRANSIT_H
#define FLOWVAULT_VAULT_TRANSIT_H

#include <pthread.h>
#include <stdint.h>

#include <json-c/json.h>

#include <flowvault/provider.h>

#include "cloud.h"

#define VAULT_PLUGIN_VERSION "0.1.0"
#define VAULT_JWT_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount/token"

extern const fv_host *vault_host;

#define VAULT_ERROR(status, ...) CLOUD_ERROR(vault_host, (status), __VA_ARGS__)
#define VAULT_LOG(level, ...) (vault_host->log((level), __VA_ARGS__))

enum vault_auth_kind {
	VAULT_AUTH_TOKEN,
	VAULT_AUTH_APPROLE,
	VAULT_AUTH_KUBERNETES
};

/* A Vault token; immutable once published, shared by reference. */
struct vault_token {
	unsigned int refs;            /* under fv_instance.token_lock */
	struct cloud_secret token;
	int64_t refresh_at_ms;        /* monotonic; 0: never */
};

struct fv_instance {
	char *location;               /* "keys.flows" */
	char *address;                /* "https://vault:8200", no trailing slash */
	char *mount;                  /* "transit" */
	char *key;                    /* key name */
	char *namespace_header;       /* "X-Vault-Namespace: ns", or NULL */
	enum vault_auth_kind auth;
	char *auth_source;            /* for messages: "token (keys.flows.token)" */
	char *token_ref;              /* secret references */
	char *role_id;
	char *secret_id_ref;
	char *kubernetes_role;
	char *jwt_file;
	char *auth_mount;             /* "approle", "kubernetes" */
	struct cloud_http_opts http_opts;
	struct cloud_http *http;

	pthread_mutex_t token_lock;
	pthread_mutex_t login_lock;
	struct vault_token *token;
};

/* ---- auth.c ---- */

int vault_token_get(struct fv_instance *inst, int64_t deadline, struct vault_token **out);
void vault_token_put(struct fv_instance *inst, struct vault_token *t);
/* Vault refused `t` (403): forget it so the next call logs in again. */
void vault_token_forget(struct fv_instance *inst, struct vault_token *t);
void vault_token_cleanup(struct fv_instance *inst);

/* ---- api.c ---- */

struct vault_error {
	long status;                  /* HTTP status of a refusal, 0 otherwise */
	char message[256];            /* Vault's "errors", joined */
};

/*
 * `method` on /v1/<path> with `body` (may be NULL) and the token, within
 * `deadline`. FV_OK with the answer (a JSON object; an empty one for 204)
 * in *response, to free with cloud_json_free_wiped; else a status with the
 * message reported and, for a refusal, its details in *err. A 403 with a
 * login token logs in again once.
 */
int vault_call(struct fv_instance *inst, const char *method, const char *path,
               json_object *body, int idempotent, int64_t deadline,
               json_object **response, struct vault_error *err);

/* Unauthenticated POST (logins): same result conventions. */
int vault_post_anonymous(struct fv_instance *inst, const char *path, json_object *body,
                         int64_t deadline, json_object **response, struct vault_error *err);

/* "errors" of a refusal, joined with "; ". */
void vault_error_text(json_object *doc, char *buf, size_t len);

#endif /* FLOWVAULT_VAULT_TRANSIT_H */
