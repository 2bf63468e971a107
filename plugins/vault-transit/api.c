/*
 * One Vault API call: JSON body, X-Vault-Token (and X-Vault-Namespace),
 * errors as {"errors": [...]} with the HTTP status.
 */
#include <stdio.h>
#include <string.h>

#include "vault_transit.h"

void vault_error_text(json_object *doc, char *buf, size_t len)
{
	json_object *errors = NULL;
	size_t i, n, used = 0;

	buf[0] = '\0';
	if (!doc || !json_object_object_get_ex(doc, "errors", &errors) ||
	    !json_object_is_type(errors, json_type_array))
		return;
	n = json_object_array_length(errors);
	for (i = 0; i < n && used + 1 < len; i++) {
		json_object *e = json_object_array_get_idx(errors, i);

		if (!json_object_is_type(e, json_type_string))
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "; " : "",
		                         json_object_get_string(e));
	}
	if (used >= len)
		buf[len - 1] = '\0';
}

/* Warnings tell of parameters an older server ignored; worth a debug line. */
static void log_warnings(struct fv_instance *inst, json_object *doc)
{
	json_object *w = NULL;
	size_t i, n;

	if (!json_object_object_get_ex(doc, "warnings", &w) ||
	    !json_object_is_type(w, json_type_array))
		return;
	n = json_object_array_length(w);
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(w, i);

		if (json_object_is_type(e, json_type_string))
			VAULT_LOG(FV_LOG_DEBUG, "vault-transit: %s: Vault warns: %s", inst->location,
			          json_object_get_string(e));
	}
}

static int perform(struct fv_instance *inst, const char *method, const char *path,
                   json_object *body, int idempotent, int64_t deadline,
                   const struct cloud_secret *token, json_object **response,
                   struct vault_error *err)
{
	const char *headers[3] = { "Content-Type: application/json", inst->namespace_header, NULL };
	char url[1024], what[300];
	struct cloud_request req;
	struct cloud_response resp;
	json_object *doc = NULL;
	char *text = NULL;
	size_t text_len = 0;
	int rc;

	*response = NULL;
	memset(err, 0, sizeof(*err));
	if (body && !(text = cloud_json_body(body, &text_len)))
		return VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
	snprintf(url, sizeof(url), "%s/v1/%s", inst->address, path);
	snprintf(what, sizeof(what), "Vault %s /v1/%s", method, path);
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = url;
	req.headers = headers;
	if (token) {
		req.secret_header_name = "X-Vault-Token";
		req.secret_header_value = token;
	}
	req.body = text;
	req.body_len = text_len;
	req.idempotent = idempotent;
	req.what = what;
	rc = cloud_http_perform(inst->http, &req, deadline, &resp);
	cloud_buf_free(text, text_len + 1);
	if (rc != FV_OK)
		return rc;
	if (resp.status == 204 || (resp.len == 0 && resp.status / 100 == 2)) {
		*response = json_object_new_object();
		rc = *response ? FV_OK : VAULT_ERROR(FV_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (cloud_json_parse(resp.body, resp.len, &doc) != FV_OK) {
		rc = VAULT_ERROR(FV_ERR_BACKEND,
			"%s: %s answered HTTP %ld with something other than JSON; is address right?",
			inst->location, what, resp.status);
		goto out;
	}
	log_warnings(inst, doc);
	if (resp.status / 100 == 2) {
		*response = doc;
		doc = NULL;
		rc = FV_OK;
		goto out;
	}
	err->status = resp.status;
	vault_error_text(doc, err->message, sizeof(err->message));
	rc = FV_ERR_BACKEND; /* the caller reports it */
out:
	cloud_json_free_wiped(doc);
	cloud_response_free(&resp);
	return rc;
}

static int report(struct fv_instance *inst, const char *method, const char *path,
                  const struct vault_error *err)
{
	if (err->status == 403)
		return VAULT_ERROR(FV_ERR_AUTH,
			"%s: Vault refused %s /v1/%s with the token from %s: %s; check the token's policy "
			"(see docs/vault-transit.md) or the login",
			inst->location, method, path, inst->auth_source,
			err->message[0] ? err->message : "permission denied");
	if (err->status == 404)
		return VAULT_ERROR(FV_ERR_NOT_FOUND,
			"%s: Vault has no /v1/%s%s%s: check address, mount, key and namespace, or create the key with `flowvault generate`",
			inst->location, path, err->message[0] ? ": " : "", err->message);
	return VAULT_ERROR(FV_ERR_BACKEND, "%s: Vault %s /v1/%s failed: HTTP %ld: %s", inst->location,
	                   method, path, err->status, err->message[0] ? err->message : "(no message)");
}

int vault_call(struct fv_instance *inst, const char *method, const char *path,
               json_object *body, int idempotent, int64_t deadline,
               json_object **response, struct vault_error *err)
{
	struct vault_token *t = NULL;
	int rc, attempt;

	for (attempt = 0; attempt < 2; attempt++) {
		rc = vault_token_get(inst, deadline, &t);
		if (rc != FV_OK)
			return rc;
		rc = perform(inst, method, path, body, idempotent, deadline, &t->token, response, err);
		if (rc != FV_OK && err->status == 403 && inst->auth != VAULT_AUTH_TOKEN && attempt == 0) {
			/* The login token may have been revoked: log in once more. */
			vault_token_forget(inst, t);
			vault_token_put(inst, t);
			continue;
		}
		vault_token_put(inst, t);
		break;
	}
	if (rc != FV_OK && err->status)
		rc = report(inst, method, path, err);
	return rc;
}

int vault_post_anonymous(struct fv_instance *inst, const char *path, json_object *body,
                         int64_t deadline, json_object **response, struct vault_error *err)
{
	return perform(inst, "POST", path, body, 1, deadline, NULL, response, err);
}
