/*
 * The Google Cloud KMS key provider: the private key is a CryptoKeyVersion
 * (purpose ASYMMETRIC_DECRYPT, algorithm RSA_DECRYPT_OAEP_2048_SHA256) that
 * never leaves Cloud KMS; OAEP runs there, over the REST API v1.
 *
 *   gcp.c    the provider table, keys, generate, the REST calls and how
 *            Cloud KMS errors map to flowvault's
 *   auth.c   where the access token comes from: a service-account key file
 *            (a JWT signed here, exchanged at its token_uri), the metadata
 *            server, or a configured token
 */
#ifndef FLOWVAULT_GCP_KMS_H
#define FLOWVAULT_GCP_KMS_H

#include <openssl/evp.h>

#include "cloud.h"

#define GCP_PLUGIN "gcp-kms"
#define GCP_ENDPOINT_DEFAULT "https://cloudkms.googleapis.com"
#define GCP_METADATA_HOST_DEFAULT "169.254.169.254"
#define GCP_SCOPE "https://www.googleapis.com/auth/cloudkms"

extern const fv_host *gcp_host;

enum gcp_auth_kind {
	GCP_AUTH_TOKEN,            /* access_token: a secret reference */
	GCP_AUTH_SERVICE_ACCOUNT,  /* credentials_file or GOOGLE_APPLICATION_CREDENTIALS */
	GCP_AUTH_METADATA          /* the metadata server of GCE, GKE, Cloud Run */
};

struct gcp_auth {
	enum gcp_auth_kind kind;
	/* For messages: "service-account key file '/etc/sa.json' (client_email
	 * x@p.iam.gserviceaccount.com)", "metadata server 169.254.169.254". */
	char source[600];
	struct cloud_token token;
	/* How tokens are asked for, and what to check when they are refused. */
	struct cloud_token_source token_source;
	/* Service account: the signing key and the claims' fixed parts. */
	EVP_PKEY *sa_key;
	char *sa_email;
	char *sa_key_id;
	char *token_uri;
	/* Metadata server: "http://HOST/computeMetadata/v1/...". */
	char *metadata_url;
};

struct fv_instance {
	char *location;            /* "keys.flows" */
	char *version_name;        /* projects/.../cryptoKeyVersions/N */
	char *endpoint;            /* without a trailing slash */
	int software;              /* protection_level SOFTWARE for generate */
	struct cloud_http *http;
	struct gcp_auth auth;
};

/* auth.c */
int gcp_auth_open(struct fv_instance *inst, const fv_config *cfg);
void gcp_auth_close(struct gcp_auth *auth);
/* `req` with a token from the configured source; a 401 fetches a new one
 * and tries once more. FV_OK with any HTTP status in *resp. */
int gcp_request(struct fv_instance *inst, const struct cloud_request *req, int64_t deadline_ms,
                struct cloud_response *resp);

#endif /* FLOWVAULT_GCP_KMS_H */
