/*
 * The AWS KMS key provider: an RSA key in AWS KMS (KeyUsage
 * ENCRYPT_DECRYPT) decrypts Flows requests with RSAES_OAEP_SHA_256; the
 * private key never leaves KMS. See aws_kms.h for the files.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "aws_kms.h"

const fv_host *aws_host;

#define OAEP_ALGORITHM "RSAES_OAEP_SHA_256"

struct fv_pkey {
	struct fv_instance *inst;
	char *arn;                    /* KMS's own name for the key */
	char *location;               /* "AWS KMS key alias/flows in eu-west-1" */
	unsigned char *der;           /* SubjectPublicKeyInfo */
	size_t der_len;
	unsigned int bits;
	size_t modulus_bytes;
};

static const fv_config_field aws_fields[] = {
	{ "region", FV_FIELD_STRING, FV_FIELD_REQUIRED,
	  "AWS region of the key, e.g. eu-west-1" },
	{ "key_id", FV_FIELD_STRING, FV_FIELD_REQUIRED | FV_FIELD_KEY_REFERENCE,
	  "key id, key ARN, alias name (alias/NAME) or alias ARN" },
	{ "endpoint", FV_FIELD_STRING, 0,
	  "KMS endpoint URL (default https://kms.<region>.amazonaws.com; VPC or FIPS endpoints)" },
	{ "access_key_id", FV_FIELD_SECRET, 0,
	  "secret reference to the access key id (default: the AWS credential chain)" },
	{ "secret_access_key", FV_FIELD_SECRET, 0,
	  "secret reference to the secret access key" },
	{ "session_token", FV_FIELD_SECRET, 0,
	  "secret reference to the session token of temporary credentials" },
	CLOUD_HTTP_CONFIG_FIELDS,
	{ NULL, 0, 0, NULL }
};

/* ---- Instances ---- */

static void aws_instance_close(fv_instance *inst)
{
	if (!inst)
		return;
	aws_creds_cleanup(inst);
	cloud_http_free(inst->http);
	cloud_http_free(inst->meta_http);
	pthread_mutex_destroy(&inst->creds_lock);
	pthread_mutex_destroy(&inst->refresh_lock);
	free(inst->location);
	free(inst->region);
	free(inst->key_id);
	free(inst->url);
	free(inst->sigv4);
	free(inst->cfg_access_key_ref);
	free(inst->cfg_secret_key_ref);
	free(inst->cfg_session_token_ref);
	free(inst);
}

static int region_valid(const char *r)
{
	size_t i;

	for (i = 0; r[i]; i++)
		if (!islower((unsigned char)r[i]) && !isdigit((unsigned char)r[i]) && r[i] != '-')
			return 0;
	return i > 0 && i < 64;
}

static int aws_instance_open(const fv_config *cfg, fv_instance **out)
{
	const char *location = aws_host->config_location(cfg);
	const char *region = NULL, *key_id = NULL, *endpoint = NULL;
	const char *akid = NULL, *secret = NULL, *token = NULL;
	struct fv_instance *inst;
	struct cloud_http_opts meta_opts;
	char buf[600];
	size_t n;
	int failed = 0, rc;

	if (!location)
		location = "keys.?";
	if ((rc = cloud_config_string(aws_host, cfg, "region", &region)) != FV_OK ||
	    (rc = cloud_config_string(aws_host, cfg, "key_id", &key_id)) != FV_OK ||
	    (rc = cloud_config_string(aws_host, cfg, "endpoint", &endpoint)) != FV_OK ||
	    (rc = cloud_config_string(aws_host, cfg, "access_key_id", &akid)) != FV_OK ||
	    (rc = cloud_config_string(aws_host, cfg, "secret_access_key", &secret)) != FV_OK ||
	    (rc = cloud_config_string(aws_host, cfg, "session_token", &token)) != FV_OK)
		return rc;
	if (!region || !region_valid(region))
		return AWS_ERROR(FV_ERR_CONFIG,
			"%s.region: %s; give the key's AWS region, e.g. \"eu-west-1\"",
			location, region ? "not a region name" : "missing");
	if (!key_id || strlen(key_id) > 512)
		return AWS_ERROR(FV_ERR_CONFIG,
			"%s.key_id: %s; give a key id, key ARN, alias/NAME or alias ARN",
			location, key_id ? "too long" : "missing");
	if (endpoint && strncmp(endpoint, "https://", 8) != 0)
		return AWS_ERROR(FV_ERR_CONFIG,
			"%s.endpoint: '%s' is not an https:// URL; KMS is reached over TLS only",
			location, endpoint);
	if (token && (!akid || !secret))
		return AWS_ERROR(FV_ERR_CONFIG,
			"%s.session_token: set only together with access_key_id and secret_access_key",
			location);

	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&inst->creds_lock, NULL);
	pthread_mutex_init(&inst->refresh_lock, NULL);
	inst->location = cloud_strdup(location, &failed);
	inst->region = cloud_strdup(region, &failed);
	inst->key_id = cloud_strdup(key_id, &failed);
	inst->cfg_access_key_ref = cloud_strdup(akid, &failed);
	inst->cfg_secret_key_ref = cloud_strdup(secret, &failed);
	inst->cfg_session_token_ref = cloud_strdup(token, &failed);
	if (endpoint) {
		n = strlen(endpoint);
		while (n > 8 && endpoint[n - 1] == '/')
			n--;
		snprintf(buf, sizeof(buf), "%.*s/", (int)n, endpoint);
	} else {
		snprintf(buf, sizeof(buf), "https://kms.%s.amazonaws.com/", region);
	}
	inst->url = cloud_strdup(buf, &failed);
	snprintf(buf, sizeof(buf), "aws:amz:%s:kms", region);
	inst->sigv4 = cloud_strdup(buf, &failed);
	if (failed) {
		aws_instance_close(inst);
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	}
	inst->http_opts.plugin = "aws-kms";
	inst->http_opts.location = inst->location;
	rc = cloud_http_config_read(aws_host, cfg, &inst->http_opts);
	if (rc == FV_OK)
		rc = cloud_http_new(aws_host, &inst->http_opts, &inst->http);
	/* The metadata endpoints answer fast or not at all. */
	meta_opts = inst->http_opts;
	meta_opts.ca_file = NULL;
	meta_opts.attempt_timeout_ms = 1000;
	meta_opts.connect_timeout_ms = 1000;
	if (rc == FV_OK)
		rc = cloud_http_new(aws_host, &meta_opts, &inst->meta_http);
	if (rc != FV_OK) {
		aws_instance_close(inst);
		return rc;
	}
	*out = inst;
	return FV_OK;
}

/* ---- Keys ---- */

static void aws_key_close(fv_pkey *key)
{
	if (!key)
		return;
	free(key->arn);
	free(key->location);
	free(key->der);
	free(key);
}

static int has_string(json_object *array, const char *want)
{
	size_t i, n;

	if (!array || !json_object_is_type(array, json_type_array))
		return 0;
	n = json_object_array_length(array);
	for (i = 0; i < n; i++) {
		json_object *v = json_object_array_get_idx(array, i);

		if (json_object_is_type(v, json_type_string) &&
		    strcmp(json_object_get_string(v), want) == 0)
			return 1;
	}
	return 0;
}

/* Check GetPublicKey's answer and keep what the key handle needs. */
static int key_from_public(struct fv_instance *inst, json_object *doc, struct fv_pkey *key)
{
	const char *arn = cloud_json_string(doc, "KeyId", NULL);
	const char *spec = cloud_json_string(doc, "KeySpec", NULL);
	const char *usage = cloud_json_string(doc, "KeyUsage", NULL);
	const char *b64 = cloud_json_string(doc, "PublicKey", NULL);
	json_object *algs = NULL;
	const unsigned char *p;
	EVP_PKEY *pub;
	char buf[700];
	int bits;

	if (!spec)
		spec = cloud_json_string(doc, "CustomerMasterKeySpec", NULL);
	json_object_object_get_ex(doc, "EncryptionAlgorithms", &algs);
	if (!arn || !spec || !b64)
		return AWS_ERROR(FV_ERR_BACKEND,
			"%s: AWS KMS GetPublicKey answered without KeyId, KeySpec or PublicKey", inst->location);
	if (strcmp(spec, "RSA_2048") != 0 && strcmp(spec, "RSA_3072") != 0 &&
	    strcmp(spec, "RSA_4096") != 0)
		return AWS_ERROR(FV_ERR_UNSUPPORTED,
			"%s.key_id: AWS KMS key '%s' is %s; WhatsApp Flows needs an RSA key (RSA_2048; `flowvault generate` makes one)",
			inst->location, arn, spec);
	if (!usage || strcmp(usage, "ENCRYPT_DECRYPT") != 0)
		return AWS_ERROR(FV_ERR_UNSUPPORTED,
			"%s.key_id: AWS KMS key '%s' has KeyUsage %s; Flows needs ENCRYPT_DECRYPT (a new key is needed: usage cannot change)",
			inst->location, arn, usage ? usage : "(none)");
	if (!has_string(algs, OAEP_ALGORITHM))
		return AWS_ERROR(FV_ERR_UNSUPPORTED,
			"%s.key_id: AWS KMS key '%s' does not offer %s, which WhatsApp Flows uses",
			inst->location, arn, OAEP_ALGORITHM);
	if (cloud_base64_decode(b64, strlen(b64), &key->der, &key->der_len) != FV_OK)
		return AWS_ERROR(FV_ERR_BACKEND, "%s: AWS KMS sent a public key that is not base64",
		                 inst->location);
	p = key->der;
	pub = d2i_PUBKEY(NULL, &p, (long)key->der_len);
	bits = pub && EVP_PKEY_is_a(pub, "RSA") ? EVP_PKEY_get_bits(pub) : 0;
	EVP_PKEY_free(pub);
	if (bits < 2048 || p != key->der + key->der_len)
		return AWS_ERROR(FV_ERR_BACKEND,
			"%s: AWS KMS sent a public key for '%s' that is not an RSA SubjectPublicKeyInfo",
			inst->location, arn);
	key->bits = (unsigned int)bits;
	key->modulus_bytes = ((size_t)bits + 7) / 8;
	key->arn = strdup(arn);
	snprintf(buf, sizeof(buf), "AWS KMS key %s in %s", inst->key_id, inst->region);
	key->location = strdup(buf);
	if (!key->arn || !key->location)
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	return FV_OK;
}

static json_object *request_with_key(const char *key_id)
{
	json_object *req = json_object_new_object();

	if (req && json_object_object_add(req, "KeyId", json_object_new_string(key_id)) != 0) {
		json_object_put(req);
		req = NULL;
	}
	return req;
}

static int aws_key_open(fv_instance *inst, fv_pkey **out)
{
	struct kms_error err;
	json_object *req, *resp = NULL;
	struct fv_pkey *key;
	int rc;

	req = request_with_key(inst->key_id);
	key = calloc(1, sizeof(*key));
	if (!req || !key) {
		json_object_put(req);
		free(key);
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	}
	key->inst = inst;
	rc = kms_call(inst, "GetPublicKey", req, 1, cloud_deadline(inst->http), &resp, &err);
	json_object_put(req);
	if (rc == FV_OK)
		rc = key_from_public(inst, resp, key);
	json_object_put(resp);
	if (rc != FV_OK) {
		aws_key_close(key);
		return rc;
	}
	AWS_LOG(FV_LOG_DEBUG, "aws-kms: %s: key %s (RSA-%u), decrypt with %s in KMS",
	        inst->location, key->arn, key->bits, OAEP_ALGORITHM);
	*out = key;
	return FV_OK;
}

static int aws_key_public_der(fv_pkey *key, unsigned char *der, size_t *len)
{
	if (!key || !len)
		return AWS_ERROR(FV_ERR_USAGE, "aws-kms: key_public_der: missing argument");
	return cloud_public_der_out(key->der, key->der_len, der, len);
}

static int aws_key_decrypt(fv_pkey *key, const unsigned char *in, size_t in_len,
                           unsigned char *out, size_t *out_len)
{
	struct fv_instance *inst;
	struct kms_error err;
	json_object *req = NULL, *resp = NULL;
	unsigned char *plain = NULL;
	size_t plain_len = 0, b64_len = 0;
	const char *b64;
	char *ciphertext;
	int rc;

	if (!key || !in || !out_len)
		return AWS_ERROR(FV_ERR_USAGE, "aws-kms: key_decrypt: missing argument");
	inst = key->inst;
	if (in_len != key->modulus_bytes)
		return AWS_ERROR(FV_ERR_DECRYPT,
			"ciphertext is %zu bytes; the RSA-%u key %s takes exactly %zu",
			in_len, key->bits, key->arn, key->modulus_bytes);
	ciphertext = cloud_base64_encode(in, in_len);
	req = json_object_new_object();
	if (!ciphertext || !req ||
	    json_object_object_add(req, "CiphertextBlob", json_object_new_string(ciphertext)) ||
	    json_object_object_add(req, "EncryptionAlgorithm", json_object_new_string(OAEP_ALGORITHM)) ||
	    json_object_object_add(req, "KeyId", json_object_new_string(key->arn))) {
		rc = AWS_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = kms_call(inst, "Decrypt", req, 1, cloud_deadline(inst->http), &resp, &err);
	if (rc != FV_OK) {
		if (strcmp(err.type, "InvalidCiphertextException") == 0)
			rc = AWS_ERROR(FV_ERR_DECRYPT,
				"the ciphertext fails the RSA-OAEP (SHA-256) check with AWS KMS key %s: "
				"it was encrypted to another key or with other parameters",
				key->arn);
		goto out;
	}
	b64 = cloud_json_string(resp, "Plaintext", &b64_len);
	if (!b64 || cloud_base64_decode(b64, b64_len, &plain, &plain_len) != FV_OK) {
		rc = AWS_ERROR(FV_ERR_BACKEND, "%s: AWS KMS Decrypt answered without a base64 Plaintext",
		               inst->location);
		goto out;
	}
	rc = cloud_plaintext_out(aws_host, inst->location, plain, plain_len, key->modulus_bytes,
	                         out, out_len);
out:
	cloud_buf_free(plain, plain_len);
	cloud_json_free_wiped(resp);
	json_object_put(req);
	free(ciphertext);
	return rc;
}

static int aws_key_info(fv_pkey *key, char *buf, size_t len)
{
	if (!key || !buf || len == 0)
		return FV_ERR_USAGE;
	snprintf(buf, len, "aws-kms: %s (RSA-%u); oaep: aws-kms (%s)", key->arn, key->bits,
	         OAEP_ALGORITHM);
	return FV_OK;
}

static int aws_key_describe(fv_pkey *key, fv_key_description *d)
{
	if (!key || !d)
		return FV_ERR_USAGE;
	/* KMS never exports an asymmetric private key; GetPublicKey said the
	 * key only encrypts and decrypts. */
	cloud_describe_fill(d, "aws-kms", key->location, key->arn, key->bits, 0,
	                    FV_KEY_PROP_EXTRACTABLE | FV_KEY_PROP_CAN_SIGN | FV_KEY_PROP_IN_HOST_MEMORY);
	return FV_OK;
}

/* ---- Generating a key ---- */

/* "alias/NAME" from key_id, or NULL when key_id does not name an alias. */
static const char *alias_of(const char *key_id)
{
	const char *a;

	if (strncmp(key_id, "alias/", 6) == 0)
		return key_id;
	if (strncmp(key_id, "arn:", 4) == 0 && (a = strstr(key_id, ":alias/")))
		return a + 1;
	return NULL;
}

static int aws_key_generate(fv_instance *inst)
{
	const char *alias = alias_of(inst->key_id);
	struct kms_error err;
	json_object *req = NULL, *resp = NULL, *meta, *tags, *tag;
	const char *new_id = NULL;
	char description[300], *key_id_copy = NULL;
	int64_t deadline;
	int rc;

	if (!alias)
		return AWS_ERROR(FV_ERR_USAGE,
			"%s.key_id: '%s' is a key id or key ARN, which KMS chooses itself; set key_id to alias/NAME "
			"to have `flowvault generate` create a key under that alias",
			inst->location, inst->key_id);
	if (strncmp(alias, "alias/aws/", 10) == 0 || strlen(alias) <= 6)
		return AWS_ERROR(FV_ERR_CONFIG,
			"%s.key_id: '%s' is not an alias you can create (alias/aws/ is AWS's own)",
			inst->location, alias);

	/* Refuse before creating anything when the alias is taken. */
	deadline = cloud_deadline(inst->http);
	req = request_with_key(inst->key_id);
	if (!req)
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	rc = kms_call(inst, "DescribeKey", req, 1, deadline, &resp, &err);
	json_object_put(req);
	req = NULL;
	if (rc == FV_OK) {
		json_object_object_get_ex(resp, "KeyMetadata", &meta);
		rc = AWS_ERROR(FV_ERR_EXISTS,
			"%s.key_id: %s already names AWS KMS key %s; refusing to create another (choose another alias)",
			inst->location, alias,
			cloud_json_string(meta, "Arn", NULL) ? cloud_json_string(meta, "Arn", NULL) : "?");
		goto out;
	}
	if (strcmp(err.type, "NotFoundException") != 0)
		goto out;

	snprintf(description, sizeof(description), "WhatsApp Flows key made by flowvault for %s",
	         inst->location);
	deadline = cloud_deadline(inst->http);
	req = json_object_new_object();
	tags = json_object_new_array();
	tag = json_object_new_object();
	if (!req || !tags || !tag ||
	    json_object_object_add(req, "KeySpec", json_object_new_string("RSA_2048")) ||
	    json_object_object_add(req, "KeyUsage", json_object_new_string("ENCRYPT_DECRYPT")) ||
	    json_object_object_add(req, "Description", json_object_new_string(description)) ||
	    json_object_object_add(tag, "TagKey", json_object_new_string("created-by")) ||
	    json_object_object_add(tag, "TagValue", json_object_new_string("flowvault")) ||
	    json_object_array_add(tags, tag) ||
	    json_object_object_add(req, "Tags", tags)) {
		json_object_put(tags);
		json_object_put(tag);
		rc = AWS_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Not retried once it may have reached KMS: two keys would be made. */
	rc = kms_call(inst, "CreateKey", req, 0, deadline, &resp, &err);
	json_object_put(req);
	req = NULL;
	if (rc != FV_OK)
		goto out;
	json_object_object_get_ex(resp, "KeyMetadata", &meta);
	new_id = cloud_json_string(meta, "KeyId", NULL);
	if (!new_id || !(key_id_copy = strdup(new_id))) {
		rc = AWS_ERROR(FV_ERR_BACKEND, "%s: AWS KMS CreateKey answered without KeyMetadata.KeyId",
		               inst->location);
		goto out;
	}
	json_object_put(resp);
	resp = NULL;

	req = json_object_new_object();
	if (!req || json_object_object_add(req, "AliasName", json_object_new_string(alias)) ||
	    json_object_object_add(req, "TargetKeyId", json_object_new_string(key_id_copy))) {
		rc = AWS_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = kms_call(inst, "CreateAlias", req, 0, cloud_deadline(inst->http), &resp, &err);
	json_object_put(req);
	req = NULL;
	if (rc != FV_OK) {
		/* Leave nothing behind: the new key goes with the shortest window. */
		json_object *del = request_with_key(key_id_copy);
		json_object *del_resp = NULL;
		struct kms_error del_err;
		int drc = del ? FV_OK : FV_ERR_NOMEM;

		if (del && json_object_object_add(del, "PendingWindowInDays", json_object_new_int(7)))
			drc = FV_ERR_NOMEM;
		if (drc == FV_OK)
			drc = kms_call(inst, "ScheduleKeyDeletion", del, 1, cloud_deadline(inst->http),
			               &del_resp, &del_err);
		json_object_put(del);
		json_object_put(del_resp);
		rc = AWS_ERROR(rc,
			"%s: AWS KMS made key %s but CreateAlias %s failed (%s); %s",
			inst->location, key_id_copy, alias, err.type[0] ? err.type : "see above",
			drc == FV_OK ? "the key is scheduled for deletion in 7 days"
			             : "delete that key by hand (ScheduleKeyDeletion failed too)");
		goto out;
	}
	AWS_LOG(FV_LOG_INFO, "aws-kms: %s: created RSA_2048 key %s as %s in %s", inst->location,
	        key_id_copy, alias, inst->region);
out:
	free(key_id_copy);
	json_object_put(req);
	json_object_put(resp);
	return rc;
}

/* ---- The table and the entry point ---- */

static const fv_provider aws_provider = {
	.abi_version = FV_PROVIDER_ABI_VERSION,
	.struct_size = sizeof(fv_provider),
	.name = "aws-kms",
	.version = AWS_KMS_PLUGIN_VERSION,
	.capabilities = FV_CAP_GENERATE | FV_CAP_INFO | FV_CAP_DESCRIBE,
	.config_fields = aws_fields,
	.instance_open = aws_instance_open,
	.instance_close = aws_instance_close,
	.key_generate = aws_key_generate,
	.key_open = aws_key_open,
	.key_close = aws_key_close,
	.key_public_der = aws_key_public_der,
	.key_decrypt = aws_key_decrypt,
	.key_info = aws_key_info,
	.key_list = NULL,
	.key_delete = NULL,
	.key_describe = aws_key_describe,
};

static int aws_entry(uint32_t host_abi_version, const fv_host *h, const fv_provider **out)
{
	if (fv_provider_host_check(host_abi_version, h) != FV_OK)
		return FV_ERR_PLUGIN;
	aws_host = h;
	*out = &aws_provider;
	return FV_OK;
}

FV_PROVIDER_DEFINE_ENTRY(aws_entry)
