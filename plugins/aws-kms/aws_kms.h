/*
 * The AWS KMS key provider: declarations shared by the files of this plugin.
 *
 *   aws_kms.c      entry point, function table, configuration, keys, decrypt
 *   kms.c          one KMS call (AWS JSON 1.1, SigV4 by libcurl), errors
 *   credentials.c  the credential chain and its cache
 *   profile.c      the shared credentials and config files (INI)
 *
 * The private key stays in KMS: decrypt sends the ciphertext to KMS's
 * Decrypt with RSAES_OAEP_SHA_256, which is exactly Flows' OAEP (SHA-256
 * for the hash and MGF1, empty label).
 */
#ifndef FLOWVAULT_AWS_KMS_H
#define FLOWVAULT_AWS_KMS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include <flowvault/provider.h>

#include "cloud.h"

#define AWS_KMS_PLUGIN_VERSION "0.1.0"

extern const fv_host *aws_host;

#define AWS_ERROR(status, ...) CLOUD_ERROR(aws_host, (status), __VA_ARGS__)
#define AWS_LOG(level, ...) (aws_host->log((level), __VA_ARGS__))

/* Credentials from one source; immutable once published, shared by
 * reference between concurrent decrypts. */
struct aws_creds {
	unsigned int refs;            /* under fv_instance.creds_lock */
	struct cloud_secret access_key;
	struct cloud_secret secret_key;
	struct cloud_secret session_token;  /* data NULL when none */
	int64_t refresh_at_ms;        /* monotonic; 0: never expires */
	int64_t expires_at_ms;        /* monotonic; 0: never expires */
	char source[1536];            /* for messages: where they came from */
};

struct fv_instance {
	char *location;               /* "keys.flows" */
	char *region;
	char *key_id;                 /* as configured */
	char *url;                    /* endpoint + "/" */
	char *sigv4;                  /* "aws:amz:<region>:kms" */
	char *cfg_access_key_ref;     /* secret references, or NULL */
	char *cfg_secret_key_ref;
	char *cfg_session_token_ref;
	struct cloud_http_opts http_opts;
	struct cloud_http *http;      /* KMS and STS */
	struct cloud_http *meta_http; /* container endpoint and IMDS: short timeouts */

	pthread_mutex_t creds_lock;   /* creds pointer and refs */
	pthread_mutex_t refresh_lock; /* one fetch at a time */
	struct aws_creds *creds;
};

/* ---- credentials.c ---- */

/* Credentials for a request, fetched or refreshed as needed within
 * `deadline`; give them back with aws_creds_put. */
int aws_creds_get(struct fv_instance *inst, int64_t deadline, struct aws_creds **out);
void aws_creds_put(struct fv_instance *inst, struct aws_creds *creds);
/* KMS refused `creds`: forget them so the next call fetches again. */
void aws_creds_forget(struct fv_instance *inst, struct aws_creds *creds);
/* "...ABCD": enough of an access key id to tell keys apart. */
void aws_access_key_hint(const struct cloud_secret *akid, char *buf, size_t len);
void aws_creds_cleanup(struct fv_instance *inst);

/* ---- profile.c ---- */

/* Values of one profile of an AWS shared credentials or config file.
 * Secrets go into cloud_secret memory. */
struct aws_profile {
	int found;                    /* the section exists */
	struct cloud_secret access_key, secret_key, session_token;
	char unsupported[64];         /* first key we cannot follow ("role_arn") */
};

/* Look for [name] (credentials file) or [profile name] / [default] (config
 * file, is_config) in `text`. FV_OK or FV_ERR_NOMEM. */
int aws_profile_parse(const fv_host *host, const char *text, size_t len,
                      const char *name, int is_config, struct aws_profile *out);
void aws_profile_clear(const fv_host *host, struct aws_profile *p);

/* ---- kms.c ---- */

/* A service error from KMS, for callers that treat some types specially. */
struct kms_error {
	char type[96];                /* "InvalidCiphertextException"; "" when none */
	char message[256];
	long status;
};

/*
 * Call KMS operation `op` ("Decrypt") with `request` within `deadline`.
 * FV_OK with the parsed answer in *response (free with
 * cloud_json_free_wiped), or a status with the message reported and, for a
 * service error, its type in *err.
 */
int kms_call(struct fv_instance *inst, const char *op, json_object *request,
             int idempotent, int64_t deadline, json_object **response,
             struct kms_error *err);

#endif /* FLOWVAULT_AWS_KMS_H */
