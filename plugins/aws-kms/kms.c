/*
 * One AWS KMS call: AWS JSON 1.1 (POST /, X-Amz-Target: TrentService.<Op>),
 * SigV4 computed by libcurl, service errors turned into flowvault statuses.
 */
#include <stdio.h>
#include <string.h>

#include "aws_kms.h"

static const char *const json_headers[] = {
	"Content-Type: application/x-amz-json-1.1",
	NULL, /* X-Amz-Target, filled per call */
	NULL
};

/* "com.amazonaws.kms#NotFoundException" -> "NotFoundException". */
static void error_type_of(json_object *doc, char *buf, size_t len)
{
	const char *type = cloud_json_string(doc, "__type", NULL);
	const char *hash;

	buf[0] = '\0';
	if (!type)
		return;
	hash = strrchr(type, '#');
	snprintf(buf, len, "%s", hash ? hash + 1 : type);
	buf[strcspn(buf, ":")] = '\0';
}

static void error_message_of(json_object *doc, char *buf, size_t len)
{
	const char *m = cloud_json_string(doc, "message", NULL);

	if (!m)
		m = cloud_json_string(doc, "Message", NULL);
	snprintf(buf, len, "%s", m ? m : "(no message)");
}

/* KMS sends throttling as HTTP 400 with this type. */
static const char *kms_retry_reason(const struct cloud_response *resp, void *arg)
{
	json_object *doc = NULL;
	char type[96];
	const char *reason = NULL;

	(void)arg;
	if (resp->status != 400 || cloud_json_parse(resp->body, resp->len, &doc) != FV_OK)
		return NULL;
	error_type_of(doc, type, sizeof(type));
	if (strcmp(type, "ThrottlingException") == 0)
		reason = "throttled (ThrottlingException)";
	json_object_put(doc);
	return reason;
}

static int is_auth_error(const char *type)
{
	static const char *const types[] = {
		"UnrecognizedClientException", "InvalidSignatureException",
		"IncompleteSignatureException", "MissingAuthenticationTokenException",
		"ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch",
	};
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(type, types[i]) == 0)
			return 1;
	return 0;
}

static int report_service_error(struct fv_instance *inst, const char *op,
                                const struct aws_creds *creds, const struct kms_error *err)
{
	char hint[32];

	if (is_auth_error(err->type)) {
		aws_access_key_hint(&creds->access_key, hint, sizeof(hint));
		return AWS_ERROR(FV_ERR_AUTH,
			"%s: AWS KMS refused the credentials from %s (access key %s): %s: %s; check or renew them",
			inst->location, creds->source, hint, err->type, err->message);
	}
	if (strcmp(err->type, "AccessDeniedException") == 0) {
		aws_access_key_hint(&creds->access_key, hint, sizeof(hint));
		return AWS_ERROR(FV_ERR_AUTH,
			"%s: AWS KMS denied kms:%s on '%s' to the identity from %s (access key %s): %s; "
			"grant it in the key policy or IAM policy (see docs/aws-kms.md)",
			inst->location, op, inst->key_id, creds->source, hint, err->message);
	}
	if (strcmp(err->type, "NotFoundException") == 0)
		return AWS_ERROR(FV_ERR_NOT_FOUND,
			"%s.key_id: AWS KMS has no key '%s' in %s: %s; check key_id and region, or create it with `flowvault generate`",
			inst->location, inst->key_id, inst->region, err->message);
	if (strcmp(err->type, "DisabledException") == 0 ||
	    strcmp(err->type, "KMSInvalidStateException") == 0 ||
	    strcmp(err->type, "KeyUnavailableException") == 0)
		return AWS_ERROR(FV_ERR_BACKEND,
			"%s: AWS KMS key '%s' cannot be used now: %s: %s; enable it (or cancel its deletion)",
			inst->location, inst->key_id, err->type, err->message);
	if (strcmp(err->type, "InvalidKeyUsageException") == 0)
		return AWS_ERROR(FV_ERR_UNSUPPORTED,
			"%s: AWS KMS key '%s' cannot do %s: %s; Flows needs an RSA key with KeyUsage ENCRYPT_DECRYPT",
			inst->location, inst->key_id, op, err->message);
	return AWS_ERROR(FV_ERR_BACKEND, "%s: AWS KMS %s failed: HTTP %ld %s: %s",
	                 inst->location, op, err->status, err->type[0] ? err->type : "(no error type)",
	                 err->message);
}

int kms_call(struct fv_instance *inst, const char *op, json_object *request,
             int idempotent, int64_t deadline, json_object **response,
             struct kms_error *err)
{
	const char *headers[3];
	char target[96], what[64];
	struct aws_creds *creds = NULL;
	struct cloud_request req;
	struct cloud_response resp;
	json_object *doc = NULL;
	size_t body_len = 0;
	char *body;
	int rc;

	*response = NULL;
	memset(err, 0, sizeof(*err));
	body = cloud_json_body(request, &body_len);
	if (!body)
		return AWS_ERROR(FV_ERR_NOMEM, "out of memory");
	rc = aws_creds_get(inst, deadline, &creds);
	if (rc != FV_OK) {
		cloud_buf_free(body, body_len + 1);
		return rc;
	}
	snprintf(target, sizeof(target), "X-Amz-Target: TrentService.%s", op);
	snprintf(what, sizeof(what), "KMS %s", op);
	headers[0] = json_headers[0];
	headers[1] = target;
	headers[2] = NULL;
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = inst->url;
	req.headers = headers;
	if (creds->session_token.data) {
		req.secret_header_name = "X-Amz-Security-Token";
		req.secret_header_value = &creds->session_token;
	}
	req.body = body;
	req.body_len = body_len;
	req.aws_sigv4 = inst->sigv4;
	req.aws_access_key = &creds->access_key;
	req.aws_secret_key = &creds->secret_key;
	req.idempotent = idempotent;
	req.retry_reason = kms_retry_reason;
	req.what = what;
	rc = cloud_http_perform(inst->http, &req, deadline, &resp);
	cloud_buf_free(body, body_len + 1);
	if (rc != FV_OK)
		goto out;
	if (cloud_json_parse(resp.body, resp.len, &doc) != FV_OK) {
		/* CreateAlias answers 200 with an empty body. */
		if (resp.status == 200 && resp.len == 0) {
			*response = json_object_new_object();
			rc = *response ? FV_OK : AWS_ERROR(FV_ERR_NOMEM, "out of memory");
			goto out;
		}
		rc = AWS_ERROR(FV_ERR_BACKEND,
			"%s: AWS KMS %s at %s answered HTTP %ld with something other than JSON; is endpoint right?",
			inst->location, op, inst->url, resp.status);
		goto out;
	}
	if (resp.status == 200) {
		*response = doc;
		doc = NULL;
		rc = FV_OK;
		goto out;
	}
	err->status = resp.status;
	error_type_of(doc, err->type, sizeof(err->type));
	error_message_of(doc, err->message, sizeof(err->message));
	/* Temporary credentials may have been revoked or rotated early: fetch
	 * them again next time. Static ones would only be read (or prompted
	 * for) again to the same end. */
	if (is_auth_error(err->type) && creds->expires_at_ms)
		aws_creds_forget(inst, creds);
	rc = report_service_error(inst, op, creds, err);
out:
	cloud_json_free_wiped(doc);
	cloud_response_free(&resp);
	aws_creds_put(inst, creds);
	return rc;
}
