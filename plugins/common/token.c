/*
 * A cached bearer token, shared by the threads of one plugin instance: one
 * fetch when it is missing or about to expire, never one per decrypt; the
 * requests that carry it; and the OAuth 2.0 token services tokens come
 * from. See cloud.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cloud.h"

/* Refresh this long before expiry (Google's and Microsoft's clients use
 * five minutes), or at half the lifetime of a short-lived token. */
#define TOKEN_REFRESH_MARGIN_MS (5 * 60 * 1000)

int cloud_token_init(struct cloud_token *t)
{
	memset(t, 0, sizeof(*t));
	if (pthread_mutex_init(&t->lock, NULL) != 0)
		return FV_ERR_NOMEM;
	t->initialized = 1;
	return FV_OK;
}

void cloud_token_destroy(const fv_host *host, struct cloud_token *t)
{
	if (!t || !t->initialized)
		return;
	cloud_secret_clear(host, &t->value);
	pthread_mutex_destroy(&t->lock);
	t->initialized = 0;
}

int cloud_token_get(const fv_host *host, struct cloud_token *t,
                    cloud_token_fetch_fn fetch, void *arg, int64_t deadline_ms,
                    struct cloud_secret *copy)
{
	int64_t now, lifetime_s = 0, margin;
	int rc = FV_OK;

	/* Held across the fetch: concurrent callers wait for that one fetch
	 * instead of each asking the token service. */
	pthread_mutex_lock(&t->lock);
	now = cloud_now_ms();
	if (!t->value.data || now >= t->refresh_at_ms) {
		struct cloud_secret fresh = { NULL, 0 };

		rc = fetch ? fetch(arg, deadline_ms, &fresh, &lifetime_s)
		           : CLOUD_ERROR(host, FV_ERR_AUTH, "no token configured and none to fetch");
		if (rc == FV_OK) {
			cloud_secret_clear(host, &t->value);
			t->value = fresh;
			t->fetches++;
			if (lifetime_s <= 0) {
				t->refresh_at_ms = INT64_MAX; /* a configured token: never */
			} else {
				margin = lifetime_s * 1000 / 2;
				if (margin > TOKEN_REFRESH_MARGIN_MS)
					margin = TOKEN_REFRESH_MARGIN_MS;
				t->refresh_at_ms = cloud_now_ms() + lifetime_s * 1000 - margin;
			}
		} else {
			cloud_secret_clear(host, &fresh);
		}
	}
	if (rc == FV_OK)
		rc = cloud_secret_set(host, t->value.data, t->value.len, copy);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void cloud_token_invalidate(struct cloud_token *t, const struct cloud_secret *used)
{
	pthread_mutex_lock(&t->lock);
	/* Only the token that was refused: another thread may have a new one. */
	if (t->value.data && used && used->data && t->value.len == used->len &&
	    memcmp(t->value.data, used->data, used->len) == 0 && t->refresh_at_ms != INT64_MAX)
		t->refresh_at_ms = 0;
	pthread_mutex_unlock(&t->lock);
}

uint64_t cloud_token_fetches(struct cloud_token *t)
{
	uint64_t n;

	pthread_mutex_lock(&t->lock);
	n = t->fetches;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* "Bearer <token>" into *bearer (secure memory), the Authorization value. */
static int bearer_set(const fv_host *host, const char *token, size_t len,
                      struct cloud_secret *bearer)
{
	size_t n = len + 8;
	char *value = OPENSSL_malloc(n);
	int rc;

	if (!value)
		return CLOUD_ERROR(host, FV_ERR_NOMEM, "out of memory");
	memcpy(value, "Bearer ", 7);
	memcpy(value + 7, token, len);
	value[n - 1] = '\0';
	rc = cloud_secret_set(host, value, n - 1, bearer);
	OPENSSL_clear_free(value, n);
	return rc;
}

int cloud_token_configure(const fv_host *host, struct cloud_token *t, const char *location,
                          const char *field, const char *reference, const char *purpose)
{
	struct cloud_secret raw = { NULL, 0 };
	int rc;

	/* Resolved now, once: a prompt is answered before serving starts. */
	rc = cloud_secret_resolve(host, reference, purpose, &raw);
	if (rc != FV_OK)
		return rc;
	if (raw.len == 0 || strpbrk(raw.data, "\r\n"))
		rc = CLOUD_ERROR(host, FV_ERR_AUTH,
			"%s.%s: the token from '%s' is empty or has a line break",
			location, field, reference);
	else
		rc = bearer_set(host, raw.data, raw.len, &t->value);
	cloud_secret_clear(host, &raw);
	t->refresh_at_ms = INT64_MAX;
	return rc;
}

int cloud_bearer_perform(const fv_host *host, struct cloud_http *http, struct cloud_token *t,
                         cloud_token_fetch_fn fetch, void *arg,
                         const struct cloud_request *req, int64_t deadline_ms,
                         struct cloud_response *resp)
{
	struct cloud_secret bearer = { NULL, 0 };
	struct cloud_request authorized = *req;
	int attempt, rc = FV_OK;

	authorized.secret_header_name = "Authorization";
	authorized.secret_header_value = &bearer;
	for (attempt = 0; attempt < 2; attempt++) {
		rc = cloud_token_get(host, t, fetch, arg, deadline_ms, &bearer);
		if (rc != FV_OK)
			break;
		rc = cloud_http_perform(http, &authorized, deadline_ms, resp);
		/* A configured token would only be refused again. */
		if (rc != FV_OK || resp->status != 401 || !fetch || attempt == 1)
			break;
		host->log(FV_LOG_DEBUG, "%s: %s: %s: the access token was refused; fetching a new one",
		          cloud_http_plugin(http), cloud_http_location(http), req->what);
		cloud_token_invalidate(t, &bearer);
		cloud_secret_clear(host, &bearer);
		cloud_response_free(resp);
	}
	cloud_secret_clear(host, &bearer);
	return rc;
}

/* ---- OAuth 2.0 token services ---- */

/* A token answer ({"access_token", "expires_in"}, the lifetime a number
 * or, as Azure's IMDS sends it, a string). FV_ERR_BACKEND, with no
 * message, when it holds no usable token. */
static int oauth_token(const fv_host *host, const struct cloud_response *resp,
                       struct cloud_secret *bearer, int64_t *lifetime_s)
{
	json_object *doc = NULL, *exp = NULL;
	const char *token;
	size_t len = 0;
	int rc;

	if (cloud_json_parse(resp->body, resp->len, &doc) != FV_OK)
		return FV_ERR_BACKEND;
	token = cloud_json_string(doc, "access_token", &len);
	/* A number in RFC 6749; Azure's IMDS sends a string. */
	*lifetime_s = 0;
	if (json_object_object_get_ex(doc, "expires_in", &exp)) {
		if (json_object_is_type(exp, json_type_string))
			*lifetime_s = strtoll(json_object_get_string(exp), NULL, 10);
		else if (json_object_is_type(exp, json_type_int))
			*lifetime_s = json_object_get_int64(exp);
	}
	if (!token || !len || strpbrk(token, "\r\n") || *lifetime_s <= 0)
		rc = FV_ERR_BACKEND;
	else
		rc = bearer_set(host, token, len, bearer);
	cloud_json_free_wiped(doc);
	return rc;
}

/* An error answer (RFC 6749 section 5.2) as a message naming the source. */
static int oauth_refused(const fv_host *host, const struct cloud_token_source *src,
                         const struct cloud_response *resp)
{
	json_object *doc = NULL;
	const char *e = NULL, *d = NULL;
	char error[64], description[400];

	if (cloud_json_parse(resp->body, resp->len, &doc) == FV_OK) {
		e = cloud_json_string(doc, "error", NULL);
		d = cloud_json_string(doc, "error_description", NULL);
	}
	snprintf(error, sizeof(error), "%s", e ? e : "");
	snprintf(description, sizeof(description), "%s", d ? d : "");
	json_object_put(doc);
	return CLOUD_ERROR(host, resp->status >= 500 ? FV_ERR_BACKEND : FV_ERR_AUTH,
		"%s: no %s from the %s: HTTP %ld %s%s%s; %s",
		src->location, src->token_name, src->source, resp->status, error,
		description[0] ? ": " : "", description, src->fix);
}

int cloud_oauth_answer(const fv_host *host, const struct cloud_token_source *src,
                       const struct cloud_response *resp, struct cloud_secret *bearer,
                       int64_t *lifetime_s)
{
	int rc;

	if (resp->status != 200)
		return oauth_refused(host, src, resp);
	rc = oauth_token(host, resp, bearer, lifetime_s);
	if (rc == FV_ERR_BACKEND)
		rc = CLOUD_ERROR(host, FV_ERR_BACKEND,
			"%s: the token service of the %s answered without a usable access_token/expires_in",
			src->location, src->source);
	return rc;
}

int cloud_oauth_request(const fv_host *host, const struct cloud_token_source *src,
                        const struct cloud_request *req, int64_t deadline_ms,
                        struct cloud_secret *bearer, int64_t *lifetime_s)
{
	struct cloud_response resp;
	int rc = cloud_http_perform(src->http, req, deadline_ms, &resp);

	if (rc != FV_OK)
		return rc;
	rc = cloud_oauth_answer(host, src, &resp, bearer, lifetime_s);
	cloud_response_free(&resp);
	return rc;
}

int cloud_oauth_form_post(const fv_host *host, const struct cloud_token_source *src,
                          const char *url, const char *what,
                          const struct cloud_form_field *fields, size_t n_fields,
                          int64_t deadline_ms, struct cloud_secret *bearer, int64_t *lifetime_s)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded", "Accept: application/json", NULL
	};
	struct cloud_response resp;
	int rc = cloud_form_post(src->http, url, headers, fields, n_fields, what, deadline_ms, &resp);

	if (rc != FV_OK)
		return rc;
	rc = cloud_oauth_answer(host, src, &resp, bearer, lifetime_s);
	cloud_response_free(&resp);
	return rc;
}
